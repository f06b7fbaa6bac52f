//! Events and processes written as JSON by hand, without serde, for the events an exec storm
//! is made of: each exec's new process (the text [`crate::encoded`] keeps for it) and the
//! envelopes of `process_exec` and `process_exit`. Through serde a new process cost about 7,000
//! instructions for 400 bytes, and an envelope around two kept processes about 2,700: most of
//! it serde_json's byte-at-a-time string escaping (its keys included), the flattened event
//! body's map and the serializer's state. Here each string is checked for a byte that needs
//! escaping sixteen at a time (none in almost every path, id and time) and copied whole, and
//! keys are constants. Every other kind of event goes through serde.
//!
//! The text is the same, byte for byte, as serde_json's: the tests compare both on processes
//! and events with every member set and with strings of every byte that needs escaping, and the
//! fuzz target on arbitrary events. Structs are taken apart without `..`, so a member added to
//! one does not compile here until it is written (or skipped, as serde skips it).

use std::{cell::RefCell, ops::Range, sync::Arc};

use crate::{Cgroup, Event, EventBody, Process, ProcessExec, ProcessExit};

/// A member's key with the separator before it and the colon after, as one constant:
/// `key!("pid")` is `,"pid":`.
macro_rules! key {
    ($key:literal) => {
        concat!(",\"", $key, "\":")
    };
}

thread_local! {
    /// A thread's buffer: each process is written there and then copied once, at its size.
    static SCRATCH: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(SCRATCH_BYTES));
}
/// Most processes fit; a larger one grows it, and one grown past [`SCRATCH_KEPT`] is let go.
const SCRATCH_BYTES: usize = 2 << 10;
const SCRATCH_KEPT: usize = 64 << 10;

/// Appends `event`'s JSON to `out`: the same text as `serde_json::to_writer(out, event)`.
pub fn write_event(event: &Event, out: &mut Vec<u8>) -> serde_json::Result<()> {
    let Event {
        body,
        node_name,
        node_labels,
        time,
    } = event;
    match body {
        EventBody::ProcessExec(ProcessExec {
            process,
            parent,
            ancestors,
        }) => {
            out.extend_from_slice(b"{\"process_exec\":{\"process\":");
            crate::encoded::write_process(process, out);
            if let Some(parent) = parent {
                out.extend_from_slice(b",\"parent\":");
                crate::encoded::write_process(parent, out);
            }
            write_ancestors(ancestors, out);
        }
        EventBody::ProcessExit(ProcessExit {
            process,
            parent,
            signal,
            status,
            time,
            ancestors,
        }) => {
            out.extend_from_slice(b"{\"process_exit\":{\"process\":");
            crate::encoded::write_process(process, out);
            let mut members = Members::more(out);
            if let Some(parent) = parent {
                members.key(key!("parent"));
                crate::encoded::write_process(parent, members.out);
            }
            if !signal.is_empty() {
                members.string(key!("signal"), signal);
            }
            if *status != 0 {
                members.number(key!("status"), u64::from(*status));
            }
            if !time.is_empty() {
                members.string(key!("time"), time);
            }
            write_ancestors(ancestors, out);
        }
        _ => return serde_json::to_writer(out, event),
    }
    out.push(b'}');
    let mut members = Members::more(out);
    if !node_name.is_empty() {
        members.string(key!("node_name"), node_name);
    }
    if !node_labels.is_empty() {
        members.key(key!("node_labels"));
        serde_json::to_writer(&mut *members.out, &**node_labels)?;
    }
    if !time.is_empty() {
        members.string(key!("time"), time);
    }
    out.push(b'}');
    Ok(())
}

fn write_ancestors(ancestors: &[Arc<Process>], out: &mut Vec<u8>) {
    if ancestors.is_empty() {
        return;
    }
    out.extend_from_slice(b",\"ancestors\":[");
    for (i, a) in ancestors.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        crate::encoded::write_process(a, out);
    }
    out.push(b']');
}

