//! Decoding one ring-buffer record into the `#[repr(C)]` mirrors.
//!
//! The bytes come from the kernel, but the decoder trusts none of them: the header's size must
//! be the record's real size, every string length and the argument count must fit the record
//! and add up to exactly its size. A record that lies is an error the agent counts, never a
//! panic or an out-of-bounds read. [`Record::parse`] is a pure function of its bytes (the
//! fuzzer drives it directly).

use super::{
    EventHeader, ExecEvent, ExitEvent, FlowEvent, ForkEvent, Hook, HookEvent, Policy, PolicyEvent,
    EVENT_EXEC, EVENT_EXIT, EVENT_FLOW, EVENT_FORK, EVENT_HOOK, EVENT_POLICY, HOOK_ARGS,
};

/// An exec record: the fixed part and its strings, borrowed from the ring buffer.
#[derive(Debug)]
pub struct Exec<'a> {
    /// The fixed part.
    pub event: ExecEvent,
    /// The binary's path as the kernel resolved it.
    pub binary: &'a [u8],
    /// argv, NUL-separated, argv\[0\] included.
    pub args: &'a [u8],
    /// Working directory at exec.
    pub cwd: &'a [u8],
    /// Path of the process's cgroup below the hierarchy root.
    pub cgroup: &'a [u8],
}

/// One decoded ring-buffer record.
// A hook record carries its event by value (its arguments' sockets make it the largest): records
// are decoded one at a time and consumed at once, so boxing would cost an allocation per event
// for no memory saved.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Record<'a> {
    /// A successful execve.
    Exec(Exec<'a>),
    /// A new process.
    Fork(ForkEvent),
    /// The end of a process.
    Exit(ExitEvent),
    /// A policy rule matched.
    Policy(Policy<'a>),
    /// A generic hook fired.
    Hook(Hook<'a>),
    /// A flow's encryption verdict, new or changed.
    Flow(FlowEvent),
}

/// Why a record could not be decoded.
#[derive(Debug, PartialEq, Eq)]
pub enum RecordError {
    /// Shorter than its header or than its kind's fixed part.
    Short {
        /// The record's kind.
        kind: u32,
        /// Bytes received.
        len: usize,
    },
    /// A kind this agent does not know (an object newer than the agent).
    UnknownKind(u32),
    /// The header's size is not the number of bytes the ring buffer delivered.
    SizeMismatch {
        /// The record's kind.
        kind: u32,
        /// The size the header claims.
        header: u32,
        /// Bytes received.
        len: usize,
    },
    /// Bytes after a record that has no variable part.
    Long {
        /// The record's kind.
        kind: u32,
        /// Bytes received.
        len: usize,
        /// Bytes of its kind's struct.
        expected: usize,
    },
    /// String lengths that do not add up to the bytes after the fixed part (past its end, or
    /// leaving bytes no string owns), or a string for an argument the record does not have.
    BadLengths {
        /// The record's kind.
        kind: u32,
    },
    /// More arguments than a record holds.
    BadCount {
        /// The record's kind.
        kind: u32,
        /// The count it claims.
        count: u32,
    },
}

impl std::fmt::Display for RecordError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RecordError::Short { kind, len } => {
                write!(f, "record of kind {kind} is only {len} bytes")
            }
            RecordError::UnknownKind(k) => write!(f, "unknown record kind {k}"),
            RecordError::SizeMismatch { kind, header, len } => write!(
                f,
                "record of kind {kind} says it is {header} bytes but is {len}"
            ),
            RecordError::Long {
                kind,
                len,
                expected,
            } => write!(
                f,
                "record of kind {kind} is {len} bytes; its kind has {expected}"
            ),
            RecordError::BadLengths { kind } => write!(
                f,
                "record of kind {kind}: string lengths do not add up to its size"
            ),
            RecordError::BadCount { kind, count } => write!(
                f,
                "record of kind {kind} claims {count} arguments; it holds at most {HOOK_ARGS}"
            ),
        }
    }
}

impl std::error::Error for RecordError {}

/// Reads a plain-old-data struct from the front of `buf`.
fn read_pod<T: Copy + Default>(buf: &[u8], kind: u32) -> Result<T, RecordError> {
    if buf.len() < size_of::<T>() {
        return Err(RecordError::Short {
            kind,
            len: buf.len(),
        });
    }
    let mut v = T::default();
    // SAFETY: T is a #[repr(C)] struct of integers, valid for any bit pattern, and `buf` holds
    // at least size_of::<T>() bytes; the copy makes no alignment demands.
    unsafe {
        std::ptr::copy_nonoverlapping(
            buf.as_ptr(),
            (&mut v as *mut T).cast::<u8>(),
            size_of::<T>(),
        )
    };
    Ok(v)
}

