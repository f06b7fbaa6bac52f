//! One readable line per event, in the style of `tetra getevents -o compact`:
//! `<emoji> <verb padded to 7> <pod or node> <binary> <details>`.
//!
//! Lines go to an operator's terminal, and most of what they show a process chose (its binary,
//! arguments, working directory, the files and DNS names it used): control characters and
//! bidirectional overrides are shown as escapes, so a process cannot clear the screen, move
//! the cursor or turn text around in the operator's terminal.

use std::borrow::Cow;

use crate::{Event, EventBody, Process};

/// Renders `event` as its compact line (no trailing newline), every control and bidi override
/// character escaped (see [`escape`]).
pub fn render(event: &Event) -> String {
    // Escaping the finished line covers every field, including those added later.
    let line = render_raw(event);
    match escape(&line) {
        Cow::Borrowed(_) => line,
        Cow::Owned(escaped) => escaped,
    }
}

/// Whether a character is shown as an escape: C0 controls, DEL, C1 controls (U+0080 to
/// U+009F, which terminals also obey), and the bidirectional embeddings, overrides and
/// isolates (U+202A to U+202E, U+2066 to U+2069).
pub fn needs_escape(c: char) -> bool {
    matches!(
        c,
        '\0'..='\u{1f}' | '\u{7f}'..='\u{9f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
    )
}

/// `s` with every character [`needs_escape`] names written as `\xNN` (ASCII) or `\u{NNNN}`;
/// borrowed when there is none (the common case costs no allocation).
pub fn escape(s: &str) -> Cow<'_, str> {
    if !s.chars().any(needs_escape) {
        return Cow::Borrowed(s);
    }
    use std::fmt::Write;
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        // Writing to a String cannot fail.
        let _ = match c {
            c if !needs_escape(c) => write!(out, "{c}"),
            c if c.is_ascii() => write!(out, "\\x{:02x}", c as u32),
            c => write!(out, "\\u{{{:x}}}", c as u32),
        };
    }
    Cow::Owned(out)
}

fn render_raw(event: &Event) -> String {
    match &event.body {
        EventBody::ProcessExec(e) => line("🚀", "process", &event.node_name, &e.process, ""),
        EventBody::ProcessKprobe(e) | EventBody::ProcessLsm(e) => {
            let dns = e.args.iter().any(|a| matches!(a, crate::Arg::DnsArg(_)));
            let (emoji, verb) = match e.function_name.as_str() {
                _ if dns => ("🔎", "dns"),
                f if f.contains("file_open") => ("📬", "open"),
                f if f.contains("listen") => ("📬", "listen"),
                f if f.contains("accept") => ("📥", "accept"),
                f if f.contains("connect") => ("🔌", "connect"),
                f if f.contains("close") => ("🧹", "close"),
                f if f.contains("sendmsg") => ("📤", "sendmsg"),
                f if f.contains("setuid") => ("🔑", "setuid"),
                f if f.contains("unlink") || f.contains("rmdir") => ("🧨", "delete"),
                f if f.contains("rename") => ("🚚", "rename"),
                f if f.contains("chmod") => ("🔧", "chmod"),
                f if f.contains("chown") => ("🔧", "chown"),
                f if f.contains("truncate") => ("✂️", "truncate"),
                f if f.contains("open") || f.contains("creat") => ("📝", "open"),
                _ if matches!(event.body, EventBody::ProcessLsm(_)) => ("🔒", "lsm"),
                _ => ("❓", "syscall"),
            };
            let subject = e.args.iter().chain(&e.return_arg).map(|a| match a {
                crate::Arg::FileArg(f) | crate::Arg::PathArg(f) => f.path.clone(),
                crate::Arg::StringArg(s) | crate::Arg::BytesArg(s) => format!("{s:?}"),
                crate::Arg::SockaddrArg(s) => format!("{} {}:{}", s.family, s.addr, s.port),
                crate::Arg::DnsArg(d) if d.response => {
                    let mut out = format!("answer {} {} {}", d.qtype, d.query, d.rcode);
                    if !d.answers.is_empty() {
                        out.push(' ');
                        out.push_str(&d.answers.join(","));
                    }
                    out
                }
                crate::Arg::DnsArg(d) => format!("query {} {}", d.qtype, d.query),
                crate::Arg::IntArg(i) => i.to_string(),
                crate::Arg::SizeArg(u) => u.to_string(),
                crate::Arg::SockArg(s) => {
                    let proto = s.protocol.trim_start_matches("IPPROTO_").to_lowercase();
                    let mut out = if verb == "listen" {
                        format!("{proto} {}:{}", s.saddr, s.sport)
                    } else {
                        // What a socket received came from its peer.
                        let arrow = if e.function_name.contains("recv") {
                            "<-"
                        } else {
                            "->"
                        };
                        format!(
                            "{proto} {}:{} {arrow} {}:{}",
                            s.saddr, s.sport, s.daddr, s.dport
                        )
                    };
                    if let (Some(tx), Some(rx)) = (s.bytes_sent, s.bytes_received) {
                        out.push_str(&format!(" sent {tx} received {rx}"));
                    }
                    out
                }
            });
            // Like Tetragon's open lines: the file, not the process's arguments.
            let tail: Vec<String> = subject.chain([e.outcome.clone()]).collect();
            format!(
                "{emoji} {verb:<7} {} {} {}",
                event.node_name,
                e.process.binary,
                tail.join(" ")
            )
        }
        EventBody::ProcessAlert(a) => format!(
            "🚨 alert   {} {} [{}] {} ({})",
            event.node_name, a.process.binary, a.level, a.title, a.rule_id
        ),
        EventBody::ProcessExit(e) => {
            let how = if e.signal.is_empty() {
                e.status.to_string()
            } else {
                e.signal.clone()
            };
            line("💥", "exit", &event.node_name, &e.process, &how)
        }
    }
}

