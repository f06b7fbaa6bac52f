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
        let parent_exec_id = match s.raw.ppid {
            0 => kernel_exec_id(identity),
            ppid => ids.get(&ppid).cloned().unwrap_or_default(),
        };
        let strings = ProcessStrings {
            binary: s.binary,
            argv: &s.argv,
            cwd: s.cwd,
            cgroup: s.cgroup,
        };
        let process = identity.process(&s.raw, s.ktime, Origin::ProcFs, strings, parent_exec_id);
        cache.insert(process, now);
    }
    count
}

fn scan(p: &ProcProcess, clk_tck: u64, cgroup_subsys: u32) -> Option<Scanned> {
    let stat = p.stat().ok()?;
    let status = p.status().ok()?;
    let pid = p.pid() as u32;
    let mut raw = abi::Process {
        pid,
        tid: pid,
        ppid: stat.ppid as u32,
        nspid: status
            .nspid
            .as_ref()
            .and_then(|v| v.last().copied())
            .unwrap_or(pid as i32) as u32,
        uid: status.ruid,
        gid: status.rgid,
        euid: status.euid,
        egid: status.egid,
        suid: status.suid,
        sgid: status.sgid,
        fsuid: status.fuid,
        fsgid: status.fgid,
        auid: p.loginuid().unwrap_or(u32::MAX),
        cap_effective: status.capeff,
        cap_permitted: status.capprm,
        cap_inheritable: status.capinh,
        ns: proc_namespaces(pid),
        start_ktime: start_ktime(stat.starttime, clk_tck),
        ..Default::default()
    };
    let comm = stat.comm.as_bytes();
    let n = comm.len().min(raw.comm.len() - 1);
    raw.comm[..n].copy_from_slice(&comm[..n]);

    // Kernel threads have no executable; like Tetragon, name them by their comm.
    let binary = p
        .exe()
        .map(|e| e.to_string_lossy().into_owned())
        .unwrap_or_else(|_| stat.comm.clone());
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
