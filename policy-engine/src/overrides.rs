//! Where an `Override` takes effect: the function whose return an fmod_ret program replaces.
//!
//! Neither Debian's kernels nor vigil's host kernel have `bpf_override_return`
//! (CONFIG_BPF_KPROBE_OVERRIDE) or the kernel's list of error-injectable functions
//! (CONFIG_FUNCTION_ERROR_INJECTION), so the only functions whose return an eBPF program can
//! replace are the LSM checks (`security_*`), which the kernel lets fmod_ret programs modify on
//! every kernel with BPF trampolines. A hook on one of them is judged there and overridden
//! there. A system call is judged at its entry (its arguments as the caller gave them) and
//! overridden at the LSM check every successful call passes through, after the kernel looked its
//! paths up: the call fails with the policy's errno before it has any effect, and a call that
//! fails earlier (a path that does not exist) returns that error instead.
//!
//! System calls with no single such check on every path (opens, where O_PATH skips
//! `security_file_open`; `kill`, which checks each process of a group in turn; `sendmmsg`, each
//! message) are not listed, and an Override on them is refused with what to use instead.

use crate::compile::{HookRule, RuleAction};
use crate::plan::Mechanism;

/// System calls (x86-64 names, without `sys_`) and the LSM checks every successful call passes
/// through before its effect.
const SYSCALL_GATES: &[(&str, &[&str])] = &[
    ("link", &["security_path_link"]),
    ("linkat", &["security_path_link"]),
    ("symlink", &["security_path_symlink"]),
    ("symlinkat", &["security_path_symlink"]),
    ("mkdir", &["security_path_mkdir"]),
    ("mkdirat", &["security_path_mkdir"]),
    ("mknod", &["security_path_mknod"]),
    ("mknodat", &["security_path_mknod"]),
    ("unlink", &["security_path_unlink"]),
    ("rmdir", &["security_path_rmdir"]),
    ("unlinkat", &["security_path_unlink", "security_path_rmdir"]),
    ("rename", &["security_path_rename"]),
    ("renameat", &["security_path_rename"]),
    ("renameat2", &["security_path_rename"]),
    ("chmod", &["security_path_chmod"]),
    ("fchmod", &["security_path_chmod"]),
    ("fchmodat", &["security_path_chmod"]),
    ("chown", &["security_path_chown"]),
    ("lchown", &["security_path_chown"]),
    ("fchown", &["security_path_chown"]),
    ("fchownat", &["security_path_chown"]),
    ("truncate", &["security_path_truncate"]),
    ("chroot", &["security_path_chroot"]),
    ("execve", &["security_bprm_creds_for_exec"]),
    ("execveat", &["security_bprm_creds_for_exec"]),
    ("connect", &["security_socket_connect"]),
    ("bind", &["security_socket_bind"]),
    ("listen", &["security_socket_listen"]),
    ("socket", &["security_socket_create"]),
    ("init_module", &["security_kernel_load_data"]),
    ("finit_module", &["security_kernel_read_file"]),
    ("bpf", &["security_bpf"]),
    ("mount", &["security_sb_mount"]),
    ("umount2", &["security_sb_umount"]),
];

/// Whether any selector of `h` overrides (and the policy is not in monitor mode).
pub fn overrides(h: &HookRule) -> bool {
    !h.monitor
        && h.selectors
            .iter()
            .any(|s| matches!(s.action, RuleAction::Override(_)))
}

/// The functions whose fmod_ret program carries out `h`'s Overrides when it is attached by
/// `mechanism`, or why there are none.
pub fn override_gates(h: &HookRule, mechanism: &Mechanism) -> Result<Vec<String>, String> {
    // Judged at the entry, where the return value is not known yet.
    let on_return = h.args.len().checked_sub(1).filter(|_| h.returns);
    if let Some(ret) = on_return {
        if let Some(i) = h
            .selectors
            .iter()
            .position(|s| s.conds.iter().any(|c| c.arg == ret))
        {
            return Err(format!(
                "selectors[{i}]: a hook that overrides is judged at the function's entry, before there is a return value to match (fix: move matchReturnArgs to a hook of its own without Override)"
            ));
        }
    }
    match mechanism {
        Mechanism::Kprobe(f) if f.starts_with("security_") => Ok(vec![f.clone()]),
        Mechanism::Kprobe(_) | Mechanism::SyscallEnter(_) if h.syscall => {
            let call = syscall_name(&h.call);
            SYSCALL_GATES
                .iter()
                .find(|(c, _)| *c == call)
                .map(|(_, gates)| gates.iter().map(|g| g.to_string()).collect())
                .ok_or_else(|| {
                    format!(
                        "vigil fails a system call at the LSM check every successful call passes through, and {call} has none it can rely on (fix: for a file open use `lsmhooks: file_open`; otherwise Sigkill); Override works on: {}",
                        SYSCALL_GATES
                            .iter()
                            .map(|(c, _)| *c)
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                })
        }
        Mechanism::Kprobe(f) | Mechanism::Kretprobe(f) => Err(format!(
            "Override replaces the return of an LSM check (`security_*`, by fmod_ret); {f} is none, and this kernel cannot override another function (no CONFIG_BPF_KPROBE_OVERRIDE) (fix: hook the security_* function it calls, or use Sigkill)"
        )),
        other => Err(format!(
            "Override needs a kprobe on a security_* function or a system call; {} cannot override (fix: use Sigkill)",
            crate::plan::describe_mechanism(other)
        )),
    }
}

/// `sys_linkat`, `__x64_sys_linkat` or `linkat` as `linkat`.
fn syscall_name(call: &str) -> &str {
    let bare = call.strip_prefix("__x64_").unwrap_or(call);
    bare.strip_prefix("sys_").unwrap_or(bare)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_gate_is_an_lsm_check_and_every_call_a_syscall() {
        for (call, gates) in SYSCALL_GATES {
            assert!(
                vigil_bpf_kprobes::abi::syscall_nr(call).is_some(),
                "{call} is no x86-64 system call"
            );
            assert!(!gates.is_empty());
            assert!(gates.iter().all(|g| g.starts_with("security_")));
        }
        for refused in ["openat", "open", "kill", "sendmmsg"] {
            assert!(SYSCALL_GATES.iter().all(|(c, _)| *c != refused));
        }
    }

    #[test]
    fn names_are_read_in_every_spelling() {
        assert_eq!(syscall_name("sys_linkat"), "linkat");
        assert_eq!(syscall_name("__x64_sys_linkat"), "linkat");
        assert_eq!(syscall_name("linkat"), "linkat");
    }
}