/// Cuts `rest` into strings of `lens` bytes, which must use every byte of it.
fn split_exact<'a, const N: usize>(
    mut rest: &'a [u8],
    lens: [u16; N],
    kind: u32,
) -> Result<[&'a [u8]; N], RecordError> {
    let mut out: [&'a [u8]; N] = [&[]; N];
    for (s, n) in out.iter_mut().zip(lens) {
        let (head, tail) = rest
            .split_at_checked(n as usize)
            .ok_or(RecordError::BadLengths { kind })?;
        *s = head;
        rest = tail;
    }
    if !rest.is_empty() {
        return Err(RecordError::BadLengths { kind });
    }
    Ok(out)
}

impl<'a> Record<'a> {
    /// Decodes one record as read from the ring buffer.
    pub fn parse(buf: &'a [u8]) -> Result<Self, RecordError> {
        let hdr: EventHeader = read_pod(buf, 0)?;
        let kind = hdr.kind;
        if !matches!(
            kind,
            EVENT_EXEC | EVENT_FORK | EVENT_EXIT | EVENT_HOOK | EVENT_POLICY | EVENT_FLOW
        ) {
            return Err(RecordError::UnknownKind(kind));
        }
        // The kernel writes the size it hands to bpf_ringbuf_output: any other is a lie.
        if hdr.size as usize != buf.len() {
            return Err(RecordError::SizeMismatch {
                kind,
                header: hdr.size,
                len: buf.len(),
            });
        }
        // Fixed-size records carry nothing after their struct.
        let fixed = |size: usize| -> Result<(), RecordError> {
            if buf.len() > size {
                return Err(RecordError::Long {
                    kind,
                    len: buf.len(),
                    expected: size,
                });
            }
            Ok(())
        };
        match kind {
            EVENT_EXEC => {
                let event: ExecEvent = read_pod(buf, kind)?;
                let rest = &buf[size_of::<ExecEvent>()..];
                let lens = [
                    event.binary_len,
                    event.args_len,
                    event.cwd_len,
                    event.cgroup_len,
                ];
                let [binary, args, cwd, cgroup] = split_exact(rest, lens, kind)?;
                Ok(Record::Exec(Exec {
                    binary,
                    args,
                    cwd,
                    cgroup,
                    event,
                }))
            }
            EVENT_FORK => {
                let event = read_pod(buf, kind)?;
                fixed(size_of::<ForkEvent>())?;
                Ok(Record::Fork(event))
            }
            EVENT_EXIT => {
                let event = read_pod(buf, kind)?;
                fixed(size_of::<ExitEvent>())?;
                Ok(Record::Exit(event))
            }
            EVENT_FLOW => {
                let event = read_pod(buf, kind)?;
                fixed(size_of::<FlowEvent>())?;
                Ok(Record::Flow(event))
            }
            EVENT_HOOK => {
                let event: HookEvent = read_pod(buf, kind)?;
                if event.nargs as usize > HOOK_ARGS {
                    return Err(RecordError::BadCount {
                        kind,
                        count: event.nargs,
                    });
                }
                // Only the arguments the record has may carry bytes.
                if event.str_len[event.nargs as usize..]
                    .iter()
                    .any(|&n| n != 0)
                {
                    return Err(RecordError::BadLengths { kind });
                }
                let rest = &buf[size_of::<HookEvent>()..];
                let strings = split_exact(rest, event.str_len, kind)?;
                Ok(Record::Hook(Hook { event, strings }))
            }
            _ => {
                let event: PolicyEvent = read_pod(buf, kind)?;
                let rest = &buf[size_of::<PolicyEvent>()..];
                let [path] = split_exact(rest, [event.path_len], kind)?;
                Ok(Record::Policy(Policy { event, path }))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bytes of a plain-old-data struct.
    fn bytes_of<T: Copy>(v: &T) -> Vec<u8> {
        // SAFETY: the mirrors are #[repr(C)] plain data; reading their bytes is always valid.
        unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), size_of::<T>()) }.to_vec()
    }

    fn header(kind: u32, size: usize) -> EventHeader {
        EventHeader {
            kind,
            size: size as u32,
            ktime: 7,
        }
    }

    fn exec_record(binary: &[u8], args: &[u8], cwd: &[u8], cgroup: &[u8]) -> Vec<u8> {
        let strings = [binary, args, cwd, cgroup].concat();
        let ev = ExecEvent {
            hdr: header(EVENT_EXEC, size_of::<ExecEvent>() + strings.len()),
            binary_len: binary.len() as u16,
            args_len: args.len() as u16,
            cwd_len: cwd.len() as u16,
            cgroup_len: cgroup.len() as u16,
            ..Default::default()
        };
        [bytes_of(&ev), strings].concat()
    }

    fn hook_record(strings: &[&[u8]], nargs: u32) -> Vec<u8> {
        let mut ev = HookEvent {
            nargs,
            ..Default::default()
        };
        for (l, s) in ev.str_len.iter_mut().zip(strings) {
            *l = s.len() as u16;
        }
        let tail = strings.concat();
        ev.hdr = header(EVENT_HOOK, size_of::<HookEvent>() + tail.len());
        [bytes_of(&ev), tail].concat()
    }

    fn policy_record(path: &[u8]) -> Vec<u8> {
        let ev = PolicyEvent {
            hdr: header(EVENT_POLICY, size_of::<PolicyEvent>() + path.len()),
            path_len: path.len() as u16,
            ..Default::default()
        };
        [bytes_of(&ev), path.to_vec()].concat()
    }

    /// Rewrites the header's size field.
    fn with_size(mut buf: Vec<u8>, size: u32) -> Vec<u8> {
        buf[4..8].copy_from_slice(&size.to_ne_bytes());
        buf
    }

    #[test]
    fn exec_record_strings_are_split_by_their_lengths() {
        let buf = exec_record(b"/bin/echo", b"echo\0hi\0", b"/tmp", b"/");
        let Record::Exec(e) = Record::parse(&buf).unwrap() else {
            panic!("not an exec")
        };
        assert_eq!(e.binary, b"/bin/echo");
        assert_eq!(e.args, b"echo\0hi\0");
        assert_eq!(e.cwd, b"/tmp");
        assert_eq!(e.cgroup, b"/");
        assert_eq!(e.event.hdr.ktime, 7);
    }

    #[test]
    fn records_of_every_kind_decode() {
        let fork = ForkEvent {
            hdr: header(EVENT_FORK, size_of::<ForkEvent>()),
            ..Default::default()
        };
        assert!(matches!(
            Record::parse(&bytes_of(&fork)),
            Ok(Record::Fork(_))
        ));
        let exit = ExitEvent {
            hdr: header(EVENT_EXIT, size_of::<ExitEvent>()),
            ..Default::default()
        };
        assert!(matches!(
            Record::parse(&bytes_of(&exit)),
            Ok(Record::Exit(_))
        ));
        let hook = hook_record(&[b"", b"/etc/shadow"], 2);
        let Ok(Record::Hook(h)) = Record::parse(&hook) else {
            panic!("not a hook")
        };
        assert_eq!(h.strings[1], b"/etc/shadow");
        let policy = policy_record(b"/etc/passwd");
        let Ok(Record::Policy(p)) = Record::parse(&policy) else {
            panic!("not a policy record")
        };
        assert_eq!(p.path, b"/etc/passwd");
    }

    #[test]
    fn a_record_shorter_than_its_header_or_fixed_part_is_short() {
        let buf = exec_record(b"/bin/echo", b"", b"/", b"/");
        assert!(matches!(
            Record::parse(&buf[..10]),
            Err(RecordError::Short { .. })
        ));
        let hook = hook_record(&[], 0);
        let cut = with_size(hook[..100].to_vec(), 100);
        assert!(matches!(
            Record::parse(&cut),
            Err(RecordError::Short {
                kind: EVENT_HOOK,
                ..
            })
        ));
    }

    #[test]
    fn an_unknown_kind_is_refused() {
        let mut unknown = exec_record(b"/bin/echo", b"", b"/", b"/");
        unknown[0] = 99;
        assert_eq!(
            Record::parse(&unknown).unwrap_err(),
            RecordError::UnknownKind(99)
        );
    }

    #[test]
    fn a_header_size_other_than_the_record_size_is_refused() {
        for buf in [
            exec_record(b"/bin/echo", b"", b"/", b"/"),
            hook_record(&[b"x"], 1),
            policy_record(b"/etc/passwd"),
        ] {
            let len = buf.len() as u32;
            for size in [0, len - 1, len + 1, u32::MAX] {
                assert!(
                    matches!(
                        Record::parse(&with_size(buf.clone(), size)),
                        Err(RecordError::SizeMismatch { .. })
                    ),
                    "header size {size} for a record of {len} bytes"
                );
            }
        }
        let fork = ForkEvent {
            hdr: header(EVENT_FORK, size_of::<ForkEvent>()),
            ..Default::default()
        };
        let mut long = bytes_of(&fork);
        long.extend_from_slice(&[0; 8]);
        let n = long.len() as u32;
        assert_eq!(
            Record::parse(&with_size(long, n)).unwrap_err(),
            RecordError::Long {
                kind: EVENT_FORK,
                len: n as usize,
                expected: size_of::<ForkEvent>()
            }
        );
    }

    #[test]
    fn exec_string_lengths_past_the_end_are_refused() {
        let mut buf = exec_record(b"/bin/echo", b"", b"/", b"/");
        buf.truncate(buf.len() - 3);
        let n = buf.len() as u32;
        assert_eq!(
            Record::parse(&with_size(buf, n)).unwrap_err(),
            RecordError::BadLengths { kind: EVENT_EXEC }
        );
    }

    #[test]
    fn exec_string_lengths_short_of_the_end_are_refused() {
        // Bytes the lengths do not account for: the record and its lengths disagree.
        let mut buf = exec_record(b"/bin/echo", b"", b"/", b"/");
        buf.extend_from_slice(b"junk");
        let n = buf.len() as u32;
        assert_eq!(
            Record::parse(&with_size(buf, n)).unwrap_err(),
            RecordError::BadLengths { kind: EVENT_EXEC }
        );
    }

    #[test]
    fn a_hook_argument_count_past_the_arguments_a_record_holds_is_refused() {
        for nargs in [HOOK_ARGS as u32 + 1, 6, 255, u32::MAX] {
            assert_eq!(
                Record::parse(&hook_record(&[], nargs)).unwrap_err(),
                RecordError::BadCount {
                    kind: EVENT_HOOK,
                    count: nargs
                }
            );
        }
        assert!(Record::parse(&hook_record(&[], HOOK_ARGS as u32)).is_ok());
    }

    #[test]
    fn a_hook_string_for_an_argument_past_the_count_is_refused() {
        let buf = hook_record(&[b"a", b"b", b"c"], 2);
        assert_eq!(
            Record::parse(&buf).unwrap_err(),
            RecordError::BadLengths { kind: EVENT_HOOK }
        );
    }

    #[test]
    fn hook_string_lengths_that_do_not_add_up_to_the_record_are_refused() {
        let mut past = hook_record(&[b"abcdef"], 1);
        past.truncate(past.len() - 2);
        let n = past.len() as u32;
        assert_eq!(
            Record::parse(&with_size(past, n)).unwrap_err(),
            RecordError::BadLengths { kind: EVENT_HOOK }
        );
        let mut short = hook_record(&[b"abcdef"], 1);
        short.extend_from_slice(b"xx");
        let n = short.len() as u32;
        assert_eq!(
            Record::parse(&with_size(short, n)).unwrap_err(),
            RecordError::BadLengths { kind: EVENT_HOOK }
        );
    }

    #[test]
    fn policy_path_lengths_that_do_not_match_the_record_are_refused() {
        let mut past = policy_record(b"/etc/shadow");
        past.truncate(past.len() - 1);
        let n = past.len() as u32;
        assert_eq!(
            Record::parse(&with_size(past, n)).unwrap_err(),
            RecordError::BadLengths { kind: EVENT_POLICY }
        );
        let mut short = policy_record(b"/etc/shadow");
        short.push(b'x');
        let n = short.len() as u32;
        assert_eq!(
            Record::parse(&with_size(short, n)).unwrap_err(),
            RecordError::BadLengths { kind: EVENT_POLICY }
        );
    }

    #[test]
    fn errors_say_what_lied() {
        assert_eq!(
            RecordError::BadCount {
                kind: EVENT_HOOK,
                count: 9
            }
            .to_string(),
            "record of kind 5 claims 9 arguments; it holds at most 5"
        );
        assert_eq!(
            RecordError::SizeMismatch {
                kind: 1,
                header: 10,
                len: 12
            }
            .to_string(),
            "record of kind 1 says it is 10 bytes but is 12"
        );
    }
}
