//! Policies the scenarios share.

use crate::resolved;

/// Tetragon's `sys_setuid` example, as it ships: on a kernel with kprobes it attaches to the
/// syscall's wrapper; elsewhere it falls back to the syscall's enter tracepoint. Either way the
/// event carries the uid argument.
pub const SETUID_POLICY: &str = r#"apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: "syscalls"
spec:
  kprobes:
  - call: "sys_setuid"
    syscall: true
    args:
    - index: 0
      type: "int"
"#;

/// Tetragon's `tcp-connect` example, reduced to tcp_connect.
pub const CONNECT_POLICY: &str = r#"apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: "connect"
spec:
  kprobes:
  - call: "tcp_connect"
    syscall: false
    args:
    - index: 0
      type: "sock"
"#;

/// Deny reading `/etc/passwd` and `/etc/shadow` to `cat` (as this kernel's userland resolves it),
/// in `mode` (`enforce` or `monitor`).
pub fn deny_passwd(mode: &str) -> String {
    format!(
        r#"apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: deny-passwd
spec:
  options:
  - name: policy-mode
    value: {mode}
  lsmhooks:
  - hook: file_open
    message: "credential file read"
    tags: ["credentials"]
    args:
    - index: 0
      type: file
    selectors:
    - matchBinaries:
      - operator: In
        values: ["{cat}"]
      matchArgs:
      - index: 0
        operator: Equal
        values: ["/etc/passwd", "/etc/shadow"]
      matchActions:
      - action: Override
        argError: -1
"#,
        cat = resolved("/bin/cat")
    )
}