/// `p`'s JSON, as [`write_process`] writes it, in memory of its size, with where its `refcnt`
/// member is in it.
pub(crate) fn encode(
    p: &Process,
    objects: impl FnOnce(&Process, &mut Vec<u8>),
) -> (Box<str>, Option<Range<usize>>) {
    SCRATCH.with(|s| {
        let Ok(mut out) = s.try_borrow_mut() else {
            let mut out = Vec::with_capacity(SCRATCH_BYTES);
            let refcnt = write_process(p, &mut out, objects);
            return (boxed(&out), refcnt);
        };
        out.clear();
        let refcnt = write_process(p, &mut out, objects);
        let text = boxed(&out);
        if out.capacity() > SCRATCH_KEPT {
            *out = Vec::with_capacity(SCRATCH_BYTES);
        }
        (text, refcnt)
    })
}

/// `out`, written by [`write_process`], as text in memory of its size. Everything written is
/// UTF-8 (`&str` contents, ASCII, serde_json's output): checked rather than assumed, the
/// ASCII of nearly every process eight bytes at a time ([`crate::text::utf8`]).
fn boxed(out: &[u8]) -> Box<str> {
    crate::text::lossy(out).into()
}

/// Appends `p` as serde_json writes it (`serde_json::to_writer(out, p)`); `objects` appends
/// its `cap` and `ns` members (`,"cap":{..}`, each only when it is written), or their JSON
/// kept from an earlier process. Returns where in `out` its `refcnt` member is, with the comma
/// before it (`,"refcnt":1`; the member is never the first), when it has one.
pub(crate) fn write_process(
    p: &Process,
    out: &mut Vec<u8>,
    objects: impl FnOnce(&Process, &mut Vec<u8>),
) -> Option<Range<usize>> {
    // Every member, named: one added to `Process` stops this from compiling until it is
    // written here in its place (serde's order is the declaration's).
    let Process {
        exec_id,
        pid,
        tid,
        uid,
        auid,
        cwd,
        binary,
        arguments,
        argv0: _,
        flags,
        start_time,
        parent_exec_id,
        refcnt,
        cap,
        ns,
        process_credentials,
        cgroup,
        docker,
        pod,
        nspid: _,
    } = p;
    let mut members = Members::object(out);
    if !exec_id.is_empty() {
        members.string(key!("exec_id"), &exec_id.0);
    }
    members.number(key!("pid"), u64::from(*pid));
    members.number(key!("tid"), u64::from(*tid));
    members.number(key!("uid"), u64::from(*uid));
    members.number(key!("auid"), u64::from(*auid));
    for (key, value) in [
        (key!("cwd"), cwd),
        (key!("binary"), binary),
        (key!("arguments"), arguments),
        (key!("flags"), flags),
        (key!("start_time"), start_time),
    ] {
        if !value.is_empty() {
            members.string(key, value);
        }
    }
    if !parent_exec_id.is_empty() {
        members.string(key!("parent_exec_id"), &parent_exec_id.0);
    }
    let refcnt = (*refcnt != 0).then(|| {
        let at = members.out.len();
        members.number(key!("refcnt"), u64::from(*refcnt));
        at..members.out.len()
    });
    if !cap.unwritten() || !ns.unwritten() {
        // Each written as `,"cap":...`, as every member is.
        objects(p, members.out);
    }
    if !process_credentials.unwritten() {
        members.key(key!("process_credentials"));
        // A struct of numbers: serde_json cannot fail on it, and its text is serde's own.
        let _ = serde_json::to_writer(&mut *members.out, process_credentials);
    }
    if let Some(Cgroup { id, path }) = cgroup {
        members.key(key!("cgroup"));
        let mut inner = Members::object(members.out);
        inner.number(key!("id"), *id);
        inner.string(key!("path"), path);
        inner.close();
    }
    if let Some(docker) = docker {
        members.string(key!("docker"), docker);
    }
    if let Some(pod) = pod {
        members.key(key!("pod"));
        // Strings and maps of strings: serde_json cannot fail on them.
        let _ = serde_json::to_writer(&mut *members.out, pod);
    }
    members.close();
    refcnt
}

