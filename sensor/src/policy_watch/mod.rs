//! The policies an agent enforces: the files named with `--policy`, and every `*.yaml` /
//! `*.yml` in `--policy-dir`, which is rescanned every second. A new file is loaded, a changed
//! one replaces its policy (the new rules are active before the old ones go), a deleted one is
//! removed. A file of the directory that fails validation, planning or compilation is refused
//! with its reasons and the policies already running keep running; a file named with
//! `--policy` that is missing or refused stops the start instead (the user asked for that
//! policy by name). When the last file-open policy goes, the file-open programs are detached.
//!
//! At start every file is read and prepared before the agent loads its programs, so that it
//! loads every program their attach plans use at once, in parallel ([`StartingPolicies`]).
//!
//! The API adds policies (kept in the state directory's `policies/`, read like a second
//! `--policy-dir`), removes them, and disables or switches the mode of any policy by name
//! (kept in the state directory too: [`state`]); `api_ops.rs` holds those operations.

pub mod api_ops;
mod starting;
pub mod state;

use starting::KernelView;
pub use starting::StartingPolicies;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::SystemTime,
};

use anyhow::{bail, Result};
use vigil_policy_engine::{
    kernel::RunningKernel,
    plan::{KernelCaps, Mechanism},
    Kernel, KernelSymbols, Limits, Mode, Prepared,
};

use state::{Overrides, PolicyState};

use crate::{
    agent::log,
    loader::{FileOpenVia, LoadError, LoadedObject, ProgramNeed},
    policies::{
        scopes::ScopeSource, AttachTarget, HookReport, Installed, PolicyLoadError, PolicyTable,
    },
};

/// How long a file must be left alone before it is read.
const SETTLE: std::time::Duration = std::time::Duration::from_millis(200);

/// What became of a policy that was not refused.
pub struct Applied {
    /// What the agent logged.
    pub said: String,
    /// It runs on this node (else its nodeSelector leaves this node out).
    pub loaded: bool,
}

/// What the agent knows of one policy file.
struct Tracked {
    /// Modification time and size when last read.
    stamp: (SystemTime, u64),
    /// The policy it holds, when it loaded.
    policy: Option<String>,
    /// What became of it when last applied.
    outcome: Outcome,
    /// A cluster object's text and namespace, to prepare it again (a file is read again).
    object: Option<(String, Option<String>)>,
}

/// What became of a policy source when last applied.
#[derive(Clone)]
enum Outcome {
    /// It runs, in this mode, attached so.
    Loaded {
        mode: Mode,
        report: Vec<HookReport>,
        namespace: Option<String>,
    },
    /// Its nodeSelector leaves this node out.
    NotSelected { name: String, said: String },
    /// Disabled through the API.
    Disabled { name: String },
    /// Refused (a version loaded before may still run: [`Tracked::policy`]).
    Refused { reason: String },
}

/// A policy file read and prepared (validated, compiled, planned), or why not.
struct PreparedFile {
    path: PathBuf,
    stamp: Option<(SystemTime, u64)>,
    prepared: Result<Prepared, PolicyLoadError>,
}

/// Loaded policies and the files they came from.
pub struct PolicyManager {
    table: PolicyTable,
    view: KernelView,
    /// `--policy-dir` and the API's policies, rescanned.
    dirs: Vec<PathBuf>,
    files: BTreeMap<PathBuf, Tracked>,
    attached: bool,
    /// Where the API's changes are kept (none: they last until the agent stops).
    state: Option<PolicyState>,
    overrides: Overrides,
    /// Policies refused since the start (a file, an API request or a cluster object that did
    /// not validate, plan or load), for the metrics.
    pub load_errors: u64,
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
    /// The rules, for events.
    pub fn table(&self) -> &PolicyTable {
        &self.table
    }

    /// Whether the file-open programs are attached.
    pub fn file_open_attached(&self) -> bool {
        self.attached
    }

