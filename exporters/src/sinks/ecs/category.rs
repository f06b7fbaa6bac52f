//! What a policy event is, in ECS's words: `event.category`, `event.type`, `event.action` and
//! `event.outcome` from the hooked function, its arguments and what the kernel did. The actions
//! are the values Elastic's detection rules and dashboards look for (`creation`, `deletion`,
//! `rename`, `connection_attempted`, `lookup_requested`, `uid_change`, `load_module`, ...), so
//! a rule written for Elastic's own agents reads vigil's events unchanged.

use serde_json::Value;

/// An event's categorization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Categorization {
    /// `event.category`.
    pub category: Vec<&'static str>,
    /// `event.type`.
    pub types: Vec<&'static str>,
    /// `event.action`.
    pub action: String,
    /// `event.outcome`, when known.
    pub outcome: Option<&'static str>,
}

/// The system call a function name stands for (`__x64_sys_openat`, `sys_openat` → `openat`),
/// or the kernel function itself.
pub fn call_name(function: &str) -> &str {
    for prefix in [
        "__x64_sys_",
        "__ia32_sys_",
        "__arm64_sys_",
        "__se_sys_",
        "ksys_",
        "sys_",
    ] {
        if let Some(rest) = function.strip_prefix(prefix) {
            return rest;
        }
    }
    function
}

const O_WRONLY: i64 = 0o1;
const O_RDWR: i64 = 0o2;
const O_CREAT: i64 = 0o100;
const O_TRUNC: i64 = 0o1000;

/// An open's effect by its flags (the first integer argument after the path, where the policy
/// reads it): creating, changing or only reading a file.
fn open_kind(args: &[Value]) -> (&'static str, &'static str) {
    let flags = args.iter().find_map(|a| a["int_arg"].as_i64());
    match flags {
        Some(f) if f & O_CREAT != 0 => ("creation", "creation"),
        Some(f) if f & (O_WRONLY | O_RDWR | O_TRUNC) != 0 => ("change", "modification"),
        _ => ("access", "open"),
    }
}

/// `security_file_permission`'s mask: MAY_WRITE (2) or MAY_APPEND (8) is a change.
fn permission_kind(args: &[Value]) -> (&'static str, &'static str) {
    match args.iter().find_map(|a| a["int_arg"].as_i64()) {
        Some(m) if m & (2 | 8) != 0 => ("change", "modification"),
        _ => ("access", "open"),
    }
}

/// An argument's DNS message, unless its bytes were not one (`error` set): such a datagram is
/// a plain UDP send or receive.
pub fn dns_message(arg: &Value) -> Option<&Value> {
    arg.get("dns_arg")
        .filter(|d| d["error"].as_str().is_none_or(str::is_empty))
}

