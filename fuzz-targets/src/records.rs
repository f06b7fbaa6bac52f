//! `ring_record`: bytes as the ring buffer hands them to the agent, through the record decoder;
//! `spool_lines`: a spool segment's bytes, line by line, through the record line reader.

use vigil_bpf_kprobes::abi::Record as RingRecord;
use vigil_exporters::record::Record;

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
