//! `events`: arbitrary events (built with `arbitrary` from the fuzzer's bytes) through the
//! compact line and the JSON encoding; `dns`: a datagram's bytes through the DNS decoder and
//! the encoders of the argument it becomes.

use std::sync::Arc;

use arbitrary::{Arbitrary, Unstructured};
use vigil_events::{
    compact, dns::DnsArg, Arg, Detail, Event, EventBody, Namespaces, Process, ProcessExec,
};
use vigil_exporters::record::Record;

/// Fields the JSON encoding leaves out on purpose, set to what decoding gives back: a time
/// namespace is written only when it has an inode number (kernels before 5.6 have none), so
/// `is_host` on a zero inode is not kept. The agent never builds one.
fn normalize(e: &mut Event) {
    fn ns(n: &mut Namespaces) {
        for t in [&mut n.time, &mut n.time_for_children] {
            if t.inum == 0 {
                t.is_host = false;
            }
        }
    }
    if let EventBody::ProcessAlert(x) = &mut e.body {
        normalize(&mut x.event);
    }
    for p in processes(e) {
        let p = Arc::make_mut(p);
        ns(&mut p.ns);
        // argv[0] is kept for detection, never written: JSON cannot bring it back.
        p.argv0.clear();
    }
}

/// The processes an event names (not those of an alert's event).
fn processes(e: &mut Event) -> Vec<&mut Arc<Process>> {
    let mut processes = Vec::new();
    match &mut e.body {
        EventBody::ProcessExec(x) => {
            processes.push(&mut x.process);
            processes.extend(&mut x.parent);
            processes.extend(&mut x.ancestors);
        }
        EventBody::ProcessExit(x) => {
            processes.push(&mut x.process);
            processes.extend(&mut x.parent);
            processes.extend(&mut x.ancestors);
        }
        EventBody::ProcessKprobe(x)
        | EventBody::ProcessLsm(x)
        | EventBody::ProcessUprobe(x)
        | EventBody::ProcessTracepoint(x)
        | EventBody::ProcessLoader(x) => {
            processes.push(&mut x.process);
            processes.extend(&mut x.parent);
            processes.extend(&mut x.ancestors);
        }
        EventBody::ProcessAlert(x) => {
            processes.push(&mut x.process);
            processes.extend(&mut x.parent);
        }
        EventBody::FlowEncryption(x) => {
            processes.extend(&mut x.process);
            processes.extend(&mut x.parent);
        }
        EventBody::RateLimitInfo(_) => {}
    }
    processes
}

/// The compact line has no character a terminal would obey (finding 11 of issue 13).
fn check_compact(e: &Event) {
    let line = compact::render(e);
    assert!(
        !line.chars().any(compact::needs_escape),
        "the compact line shows a control character as it is: {line:?}"
    );
}