/// The categorization of a `process_kprobe`/`process_lsm` body.
pub fn policy_event(body: &Value) -> Categorization {
    let function = body["function_name"].as_str().unwrap_or("");
    let call = call_name(function);
    let args = body["args"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    let dns = args.iter().chain(body.get("return")).find_map(dns_message);
    let (category, kind, action): (&'static str, &'static str, String) = if let Some(d) = dns {
        let answer = d["response"].as_bool().unwrap_or(false);
        (
            "network",
            "protocol",
            if answer {
                "lookup_result"
            } else {
                "lookup_requested"
            }
            .into(),
        )
    } else {
        match call {
            "openat" | "openat2" | "open" | "security_file_open" | "file_open" | "do_sys_open"
            | "do_filp_open" => {
                let (t, a) = open_kind(args);
                ("file", t, a.into())
            }
            "creat"
            | "mkdir"
            | "mkdirat"
            | "mknod"
            | "mknodat"
            | "symlink"
            | "symlinkat"
            | "link"
            | "linkat"
            | "security_path_mkdir"
            | "security_path_symlink"
            | "security_path_link"
            | "security_inode_create" => ("file", "creation", "creation".into()),
            "unlink"
            | "unlinkat"
            | "rmdir"
            | "security_path_unlink"
            | "security_path_rmdir"
            | "security_inode_unlink"
            | "vfs_unlink" => ("file", "deletion", "deletion".into()),
            "rename"
            | "renameat"
            | "renameat2"
            | "security_path_rename"
            | "security_inode_rename"
            | "vfs_rename" => ("file", "change", "rename".into()),
            "chmod"
            | "fchmod"
            | "fchmodat"
            | "fchmodat2"
            | "chown"
            | "fchown"
            | "fchownat"
            | "lchown"
            | "security_path_chmod"
            | "security_path_chown"
            | "utimensat"
            | "setxattr"
            | "lsetxattr"
            | "fsetxattr" => ("file", "change", "attributes_modification".into()),
            "truncate"
            | "ftruncate"
            | "write"
            | "pwrite64"
            | "writev"
            | "pwritev"
            | "pwritev2"
            | "security_path_truncate"
            | "vfs_write" => ("file", "change", "modification".into()),
            "read" | "pread64" | "readv" | "vfs_read" => ("file", "access", "read".into()),
            "security_file_permission" => {
                let (t, a) = permission_kind(args);
                ("file", t, a.into())
            }
            "tcp_connect"
            | "connect"
            | "security_socket_connect"
            | "tcp_v4_connect"
            | "tcp_v6_connect" => ("network", "start", "connection_attempted".into()),
            "inet_csk_accept" | "accept" | "accept4" | "security_socket_accept" => {
                ("network", "start", "connection_accepted".into())
            }
            "tcp_close" | "tcp_set_state" => ("network", "end", "disconnect_received".into()),
            "inet_csk_listen_start" | "listen" | "security_socket_listen" => {
                ("network", "start", "listen".into())
            }
            "bind" | "security_socket_bind" => ("network", "start", "bind".into()),
            "udp_sendmsg" | "sendto" | "sendmsg" | "sendmmsg" => {
                ("network", "connection", "udp_send".into())
            }
            "udp_recvmsg" | "recvfrom" | "recvmsg" | "recvmmsg" => {
                ("network", "connection", "udp_receive".into())
            }
            "setuid" | "setreuid" | "setresuid" | "setfsuid" => {
                ("process", "change", "uid_change".into())
            }
            "setgid" | "setregid" | "setresgid" | "setfsgid" | "setgroups" => {
                ("process", "change", "gid_change".into())
            }
            "commit_creds" | "capset" => ("process", "change", "credentials_change".into()),
            "init_module"
            | "finit_module"
            | "do_init_module"
            | "security_kernel_module_request"
            | "security_kernel_read_file" => ("driver", "start", "load_module".into()),
            "delete_module" | "free_module" => ("driver", "end", "unload_module".into()),
            "ptrace" | "security_ptrace_access_check" => ("process", "access", "ptrace".into()),
            "kill" | "tkill" | "tgkill" => ("process", "info", "kill".into()),
            "mount" | "umount" | "umount2" | "fsmount" | "move_mount" => {
                ("file", "change", call.to_string())
            }
            _ => ("process", "info", call.to_string()),
        }
    };
    let mut c = Categorization {
        category: vec![category],
        types: vec![kind],
        action,
        outcome: None,
    };
    if category == "network" && kind != "protocol" && kind != "connection" {
        c.types.push("connection");
    }
    // What the kernel did: a denial failed the call; a monitor-mode policy's wish is noted.
    let (extra, outcome) = match body["outcome"].as_str().unwrap_or("") {
        "denied" => (Some("denied"), Some("failure")),
        "killed" | "signalled" => (Some("denied"), Some("unknown")),
        o if o.starts_with("would_have_been") => (Some("allowed"), None),
        _ => (None, None),
    };
    if let Some(t) = extra {
        c.category.push("intrusion_detection");
        c.types.push(t);
    }
    c.outcome = outcome.or_else(|| {
        // A return hook knows the result; an entry hook does not (the call had not run).
        match body.get("return").and_then(|r| r["int_arg"].as_i64()) {
            Some(r) if r < 0 => Some("failure"),
            Some(_) => Some("success"),
            None if body.get("return").is_some() => Some("success"),
            None => Some("unknown"),
        }
    });
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cat(
        body: Value,
    ) -> (
        Vec<&'static str>,
        Vec<&'static str>,
        String,
        Option<&'static str>,
    ) {
        let c = policy_event(&body);
        (c.category, c.types, c.action, c.outcome)
    }

    #[test]
    fn system_calls_and_kernel_functions_are_named_by_their_effect() {
        let open = |flags: i64| json!({"function_name": "__x64_sys_openat", "args": [{"path_arg": {"path": "/etc/x"}}, {"int_arg": flags}], "outcome": "posted"});
        assert_eq!(cat(open(0o101)).2, "creation");
        assert_eq!(cat(open(0o1001)).1, vec!["change"]);
        assert_eq!(cat(open(0)).2, "open");
        assert_eq!(
            cat(json!({"function_name": "__x64_sys_unlinkat", "outcome": "posted"})),
            (
                vec!["file"],
                vec!["deletion"],
                "deletion".into(),
                Some("unknown")
            )
        );
        assert_eq!(cat(json!({"function_name": "sys_renameat2"})).2, "rename");
        assert_eq!(
            cat(json!({"function_name": "tcp_connect"})),
            (
                vec!["network"],
                vec!["start", "connection"],
                "connection_attempted".into(),
                Some("unknown")
            )
        );
        assert_eq!(
            cat(json!({"function_name": "inet_csk_accept", "return": {"sock_arg": {}}})).2,
            "connection_accepted"
        );
        assert_eq!(
            cat(json!({"function_name": "__x64_sys_setuid"})).2,
            "uid_change"
        );
        assert_eq!(
            cat(json!({"function_name": "some_kernel_function"})).2,
            "some_kernel_function"
        );
    }

    #[test]
    fn dns_messages_are_lookups_and_enforcement_is_intrusion_detection() {
        let q = json!({"function_name": "udp_sendmsg", "args": [{"sock_arg": {}}, {"dns_arg": {"response": false}}]});
        assert_eq!(cat(q).2, "lookup_requested");
        let a = json!({"function_name": "udp_recvmsg", "args": [{"dns_arg": {"response": true}}]});
        assert_eq!(cat(a).1, vec!["protocol"]);
        let denied = json!({"function_name": "security_file_open", "args": [{"file_arg": {}}], "outcome": "denied"});
        assert_eq!(
            cat(denied),
            (
                vec!["file", "intrusion_detection"],
                vec!["access", "denied"],
                "open".into(),
                Some("failure")
            )
        );
        let ret = json!({"function_name": "do_unlinkat", "return": {"int_arg": -2}});
        assert_eq!(cat(ret).3, Some("failure"));
    }
}
