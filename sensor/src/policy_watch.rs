//! The policies an agent enforces: the files named with `--policy`, and every `*.yaml` /
//! `*.yml` in `--policy-dir`, which is rescanned every second. A new file is loaded, a changed
//! one replaces its policy (the new rules are active before the old ones go), a deleted one is
//! removed. A file that fails validation, planning or compilation is refused with its reasons
//! and the policies already running keep running; when the last policy goes, the file-open
//! programs are detached.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::SystemTime,
};

use anyhow::Result;
use vigil_policy_engine::{kernel::RunningKernel, plan::KernelCaps, Kernel, KernelSymbols};

use crate::{
    agent::log,
    loader::{LoadError, LoadedObject},
    policies::{AttachTarget, HookReport, Installed, PolicyLoadError, PolicyTable},
};

/// How long a file must be left alone before it is read.
const SETTLE: std::time::Duration = std::time::Duration::from_millis(200);

/// What the agent knows of one policy file.
struct Tracked {
    /// Modification time and size when last read.
    stamp: (SystemTime, u64),
    /// The policy it holds, when it loaded.
    policy: Option<String>,
}

/// Loaded policies and the files they came from.
pub struct PolicyManager {
    table: PolicyTable,
    caps: KernelCaps,
    kernel: Option<RunningKernel>,
    /// When `kernel` was read.
    kernel_read: Option<std::time::Instant>,
    dir: Option<PathBuf>,
    files: BTreeMap<PathBuf, Tracked>,
    attached: bool,
}

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// The policy files of a directory, sorted.
pub fn policy_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    Ok(files)
}

impl PolicyManager {
    /// Loads `files` and the directory's policies.
    ///
    /// Fails only when the agent's own object lacks the policy maps (a broken build): a policy
    /// that cannot be read, compiled, written or attached is refused and logged, and the agent
    /// starts with the others.
    pub fn start(
        sensor: &mut LoadedObject,
        btf: &str,
        files: &[PathBuf],
        dir: Option<PathBuf>,
    ) -> Result<Self> {
        let mut m = PolicyManager {
            table: PolicyTable::new(sensor.ebpf_mut())?,
            caps: crate::probe::run(btf).caps(),
            kernel: None,
            kernel_read: None,
            dir,
            files: BTreeMap::new(),
            attached: false,
        };
        m.refresh_kernel();
        for f in files {
            m.load(sensor, f);
        }
        m.rescan(sensor)?;
        Ok(m)
    }

    /// Reads the kernel's functions as they are now (a module loaded since may add some), as
    /// `vigil policy lint` reads them; at most every few seconds, and never holding two copies
    /// (the table is tens of megabytes).
    fn refresh_kernel(&mut self) {
        if self
            .kernel_read
            .is_some_and(|t| t.elapsed() < std::time::Duration::from_secs(5))
        {
            return;
        }
        self.kernel = None;
        self.kernel = RunningKernel::read().ok();
        self.kernel_read = Some(std::time::Instant::now());
    }

    /// The rules, for events.
    pub fn table(&self) -> &PolicyTable {
        &self.table
    }

    /// Applies what changed in the policy directory since the last scan.
    ///
    /// Never fails: an unreadable directory, a refused policy or a failed attach is logged and
    /// the running policies go on (the `Result` lets the agent's loop use `?` should a fatal
    /// case ever appear).
    pub fn rescan(&mut self, sensor: &mut LoadedObject) -> Result<()> {
        let Some(dir) = self.dir.clone() else {
            return Ok(());
        };
        let present = match policy_files(&dir) {
            Ok(p) => p,
            Err(e) => {
                log(format!(
                    "cannot read policy directory {}: {e}",
                    dir.display()
                ));
                return Ok(());
            }
        };
        let gone: Vec<PathBuf> = self
            .files
            .keys()
            .filter(|p| p.starts_with(&dir) && !present.contains(p))
            .cloned()
            .collect();
        for path in gone {
            if let Some(Tracked {
                policy: Some(name), ..
            }) = self.files.remove(&path)
            {
                match self.table.uninstall(&name) {
                    Ok(links) => {
                        links.into_iter().for_each(|l| sensor.detach_hook(l));
                        log(format!(
                            "policy {name} removed ({} deleted)",
                            path.display()
                        ))
                    }
                    Err(e) => log(format!("policy {name}: removal failed: {e}")),
                }
            }
        }
        // A file still being written is read on a later scan, not half-way.
        let due: Vec<PathBuf> = present
            .into_iter()
            .filter(|path| {
                let settled = stamp(path)
                    .is_some_and(|(mtime, _)| mtime.elapsed().unwrap_or_default() >= SETTLE);
                let changed = self
                    .files
                    .get(path)
                    .is_none_or(|t| Some(t.stamp) != stamp(path));
                settled && changed
            })
            .collect();
        if !due.is_empty() {
            self.refresh_kernel();
        }
        for path in due {
            self.load(sensor, &path);
        }
        self.release_file_open(sensor);
        Ok(())
    }

