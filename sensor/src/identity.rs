//! Turns what the kernel (or `/proc`) says about a task into the event model's [`Process`].
//!
//! Kernel records and `/proc` scans both produce an [`abi::Process`] plus strings, and both go
//! through [`Identity::process`], so a process seen at start-up and one seen exec'ing later are
//! described by the same code.

use std::os::unix::fs::MetadataExt;

use vigil_bpf_kprobes::abi;
use vigil_events::{
    caps::CapSet, join_arguments, time::BootClock, Capabilities, Cgroup, Credentials, Detail,
    ExecId, Namespace, Namespaces, Process,
};

/// How the agent learnt of a process; becomes the first word of `flags`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// An execve the kernel reported; `after_fork` when it is the first since the process
    /// forked (flagged `clone`, as Tetragon does).
    Execve {
        /// See the variant.
        after_fork: bool,
    },
    /// A fork the kernel reported; the child still runs its parent's image.
    Clone,
    /// Found in `/proc` when the agent started.
    ProcFs,
}

/// The strings of a process besides its kernel identity.
pub struct ProcessStrings<'a> {
    /// Absolute binary path.
    pub binary: String,
    /// argv, NUL-separated, argv\[0\] first.
    pub argv: &'a [u8],
    /// Working directory.
    pub cwd: String,
    /// cgroup path.
    pub cgroup: String,
}

/// Node-wide facts every process description needs.
pub struct Identity {
    /// The node name in exec ids and events (shared by every event).
    pub node: std::sync::Arc<str>,
    /// The exec ids of this node: its name encoded once, so made from `node` (as
    /// [`Identity::new`] does) and never set apart from it.
    pub exec_ids: vigil_events::ExecIdPrefix,
    /// Boot-time to wall-clock conversion.
    pub clock: BootClock,
    /// pid 1's namespaces, to mark `is_host`.
    pub host_ns: [u32; abi::NS_COUNT],
    /// Which of a process's optional objects events carry.
    pub details: ProcessDetails,
}

/// A process's objects that events carry only when asked to, as Tetragon's
/// `--enable-process-cred` and `--enable-process-ns`: `cap` and `process_credentials`, and
/// `ns`. They are read from the kernel either way (selectors and Sigma's auditd records use
/// them); left out they make an exec event about a fifth of its size
/// (a root process's 80 capability names, twice with its parent's, were over half of it), and
/// every output and the store pay per byte.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProcessDetails {
    /// `cap` and `process_credentials`.
    pub credentials: bool,
    /// `ns`.
    pub namespaces: bool,
}

/// Namespace names under `/proc/<pid>/ns/`, in `abi::ns` index order.
pub const NS_FILES: [&str; abi::NS_COUNT] = [
    "uts",
    "ipc",
    "mnt",
    "pid",
    "pid_for_children",
    "net",
    "time",
    "cgroup",
    "user",
    "time_for_children",
];

/// Inode numbers of `/proc/<pid>/ns/*` (0 where unreadable).
pub fn proc_namespaces(pid: u32) -> [u32; abi::NS_COUNT] {
    let mut out = [0u32; abi::NS_COUNT];
    for (i, name) in NS_FILES.iter().enumerate() {
        if let Ok(m) = std::fs::metadata(format!("/proc/{pid}/ns/{name}")) {
            out[i] = m.ino() as u32;
        }
    }
    out
}

/// The host's namespaces: kthreadd's (pid 2, a kernel thread, always in the initial
/// namespaces and readable even where pid 1 is a sandbox that hides its own), else pid 1's.
pub fn host_namespaces() -> [u32; abi::NS_COUNT] {
    let kthreadd = std::fs::read_to_string("/proc/2/comm").is_ok_and(|c| c.trim() == "kthreadd");
    let mut ns = proc_namespaces(if kthreadd { 2 } else { 1 });
    if ns.iter().all(|i| *i == 0) {
        ns = proc_namespaces(1);
    }
    ns
}

impl Identity {
    /// The identity of this node.
    pub fn new(node: String, clock: BootClock, details: ProcessDetails) -> Self {
        Identity {
            exec_ids: vigil_events::ExecIdPrefix::new(&node),
            node: node.into(),
            clock,
            host_ns: host_namespaces(),
            details,
        }
    }

    /// The exec id of the execution of `pid` that started at `ktime`.
    pub fn exec_id(&self, ktime: u64, pid: u32) -> ExecId {
        self.exec_ids.id(ktime, pid)
    }

