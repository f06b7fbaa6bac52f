//! Seeds the process cache from `/proc` at start-up, so processes older than the agent have
//! their full identity (events about them carry the `procFS` flag, as Tetragon's do).

use std::time::Instant;

use procfs::process::{all_processes, Process as ProcProcess};
use vigil_bpf_kprobes::abi;
use vigil_events::ExecId;

use crate::{
    cache::ProcessCache,
    identity::{proc_namespaces, Identity, Origin, ProcessStrings},
};

/// A process as read from `/proc`, before its parent's exec id is known.
struct Scanned {
    raw: abi::Process,
    ktime: u64,
    binary: String,
    argv: Vec<u8>,
    cwd: String,
    cgroup: String,
}

/// Converts a `/proc/<pid>/stat` start time (clock ticks since boot) to nanoseconds, the ktime
/// of the exec ids of processes found at start-up.
pub fn start_ktime(ticks: u64, clk_tck: u64) -> u64 {
    ticks.saturating_mul(1_000_000_000) / clk_tck.max(1)
}

/// The exec id the kernel (pid 0) gets: ktime 1.
pub fn kernel_exec_id(identity: &Identity) -> ExecId {
    identity.exec_id(1, 0)
}

/// Reads every process in `/proc` into the cache; returns how many were added. Processes that
/// vanish while being read are skipped.
pub fn seed(
    cache: &mut ProcessCache,
    identity: &Identity,
    clk_tck: u64,
    cgroup_subsys: u32,
) -> usize {
    let Ok(procs) = all_processes() else { return 0 };
    let mut scanned: Vec<Scanned> = procs
        .filter_map(|p| p.ok())
        .filter_map(|p| scan(&p, clk_tck, cgroup_subsys))
        .collect();
    // Parents first, so that ancestry chains resolve however the scan was ordered.
    scanned.sort_by_key(|s| s.ktime);
    let ids: std::collections::HashMap<u32, ExecId> = scanned
        .iter()
        .map(|s| (s.raw.pid, identity.exec_id(s.ktime, s.raw.pid)))
        .collect();
    let now = Instant::now();
    let count = scanned.len();
    for s in scanned {
        let parent = ids.get(&s.raw.ppid).cloned();
        cache_scanned(cache, identity, s, parent, now);
    }
    count
}

/// Describes a scanned process and keeps it in the cache, its parent being `parent` (the exec
/// id of its parent pid's execution, when known; pid 0 is the kernel).
fn cache_scanned(
    cache: &mut ProcessCache,
    identity: &Identity,
    s: Scanned,
    parent: Option<ExecId>,
    now: Instant,
) -> std::sync::Arc<vigil_events::Process> {
    let parent_exec_id = match s.raw.ppid {
        0 => kernel_exec_id(identity),
        _ => parent.unwrap_or_default(),
    };
    let strings = ProcessStrings {
        binary: s.binary,
        argv: &s.argv,
        cwd: s.cwd,
        cgroup: s.cgroup,
    };
    let process = identity.process(&s.raw, s.ktime, Origin::ProcFs, strings, parent_exec_id);
    cache.insert(process, now)
}

/// Reads one process the cache does not know (it started while the agent was starting, or its
/// exec record was dropped) from `/proc` into the cache, its parent by the cache's current
/// execution of its parent pid; None when it is gone.
pub fn resolve(
    pid: u32,
    cache: &mut ProcessCache,
    identity: &Identity,
    clk_tck: u64,
    cgroup_subsys: u32,
) -> Option<std::sync::Arc<vigil_events::Process>> {
    let p = ProcProcess::new(i32::try_from(pid).ok()?).ok()?;
    let s = scan(&p, clk_tck, cgroup_subsys)?;
    let parent = cache.by_pid(s.raw.ppid).map(|p| p.exec_id.clone());
    Some(cache_scanned(cache, identity, s, parent, Instant::now()))
}

