//! Sigma rules written for logs rather than for a logsource category, evaluated on records
//! vigil derives from its own events.
//!
//! `service: auditd` rules test auditd's records, and vigil writes the records auditd would
//! have logged for what it saw, one Sigma event per record:
//!
//! | auditd record | from | fields |
//! |---|---|---|
//! | `SYSCALL` | an exec (`SYSCALL: execve`); a policy event on a system call (`SYSCALL` named by the hook) | type, SYSCALL, success, exe, comm, pid, ppid, uid, euid, auid, UID, EUID, AUID (names) |
//! | `EXECVE` | an exec | type, argc, a0 (argv\[0\]), a1, a2, ... (the arguments) |
//! | `PATH` | an exec (the binary); a policy event's file and path arguments | type, item, name, nametype (`CREATE`, `DELETE` or `NORMAL`, from the hooked function) |
//!
//! Fields auditd fills that vigil does not: a SYSCALL record's `a0`..`a3` (vigil's events carry
//! the arguments a policy names, not the registers), the numeric `syscall` (the name is in
//! `SYSCALL`, as auditd's enriched format writes it) and `key`, the name of an audit rule,
//! which vigil does not have; a rule on them loads with a warning per field.
//!
//! Rules with a product and no service or category (SigmaHQ's shell-history and syslog keyword
//! rules) are evaluated on the command line of each exec as it was typed: argv\[0\] and the
//! arguments, one line (`CommandLine`). A process reached through a link goes by two names
//! (`nc` and `nc.openbsd`): its records and lines are written for each ([`names`]). Rules for another service's log (`sshd`,
//! `cron`, `vsftpd`, ...) describe lines vigil does not read and are refused by name.

use vigil_events::{Arg, Event, EventBody, Process, ProcessPolicy};

use super::fields::{command_line, field, plain_arguments, quoted, Field, Users, ViewSink};

/// The logsource key of `service: auditd` rules.
pub const AUDITD: &str = "auditd";
/// The logsource key of rules with a product only: the command line as typed.
pub const LINUX: &str = "linux";

/// auditd's argument fields, `a0` to `a31`; an exec's further arguments are left out.
const ARG_FIELDS: [Field; 32] = [
    field!("a0"),
    field!("a1"),
    field!("a2"),
    field!("a3"),
    field!("a4"),
    field!("a5"),
    field!("a6"),
    field!("a7"),
    field!("a8"),
    field!("a9"),
    field!("a10"),
    field!("a11"),
    field!("a12"),
    field!("a13"),
    field!("a14"),
    field!("a15"),
    field!("a16"),
    field!("a17"),
    field!("a18"),
    field!("a19"),
    field!("a20"),
    field!("a21"),
    field!("a22"),
    field!("a23"),
    field!("a24"),
    field!("a25"),
    field!("a26"),
    field!("a27"),
    field!("a28"),
    field!("a29"),
    field!("a30"),
    field!("a31"),
];

/// The fields vigil fills in one or another of its auditd records.
pub const AUDITD_FIELDS: &[&str] = &[
    "type", "SYSCALL", "success", "exe", "comm", "pid", "ppid", "uid", "euid", "auid", "UID",
    "EUID", "AUID", "argc", "item", "name", "nametype", "a0", "a1", "a2", "a3", "a4", "a5", "a6",
    "a7", "a8", "a9", "a10", "a11", "a12", "a13", "a14", "a15", "a16", "a17", "a18", "a19", "a20",
    "a21", "a22", "a23", "a24", "a25", "a26", "a27", "a28", "a29", "a30", "a31",
];

/// The services whose logs vigil writes records for.
pub const SERVICES: [&str; 1] = [AUDITD];

/// The file name of `binary`, as a shell passes it as argv[0].
fn file_name(binary: &str) -> &str {
    memchr::memrchr(b'/', binary.as_bytes()).map_or(binary, |slash| &binary[slash + 1..])
}

/// The kernel's `comm` of a process running `binary`: its file name, cut to 15 bytes.
fn comm(binary: &str) -> &str {
    let name = file_name(binary);
    let mut end = name.len().min(15);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    &name[..end]
}