    /// Describes a process.
    pub fn process(
        &self,
        raw: &abi::Process,
        ktime: u64,
        origin: Origin,
        strings: ProcessStrings<'_>,
        parent_exec_id: ExecId,
    ) -> Process {
        // The final NUL of argv ends the last argument; it does not begin another.
        let argv = strings.argv.strip_suffix(&[0]).unwrap_or(strings.argv);
        let mut argv = argv.split(|b| *b == 0).map(vigil_events::text::lossy);
        let argv0 = argv.next().map(|a| a.into_owned()).unwrap_or_default();
        let arguments = join_arguments(argv);
        let ns = |i: usize| Namespace {
            inum: raw.ns[i],
            is_host: raw.ns[i] != 0 && raw.ns[i] == self.host_ns[i],
        };
        // `rootcwd` as Tetragon sets it, and `clone` on an exec after a fork.
        let after_fork = matches!(origin, Origin::Execve { after_fork: true });
        let flags =
            vigil_events::flags::with_derived(&flags(origin, raw.flags), &strings.cwd, after_fork);
        Process {
            exec_id: self.exec_id(ktime, raw.pid),
            pid: raw.pid,
            tid: raw.tid,
            uid: raw.euid,
            auid: raw.auid,
            cwd: strings.cwd,
            binary: strings.binary,
            arguments,
            argv0,
            flags,
            start_time: self.clock.rfc3339(ktime),
            parent_exec_id,
            // Described to be cached as running (an exit's copy drops it: ProcessCache::exit).
            refcnt: 1,
            cap: Capabilities {
                permitted: CapSet(raw.cap_permitted),
                effective: CapSet(raw.cap_effective),
                inheritable: CapSet(raw.cap_inheritable),
                detail: Detail::known(self.details.credentials),
            },
            ns: Namespaces {
                uts: ns(abi::ns::UTS),
                ipc: ns(abi::ns::IPC),
                mnt: ns(abi::ns::MNT),
                pid: ns(abi::ns::PID),
                pid_for_children: ns(abi::ns::PID_FOR_CHILDREN),
                net: ns(abi::ns::NET),
                time: ns(abi::ns::TIME),
                time_for_children: ns(abi::ns::TIME_FOR_CHILDREN),
                cgroup: ns(abi::ns::CGROUP),
                user: ns(abi::ns::USER),
                // None read (a process gone from /proc before its namespaces were): unknown,
                // not a process in ten namespaces that are not the host's.
                detail: if raw.ns.iter().all(|n| *n == 0) {
                    Detail::Unknown
                } else {
                    Detail::known(self.details.namespaces)
                },
            },
            process_credentials: Credentials {
                uid: raw.uid,
                gid: raw.gid,
                euid: raw.euid,
                egid: raw.egid,
                suid: raw.suid,
                sgid: raw.sgid,
                fsuid: raw.fsuid,
                fsgid: raw.fsgid,
                detail: Detail::known(self.details.credentials),
            },
            docker: container_id(&strings.cgroup),
            // Named from the pod store after the process is built (`k8s::PodIdentity`).
            pod: None,
            nspid: raw.nspid,
            cgroup: Some(Cgroup {
                id: raw.cgroup_id,
                path: strings.cgroup,
            }),
        }
    }
}

/// Tetragon's flag words for an origin and the kernel's truncation bits.
fn flags(origin: Origin, bits: u32) -> std::borrow::Cow<'static, str> {
    let first = match origin {
        Origin::Execve { .. } => "execve",
        Origin::Clone => "clone",
        Origin::ProcFs => "procFS",
    };
    let words = [
        (abi::FLAG_TRUNC_FILENAME, "truncFilename"),
        (abi::FLAG_TRUNC_ARGS, "truncArgs"),
        (abi::FLAG_ERROR_CWD, "errorCWD"),
        (abi::FLAG_TRUNC_CWD, "truncCWD"),
        (abi::FLAG_ERROR_ARGS, "errorArgs"),
        (abi::FLAG_TRUNC_CGROUP, "truncCgroup"),
    ];
    // Nearly every record has none of these bits: its origin's word, not copied.
    if words.iter().all(|(bit, _)| bits & bit == 0) {
        return first.into();
    }
    let mut out = String::from(first);
    for (bit, word) in words {
        if bits & bit != 0 {
            out.push(' ');
            out.push_str(word);
        }
    }
    out.into()
}