/// The members of one object being written. Every member is written after a `,`, its key
/// and separators one constant ([`key!`]); an object's first `,` becomes its `{` when it is
/// closed. Which member is first depends on which are empty, and this way no member asks.
struct Members<'a> {
    out: &'a mut Vec<u8>,
    /// Where the object began, for an object this writes whole.
    open: Option<usize>,
}

impl<'a> Members<'a> {
    /// An object begun at the end of `out`, closed by [`Members::close`].
    fn object(out: &'a mut Vec<u8>) -> Self {
        let open = Some(out.len());
        Members { out, open }
    }

    /// More members of an object already open, with a member written.
    fn more(out: &'a mut Vec<u8>) -> Self {
        Members { out, open: None }
    }

    // Inlined, as the two below: a constant key is then copied by a few moves, not by a call
    // to `memcpy` (two calls for each string member).
    #[inline(always)]
    fn key(&mut self, key: &'static str) {
        self.out.extend_from_slice(key.as_bytes());
    }

    #[inline(always)]
    fn number(&mut self, key: &'static str, n: u64) {
        self.key(key);
        self.out
            .extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
    }

    #[inline(always)]
    fn string(&mut self, key: &'static str, value: &str) {
        // Room for the key and the value as it is (nearly every value: ids, paths, times).
        self.out.reserve(key.len() + value.len() + 2);
        self.key(key);
        write_str(self.out, value);
    }

    /// Ends an object begun by [`Members::object`]: its first member's `,` becomes its `{`
    /// (an object without members is `{}`).
    fn close(self) {
        if let Some(at) = self.open {
            debug_assert!(
                self.out.get(at).is_none_or(|b| *b == b','),
                "every member is written after a comma"
            );
            match self.out.get_mut(at) {
                Some(first) => *first = b'{',
                None => self.out.push(b'{'),
            }
        }
        self.out.push(b'}');
    }
}

/// `s` as a JSON string, escaped exactly as serde_json escapes: `"` and `\`, the control
/// characters below 0x20 (`\b`, `\t`, `\n`, `\f`, `\r` by name, the others as `\u00xx` in
/// lower-case hex), nothing else (DEL and non-ASCII text as they are).
pub(crate) fn write_str(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    if !needs_escape(bytes) {
        out.extend_from_slice(bytes);
    } else {
        let mut start = 0;
        for (i, &b) in bytes.iter().enumerate() {
            let named: &[u8] = match b {
                b'"' => b"\\\"",
                b'\\' => b"\\\\",
                0x08 => b"\\b",
                b'\t' => b"\\t",
                b'\n' => b"\\n",
                0x0c => b"\\f",
                b'\r' => b"\\r",
                0..=0x1f => b"",
                _ => continue,
            };
            out.extend_from_slice(&bytes[start..i]);
            start = i + 1;
            if named.is_empty() {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0xf)]);
            } else {
                out.extend_from_slice(named);
            }
        }
        out.extend_from_slice(&bytes[start..]);
    }
    out.push(b'"');
}