fn line(emoji: &str, verb: &str, node: &str, p: &Process, tail: &str) -> String {
    let mut s = format!("{emoji} {verb:<7} {node} {}", p.binary);
    for part in [p.arguments.as_str(), tail] {
        if !part.is_empty() {
            s.push(' ');
            s.push_str(part);
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ProcessExec, ProcessExit};

    fn proc(binary: &str, args: &str) -> Process {
        Process {
            binary: binary.into(),
            arguments: args.into(),
            ..Default::default()
        }
    }

    fn open_event(binary: &str, args: &str, path: &str) -> Event {
        Event {
            body: EventBody::ProcessKprobe(crate::ProcessPolicy {
                process: std::sync::Arc::new(proc(binary, args)),
                parent: None,
                function_name: "security_file_open".into(),
                args: vec![
                    crate::Arg::FileArg(crate::FileArg { path: path.into() }),
                    crate::Arg::StringArg(format!("s{path}")),
                ],
                return_arg: None,
                action: "KPROBE_ACTION_POST".into(),
                policy_name: "p".into(),
                message: String::new(),
                tags: vec![],
                outcome: "posted".into(),
                ancestors: vec![],
            }),
            node_name: "node".into(),
            time: String::new(),
        }
    }

    #[test]
    fn terminal_escape_sequences_from_a_process_are_shown_escaped() {
        // ESC [ 2 J clears an operator's screen; U+202E turns the rest of the line around.
        let exec = Event {
            body: EventBody::ProcessExec(ProcessExec {
                process: proc("/tmp/\u{1b}[2Jx", "\u{202e}gpj.exe \u{9b}31m \u{7f}").into(),
                parent: None,
                ancestors: vec![],
            }),
            node_name: "node".into(),
            time: String::new(),
        };
        let line = render(&exec);
        assert_eq!(
            line,
            "🚀 process node /tmp/\\x1b[2Jx \\u{202e}gpj.exe \\u{9b}31m \\x7f"
        );
        let open = render(&open_event("/bin/cat", "", "/tmp/\u{1b}[2J\u{2066}\n"));
        assert!(!open.chars().any(needs_escape), "{open:?}");
        assert!(open.contains("/tmp/\\x1b[2J\\u{2066}\\x0a"), "{open}");
    }

    #[test]
    fn every_control_and_bidi_character_is_escaped_and_nothing_else() {
        let escaped: Vec<char> = (0..=0x10ffffu32)
            .filter_map(char::from_u32)
            .filter(|c| needs_escape(*c))
            .collect();
        let mut expected: Vec<char> = (0u32..0x20)
            .chain([0x7f])
            .chain(0x80..0xa0)
            .chain(0x202a..=0x202e)
            .chain(0x2066..=0x2069)
            .filter_map(char::from_u32)
            .collect();
        expected.sort();
        assert_eq!(escaped, expected);
        assert_eq!(escape("plain /usr/bin/é 日本"), "plain /usr/bin/é 日本");
    }

    #[test]
    fn exec_and_exit_lines() {
        let exec = Event {
            body: EventBody::ProcessExec(ProcessExec {
                process: proc("/usr/bin/curl", "https://ebpf.io").into(),
                parent: None,
                ancestors: vec![],
            }),
            node_name: "node-a".into(),
            time: String::new(),
        };
        assert_eq!(
            render(&exec),
            "🚀 process node-a /usr/bin/curl https://ebpf.io"
        );
        let exit = |signal: &str, status| Event {
            body: EventBody::ProcessExit(ProcessExit {
                process: proc("/usr/bin/curl", "https://ebpf.io").into(),
                parent: None,
                signal: signal.into(),
                status,
                time: String::new(),
                ancestors: vec![],
            }),
            node_name: "node-a".into(),
            time: String::new(),
        };
        assert_eq!(
            render(&exit("SIGKILL", 0)),
            "💥 exit    node-a /usr/bin/curl https://ebpf.io SIGKILL"
        );
        assert_eq!(
            render(&exit("", 3)),
            "💥 exit    node-a /usr/bin/curl https://ebpf.io 3"
        );
    }

    #[test]
    fn socket_lines_show_the_tuple_and_at_close_the_bytes() {
        use crate::{Arg, ProcessPolicy, SockArg};
        let sock = |state: &str, bytes: Option<(u64, u64)>| SockArg {
            family: "AF_INET".into(),
            sock_type: "SOCK_STREAM".into(),
            protocol: "IPPROTO_TCP".into(),
            saddr: "10.0.0.1".into(),
            daddr: "10.0.0.2".into(),
            sport: 43210,
            dport: 443,
            state: state.into(),
            netns: 4026531840,
            bytes_sent: bytes.map(|b| b.0),
            bytes_received: bytes.map(|b| b.1),
        };
        let event = |function: &str, args: Vec<Arg>, ret: Option<Arg>| Event {
            body: EventBody::ProcessKprobe(ProcessPolicy {
                process: std::sync::Arc::new(proc("/usr/bin/curl", "")),
                parent: None,
                function_name: function.into(),
                args,
                return_arg: ret,
                action: "KPROBE_ACTION_POST".into(),
                policy_name: "p".into(),
                message: String::new(),
                tags: vec![],
                outcome: "posted".into(),
                ancestors: vec![],
            }),
            node_name: "node".into(),
            time: "t".into(),
        };
        let connect = event(
            "tcp_connect",
            vec![Arg::SockArg(sock("TCP_SYN_SENT", None))],
            None,
        );
        assert_eq!(
            render(&connect),
            "🔌 connect node /usr/bin/curl tcp 10.0.0.1:43210 -> 10.0.0.2:443 posted"
        );
        let close = event(
            "tcp_close",
            vec![Arg::SockArg(sock("TCP_ESTABLISHED", Some((1000, 300))))],
            None,
        );
        assert_eq!(
            render(&close),
            "🧹 close   node /usr/bin/curl tcp 10.0.0.1:43210 -> 10.0.0.2:443 sent 1000 received 300 posted"
        );
        let listen = event(
            "inet_csk_listen_start",
            vec![Arg::SockArg(sock("TCP_CLOSE", None))],
            None,
        );
        assert_eq!(
            render(&listen),
            "📬 listen  node /usr/bin/curl tcp 10.0.0.1:43210 posted"
        );
        let accept = event(
            "inet_csk_accept",
            vec![],
            Some(Arg::SockArg(sock("TCP_ESTABLISHED", None))),
        );
        assert_eq!(
            render(&accept),
            "📥 accept  node /usr/bin/curl tcp 10.0.0.1:43210 -> 10.0.0.2:443 posted"
        );

        // DNS: the question, and for an answer its code and what it answered.
        let dns = |response: bool, rcode: &str, answers: &[&str]| {
            Arg::DnsArg(crate::dns::DnsArg {
                id: 7,
                response,
                query: "unknown-galaxy.svc.cluster.local".into(),
                qtype: "A".into(),
                rcode: rcode.into(),
                answers: answers.iter().map(|a| a.to_string()).collect(),
                ..Default::default()
            })
        };
        let mut udp = sock("", None);
        udp.protocol = "IPPROTO_UDP".into();
        let q = event(
            "udp_sendmsg",
            vec![Arg::SockArg(udp.clone()), dns(false, "", &[])],
            None,
        );
        assert_eq!(
            render(&q),
            "🔎 dns     node /usr/bin/curl udp 10.0.0.1:43210 -> 10.0.0.2:443 query A unknown-galaxy.svc.cluster.local posted"
        );
        let nx = event(
            "udp_recvmsg",
            vec![Arg::SockArg(udp.clone()), dns(true, "NXDOMAIN", &[])],
            None,
        );
        assert_eq!(
            render(&nx),
            "🔎 dns     node /usr/bin/curl udp 10.0.0.1:43210 <- 10.0.0.2:443 answer A unknown-galaxy.svc.cluster.local NXDOMAIN posted"
        );
        let ok = event(
            "udp_recvmsg",
            vec![
                Arg::SockArg(udp),
                dns(true, "NOERROR", &["10.1.2.3", "10.1.2.4"]),
            ],
            None,
        );
        assert!(render(&ok).ends_with("NOERROR 10.1.2.3,10.1.2.4 posted"));
    }
}
