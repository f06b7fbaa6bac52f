//! What a file-open hook's rung cannot stop, named, so that `vigil policy explain` tells the
//! user before an adversary does.
//!
//! Each gap has a stable name (scenarios and tooling key on it) and a reason with what to do
//! about it. Which gaps apply depends on the rung the plan chose and on the hook's selectors:
//! the open system calls' exit tracepoints miss opens that make no such call and act after the
//! open; every rung compares prefixes and binaries by the names one mount tree gives them.
//! Exact path and binary values are not a gap: they also match the file by its device and
//! inode (the sensor's `policies/inodes.rs`), so a hard link or a bind mount does not rename
//! it; where a value names no file the agent can key (missing, a link, btrfs or overlayfs),
//! the agent says so when it loads the policy.

use std::borrow::Cow;

use crate::{
    compile::{HookRule, MatchKind},
    hook_rule::CondOp,
    plan::Mechanism,
};

/// One thing a rung cannot stop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gap {
    /// Its stable name.
    pub name: &'static str,
    /// Why, and what to do about it.
    pub reason: Cow<'static, str>,
}

/// io_uring opens on the tracepoint rung.
pub const IO_URING: Gap = Gap {
    name: "io_uring",
    reason: Cow::Borrowed("IORING_OP_OPENAT and IORING_OP_OPENAT2 open files without an open system call, so no open tracepoint sees them: set sysctl kernel.io_uring_disabled=2 (Linux 6.6 and later), or run a kernel where BPF LSM or fmod_ret works"),
};

/// A descriptor table shared outside the thread group, on the tracepoint rung.
pub const SHARED_DESCRIPTORS: Gap = Gap {
    name: "shared descriptor table",
    reason: Cow::Borrowed("the kill lands on the opener's thread group after the open; a process made with clone(CLONE_FILES) shares its descriptor table and can read the new descriptor once the opener is dead"),
};

/// Side effects of the open itself, on the tracepoint rung.
pub const TRUNCATE_OR_CREATE: Gap = Gap {
    name: "truncate or create",
    reason: Cow::Borrowed("the kill lands when the open returns: O_TRUNC has already emptied the file, and O_CREAT has made it"),
};

/// O_CREAT before the open is judged, on the rungs that deny.
pub const CREATE_BEFORE_JUDGED: Gap = Gap {
    name: "create",
    reason: Cow::Borrowed("O_CREAT of a protected path that does not exist yet makes the (empty) file before the open is judged; the open itself is denied"),
};

/// Trampoline programs do not nest, on the fmod_ret rung.
pub const NOT_NESTED: Gap = Gap {
    name: "open while the judge is preempted",
    reason: Cow::Borrowed("the kernel does not run an fentry or fmod_ret program on a CPU where it is already running (BPF LSM programs have no such rule): on a preemptible kernel, an open by another task while the judging program is preempted on that CPU is not judged, and goes through unseen; it is rare (the program runs for microseconds) but not impossible, and only BPF LSM closes it"),
};

/// Prefix values and mount trees, on every rung.
pub const PREFIX_RENAMED: Gap = Gap {
    name: "bind mount or hard link under a prefix",
    reason: Cow::Borrowed("prefix and postfix values compare the path in the opener's mount tree: a bind mount of a protected directory (in a mount namespace of one's own, e.g. unshare -Urm) or a hard link gives its files names these values do not match; exact values also match the file by device and inode"),
};

/// matchBinaries prefixes and mount trees, on every rung.
pub const BINARY_BIND_MOUNT: Gap = Gap {
    name: "binary bind-mounted",
    reason: Cow::Borrowed("a matchBinaries prefix compares the executable's path in the executing process's mount tree: another binary bind-mounted over a path under it (in a mount namespace of one's own, e.g. unshare -Urm) passes for one of its binaries; exact values also check that the executable is the file they name"),
};

/// The name of the gap [`unkeyed`] describes.
pub const UNKEYED: &str = "named by path only";

/// Exact values that name no file this machine can key by device and inode: a hard link or a
/// bind mount renames them (known only on the machine, so the plan leaves it to the caller).
pub fn unkeyed(values: &[String]) -> Gap {
    Gap {
        name: UNKEYED,
        reason: Cow::Owned(format!(
            "{}: no file here that can be keyed by device and inode (missing, a symbolic link, or on btrfs or overlayfs), so compared by path only: a hard link or a bind mount gives that file or binary another name",
            values.join(", ")
        )),
    }
}

/// The exact path and binary values of a file-open hook, which the sensor also keys by device
/// and inode.
pub fn exact_values(hook: &HookRule) -> Vec<String> {
    if !hook.is_file_open() {
        return Vec::new();
    }
    let mut out = Vec::new();
    for s in &hook.selectors {
        for c in &s.conds {
            if let CondOp::Text(MatchKind::Exact, values) = &c.op {
                out.extend(values.iter().cloned());
            }
        }
        if let Some(b) = s.binary.as_ref().filter(|b| b.kind == MatchKind::Exact) {
            out.extend(b.values.iter().cloned());
        }
    }
    out.sort();
    out.dedup();
    out
}

/// The gaps of a file-open hook attached by `mechanism`; none for other hooks.
pub fn file_open_gaps(hook: &HookRule, mechanism: &Mechanism) -> Vec<Gap> {
    if !hook.is_file_open() {
        return Vec::new();
    }
    let mut gaps = match mechanism {
        Mechanism::Lsm(_) => vec![CREATE_BEFORE_JUDGED],
        Mechanism::FmodRet(_) => vec![CREATE_BEFORE_JUDGED, NOT_NESTED],
        Mechanism::SyscallTracepoints(_) => vec![IO_URING, SHARED_DESCRIPTORS, TRUNCATE_OR_CREATE],
        _ => Vec::new(),
    };
    let by_prefix = hook.selectors.iter().any(|s| {
        s.conds
            .iter()
            .any(|c| matches!(&c.op, CondOp::Text(kind, _) if *kind != MatchKind::Exact))
    });
    if by_prefix {
        gaps.push(PREFIX_RENAMED);
    }
    let binary_prefix = hook.selectors.iter().any(|s| {
        s.binary
            .as_ref()
            .is_some_and(|b| b.kind != MatchKind::Exact)
    });
    if binary_prefix {
        gaps.push(BINARY_BIND_MOUNT);
    }
    gaps
}