fn scan(p: &ProcProcess, clk_tck: u64, cgroup_subsys: u32) -> Option<Scanned> {
    // Both files are read as bytes and parsed here: a process names itself with any bytes
    // (prctl(PR_SET_NAME)), the kernel writes them unescaped into both files, and a parser of
    // text would drop the process (status) or alter its name (stat).
    let stat = parse_stat(&read_proc(p, "stat")?)?;
    let status = parse_status(&read_proc(p, "status")?)?;
    let pid = p.pid() as u32;
    let mut raw = abi::Process {
        pid,
        tid: pid,
        ppid: stat.ppid,
        nspid: status.nspid.unwrap_or(pid),
        uid: status.uid[0],
        gid: status.gid[0],
        euid: status.uid[1],
        egid: status.gid[1],
        suid: status.uid[2],
        sgid: status.gid[2],
        fsuid: status.uid[3],
        fsgid: status.gid[3],
        auid: p.loginuid().unwrap_or(u32::MAX),
        cap_effective: status.cap_effective,
        cap_permitted: status.cap_permitted,
        cap_inheritable: status.cap_inheritable,
        ns: proc_namespaces(pid),
        start_ktime: start_ktime(stat.starttime, clk_tck),
        ..Default::default()
    };
    let n = stat.comm.len().min(raw.comm.len() - 1);
    raw.comm[..n].copy_from_slice(&stat.comm[..n]);

    // Kernel threads have no executable; like Tetragon, name them by their comm.
    let binary = p
        .exe()
        .map(|e| e.to_string_lossy().into_owned())
        .unwrap_or_else(|_| String::from_utf8_lossy(&stat.comm).into_owned());
    let mut argv = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    if argv.len() >= abi::ARGS_MAX {
        argv.truncate(abi::ARGS_MAX - 1);
        raw.flags |= abi::FLAG_TRUNC_ARGS;
    }
    let cwd = match p.cwd() {
        Ok(c) => c.to_string_lossy().into_owned(),
        Err(_) => {
            raw.flags |= abi::FLAG_ERROR_CWD;
            String::new()
        }
    };
    let (cgroup, cgroup_id) = proc_cgroup(pid, cgroup_subsys);
    raw.cgroup_id = cgroup_id;
    Some(Scanned {
        ktime: raw.start_ktime,
        raw,
        binary,
        argv,
        cwd,
        cgroup,
    })
}

/// A file of the process's `/proc` directory, read through the directory the scan opened (so a
/// reused pid cannot substitute another process); None when the process is gone.
fn read_proc(p: &ProcProcess, name: &str) -> Option<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    p.open_relative(name).ok()?.read_to_end(&mut bytes).ok()?;
    Some(bytes)
}

/// The fields of `/proc/<pid>/stat` the cache needs.
#[derive(Debug, PartialEq)]
struct StatFields {
    /// The name, as the bytes the process gave.
    comm: Vec<u8>,
    ppid: u32,
    /// Clock ticks since boot.
    starttime: u64,
}

/// Parses `/proc/<pid>/stat`: `pid (comm) state ppid ...`. The name may hold any bytes,
/// parentheses and spaces included, so it ends at the *last* `)`; every field after it is a
/// number.
fn parse_stat(text: &[u8]) -> Option<StatFields> {
    let open = text.iter().position(|b| *b == b'(')?;
    let close = text.iter().rposition(|b| *b == b')')?;
    let comm = text.get(open + 1..close)?.to_vec();
    let rest = std::str::from_utf8(&text[close + 1..]).ok()?;
    let fields: Vec<&str> = rest.split_ascii_whitespace().collect();
    // Numbered from 1 as in proc(5): field 3 (state) is the first after the name.
    let field = |n: usize| fields.get(n - 3);
    let ppid = field(4)?.parse().ok()?;
    let starttime = field(22)?.parse().ok()?;
    Some(StatFields {
        comm,
        ppid,
        starttime,
    })
}

/// The fields of `/proc/<pid>/status` the cache needs.
#[derive(Debug, PartialEq)]
struct StatusFields {
    /// Real, effective, saved and filesystem uid.
    uid: [u32; 4],
    /// Real, effective, saved and filesystem gid.
    gid: [u32; 4],
    cap_effective: u64,
    cap_permitted: u64,
    cap_inheritable: u64,
    /// The pid in the process's own pid namespace (the last of `NSpid:`), absent before 4.1.
    nspid: Option<u32>,
}

