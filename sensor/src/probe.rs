//! The kernel capability probe: which program kinds load and attach, which helpers the
//! verifier accepts, and the facts around them (BTF, active LSMs, lockdown).
//!
//! Every answer comes from doing the real thing: a program kind is available when a program of
//! that kind (from `probe.bpf.c`) loads *and* attaches on this kernel. Config files and version
//! numbers lie (a kernel can have `CONFIG_BPF_LSM=y` without `bpf` in its LSM list); the kernel
//! does not.

use aya::{
    maps::Array,
    programs::{BtfTracePoint, FEntry, KProbe, Lsm, ProgramError, RawTracePoint, TracePoint},
    Btf, Ebpf, EbpfLoader, Endianness,
};
use serde::Serialize;
use vigil_bpf_kprobes::PROBE_OBJ;

/// The result for one program kind.
#[derive(Debug, Clone, Serialize)]
pub struct KindResult {
    /// Program kind (`tracepoint`, `kprobe`, ...).
    pub kind: &'static str,
    /// The hook the probe program went to.
    pub hook: &'static str,
    /// The verifier accepted it.
    pub loads: bool,
    /// The kernel attached it.
    pub attaches: bool,
    /// It ran when its hook was triggered.
    pub fires: bool,
    /// All three.
    pub available: bool,
    /// Why not, when not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The result for one helper.
#[derive(Debug, Clone, Serialize)]
pub struct HelperResult {
    /// Helper name.
    pub helper: &'static str,
    /// The program kind it was tried from.
    pub from: &'static str,
    /// The verifier accepted a program calling it.
    pub available: bool,
    /// Why not, when not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Everything `vigil probe` reports.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeReport {
    /// `uname -r`.
    pub kernel: String,
    /// Kernel BTF present.
    pub btf: bool,
    /// Active LSMs, in order.
    pub lsms: Vec<String>,
    /// Lockdown mode (`none`, `integrity`, `confidentiality`), when readable.
    pub lockdown: Option<String>,
    /// Program kinds.
    pub program_kinds: Vec<KindResult>,
    /// Helpers.
    pub helpers: Vec<HelperResult>,
    /// Why the probe object itself did not load, if it did not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object_error: Option<String>,
}

impl ProbeReport {
    /// Whether any program kind works at all.
    pub fn any_kind(&self) -> bool {
        self.program_kinds.iter().any(|k| k.available)
    }

    /// Whether a program kind loads, attaches and runs.
    pub fn has(&self, kind: &str) -> bool {
        self.program_kinds
            .iter()
            .any(|k| k.kind == kind && k.available)
    }

    /// Whether the verifier accepts a helper.
    pub fn helper(&self, name: &str) -> bool {
        self.helpers.iter().any(|h| h.helper == name && h.available)
    }

    /// What the attach planner needs to know.
    pub fn caps(&self) -> vigil_policy_engine::plan::KernelCaps {
        vigil_policy_engine::plan::KernelCaps {
            lsm: self.has("lsm"),
            kprobe: self.has("kprobe"),
            fentry: self.has("fentry"),
            fmod_ret: self.has("fmod_ret"),
            tracepoint: self.has("tracepoint") && self.has("raw_tracepoint"),
            send_signal: self.helper("bpf_send_signal"),
            override_return: self.helper("bpf_override_return"),
            uprobe: std::path::Path::new("/sys/bus/event_source/devices/uprobe/type").exists(),
        }
    }