/// See the module's documentation.
pub fn events(data: &[u8]) {
    let Ok(mut event) = Event::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    normalize(&mut event);
    check_compact(&event);
    // The processes are written from the per-thread cache of encoded processes
    // (events/src/encoded.rs) when something besides the event holds them, as the process
    // cache does: held here too, each must be written as its own encoding field by field.
    let held: Vec<Arc<Process>> = processes(&mut event.clone())
        .into_iter()
        .map(|p| p.clone())
        .collect();
    let json = serde_json::to_string(&event).expect("events always serialize");
    for p in &held {
        let direct = serde_json::to_string(&**p).expect("processes always serialize");
        assert!(
            json.contains(&direct),
            "a process is written otherwise than it encodes: {direct} in {json}"
        );
    }
    let again = serde_json::to_string(&event).expect("events always serialize");
    assert_eq!(
        again, json,
        "the same event encodes differently the second time"
    );
    // Arbitrary processes have every object written: here each is written or not by the
    // process's pid, and the hand-written text (events/src/json_writer.rs) must still be
    // serde's own encoding of the process.
    for (i, p) in held.iter().enumerate() {
        let mut varied = (**p).clone();
        let bits = varied.pid as usize ^ i;
        if bits & 1 != 0 {
            varied.cap.detail = Detail::Kept;
        }
        if bits & 2 != 0 {
            varied.ns.detail = Detail::Unknown;
        }
        if bits & 4 != 0 {
            varied.process_credentials.detail = Detail::Kept;
        }
        let varied = Arc::new(varied);
        let kept = varied.clone();
        let mut e = event.clone();
        e.body = EventBody::ProcessExec(ProcessExec {
            process: kept,
            parent: None,
            ancestors: vec![],
        });
        let record = Record::encode(&e);
        let direct = serde_json::to_string(&*varied).expect("processes always serialize");
        let written = String::from_utf8_lossy(&record.json);
        assert!(
            written.contains(&direct),
            "a process is written otherwise than serde encodes it: {direct} in {written}"
        );
    }
    // An exit's process, written from its running copy's JSON less its `refcnt`: as a new
    // `Arc` while an event still holds the running one, in place once nothing does.
    if let Some(p) = held.first() {
        let running = || {
            Arc::new(Process {
                refcnt: p.refcnt.max(1),
                ..(**p).clone()
            })
        };
        let exec_of = |p: &Arc<Process>| {
            let mut e = event.clone();
            e.body = EventBody::ProcessExec(ProcessExec {
                process: p.clone(),
                parent: None,
                ancestors: vec![],
            });
            serde_json::to_string(&e).expect("events always serialize")
        };
        let held_running = running();
        let alone = running();
        exec_of(&held_running);
        exec_of(&alone);
        let mut ended_anew = held_running.clone();
        vigil_events::end_process(&mut ended_anew);
        let mut ended_in_place = alone;
        vigil_events::end_process(&mut ended_in_place);
        assert!(held_running.refcnt != 0 && !Arc::ptr_eq(&held_running, &ended_anew));
        for ended in [ended_anew, ended_in_place] {
            assert_eq!(ended.refcnt, 0);
            let direct = serde_json::to_string(&*ended).expect("processes always serialize");
            let written = exec_of(&ended);
            assert!(
                written.contains(&direct),
                "an ended process is written otherwise than it encodes: {direct} in {written}"
            );
        }
        let direct = serde_json::to_string(&*held_running).expect("processes always serialize");
        assert!(exec_of(&held_running).contains(&direct));
    }
    let back: Event = serde_json::from_str(&json)
        .unwrap_or_else(|e| panic!("the JSON of an event does not decode ({e}): {json}"));
    assert_eq!(
        back, event,
        "the JSON of an event decodes to another event: {json}"
    );
    // The spool line of its record comes back as it went in. Exec ids are base64 in the
    // agent; one holding the line's separators cannot be kept in a line and is left out.
    let record = Record::encode(&event);
    // Records are written by hand for the commonest kinds (events/src/json_writer.rs): the
    // same text as serde's.
    assert_eq!(
        std::str::from_utf8(&record.json).ok(),
        Some(json.as_str()),
        "a record's JSON differs from the event's serde encoding"
    );
    if !record.exec_id.contains(['\t', '\n']) {
        let line = record.to_line();
        assert_eq!(
            Record::from_line(&line[..line.len() - 1]).as_ref(),
            Some(&record),
            "a record does not survive its spool line"
        );
    }
}

/// See the module's documentation.
pub fn dns(data: &[u8]) {
    for cut in [false, true] {
        let arg = DnsArg::decode(data, cut);
        let json = serde_json::to_string(&arg).expect("a DNS argument serializes");
        let back: DnsArg = serde_json::from_str(&json)
            .unwrap_or_else(|e| panic!("a DNS argument's JSON does not decode ({e}): {json}"));
        assert_eq!(back, arg);
        // Names in a DNS message are any bytes the sender chose: the compact line of the event
        // that carries them must escape them.
        let mut event = crate::samples::events()
            .iter()
            .find(|e| match &e.body {
                EventBody::ProcessKprobe(p) => p.args.iter().any(|a| matches!(a, Arg::DnsArg(_))),
                _ => false,
            })
            .expect("a sample DNS event")
            .clone();
        if let EventBody::ProcessKprobe(p) = &mut event.body {
            p.args[0] = Arg::DnsArg(arg);
        }
        check_compact(&event);
    }
}