/// The system call a policy event's hook is on, if it is on one: a syscall tracepoint's
/// (`sys_enter_mknodat`) or a system call function's (`__x64_sys_mknodat`).
fn syscall_name(x: &ProcessPolicy) -> Option<&str> {
    if x.subsys == "syscalls" {
        return x
            .event
            .strip_prefix("sys_enter_")
            .or_else(|| x.event.strip_prefix("sys_exit_"));
    }
    let f = x.function_name.as_str();
    [
        "__x64_sys_",
        "__arm64_sys_",
        "__ia32_sys_",
        "__se_sys_",
        "__do_sys_",
        "sys_",
    ]
    .iter()
    .find_map(|p| f.strip_prefix(p))
    .filter(|n| !n.is_empty())
}

/// auditd's `nametype` of a file a hook on `function` saw: `DELETE` where its name has
/// `unlink` or `rmdir` in it, `CREATE` where it has `create`, `mknod`, `mkdir` or `link`,
/// without case. One pass over the name: it is read for every file event.
fn nametype(function: &str) -> &'static str {
    let f = function.as_bytes();
    let at =
        |i: usize, w: &[u8]| f.len() - i >= w.len() && f[i..i + w.len()].eq_ignore_ascii_case(w);
    let mut create = false;
    for (i, first) in f.iter().enumerate() {
        // The words' first letters pick the words to try.
        match first.to_ascii_lowercase() {
            b'u' if at(i, b"unlink") => return "DELETE",
            b'r' if at(i, b"rmdir") => return "DELETE",
            b'c' => create |= at(i, b"create"),
            b'm' => create |= at(i, b"mknod") || at(i, b"mkdir"),
            b'l' => create |= at(i, b"link"),
            _ => {}
        }
    }
    if create {
        "CREATE"
    } else {
        "NORMAL"
    }
}

/// The names process `p` goes by, each once: argv\[0\] as it was given (what auditd's `a0`
/// holds and a typed line shows), its file name, and the file name of the binary the kernel
/// resolved (a link's target: `nc.openbsd` for `nc`, `kmod` for `insmod`). Records are written
/// for each, so that neither a link nor a chosen argv\[0\] hides a command from a rule written
/// for the other name; usually they are one name.
fn names(p: &Process) -> Names<'_> {
    let mut names = Names {
        all: [""; 3],
        len: 0,
    };
    for n in [p.argv0.as_str(), file_name(&p.argv0), file_name(&p.binary)] {
        if !n.is_empty() && !names.contains(&n) {
            names.all[names.len] = n;
            names.len += 1;
        }
    }
    names
}

/// The names a process goes by ([`names`]): at most three, kept on the stack.
struct Names<'a> {
    all: [&'a str; 3],
    len: usize,
}

impl<'a> std::ops::Deref for Names<'a> {
    type Target = [&'a str];
    fn deref(&self) -> &[&'a str] {
        &self.all[..self.len]
    }
}

/// A SYSCALL record of process `p` (with parent pid `ppid`, known by `comm`) making system
/// call `name`.
fn syscall<'a>(
    out: &mut impl ViewSink<'a>,
    name: &'a str,
    p: &'a Process,
    comm: &'a str,
    ppid: u32,
    users: &'a Users,
) {
    let mut b = out.builder();
    b.text(field!("type"), "SYSCALL");
    b.text(field!("SYSCALL"), name);
    b.text(field!("success"), "yes");
    b.text(field!("exe"), p.binary.as_str());
    b.text(field!("comm"), comm);
    b.int(field!("pid"), p.pid as i64);
    b.int(field!("ppid"), ppid as i64);
    // The real uid only where it was read: an event replayed from JSON written without
    // `process_credentials` does not know it, and 0 would make everyone root.
    let uid = p
        .process_credentials
        .detail
        .is_known()
        .then_some(p.process_credentials.uid);
    if let Some(uid) = uid {
        b.int(field!("uid"), uid as i64);
    }
    b.int(field!("euid"), p.uid as i64);
    b.int(field!("auid"), p.auid as i64);
    // auditd's enriched format names the ids too.
    if let Some(uid) = uid {
        b.text(field!("UID"), users.name(uid));
    }
    b.text(field!("EUID"), users.name(p.uid));
    b.text(field!("AUID"), users.name(p.auid));
    out.view(b.build(AUDITD));
}

