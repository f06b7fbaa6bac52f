//! `ring_record`: bytes as the ring buffer hands them to the agent, through the record decoder;
//! `spool_lines`: a spool segment's bytes, line by line, through the record line reader;
//! `spool_segment`: the same bytes as a segment on disk, read through the spool to the end.

use std::{io::Write, path::PathBuf, sync::OnceLock};

use vigil_bpf_kprobes::abi::Record as RingRecord;
use vigil_exporters::{record::Record, spool::Spool};
use vigil_safe_fs::TrustedDir;

fn decode(buf: &[u8]) {
    match RingRecord::parse(buf) {
        Ok(RingRecord::Hook(h)) => {
            for a in &h.event.args {
                let _ = (a.int(), a.sock());
            }
            let _ = format!("{h:?}");
        }
        Ok(r) => {
            let _ = format!("{r:?}");
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
}

/// See the module's documentation.
pub fn ring_record(data: &[u8]) {
    decode(data);
    // The header's size must equal the record's: random bytes almost never say so, so the same
    // bytes are decoded a second time with the size made true, which lets the fuzzer reach the
    // checks of every kind's lengths and counts.
    if data.len() >= 8 {
        let mut fixed = data.to_vec();
        fixed[4..8].copy_from_slice(&(data.len() as u32).to_le_bytes());
        decode(&fixed);
    }
}

/// See the module's documentation.
pub fn spool_lines(data: &[u8]) {
    for line in data.split(|b| *b == b'\n') {
        let Some(record) = Record::from_line(line) else {
            continue;
        };
        let again = record.to_line();
        assert_eq!(again.last(), Some(&b'\n'));
        assert_eq!(
            Record::from_line(&again[..again.len() - 1]).as_ref(),
            Some(&record),
            "a record read from a spool line does not survive being written again"
        );
    }
}

/// Where `spool_segment` keeps its spool: a private directory of this process, for the
/// process to remove when it is done.
pub fn spool_scratch_dir() -> PathBuf {
    std::env::temp_dir().join(format!("vigil-fuzz-spool-{}", std::process::id()))
}

fn spool_parent() -> &'static TrustedDir {
    static DIR: OnceLock<TrustedDir> = OnceLock::new();
    DIR.get_or_init(|| {
        TrustedDir::create(&spool_scratch_dir()).expect("a private directory for the fuzzed spool")
    })
}

/// See the module's documentation.
pub fn spool_segment(data: &[u8]) {
    // The bytes are the segment an earlier run left; the spool opens it and a sink's worker
    // reads it to the end. Every line comes out once, as a record or as a bad line, and the
    // reading ends: a torn or unparsable line never leaves the spool pending with nothing
    // readable (finding 8 of issue 13).
    let parent = spool_parent();
    let dir = parent.sub_dir("spool", true).expect("the spool directory");
    for name in dir.file_names().expect("the spool directory lists") {
        dir.remove(&name).expect("an old segment is removed");
    }
    let mut segment = dir
        .create_new("seg-0000000000000000.jsonl", 0o600)
        .expect("the segment is created");
    segment.write_all(data).expect("the segment is written");
    drop(segment);
    let spool = Spool::open(parent, u64::MAX).expect("the spool opens");
    // Lines, a last one without its newline included.
    let lines = data.split(|b| *b == b'\n').count() as u64 - u64::from(data.ends_with(b"\n"));
    let lines = if data.is_empty() { 0 } else { lines };
    assert_eq!(spool.pending(), lines, "lines counted at open");
    let (mut read, mut peeks) = (0, 0);
    while spool.pending() > 0 {
        peeks += 1;
        assert!(
            peeks <= lines + 1,
            "the spool is still pending after {peeks} reads of a segment of {lines} lines"
        );
        let p = spool.peek(3).expect("the segment reads");
        assert_eq!(p.records.len() + p.bad.len(), p.lines as usize);
        read += p.lines;
        spool.commit(&p).expect("the read is committed");
    }
    assert_eq!(read, lines, "every line comes out once");
}