    /// The report as an aligned table.
    pub fn table(&self) -> String {
        let yes = |b: bool| if b { "yes" } else { "no" };
        let mut s = format!(
            "kernel    {}\nbtf       {}\nlsm       {}\nlockdown  {}\n\n",
            self.kernel,
            yes(self.btf),
            self.lsms.join(","),
            self.lockdown.as_deref().unwrap_or("unknown")
        );
        s.push_str(&format!(
            "{:<16} {:<28} {:<6} {:<8} {:<6} {}\n",
            "PROGRAM KIND", "HOOK", "LOADS", "ATTACHES", "FIRES", "NOTE"
        ));
        for k in &self.program_kinds {
            s.push_str(&format!(
                "{:<16} {:<28} {:<6} {:<8} {:<6} {}\n",
                k.kind,
                k.hook,
                yes(k.loads),
                yes(k.attaches),
                yes(k.fires),
                k.error.as_deref().unwrap_or("")
            ));
        }
        s.push_str(&format!(
            "\n{:<28} {:<12} {:<9} {}\n",
            "HELPER", "FROM", "AVAILABLE", "NOTE"
        ));
        for h in &self.helpers {
            s.push_str(&format!(
                "{:<28} {:<12} {:<9} {}\n",
                h.helper,
                h.from,
                yes(h.available),
                h.error.as_deref().unwrap_or("")
            ));
        }
        if let Some(e) = &self.object_error {
            s.push_str(&format!("\nprobe object: {e}\n"));
        }
        s
    }
}

fn short(e: impl std::error::Error + 'static) -> String {
    crate::brief::brief(&e)
}

fn read_trimmed(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}

/// Probes the running kernel.
pub fn run(btf_path: &str) -> ProbeReport {
    let lockdown = read_trimmed("/sys/kernel/security/lockdown").and_then(|s| {
        s.split_whitespace()
            .find(|w| w.starts_with('['))
            .map(|w| w.trim_matches(['[', ']']).to_string())
    });
    let mut report = ProbeReport {
        kernel: read_trimmed("/proc/sys/kernel/osrelease").unwrap_or_default(),
        btf: std::path::Path::new(btf_path).is_file(),
        lsms: read_trimmed("/sys/kernel/security/lsm")
            .map(|s| s.split(',').map(str::to_string).collect())
            .unwrap_or_default(),
        lockdown,
        program_kinds: Vec::new(),
        helpers: Vec::new(),
        object_error: None,
    };
    let btf = Btf::parse_file(btf_path, Endianness::default()).ok();
    let mut ebpf = match EbpfLoader::new().btf(btf.as_ref()).load(PROBE_OBJ) {
        Ok(e) => e,
        Err(e) => {
            report.object_error = Some(short(e));
            return report;
        }
    };

    // Only this process's own activity counts as a hit.
    if let Err(e) = set_target(&mut ebpf) {
        report.object_error = Some(e);
        return report;
    }
    // (kind, program, hook, what runs the hook); the index is the program's slot in probe_hits.
    let kinds: [(&'static str, &'static str, &'static str, Trigger); 6] = [
        (
            "tracepoint",
            "probe_tracepoint",
            "syscalls/sys_enter_getppid",
            Trigger::Syscall,
        ),
        (
            "raw_tracepoint",
            "probe_raw_tracepoint",
            "sys_enter",
            Trigger::Syscall,
        ),
        (
            "tp_btf",
            "probe_btf_tracepoint",
            "sys_enter",
            Trigger::Syscall,
        ),
        ("kprobe", "probe_kprobe", "do_unlinkat", Trigger::Unlink),
        ("fentry", "probe_fentry", "do_unlinkat", Trigger::Unlink),
        ("lsm", "probe_lsm", "file_open", Trigger::Open),
    ];
    for (kind, program, hook, _) in kinds {
        let (loads, attaches, error) = match try_kind(&mut ebpf, kind, program, hook, btf.as_ref())
        {
            Ok(()) => (true, true, None),
            Err((loaded, e)) => (loaded, false, Some(e)),
        };
        report.program_kinds.push(KindResult {
            kind,
            hook,
            loads,
            attaches,
            fires: false,
            available: false,
            error,
        });
    }
    let triggered = trigger_hooks();
    let hits = read_hits(&ebpf);
    for (slot, k) in report.program_kinds.iter_mut().enumerate() {
        let fired = hits.get(slot).is_some_and(|n| *n > 0);
        judge(k, fired, triggered.failure(kinds[slot].3));
    }

    report
        .program_kinds
        .push(fmod_ret_kind(btf.as_ref(), report.has("fentry")));

    let helpers: [(&'static str, &'static str, &'static str); 5] = [
        ("bpf_loop", "tracepoint", "probe_loop"),
        ("bpf_send_signal", "tracepoint", "probe_send_signal"),
        ("bpf_override_return", "kprobe", "probe_override_return"),
        ("bpf_ktime_get_boot_ns", "tracepoint", "probe_ktime_boot"),
        ("bpf_ringbuf_output", "tracepoint", "probe_ringbuf_output"),
    ];
    for (helper, from, program) in helpers {
        let res = load_only(&mut ebpf, from, program);
        report.helpers.push(HelperResult {
            helper,
            from,
            available: res.is_ok(),
            error: res.err(),
        });
    }
    report
}

/// fmod_ret on security_file_open, which the agent loads itself (`loader/fmod_ret.rs`): a
/// program that returns 0, attached for a moment. It runs on the trampolines the fentry row
/// saw run, so it is available where it attaches and fentry fires.
fn fmod_ret_kind(btf: Option<&Btf>, fentry_fires: bool) -> KindResult {
    let tried = btf
        .ok_or_else(|| "no kernel BTF".to_string())
        .and_then(crate::loader::fmod_ret::probe);
    let ok = tried.is_ok();
    let error = match tried {
        Err(e) => Some(e),
        Ok(()) if !fentry_fires => {
            Some("attached, but fentry programs did not run here, and fmod_ret runs on the same trampolines".into())
        }
        Ok(()) => None,
    };
    KindResult {
        kind: "fmod_ret",
        hook: crate::loader::fmod_ret::FUNCTION,
        loads: ok,
        attaches: ok,
        fires: ok && fentry_fires,
        available: ok && fentry_fires,
        error,
    }
}

fn set_target(ebpf: &mut Ebpf) -> Result<(), String> {
    let map = ebpf.map_mut("probe_target").ok_or("probe_target missing")?;
    let mut target: Array<_, u32> = Array::try_from(map).map_err(short)?;
    target.set(0, std::process::id(), 0).map_err(short)
}

/// Records whether a kind's program ran. One whose trigger could not run was not observed
/// either way: it is not available, and the note says its firing is unknown and why, rather
/// than that it did not fire.
fn judge(k: &mut KindResult, fired: bool, trigger_failure: Option<&str>) {
    k.fires = fired;
    k.available = k.loads && k.attaches && k.fires;
    if k.attaches && !k.fires && k.error.is_none() {
        k.error = Some(match trigger_failure {
            Some(why) => format!(
                "attached, but whether it runs is unknown: its trigger failed ({why}); \
                 run `vigil probe` again once that is fixed"
            ),
            None => format!("attached but did not run when {} was triggered", k.hook),
        });
    }
}

/// What makes a probe program's hook run in this process.
#[derive(Debug, Clone, Copy)]
enum Trigger {
    /// Any system call (getppid).
    Syscall,
    /// An unlinkat(2): do_unlinkat.
    Unlink,
    /// An open(2): security_file_open, the file_open LSM hook.
    Open,
}

/// The triggers that could not run, and why.
#[derive(Debug)]
struct Triggered {
    unlink: Result<(), String>,
    open: Result<(), String>,
}

impl Triggered {
    fn failure(&self, t: Trigger) -> Option<&str> {
        match t {
            Trigger::Syscall => None,
            Trigger::Unlink => self.unlink.as_ref().err().map(String::as_str),
            Trigger::Open => self.open.as_ref().err().map(String::as_str),
        }
    }
}

/// Makes every probe program's hook run in this process, without creating, writing or
/// removing any file: a getppid() (and so a syscall entry), an unlinkat() that fails and an
/// open() of `/`. Nothing depends on a usable temporary directory (a full or hostile /tmp
/// would otherwise decide which program kinds the agent plans with).
fn trigger_hooks() -> Triggered {
    // SAFETY: getppid has no preconditions.
    unsafe { libc::getppid() };
    Triggered {
        unlink: trigger_unlink(),
        open: trigger_open(),
    }
}

/// A name that cannot exist and cannot be made: the entries of a /proc/<pid> directory are the
/// kernel's, nobody can create one there and none can be unlinked, so this call can never
/// remove a file.
const UNLINK_TARGET: &std::ffi::CStr = c"/proc/self/vigil-probe-trigger";

/// The unlinkat(2) system call calls do_unlinkat before it looks the name up, so a call that
/// fails with ENOENT (or EROFS where /proc is mounted read-only) has entered it. Any other
/// outcome (a seccomp filter's EPERM or ENOSYS) may not have.
fn trigger_unlink() -> Result<(), String> {
    // SAFETY: a NUL-terminated path; flags 0 (not AT_REMOVEDIR, which goes to do_rmdir).
    let rc = unsafe { libc::unlinkat(libc::AT_FDCWD, UNLINK_TARGET.as_ptr(), 0) };
    let err = std::io::Error::last_os_error();
    match (rc, err.raw_os_error()) {
        (0, _) | (_, Some(libc::ENOENT | libc::EROFS)) => Ok(()),
        _ => Err(format!(
            "unlinkat({}) failed with \"{err}\" rather than ENOENT",
            UNLINK_TARGET.to_string_lossy()
        )),
    }
}

/// Every open(2) that is not O_PATH goes through security_file_open; `/` always exists and
/// opens read-only.
fn trigger_open() -> Result<(), String> {
    std::fs::File::open("/")
        .map(drop)
        .map_err(|e| format!("open(\"/\") failed: {e}"))
}

fn read_hits(ebpf: &Ebpf) -> Vec<u64> {
    let Some(map) = ebpf.map("probe_hits") else {
        return Vec::new();
    };
    let Ok(hits) = Array::<_, u64>::try_from(map) else {
        return Vec::new();
    };
    (0..6).map(|i| hits.get(&i, 0).unwrap_or(0)).collect()
}

type KindError = (bool, String);

fn try_kind(
    ebpf: &mut Ebpf,
    kind: &str,
    program: &str,
    hook: &str,
    btf: Option<&Btf>,
) -> Result<(), KindError> {
    let prog = ebpf
        .program_mut(program)
        .ok_or((false, format!("{program} missing from the probe object")))?;
    let need_btf = || btf.ok_or((false, "no kernel BTF".to_string()));
    let load = |e: ProgramError| (false, short(e));
    let attach = |e: ProgramError| (true, short(e));
    match kind {
        "tracepoint" => {
            let p: &mut TracePoint = prog.try_into().map_err(load)?;
            p.load().map_err(load)?;
            let (cat, name) = hook.split_once('/').expect("category/name");
            p.attach(cat, name).map_err(attach)?;
        }
        "raw_tracepoint" => {
            let p: &mut RawTracePoint = prog.try_into().map_err(load)?;
            p.load().map_err(load)?;
            p.attach(hook).map_err(attach)?;
        }
        "tp_btf" => {
            let p: &mut BtfTracePoint = prog.try_into().map_err(load)?;
            p.load(hook, need_btf()?).map_err(load)?;
            p.attach().map_err(attach)?;
        }
        "kprobe" => {
            let p: &mut KProbe = prog.try_into().map_err(load)?;
            p.load().map_err(load)?;
            p.attach(hook, 0).map_err(attach)?;
        }
        "fentry" => {
            let p: &mut FEntry = prog.try_into().map_err(load)?;
            p.load(hook, need_btf()?).map_err(load)?;
            p.attach().map_err(attach)?;
        }
        "lsm" => {
            let p: &mut Lsm = prog.try_into().map_err(load)?;
            p.load(hook, need_btf()?).map_err(load)?;
            p.attach().map_err(attach)?;
        }
        other => return Err((false, format!("unknown kind {other}"))),
    }
    Ok(())
}

fn load_only(ebpf: &mut Ebpf, from: &str, program: &str) -> Result<(), String> {
    let prog = ebpf
        .program_mut(program)
        .ok_or_else(|| format!("{program} missing"))?;
    match from {
        "tracepoint" => {
            let p: &mut TracePoint = prog.try_into().map_err(short)?;
            p.load().map_err(short)
        }
        _ => {
            let p: &mut KProbe = prog.try_into().map_err(short)?;
            p.load().map_err(short)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{path::PathBuf, process::Command};

    /// A fresh directory for one test, removed at the end.
    struct TestDir(PathBuf);

    impl TestDir {
        fn new(name: &str) -> Self {
            let dir =
                std::env::temp_dir().join(format!("vigil-test-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir(&dir).unwrap();
            TestDir(dir)
        }
    }

    impl Drop for TestDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn every_hook_trigger_runs() {
        let t = trigger_hooks();
        assert_eq!((&t.unlink, &t.open), (&Ok(()), &Ok(())), "{t:?}");
    }

    /// Runs `every_hook_trigger_runs` in a child test process whose TMPDIR is `tmpdir`.
    fn triggers_run_with_tmpdir(tmpdir: &std::path::Path) -> bool {
        let out = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "probe::tests::every_hook_trigger_runs"])
            .env("TMPDIR", tmpdir)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains("1 passed") || !out.status.success(),
            "{stdout}"
        );
        out.status.success()
    }

    #[test]
    fn the_hook_triggers_need_no_usable_tmpdir_and_create_nothing_in_it() {
        let dir = TestDir::new("probe-tmpdir");
        // Below a regular file mkdtemp fails even for root, as it does in a full /tmp.
        let file = dir.0.join("file");
        std::fs::write(&file, b"keep").unwrap();
        assert!(
            triggers_run_with_tmpdir(&file.join("tmp")),
            "a trigger did not run with TMPDIR unusable"
        );
        let empty = dir.0.join("empty");
        std::fs::create_dir(&empty).unwrap();
        assert!(triggers_run_with_tmpdir(&empty));
        assert_eq!(std::fs::read_dir(&empty).unwrap().count(), 0);
        assert_eq!(std::fs::read(&file).unwrap(), b"keep");
    }

    fn attached(kind: &'static str, hook: &'static str) -> KindResult {
        KindResult {
            kind,
            hook,
            loads: true,
            attaches: true,
            fires: false,
            available: false,
            error: None,
        }
    }

    #[test]
    fn a_hook_whose_trigger_failed_is_reported_unknown_not_silent() {
        let mut k = attached("lsm", "file_open");
        judge(
            &mut k,
            false,
            Some("open(/) failed: No such file or directory"),
        );
        let note = k.error.unwrap();
        assert!(!k.available && !k.fires);
        assert!(note.contains("unknown"), "{note}");
        assert!(note.contains("open(/) failed"), "{note}");

        let mut k = attached("kprobe", "do_unlinkat");
        judge(&mut k, false, None);
        assert_eq!(
            k.error.as_deref(),
            Some("attached but did not run when do_unlinkat was triggered")
        );

        let mut k = attached("kprobe", "do_unlinkat");
        judge(&mut k, true, None);
        assert!(k.available && k.error.is_none());
    }
}