    /// Loads (or reloads) one file, enforcing it before saying so. A refusal at any step is
    /// logged and leaves the policies as they were (a previous version of the file's policy
    /// keeps running); it never ends the agent.
    fn load(&mut self, sensor: &mut LoadedObject, path: &Path) {
        let Some(st) = stamp(path) else { return };
        let file = path.display().to_string();
        let previous = self.files.get(path).and_then(|t| t.policy.clone());
        let kernel = Kernel {
            caps: self.caps,
            symbols: self.kernel.as_ref().map(|k| k as &dyn KernelSymbols),
        };
        // The one gate every reader of policies goes through, then validation, compilation and
        // the attach plan, exactly as `vigil policy lint` and `explain` run them.
        let result = vigil_policy_engine::prepare(path, &kernel)
            .map_err(|e| PolicyLoadError::Refused(e.to_string()))
            .and_then(|p| {
                let name = p.name().to_string();
                self.table
                    .install(p, previous.as_deref(), self.kernel.as_ref())
                    .map(|n| (name, n))
            });
        let policy = match result {
            Ok((name, installed)) => match self.enforce(sensor, &file, installed) {
                Ok((rules, report)) => {
                    let verb = if previous.is_some() {
                        "reloaded"
                    } else {
                        "loaded"
                    };
                    let attached: String = report
                        .iter()
                        .map(|h| format!("\n  {} {}: attached {}", h.path, h.hook, h.attach))
                        .collect();
                    log(format!(
                        "policy {name} {verb} from {file} ({rules} rules){attached}"
                    ));
                    Some(name)
                }
                Err(reason) => {
                    refused(previous.as_deref(), &format!("{file}: {reason}"));
                    previous
                }
            },
            Err(e) => {
                refused(previous.as_deref(), &e.to_string());
                previous
            }
        };
        self.files
            .insert(path.to_path_buf(), Tracked { stamp: st, policy });
    }

    /// Attaches an installed policy's hooks (and the file-open programs it needs), then makes
    /// it the running version. Returns its rule count, or why it was refused, everything it
    /// added being removed then.
    fn enforce(
        &mut self,
        sensor: &mut LoadedObject,
        file: &str,
        installed: Installed,
    ) -> Result<(usize, Vec<HookReport>), String> {
        let rules = installed.rules + installed.attach.len();
        let report = installed.report.clone();
        let mut failure = None;
        for (slot, target) in installed.attach.clone() {
            let link = match &target {
                AttachTarget::Kprobe(f) => sensor.attach_kprobe(f, false),
                AttachTarget::Kretprobe(f) => sensor.attach_kprobe(f, true),
                AttachTarget::SyscallEnter(t, arity) => sensor.attach_syscall_enter(t, *arity),
                AttachTarget::SockState(_) => sensor.attach_sock_state(),
                AttachTarget::NotInKernel(call) => {
                    log(format!("{file}: {call} is not implemented by this kernel (every call fails with ENOSYS); its hook has nothing to watch"));
                    continue;
                }
            };
            match link {
                Ok(link) => self.table.add_link(slot, link),
                Err(e) => {
                    failure = Some((format!("{target}"), e));
                    break;
                }
            }
        }
        if let (None, Some(lsm)) = (&failure, installed.file_open_lsm) {
            failure = self
                .attach_file_open(sensor, lsm)
                .err()
                .map(|e| ("the file-open programs".to_string(), e));
        }
        if let Some((what, e)) = failure {
            let (links, removal) = self.table.abort(installed);
            links.into_iter().for_each(|l| sensor.detach_hook(l));
            self.release_file_open(sensor);
            if let Err(r) = removal {
                log(format!(
                    "{file}: removing what the refused policy added: {r}"
                ));
            }
            // The verifier's log is for VIGIL_DEBUG, not the agent log.
            if std::env::var_os("VIGIL_DEBUG").is_some() {
                log(format!("{e}"));
            }
            return Err(format!(
                "cannot attach to {what}: {}",
                crate::brief::brief(&e)
            ));
        }
        let (links, removal) = self.table.commit(installed);
        links.into_iter().for_each(|l| sensor.detach_hook(l));
        if let Err(r) = removal {
            log(format!("{file}: removing the replaced version: {r}"));
        }
        self.release_file_open(sensor);
        Ok((rules, report))
    }

    /// Attaches the file-open programs unless they are.
    fn attach_file_open(&mut self, sensor: &mut LoadedObject, lsm: bool) -> Result<(), LoadError> {
        if !self.attached {
            let how = sensor.attach_file_open(lsm)?;
            log(format!("file-open policies enforced through {how}"));
            self.attached = true;
        }
        Ok(())
    }

    /// Detaches the file-open programs when no rule needs them any more (opens then cost
    /// nothing again).
    fn release_file_open(&mut self, sensor: &mut LoadedObject) {
        if self.attached && !self.table.has_file_rules() {
            sensor.detach_file_open();
            log("no policies left: file-open programs detached");
            self.attached = false;
        }
    }
}

/// Logs a refusal, saying which version of the file's policy, if any, keeps running.
fn refused(previous: Option<&str>, reason: &str) {
    let kept = previous
        .map(|p| format!(" (policy {p} keeps running as it was)"))
        .unwrap_or_default();
    log(format!(
        "policy refused, the others keep running{kept}:\n{reason}"
    ));
}