/// Whether any byte of `bytes` is `"`, `\` or below 0x20. Sixteen bytes at a time, each block
/// checked whole without an early exit so that the compiler makes it a few vector
/// instructions; a string of sixteen bytes or more ends with its last sixteen, read again where
/// they overlap the blocks already checked. Shorter strings are checked eight bytes at a time
/// as one word (a word has a byte below `n` when `(w - n * ONES) & !w & HIGHS` is not zero, for
/// `n` up to 0x80, and a byte equal to `c` when `w ^ c * ONES` has a byte below 1).
fn needs_escape(bytes: &[u8]) -> bool {
    let block = |chunk: &[u8]| {
        chunk.iter().fold(false, |any, &b| {
            any | (b < 0x20) | (b == b'"') | (b == b'\\')
        })
    };
    if bytes.len() >= 16 {
        let mut blocks = bytes.chunks_exact(16);
        if blocks.any(block) {
            return true;
        }
        return !blocks.remainder().is_empty() && block(&bytes[bytes.len() - 16..]);
    }
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let escaped = |word: [u8; 8]| {
        let w = u64::from_le_bytes(word);
        let below = |w: u64, n: u8| w.wrapping_sub(ONES * u64::from(n)) & !w & HIGHS;
        let quote = below(w ^ (ONES * u64::from(b'"')), 1);
        let backslash = below(w ^ (ONES * u64::from(b'\\')), 1);
        below(w, 0x20) | quote | backslash != 0
    };
    let word = |chunk: &[u8]| {
        // Short of a word, the rest is spaces, which need no escape.
        let mut word = [b' '; 8];
        word[..chunk.len()].copy_from_slice(chunk);
        word
    };
    match bytes.len() {
        0 => false,
        1..=8 => escaped(word(bytes)),
        // Two words, the second overlapping the first.
        n => escaped(word(&bytes[..8])) || escaped(word(&bytes[n - 8..])),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        caps::CapSet, Capabilities, Container, Credentials, Detail, ExecId, Namespace, Namespaces,
        Pod,
    };
    use std::sync::Arc;

    fn by_serde(p: &Process) -> String {
        serde_json::to_string(&p.clone()).unwrap()
    }

    /// The objects written as serde writes them, without the module's caches.
    fn plain(p: &Process, out: &mut Vec<u8>) {
        if !p.cap.unwritten() {
            out.extend_from_slice(b",\"cap\":");
            out.extend_from_slice(serde_json::to_string(&p.cap).unwrap().as_bytes());
        }
        if !p.ns.unwritten() {
            out.extend_from_slice(b",\"ns\":");
            out.extend_from_slice(serde_json::to_string(&p.ns).unwrap().as_bytes());
        }
    }

    fn full() -> Process {
        Process {
            exec_id: ExecId("aWQ6MTox".into()),
            pid: 7,
            tid: 8,
            uid: 1000,
            auid: u32::MAX,
            cwd: "/home/a b".into(),
            binary: "/usr/bin/env".into(),
            arguments: "-i \"x y\" \\z".into(),
            argv0: "env".into(),
            flags: "execve clone".into(),
            start_time: "2026-12-06T21:44:11.148816880Z".into(),
            parent_exec_id: ExecId("cGFyZW50".into()),
            refcnt: 1,
            cap: Capabilities {
                permitted: CapSet(0x1ff),
                effective: CapSet(3),
                inheritable: CapSet(0),
                detail: Detail::Written,
            },
            ns: Namespaces {
                mnt: Namespace {
                    inum: 4026531841,
                    is_host: true,
                },
                detail: Detail::Written,
                ..Default::default()
            },
            process_credentials: Credentials {
                uid: 1,
                gid: 2,
                euid: 3,
                egid: 4,
                suid: 5,
                sgid: 6,
                fsuid: 7,
                fsgid: 8,
                detail: Detail::Written,
            },
            cgroup: Some(Cgroup {
                id: u64::MAX,
                path: "/kubepods/pod\u{1}/x".into(),
            }),
            docker: Some("0123456789abcdef0123456789abcde".into()),
            pod: Some(Box::new(Pod {
                namespace: "team-a".into(),
                name: "web-0".into(),
                container: Some(Container {
                    id: "containerd://abc".into(),
                    name: "app".into(),
                    ..Default::default()
                }),
                pod_labels: [("app".to_string(), "web\"1".to_string())].into(),
                ..Default::default()
            })),
            nspid: 1,
        }
    }

    #[test]
    fn a_process_is_written_exactly_as_serde_writes_it() {
        let p = full();
        assert_eq!(encode(&p, plain).0.as_ref(), by_serde(&p));
        // Every optional member left out, each on its own and all at once.
        let mut bare = Process::default();
        assert_eq!(encode(&bare, plain).0.as_ref(), by_serde(&bare));
        bare.refcnt = 2;
        assert_eq!(encode(&bare, plain).0.as_ref(), by_serde(&bare));
        let variants: Vec<fn(&mut Process)> = vec![
            |p| p.exec_id = ExecId::default(),
            |p| p.cwd.clear(),
            |p| p.binary.clear(),
            |p| p.arguments.clear(),
            |p| p.flags.clear(),
            |p| p.start_time.clear(),
            |p| p.parent_exec_id = ExecId::default(),
            |p| p.refcnt = 0,
            |p| p.cap.detail = Detail::Kept,
            |p| p.ns.detail = Detail::Unknown,
            |p| {
                p.cap.detail = Detail::Kept;
                p.ns.detail = Detail::Kept
            },
            |p| p.process_credentials.detail = Detail::Kept,
            |p| p.cgroup = None,
            |p| p.docker = None,
            |p| p.pod = None,
        ];
        for change in variants {
            let mut p = full();
            change(&mut p);
            assert_eq!(encode(&p, plain).0.as_ref(), by_serde(&p));
        }
    }

    fn event(body: EventBody) -> Event {
        Event {
            body,
            node_name: "node\t1".into(),
            node_labels: Arc::new([("zone".to_string(), "a\"b".to_string())].into()),
            time: "2026-12-06T21:44:11.148816880Z".into(),
        }
    }

    #[test]
    fn exec_and_exit_events_are_written_exactly_as_serde_writes_them() {
        let p = Arc::new(full());
        let parent = Arc::new(Process { pid: 1, ..full() });
        let grand = Arc::new(Process::default());
        let execs = [
            ProcessExec {
                process: p.clone(),
                parent: Some(parent.clone()),
                ancestors: vec![grand.clone(), parent.clone()],
            },
            ProcessExec {
                process: p.clone(),
                parent: None,
                ancestors: vec![],
            },
        ];
        let exits = [
            ProcessExit {
                process: p.clone(),
                parent: Some(parent.clone()),
                signal: "SIGKILL".into(),
                status: 3,
                time: "t\u{0}".into(),
                ancestors: vec![grand.clone()],
            },
            ProcessExit {
                process: p.clone(),
                parent: None,
                signal: String::new(),
                status: 0,
                time: String::new(),
                ancestors: vec![],
            },
        ];
        let bodies = execs
            .into_iter()
            .map(EventBody::ProcessExec)
            .chain(exits.into_iter().map(EventBody::ProcessExit))
            .chain([EventBody::RateLimitInfo(Default::default())]);
        for body in bodies {
            for bare in [false, true] {
                let mut e = event(body.clone());
                if bare {
                    e.node_name = "".into();
                    e.node_labels = Default::default();
                    e.time.clear();
                }
                let mut out = Vec::new();
                write_event(&e, &mut out).unwrap();
                let written = String::from_utf8(out).unwrap();
                assert_eq!(written, serde_json::to_string(&e).unwrap());
            }
        }
    }

    #[test]
    fn a_byte_to_escape_is_found_wherever_it_is_among_any_others() {
        let naive = |v: &[u8]| v.iter().any(|&b| b < 0x20 || b == b'"' || b == b'\\');
        for fill in [b'a', 0xff, 0x80, 0x20, 0x21, 0x5d, 0x00] {
            for len in 0..50 {
                for at in 0..len {
                    for b in 0..=255u8 {
                        let mut v = vec![fill; len];
                        v[at] = b;
                        assert_eq!(needs_escape(&v), naive(&v), "{v:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn strings_are_escaped_as_serde_json_escapes_them() {
        let mut every: String = (0u8..=0x7f).map(char::from).collect();
        every.push_str("é€😀\u{7ff}\u{ffff}");
        for s in [
            String::new(),
            every.clone(),
            every.repeat(3),
            "a".repeat(15) + "\"",
            "a".repeat(16) + "\\",
            "a".repeat(31) + "\n",
            "plain text without anything to escape, longer than sixteen".into(),
        ] {
            let mut out = Vec::new();
            write_str(&mut out, &s);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                serde_json::to_string(&s).unwrap()
            );
        }
        for b in 0u8..=0x7f {
            let s = format!("{}x{}", char::from(b), "y".repeat(usize::from(b) % 20));
            let mut out = Vec::new();
            write_str(&mut out, &s);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                serde_json::to_string(&s).unwrap(),
                "byte {b:#x}"
            );
        }
    }
}