/// The container id in a cgroup path (`.../docker-<64 hex>.scope`, `.../<64 hex>`), shortened
/// to the 31 characters Tetragon's `docker` field carries.
///
/// The path is whatever a user with a delegated cgroup subtree named a directory: it is
/// searched as bytes, so a window that starts or ends inside a multi-byte character is just a
/// window that is not hex (slicing the `&str` there would panic).
pub fn container_id(cgroup: &str) -> Option<String> {
    // Every exec and fork asks, and most paths (a host's services, sessions) are too short.
    if cgroup.len() < 64 {
        return None;
    }
    cgroup.rsplit('/').find_map(|part| {
        part.as_bytes()
            .windows(64)
            .find(|w| w.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
            // Lower-case hex digits only: ASCII, so every byte is one character.
            .map(|w| w[..31].iter().map(|&b| b as char).collect())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_ids_come_from_the_cgroup_leaf() {
        let id = "4f1e2b9c0d3a5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f";
        assert_eq!(
            container_id(&format!("/system.slice/docker-{id}.scope")).as_deref(),
            Some(&id[..31])
        );
        assert_eq!(
            container_id(&format!("/kubepods/besteffort/pod1/{id}")).as_deref(),
            Some(&id[..31])
        );
        assert_eq!(container_id("/user.slice/session-1.scope"), None);
        assert_eq!(container_id("/"), None);
        // The shortest path that holds one, and one hex digit short of it.
        assert_eq!(container_id(id).as_deref(), Some(&id[..31]));
        assert_eq!(container_id(&format!("/{}", &id[1..])), None);
    }

    #[test]
    fn a_cgroup_name_of_non_ascii_text_does_not_panic() {
        // 64 bytes and more of multi-byte characters: a byte window ends inside a character.
        assert_eq!(
            container_id(&format!("/user.slice/{}", "é".repeat(40))),
            None
        );
        assert_eq!(container_id(&"日本".repeat(30)), None);
        let id = "4f1e2b9c0d3a5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f";
        assert_eq!(
            container_id(&format!("/x/é{id}é")).as_deref(),
            Some(&id[..31]),
            "an id beside multi-byte text is still found"
        );
    }

    #[test]
    fn text_from_bytes_is_the_standard_lossy_text() {
        for bytes in [
            &b""[..],
            b"/usr/bin/true",
            "caf\u{e9} \u{1f600}".as_bytes(),
            b"bad \xff\xfe utf-8",
            b"cut \xe2\x82",
            b"\xc0\x80 overlong",
        ] {
            assert_eq!(
                vigil_events::text::lossy(bytes),
                String::from_utf8_lossy(bytes)
            );
        }
    }

    #[test]
    fn a_process_in_a_non_ascii_cgroup_is_described() {
        let id = Identity {
            node: "n".into(),
            exec_ids: vigil_events::ExecIdPrefix::new("n"),
            clock: BootClock::new(0),
            host_ns: [0; abi::NS_COUNT],
            details: ProcessDetails::default(),
        };
        let cgroup = format!("/user.slice/user-1000.slice/{}", "é".repeat(64));
        let strings = ProcessStrings {
            binary: "/bin/sh".into(),
            argv: b"sh\0",
            cwd: "/".into(),
            cgroup: cgroup.clone(),
        };
        let p = id.process(
            &abi::Process::default(),
            1,
            Origin::ProcFs,
            strings,
            ExecId::default(),
        );
        assert_eq!(p.cgroup.map(|c| c.path), Some(cgroup));
        assert_eq!(p.docker, None);
    }

    #[test]
    fn arguments_skip_argv0_and_the_final_nul() {
        let id = Identity {
            node: "n".into(),
            exec_ids: vigil_events::ExecIdPrefix::new("n"),
            clock: BootClock::new(0),
            host_ns: [0; abi::NS_COUNT],
            details: ProcessDetails::default(),
        };
        let raw = abi::Process {
            pid: 5,
            flags: abi::FLAG_TRUNC_ARGS,
            ..Default::default()
        };
        let strings = ProcessStrings {
            binary: "/bin/echo".into(),
            argv: b"echo\0a b\0c\0",
            cwd: "/".into(),
            cgroup: "/".into(),
        };
        let origin = Origin::Execve { after_fork: false };
        let p = id.process(&raw, 10, origin, strings, ExecId::default());
        assert_eq!(p.arguments, "\"a b\" c");
        // Its cwd is the root: Tetragon says so.
        assert_eq!(p.flags, "execve truncArgs rootcwd");
        assert_eq!(p.exec_id, ExecId::new("n", 10, 5));
        // An argument cut short (no final NUL), empty arguments, and no arguments at all.
        for (argv, argv0, arguments) in [
            (&b"echo\0a\0bc"[..], "echo", "a bc"),
            (b"echo\0\0", "echo", "\"\""),
            (b"echo\0a\0\0\0", "echo", "a \"\" \"\""),
            (b"echo\0", "echo", ""),
            (b"echo", "echo", ""),
            (b"\0", "", ""),
            (b"", "", ""),
        ] {
            let strings = ProcessStrings {
                binary: "/bin/echo".into(),
                argv,
                cwd: "/".into(),
                cgroup: "/".into(),
            };
            let p = id.process(&raw, 10, origin, strings, ExecId::default());
            assert_eq!((&*p.argv0, &*p.arguments), (argv0, arguments), "{argv:?}");
        }
    }
}
