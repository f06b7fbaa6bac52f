//! One readable line per event, in the style of `tetra getevents -o compact`:
//! `<emoji> <verb padded to 7> <pod or node> <binary> <details>`.
//!
//! Lines go to an operator's terminal, and most of what they show a process chose (its binary,
//! arguments, working directory, the files and DNS names it used): control characters and
//! bidirectional overrides are shown as escapes, so a process cannot clear the screen, move
//! the cursor or turn text around in the operator's terminal.
//!
//! Exec, exit and alert lines are here; a policy's event reads by the operation its hook stands
//! for (`hooks`), with the kernel's numbers named (`names`).

use std::borrow::Cow;

use crate::{Event, EventBody};

mod hooks;
mod names;

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
    // Where it happened: `namespace/pod` in a pod, as Tetragon writes it, else the node.
    let pod = event
        .process()
        .pod
        .as_ref()
        .filter(|p| !p.namespace.is_empty() && !p.name.is_empty())
        .map(|p| format!("{}/{}", p.namespace, p.name));
    let node = pod.as_deref().unwrap_or(&event.node_name);
    match &event.body {
        EventBody::ProcessExec(e) => {
            let p = &e.process;
            line("🚀", "process", node, &p.binary, [&p.arguments])
        }
        EventBody::ProcessKprobe(e) => hooks::line(node, e, false),
        EventBody::ProcessLsm(e) => hooks::line(node, e, true),
        EventBody::ProcessUprobe(e) => hooks::uprobe_line(node, e),
        EventBody::ProcessTracepoint(e) => hooks::tracepoint_line(node, e),
        EventBody::ProcessLoader(e) => hooks::loader_line(node, e),
        EventBody::ProcessAlert(a) => {
            // Who did it, by pid and command line as an exec line shows it, so the process
            // can be found (and killed) without opening the JSON.
            let p = &a.process;
            let pid = format!("pid {}", p.pid);
            let level = format!("[{}]", a.level);
            // A rule without an id is known by its title: said once.
            let id = if a.rule_id == a.title {
                String::new()
            } else {
                format!("({})", a.rule_id)
            };
            let parts = [&p.arguments, &pid, &level, &a.title, &id];
            line("🚨", "alert", node, &p.binary, parts)
        }
        EventBody::FlowEncryption(f) => hooks::flow_line(node, f),
        EventBody::RateLimitInfo(r) => {
            let lost = format!("{} events lost", r.number_of_dropped_process_events);
            line("⚠️", "dropped", node, &lost, [""; 0])
        }
        EventBody::ProcessExit(e) => {
            let how = if e.signal.is_empty() {
                e.status.to_string()
            } else {
                e.signal.clone()
            };
            let p = &e.process;
            line("💥", "exit", node, &p.binary, [&p.arguments, &how])
        }
    }
}

/// `<emoji> <verb padded to 7> <node> <binary>`, then each part that is not empty.
fn line<S: AsRef<str>>(
    emoji: &str,
    verb: &str,
    node: &str,
    binary: &str,
    parts: impl IntoIterator<Item = S>,
) -> String {
    let mut s = format!("{emoji} {verb:<7} {node} {binary}");
    for part in parts {
        let part = part.as_ref();
        if !part.is_empty() {
            s.push(' ');
            s.push_str(part);
        }
    }
    s
}

#[cfg(test)]
mod tests;