/// Parses `/proc/<pid>/status` line by line, as bytes: only the `Key:\tvalue` lines needed are
/// read, so the `Name:` line, which holds whatever bytes the process chose, is never parsed.
/// None without `Uid:` and `Gid:`, which every process has.
fn parse_status(text: &[u8]) -> Option<StatusFields> {
    let mut uid = None;
    let mut gid = None;
    let mut caps = [0u64; 3];
    let mut nspid = None;
    for line in text.split(|b| *b == b'\n') {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        // Only the name's line can hold bytes that are not UTF-8: it is skipped. The kernel
        // escapes a newline in the name, so the name cannot forge a line of its own.
        let Ok(value) = std::str::from_utf8(&line[colon + 1..]) else {
            continue;
        };
        let hex = || u64::from_str_radix(value.trim(), 16).unwrap_or_default();
        match &line[..colon] {
            b"Uid" if uid.is_none() => uid = ids(value),
            b"Gid" if gid.is_none() => gid = ids(value),
            b"CapInh" => caps[0] = hex(),
            b"CapPrm" => caps[1] = hex(),
            b"CapEff" => caps[2] = hex(),
            b"NSpid" => {
                nspid = value
                    .split_ascii_whitespace()
                    .last()
                    .and_then(|v| v.parse().ok())
            }
            _ => {}
        }
    }
    let [cap_inheritable, cap_permitted, cap_effective] = caps;
    Some(StatusFields {
        uid: uid?,
        gid: gid?,
        cap_effective,
        cap_permitted,
        cap_inheritable,
        nspid,
    })
}

/// The four ids of a `Uid:` or `Gid:` line.
fn ids(value: &str) -> Option<[u32; 4]> {
    let mut it = value.split_ascii_whitespace().map(|v| v.parse().ok());
    let out = [it.next()??, it.next()??, it.next()??, it.next()??];
    Some(out)
}