    /// Applies what changed in the policy directories since the last scan.
    ///
    /// Never fails: an unreadable directory, a refused policy or a failed attach is logged and
    /// the running policies go on (the `Result` lets the agent's loop use `?` should a fatal
    /// case ever appear).
    pub fn rescan(&mut self, sensor: &mut LoadedObject) -> Result<()> {
        for dir in self.dirs.clone() {
            self.rescan_dir(sensor, &dir);
        }
        self.release_file_open(sensor);
        Ok(())
    }

    fn rescan_dir(&mut self, sensor: &mut LoadedObject, dir: &Path) {
        let present = match policy_files(dir) {
            Ok(p) => p,
            Err(e) => {
                log(format!(
                    "cannot read policy directory {}: {e}",
                    dir.display()
                ));
                return;
            }
        };
        let gone: Vec<PathBuf> = self
            .files
            .keys()
            .filter(|p| p.starts_with(dir) && !present.contains(p))
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
            self.view.refresh();
        }
        for path in due {
            let file = self.view.prepare(&path, &self.overrides);
            let _ = self.apply(sensor, file, true);
        }
    }

    /// Enforces (or re-enforces) one prepared file before saying so. A refusal at any step
    /// leaves the policies as they were (a previous version of the file's policy keeps
    /// running) and is returned, and logged when `log_refusal` (a refused `--policy` file
    /// stops the start instead, in one line).
    fn apply(
        &mut self,
        sensor: &mut LoadedObject,
        file: PreparedFile,
        log_refusal: bool,
    ) -> Result<Applied, String> {
        let Some(st) = file.stamp else {
            return Err(format!("{}: cannot read it", file.path.display()));
        };
        let path = file.path;
        let name_of_file = path.display().to_string();
        let previous = self.files.get(&path).and_then(|t| t.policy.clone());
        if let Ok(p) = &file.prepared {
            let labels = self.table.scopes.node_labels();
            if !vigil_policy_engine::scope::node_selects(&p.policy, &labels) {
                // Not for this node: a version of it that was loads no more.
                if let Some(old) = &previous {
                    match self.table.uninstall(old) {
                        Ok(links) => links.into_iter().for_each(|l| sensor.detach_hook(l)),
                        Err(e) => log(format!("policy {old}: removing it: {e}")),
                    }
                    self.release_file_open(sensor);
                }
                let said = format!(
                    "policy {} from {name_of_file} is not loaded on this node: its nodeSelector ({}) does not select this node's labels",
                    p.name(),
                    vigil_policy_engine::scope::describe_node_selector(&p.policy).unwrap_or_default()
                );
                log(&said);
                let name = p.name().to_string();
                self.track(
                    path,
                    st,
                    None,
                    Outcome::NotSelected {
                        name,
                        said: said.clone(),
                    },
                );
                return Ok(Applied {
                    said,
                    loaded: false,
                });
            }
            if self.overrides.disabled.contains(p.name()) {
                let name = p.name().to_string();
                if let Some(old) = &previous {
                    match self.table.uninstall(old) {
                        Ok(links) => links.into_iter().for_each(|l| sensor.detach_hook(l)),
                        Err(e) => log(format!("policy {old}: removing it: {e}")),
                    }
                    self.release_file_open(sensor);
                }
                let said = format!(
                    "policy {name} from {name_of_file} is disabled (`vigil policy enable {name}` enforces it again)"
                );
                log(&said);
                self.track(path, st, None, Outcome::Disabled { name });
                return Ok(Applied {
                    said,
                    loaded: false,
                });
            }
        }
        let loaded_as = file
            .prepared
            .as_ref()
            .ok()
            .map(|p| (p.policy.mode, p.policy.namespace.clone()));
        let warnings: Vec<String> = file
            .prepared
            .as_ref()
            .map(|p| {
                p.policy
                    .warnings
                    .iter()
                    .map(|w| format!("warning: {w}"))
                    .collect()
            })
            .unwrap_or_default();
        // From the first map write to the last link: what a policy costs to load beside the
        // running ones (the programs are verified once, when the agent starts).
        let started = std::time::Instant::now();
        let result = file.prepared.and_then(|p| {
            let name = p.name().to_string();
            self.table
                .install(p, previous.as_deref(), self.view.kernel.as_ref())
                .map(|n| (name, n))
        });
        let (policy, outcome) = match result {
            Ok((name, installed)) => match self.enforce(sensor, &name_of_file, installed) {
                Ok((rules, report, scope)) => {
                    let (mode, namespace) = loaded_as.clone().unwrap_or((Mode::Enforce, None));
                    let kept = Outcome::Loaded {
                        mode,
                        report: report.clone(),
                        namespace,
                    };
                    let verb = if previous.is_some() {
                        "reloaded"
                    } else {
                        "loaded"
                    };
                    let attached: String = report
                        .iter()
                        .map(|h| format!("\n  {} {}: attached {}", h.path, h.hook, h.attach))
                        .collect();
                    let said = format!(
                        "policy {name} {verb} from {name_of_file} ({rules} rules, in the kernel in {:.2} ms){attached}{scope}",
                        started.elapsed().as_secs_f64() * 1e3
                    );
                    log(&said);
                    for w in &warnings {
                        log(w);
                    }
                    (Some((name, kept)), Ok(Applied { said, loaded: true }))
                }
                Err(reason) => (None, Err(format!("{name_of_file}: {reason}"))),
            },
            Err(e) => (None, Err(e.to_string())),
        };
        if let Err(reason) = &outcome {
            self.load_errors += 1;
            if log_refusal {
                refused(previous.as_deref(), reason);
            }
        }
        match (policy, &outcome) {
            (Some((name, kept)), _) => self.track(path, st, Some(name), kept),
            (None, Err(reason)) => {
                let reason = reason.clone();
                self.track(path, st, previous, Outcome::Refused { reason })
            }
            (None, Ok(_)) => {}
        }
        outcome
    }

    /// Records what became of a source, keeping a cluster object's text.
    fn track(
        &mut self,
        path: PathBuf,
        stamp: (SystemTime, u64),
        policy: Option<String>,
        outcome: Outcome,
    ) {
        let object = self.files.get_mut(&path).and_then(|t| t.object.take());
        self.files.insert(
            path,
            Tracked {
                stamp,
                policy,
                outcome,
                object,
            },
        );
    }

    /// Attaches an installed policy's hooks (and the file-open programs it needs), then makes
    /// it the running version. Returns its rule count, or why it was refused, everything it
    /// added being removed then.
    fn enforce(
        &mut self,
        sensor: &mut LoadedObject,
        file: &str,
        installed: Installed,
    ) -> Result<(usize, Vec<HookReport>, String), String> {
        let rules = installed.rules + installed.attach.len();
        let report = installed.report.clone();
        let scope = installed.scope_text.clone().map(|t| (installed.scope, t));
        let mut failure = None;
        for (slot, target) in installed.attach.clone() {
            let link = match &target {
                AttachTarget::Kprobe(f) => sensor.attach_kprobe(f, false),
                // The entry that keeps the arguments first, so no return misses them.
                AttachTarget::Kretprobe { function, saves } => {
                    let entry = if saves.is_empty() {
                        None
                    } else {
                        match sensor.attach_kprobe(function, false) {
                            Ok(l) => Some(l),
                            Err(e) => {
                                failure = Some((format!("{target}"), e));
                                break;
                            }
                        }
                    };
                    entry.into_iter().for_each(|l| self.table.add_link(slot, l));
                    sensor.attach_kprobe(function, true)
                }
                AttachTarget::Uprobe {
                    target: t,
                    ret,
                    key,
                    entry,
                } => {
                    if let Some(entry) = entry {
                        match sensor.attach_uprobe(t, false, *entry) {
                            Ok(l) => self.table.add_link(slot, l),
                            Err(e) => {
                                failure = Some((format!("{target}"), e));
                                break;
                            }
                        }
                    }
                    sensor.attach_uprobe(t, *ret, *key)
                }
                AttachTarget::Override { gates, keys } => {
                    let (last, rest) = gates.split_last().expect("a gate");
                    let mut each = Ok(());
                    for g in rest {
                        match sensor.attach_override(g, keys) {
                            Ok(l) => self.table.add_link(slot, l),
                            Err(e) => {
                                each = Err(e);
                                break;
                            }
                        }
                    }
                    each.and_then(|()| sensor.attach_override(last, keys))
                }
                AttachTarget::SyscallEnter(t, arity) => sensor.attach_syscall_enter(t, *arity),
                AttachTarget::Tracepoint {
                    subsystem,
                    event,
                    slot,
                    layout,
                } => sensor.attach_tracepoint(subsystem, event, *slot, layout.fields),
                AttachTarget::RawTracepoint { event, slot } => {
                    sensor.attach_raw_tracepoint(event, *slot)
                }
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
        if let (None, Some(via)) = (&failure, installed.file_open_via) {
            failure = self
                .attach_file_open(sensor, via)
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
        let scope = match scope {
            None => String::new(),
            Some((_, text)) if !self.table.scopes.has_source() => format!(
                "\n  applies to {text}: there is no Kubernetes cluster, so it acts on no process"
            ),
            Some((id, text)) => {
                let (pods, cgroups) = self.table.scopes.coverage(id);
                format!("\n  applies to {text}: {pods} pods now, {cgroups} of their cgroups in the kernel (checked on every call of its hooks)")
            }
        };
        Ok((rules, report, scope))
    }

    /// Enforces (or re-enforces) a policy object of the cluster; says how it attached, or why
    /// it was refused (the running version, if any, keeps running then).
    pub fn apply_object(
        &mut self,
        sensor: &mut LoadedObject,
        source: &str,
        text: &str,
        namespace: Option<&str>,
    ) -> Result<Applied, String> {
        let file = self
            .view
            .prepare_text(source, text, namespace, &self.overrides);
        let applied = self.apply(sensor, file, true);
        if let Some(t) = self.files.get_mut(Path::new(source)) {
            t.object = Some((text.to_string(), namespace.map(str::to_string)));
        }
        applied
    }

    /// Removes the policy of a deleted object.
    pub fn remove_object(&mut self, sensor: &mut LoadedObject, source: &str) {
        let Some(Tracked {
            policy: Some(name), ..
        }) = self.files.remove(Path::new(source))
        else {
            return;
        };
        match self.table.uninstall(&name) {
            Ok(links) => {
                links.into_iter().for_each(|l| sensor.detach_hook(l));
                log(format!("policy {name} removed ({source} was deleted)"));
            }
            Err(e) => log(format!("policy {name}: removing it: {e}")),
        }
        self.release_file_open(sensor);
    }

    /// Follows protected files replaced under their names (their inode keys move to the new
    /// file), logging each.
    pub fn refresh_inodes(&mut self) {
        for name in self.table.refresh_inodes() {
            log(format!(
                "{name} is another file now: rules naming it follow it"
            ));
        }
    }

    /// Brings the scoped policies' pods in the kernel up to date with the pod store; a failure
    /// (the map is full) is logged, the entries written so far staying.
    pub fn sync_scopes(&mut self) {
        match self.table.sync_scopes(false) {
            Ok(c) if c.added + c.removed > 0 => log(format!(
                "policy scopes: {} pod cgroups added, {} removed",
                c.added, c.removed
            )),
            Ok(_) => {}
            Err(e) => log(format!("policy scopes: {e}")),
        }
    }

    /// Attaches the file-open programs unless they are.
    fn attach_file_open(
        &mut self,
        sensor: &mut LoadedObject,
        via: FileOpenVia,
    ) -> Result<(), LoadError> {
        if !self.attached {
            let how = sensor.attach_file_open(via)?;
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
            log("no file-open policy left: file-open programs detached");
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