/// A PATH record of file `name`, item `item` of its event.
fn path<'a>(out: &mut impl ViewSink<'a>, item: i64, name: &'a str, nametype: &'static str) {
    let mut b = out.builder();
    b.text(field!("type"), "PATH");
    b.int(field!("item"), item);
    b.text(field!("name"), name);
    b.text(field!("nametype"), nametype);
    out.view(b.build(AUDITD));
}

/// Whether `e` has a SYSCALL record ([`auditd_records`]), whose `uid` and `UID` are known only
/// where its process's credentials are.
pub fn has_syscall_record(e: &Event) -> bool {
    match &e.body {
        EventBody::ProcessExec(_) => true,
        EventBody::ProcessKprobe(x)
        | EventBody::ProcessLsm(x)
        | EventBody::ProcessUprobe(x)
        | EventBody::ProcessTracepoint(x)
        | EventBody::ProcessLoader(x) => syscall_name(x).is_some(),
        EventBody::ProcessExit(_)
        | EventBody::ProcessAlert(_)
        | EventBody::FlowEncryption(_)
        | EventBody::RateLimitInfo(_) => false,
    }
}

/// The auditd records of `e`, appended to `out`.
pub(super) fn auditd_records<'a>(e: &'a Event, users: &'a Users, out: &mut impl ViewSink<'a>) {
    match &e.body {
        EventBody::ProcessExec(x) => {
            let p = &*x.process;
            let ppid = x.parent.as_ref().map_or(0, |p| p.pid);
            let names = names(p);
            // One SYSCALL record per distinct comm.
            let mut comms = [""; 3];
            for (i, c) in names.iter().copied().map(comm).enumerate() {
                if !comms[..i].contains(&c) {
                    syscall(out, "execve", p, c, ppid, users);
                }
                comms[i] = c;
            }
            // Only arguments with spaces, quotes or backslashes were quoted: the rest are
            // borrowed from the event as they are, split once for every record.
            let quoted = quoted(&p.arguments);
            let split = if quoted {
                vigil_events::split_arguments(&p.arguments)
            } else {
                Vec::new()
            };
            let mut plain = [""; ARG_FIELDS.len() - 1];
            let argc = if quoted {
                split.len()
            } else {
                let mut n = 0;
                for a in plain_arguments(&p.arguments) {
                    if let Some(slot) = plain.get_mut(n) {
                        *slot = a;
                    }
                    n += 1;
                }
                n
            };
            for &a0 in names.iter() {
                let mut b = out.builder();
                b.text(field!("type"), "EXECVE");
                b.int(field!("argc"), argc as i64 + 1);
                b.text(ARG_FIELDS[0], a0);
                if quoted {
                    for (field, a) in ARG_FIELDS[1..].iter().zip(&split) {
                        b.text(*field, a.clone());
                    }
                } else {
                    for (field, a) in ARG_FIELDS[1..].iter().zip(&plain[..argc.min(plain.len())]) {
                        b.text(*field, *a);
                    }
                }
                out.view(b.build(AUDITD));
            }
            path(out, 0, &p.binary, "NORMAL");
        }
        EventBody::ProcessKprobe(x)
        | EventBody::ProcessLsm(x)
        | EventBody::ProcessUprobe(x)
        | EventBody::ProcessTracepoint(x)
        | EventBody::ProcessLoader(x) => {
            if let Some(name) = syscall_name(x) {
                let ppid = x.parent.as_ref().map_or(0, |p| p.pid);
                syscall(out, name, &x.process, comm(&x.process.binary), ppid, users);
            }
            let kind = nametype(&x.function_name);
            let files = x.args.iter().filter_map(|a| match a {
                Arg::FileArg(f) | Arg::PathArg(f) => Some(f.path.as_str()),
                _ => None,
            });
            for (item, f) in files.enumerate() {
                path(out, item as i64, f, kind);
            }
        }
        EventBody::ProcessExit(_)
        | EventBody::ProcessAlert(_)
        | EventBody::FlowEncryption(_)
        | EventBody::RateLimitInfo(_) => {}
    }
}