/// The process's path in the tracked cgroup hierarchy, and that cgroup directory's inode number
/// (which is its kernfs id, the id the kernel programs report).
///
/// A user names the directories of a delegated subtree: the path may be any bytes, so it is
/// read as bytes (the directory is looked up by them) and shown lossily, as the kernel's exec
/// records are.
fn proc_cgroup(pid: u32, cgroup_subsys: u32) -> (String, u64) {
    use std::os::unix::ffi::OsStrExt;
    let text = std::fs::read(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    let want_v2 = cgroup_subsys == abi::CGROUP_V2;
    let path = cgroup_path(&text, want_v2).unwrap_or_default();
    let mount: &[u8] = if want_v2 {
        b"/sys/fs/cgroup"
    } else {
        b"/sys/fs/cgroup/memory"
    };
    let dir = [mount, path].concat();
    let id = std::fs::metadata(std::ffi::OsStr::from_bytes(&dir))
        .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
        .unwrap_or(0);
    (String::from_utf8_lossy(path).into_owned(), id)
}

/// The path of the v2 hierarchy (`want_v2`) or of the v1 `memory` controller in the text of
/// `/proc/<pid>/cgroup` (`id:controllers:path` lines).
fn cgroup_path(text: &[u8], want_v2: bool) -> Option<&[u8]> {
    text.split(|b| *b == b'\n').find_map(|l| {
        let mut f = l.splitn(3, |b| *b == b':');
        let (id, ctrls, path) = (f.next()?, f.next()?, f.next()?);
        let hit = if want_v2 {
            id == b"0"
        } else {
            ctrls.split(|b| *b == b',').any(|c| c == b"memory")
        };
        hit.then_some(path)
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_process_the_cache_does_not_know_is_read_from_proc_with_its_identity() {
        use std::num::NonZeroUsize;
        let identity = crate::identity::Identity::new(
            "node".into(),
            vigil_events::time::BootClock::new(crate::system::boot_epoch_ns()),
            crate::identity::ProcessDetails::default(),
        );
        let mut cache = crate::cache::ProcessCache::new(
            NonZeroUsize::new(16).unwrap(),
            std::time::Duration::from_secs(1),
        );
        let me = std::process::id();
        let p = super::resolve(
            me,
            &mut cache,
            &identity,
            crate::system::clk_tck(),
            vigil_bpf_kprobes::abi::CGROUP_V2,
        )
        .expect("this process is in /proc");
        assert_eq!(p.pid, me);
        assert!(!p.exec_id.is_empty() && !p.start_time.is_empty(), "{p:?}");
        let exe = std::env::current_exe().unwrap();
        assert_eq!(p.binary, exe.to_string_lossy());
        assert!(
            cache.by_pid(me).is_some(),
            "kept for the events that follow"
        );
        assert!(super::resolve(u32::MAX - 1, &mut cache, &identity, 100, 0).is_none());
    }

    /// The shape of a real `/proc/<pid>/status` (trimmed), for a process named `name`.
    fn status_named(name: &[u8]) -> Vec<u8> {
        [
            b"Name:\t".as_slice(),
            name,
            b"\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t4118\nNgid:\t0\nPid:\t4118\n\
              PPid:\t4100\nTracerPid:\t0\nUid:\t1000\t1001\t1002\t1003\n\
              Gid:\t2000\t2001\t2002\t2003\nFDSize:\t64\nNSpid:\t4118\t7\n\
              CapInh:\t0000000000000000\nCapPrm:\t000001ffffffffff\n\
              CapEff:\t0000000000000400\nCapBnd:\t000001ffffffffff\n",
        ]
        .concat()
    }

    #[test]
    fn a_status_whose_name_is_not_utf8_is_parsed() {
        let got = super::parse_status(&status_named(b"\xff\xfesh")).expect("parsed");
        assert_eq!(
            got,
            super::StatusFields {
                uid: [1000, 1001, 1002, 1003],
                gid: [2000, 2001, 2002, 2003],
                cap_effective: 0x400,
                cap_permitted: 0x1ff_ffff_ffff,
                cap_inheritable: 0,
                nspid: Some(7),
            }
        );
        assert_eq!(super::parse_status(&status_named(b"sh")), Some(got));
    }

    #[test]
    fn a_status_without_ids_is_refused_and_one_without_nspid_has_none() {
        assert_eq!(super::parse_status(b"Name:\tsh\nCapEff:\t0\n"), None);
        let old_kernel = super::parse_status(b"Uid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\n").unwrap();
        assert_eq!(old_kernel.nspid, None);
    }

    #[test]
    fn a_stat_name_keeps_its_bytes_parentheses_and_spaces() {
        let mut text = b"4118 (\xff\xfe) (x) \n".to_vec();
        text.extend_from_slice(
            b") S 4100 4118 4100 34816 4118 4194304 100 0 0 0 0 0 0 0 20 0 1 0 987654 2453504 \
              133 18446744073709551615 1 1 0 0 0 0 0 0 65538 0 0 0 17 1 0 0 0 0 0\n",
        );
        let got = super::parse_stat(&text).expect("parsed");
        assert_eq!(got.comm, b"\xff\xfe) (x) \n");
        assert_eq!((got.ppid, got.starttime), (4100, 987654));
        assert_eq!(super::parse_stat(b"4118 (sh) S"), None, "truncated");
    }

    #[test]
    fn this_process_is_scanned_from_its_own_proc_files() {
        let me = procfs::process::Process::myself().unwrap();
        let s = super::scan(&me, 100, super::abi::CGROUP_V2).expect("scanned");
        // SAFETY: getppid and geteuid have no preconditions.
        let (ppid, euid) = unsafe { (libc::getppid(), libc::geteuid()) };
        assert_eq!((s.raw.ppid, s.raw.euid), (ppid as u32, euid));
        assert!(s.raw.start_ktime > 0);
    }

    #[test]
    fn a_cgroup_path_that_is_not_utf8_is_kept() {
        let text = b"12:memory:/user.slice/\xff\xfe-\xc3\n0::/user.slice/\xe9t\xe9:x\n";
        assert_eq!(
            super::cgroup_path(text, true),
            Some(&b"/user.slice/\xe9t\xe9:x"[..]),
            "a colon in the name stays in the path"
        );
        assert_eq!(
            super::cgroup_path(text, false),
            Some(&b"/user.slice/\xff\xfe-\xc3"[..])
        );
        assert_eq!(super::cgroup_path(b"garbage", true), None);
    }

    #[test]
    fn this_process_has_a_cgroup_path() {
        let (path, _) = super::proc_cgroup(std::process::id(), super::abi::CGROUP_V2);
        let (v1, _) = super::proc_cgroup(std::process::id(), 4);
        assert!(path.starts_with('/') || v1.starts_with('/'));
    }
    #[test]
    fn start_ticks_become_nanoseconds() {
        assert_eq!(super::start_ktime(250, 100), 2_500_000_000);
        assert_eq!(
            super::start_ktime(1, 0),
            1_000_000_000,
            "a zero CLK_TCK does not divide by zero"
        );
    }
}
