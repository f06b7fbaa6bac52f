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
            tracepoint: self.has("tracepoint") && self.has("raw_tracepoint"),
            send_signal: self.helper("bpf_send_signal"),
            override_return: self.helper("bpf_override_return"),
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
    // (kind, program, hook); the index is the program's slot in probe_hits.
    let kinds: [(&'static str, &'static str, &'static str); 6] = [
        (
            "tracepoint",
            "probe_tracepoint",
            "syscalls/sys_enter_getppid",
        ),
        ("raw_tracepoint", "probe_raw_tracepoint", "sys_enter"),
        ("tp_btf", "probe_btf_tracepoint", "sys_enter"),
        ("kprobe", "probe_kprobe", "do_unlinkat"),
        ("fentry", "probe_fentry", "do_unlinkat"),
        ("lsm", "probe_lsm", "file_open"),
    ];
    for (kind, program, hook) in kinds {
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
    trigger_hooks();
    let hits = read_hits(&ebpf);
    for (slot, k) in report.program_kinds.iter_mut().enumerate() {
        k.fires = hits.get(slot).is_some_and(|n| *n > 0);
        k.available = k.loads && k.attaches && k.fires;
        if k.attaches && !k.fires && k.error.is_none() {
            k.error = Some(format!(
                "attached but did not run when {} was triggered",
                k.hook
            ));
        }
    }

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

fn set_target(ebpf: &mut Ebpf) -> Result<(), String> {
    let map = ebpf.map_mut("probe_target").ok_or("probe_target missing")?;
    let mut target: Array<_, u32> = Array::try_from(map).map_err(short)?;
    target.set(0, std::process::id(), 0).map_err(short)
}

/// Makes every probe program's hook run in this process: a getppid() (and so a syscall entry),
/// an unlink() and an open().
fn trigger_hooks() {
    trigger_hooks_in(&std::env::temp_dir());
}

/// The triggers run in a directory of our own, made by mkdtemp (a random name, mode 0700,
/// created exclusively): the temporary directory is world-writable, and a symlink or a FIFO
/// planted at a predictable name there would redirect root's write or block the agent's start.
fn trigger_hooks_in(tmp: &std::path::Path) {
    use std::os::unix::{
        ffi::{OsStrExt, OsStringExt},
        fs::OpenOptionsExt,
    };
    // SAFETY: getppid has no preconditions.
    unsafe { libc::getppid() };
    let mut template = tmp.join("vigil-probe-XXXXXX").into_os_string().into_vec();
    template.push(0);
    // SAFETY: `template` is a writable NUL-terminated buffer ending in XXXXXX, which mkdtemp
    // replaces in place.
    if unsafe { libc::mkdtemp(template.as_mut_ptr().cast()) }.is_null() {
        return;
    }
    template.pop();
    let dir = std::path::PathBuf::from(std::ffi::OsStr::from_bytes(&template));
    let path = dir.join("probe");
    let created = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW)
        .mode(0o600)
        .open(&path);
    if created.is_ok() {
        let _ = std::fs::File::open(&path);
        let _ = std::fs::remove_file(&path);
    }
    let _ = std::fs::remove_dir(&dir);
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
    use std::{path::PathBuf, sync::mpsc, time::Duration};

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

    /// The name the probe used before: predictable from its pid.
    fn old_name(dir: &std::path::Path) -> PathBuf {
        dir.join(format!("vigil-probe-{}", std::process::id()))
    }

    /// Runs the hook triggers in `dir`; false when they did not return within 5 seconds.
    fn triggers_return(dir: PathBuf) -> bool {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            trigger_hooks_in(&dir);
            let _ = tx.send(());
        });
        rx.recv_timeout(Duration::from_secs(5)).is_ok()
    }

    #[test]
    fn a_symlink_planted_at_the_probe_file_name_is_not_followed() {
        let dir = TestDir::new("probe-symlink");
        let target = dir.0.join("victim");
        std::fs::write(&target, b"keep").unwrap();
        std::os::unix::fs::symlink(&target, old_name(&dir.0)).unwrap();
        assert!(triggers_return(dir.0.clone()));
        assert_eq!(std::fs::read(&target).unwrap(), b"keep");
        assert!(
            old_name(&dir.0).symlink_metadata().is_ok(),
            "someone else's entry is left alone"
        );
    }

    #[test]
    fn a_fifo_planted_at_the_probe_file_name_does_not_hang_the_probe() {
        let dir = TestDir::new("probe-fifo");
        let fifo =
            std::ffi::CString::new(old_name(&dir.0).into_os_string().into_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o666) }, 0);
        assert!(
            triggers_return(dir.0.clone()),
            "the probe blocked on a FIFO planted at its file name"
        );
    }

    #[test]
    fn the_probe_leaves_nothing_behind() {
        let dir = TestDir::new("probe-clean");
        assert!(triggers_return(dir.0.clone()));
        assert_eq!(std::fs::read_dir(&dir.0).unwrap().count(), 0);
    }
}