/// The command line of an exec as it was typed, for rules with a product only: one for each
/// name the process goes by ([`names`]), appended to `out`.
pub(super) fn typed_lines<'a>(e: &'a Event, out: &mut impl ViewSink<'a>) {
    let EventBody::ProcessExec(x) = &e.body else {
        return;
    };
    for &name in names(&x.process).iter() {
        let mut b = out.builder();
        b.text(field!("CommandLine"), command_line(name, &x.process));
        out.view(b.build(LINUX));
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use vigil_events::FileArg;

    use super::*;
    use crate::sigma::{
        load_rule,
        testing::{engine, exec, exec_of, fired, policy_event, rule},
    };

    #[test]
    fn a_hooks_name_gives_its_files_nametype_deletion_first_and_without_case() {
        for (function, want) in [
            ("security_path_unlink", "DELETE"),
            ("do_rmdir", "DELETE"),
            ("SyS_UnLinkAt", "DELETE"),
            ("security_path_link_then_unlink", "DELETE"),
            ("security_inode_create", "CREATE"),
            ("security_path_mknod", "CREATE"),
            ("do_mkdirat", "CREATE"),
            ("security_path_symlink", "CREATE"),
            ("LINK", "CREATE"),
            ("security_file_open", "NORMAL"),
            ("lin", "NORMAL"),
            ("", "NORMAL"),
            (&format!("{}_unlink", "x".repeat(300)), "DELETE"),
        ] {
            assert_eq!(nametype(function), want, "{function}");
        }
    }

    #[test]
    fn an_exec_is_a_syscall_an_execve_and_a_path_record() {
        let e = exec("/usr/bin/chattr", "-i \"/tmp/a b\"");
        let users = Users::default();
        let mut records = Vec::new();
        auditd_records(&e, &users, &mut records);
        let text = |r: &super::super::SigmaFields, k: &str| {
            r.values
                .iter()
                .find(|(n, _)| n.name == k)
                .map(|(_, v)| match v {
                    super::super::fields::FieldValue::Text(t) => t.to_string(),
                    super::super::fields::FieldValue::Int(i) => i.to_string(),
                })
        };
        let types: Vec<_> = records.iter().map(|r| text(r, "type").unwrap()).collect();
        assert_eq!(types, ["SYSCALL", "EXECVE", "PATH"]);
        assert_eq!(text(&records[0], "SYSCALL").as_deref(), Some("execve"));
        assert_eq!(text(&records[0], "comm").as_deref(), Some("chattr"));
        assert_eq!(text(&records[0], "euid").as_deref(), Some("33"));
        assert_eq!(text(&records[1], "argc").as_deref(), Some("3"));
        assert_eq!(text(&records[1], "a0").as_deref(), Some("chattr"));
        assert_eq!(text(&records[1], "a2").as_deref(), Some("/tmp/a b"));
        assert_eq!(
            text(&records[2], "name").as_deref(),
            Some("/usr/bin/chattr")
        );
    }

    #[test]
    fn auditd_rules_match_the_record_they_name_and_only_it() {
        let e = engine(&[
            (
                "execve.yml",
                &rule(
                    "  service: auditd\n",
                    "  s:\n    type: EXECVE\n    a0: chattr\n    a1|contains: '-i'\n  condition: s\n",
                ),
            ),
            (
                "web.yml",
                &rule(
                    "  service: auditd\n",
                    "  s:\n    type: SYSCALL\n    SYSCALL: [execve, execveat]\n    euid: 33\n  condition: s\n",
                ),
            ),
            (
                // `a0` of a SYSCALL record is never the binary's name.
                "mixed.yml",
                &rule(
                    "  service: auditd\n",
                    "  s:\n    type: SYSCALL\n    a0: chattr\n  condition: s\n",
                ),
            ),
            (
                "mknod.yml",
                &rule(
                    "  service: auditd\n",
                    "  s:\n    type: PATH\n    nametype: CREATE\n    name|startswith: /etc/systemd/\n  condition: s\n",
                ),
            ),
        ]);
        let fired = |ev: &Event| fired(&e, ev);
        assert_eq!(
            fired(&exec("/usr/bin/chattr", "-i /x")),
            ["execve.yml", "web.yml"]
        );
        assert_eq!(fired(&exec("/usr/bin/chattr", "+i /x")), ["web.yml"]);
        assert_eq!(e.evaluate_naive(&exec("/usr/bin/chattr", "-i /x")), 2);
        let create = policy_event(
            "security_inode_create",
            Arg::FileArg(FileArg {
                path: "/etc/systemd/system/x.service".into(),
                ..Default::default()
            }),
        );
        assert_eq!(fired(&create), ["mknod.yml"]);
    }

    #[test]
    fn a_command_reached_through_a_link_is_seen_by_both_its_names() {
        let linked = |argv0: &str, binary: &str, arguments: &str| {
            exec_of(
                Process {
                    binary: binary.into(),
                    arguments: arguments.into(),
                    argv0: argv0.into(),
                    ..Default::default()
                },
                None,
            )
        };
        let e = engine(&[
            (
                "typed.yml",
                &rule("", "  keywords:\n  - 'nc -l -p *'\n  condition: keywords\n"),
            ),
            (
                "insmod.yml",
                &rule(
                    "  service: auditd\n",
                    "  s:\n    type: SYSCALL\n    comm: insmod\n    exe: /usr/bin/kmod\n  condition: s\n",
                ),
            ),
            (
                "a0.yml",
                &rule(
                    "  service: auditd\n",
                    "  s:\n    type: EXECVE\n    a0: nc.openbsd\n  condition: s\n",
                ),
            ),
        ]);
        let fired = |ev: &Event| fired(&e, ev);
        // Typed as `nc`, run as nc.openbsd: the typed rule sees `nc`, the a0 rule the target.
        assert_eq!(
            fired(&linked("nc", "/usr/bin/nc.openbsd", "-l -p 4444")),
            ["a0.yml", "typed.yml"]
        );
        // argv[0] chosen to hide (`exec -a`): the binary's own name is still seen.
        assert_eq!(
            fired(&linked("innocent", "/usr/bin/nc.openbsd", "-l -p 4444")),
            ["a0.yml"]
        );
        assert_eq!(
            fired(&linked("insmod", "/usr/bin/kmod", "x.ko")),
            ["insmod.yml"]
        );
        // Each rule once, whichever of the records matched.
        assert_eq!(
            e.evaluate_naive(&linked("nc", "/usr/bin/nc.openbsd", "-l -p 4444")),
            2
        );
    }

    #[test]
    fn a_policy_event_on_a_system_call_is_a_syscall_record() {
        let tp = ProcessPolicy {
            subsys: "syscalls".into(),
            event: "sys_enter_mknodat".into(),
            ..Default::default()
        };
        assert_eq!(syscall_name(&tp), Some("mknodat"));
        let kp = ProcessPolicy {
            function_name: "__x64_sys_sysinfo".into(),
            ..Default::default()
        };
        assert_eq!(syscall_name(&kp), Some("sysinfo"));
        let lsm = ProcessPolicy {
            function_name: "security_file_open".into(),
            ..Default::default()
        };
        assert_eq!(syscall_name(&lsm), None);
        assert_eq!(
            comm("/usr/lib/x/a-very-long-binary-name"),
            "a-very-long-bin"
        );
    }

    #[test]
    fn product_only_rules_see_the_command_line_as_typed_and_other_logs_are_refused() {
        let e = engine(&[(
            "shell.yml",
            &rule("", "  keywords:\n  - 'nc -l -p *'\n  condition: keywords\n"),
        )]);
        assert_eq!(e.evaluate(&exec("/usr/bin/nc", "-l -p 4444")).len(), 1);
        assert!(e.evaluate(&exec("/usr/bin/nc", "-z host 22")).is_empty());
        let err = load_rule(
            Path::new("sshd.yml"),
            &rule("  service: sshd\n", "  k:\n  - 'error'\n  condition: k\n"),
        )
        .err()
        .expect("refused");
        assert!(err.reason.contains("service `sshd`"), "{err}");
    }
}
