//! Processes encoded once. A process appears in every event about it and, as a parent, in every
//! event about its children; most of an event's JSON is those two objects. Each thread keeps
//! the JSON of the processes it serialized recently, keyed by the shared `Arc<Process>` they
//! came from, and writes it again verbatim the next time the same process is serialized. Every
//! process the agent caches appears at least twice, at its exec and at its exit, so it is kept
//! encoded from its first appearance; the exit's process differs from the running one only by
//! its `refcnt`, and [`end`] gives it the running one's JSON without that field rather than
//! have it encoded anew. A process that only the event being written holds (a copy made for
//! that event: another thread's `tid`, redacted arguments) will not be seen again, and is
//! written field by field without being kept.
//!
//! The key is the `Arc`'s address, and the cache holds a clone of the `Arc`: while an entry
//! lives its process can neither be freed (so the address cannot be reused by another process)
//! nor changed in place (`Arc::get_mut` and `Arc::make_mut` need the only reference, and the
//! cache holds a second one). A process whose details change is a new `Arc`, and a miss. The
//! one exception is [`end`], which releases the entry's reference for a moment (a placeholder
//! in its place), changes the process in place only if that left its caller the only holder,
//! and gives the entry back the same process with the matching text before anything else can
//! read it.
//!
//! A process encoded for the first time is serialized field by field, but two of its objects are
//! nearly always ones written before: its capability sets (a root process's 40 names twice,
//! over half of its JSON) and its namespaces (the host's, or its pod's). Each thread keeps the
//! JSON of the last few it wrote ([`Recent`]) and writes it again when the next process has the
//! same value: an exec storm's processes are each new, and each one's sets are not.
//!
//! Only serde_json can be handed JSON text to write as it is ([`Json`]); any other serializer is
//! given the value itself.

use std::{
    cell::RefCell,
    collections::HashMap,
    hash::{BuildHasherDefault, Hasher},
    sync::Arc,
};

use serde::{Serialize, Serializer};

use crate::{Capabilities, Namespaces, Process};

/// Processes kept per thread: more than a busy node's live processes, a few MiB.
const CAPACITY: usize = 4096;

struct Entry {
    /// Held, never read: while the entry lives, its key (this `Arc`'s address) is this
    /// process's and nobody can change it in place.
    _process: Arc<Process>,
    /// Its JSON.
    json: Json,
    last_use: u64,
}

/// Hashes an address: one multiplication (addresses are already unique, only their low bits
/// are alike), where the default SipHash cost as much as the lookup it served.
#[derive(Default)]
struct AddressHasher(u64);

impl Hasher for AddressHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_usize(&mut self, n: usize) {
        self.0 = (n as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

#[derive(Default)]
struct Cache {
    entries: HashMap<usize, Entry, BuildHasherDefault<AddressHasher>>,
    clock: u64,
}

impl Cache {
    /// The process's JSON, encoded at its first appearance; `None` (to be encoded but not
    /// kept) for a process nothing but the caller holds, which will not appear again.
    fn get_or_encode(&mut self, p: &Arc<Process>) -> Option<&Json> {
        // Room is made before the lookup, when the cache is full and the process not in it: a
        // full cache is halved once, and then has room for `CAPACITY / 2` more.
        let key = Arc::as_ptr(p) as usize;
        if self.entries.len() >= CAPACITY && !self.entries.contains_key(&key) {
            self.evict_older_half();
        }
        self.clock += 1;
        let last_use = self.clock;
        match self.entries.entry(key) {
            std::collections::hash_map::Entry::Occupied(entry) => {
                let entry = entry.into_mut();
                entry.last_use = last_use;
                Some(&entry.json)
            }
            std::collections::hash_map::Entry::Vacant(_) if Arc::strong_count(p) == 1 => None,
            std::collections::hash_map::Entry::Vacant(entry) => {
                let entry = entry.insert(Entry {
                    _process: p.clone(),
                    json: Json::process(p),
                    last_use,
                });
                Some(&entry.json)
            }
        }
    }

    /// Keeps `json` as `p`'s, making room first when the cache is full.
    fn insert(&mut self, p: &Arc<Process>, json: Json) {
        if self.entries.len() >= CAPACITY {
            self.evict_older_half();
        }
        self.clock += 1;
        self.entries.insert(
            Arc::as_ptr(p) as usize,
            Entry {
                _process: p.clone(),
                json,
                last_use: self.clock,
            },
        );
    }

    /// Drops the least recently used half: one selection per `CAPACITY / 2` insertions.
    fn evict_older_half(&mut self) {
        let mut uses: Vec<u64> = self.entries.values().map(|e| e.last_use).collect();
        let half = uses.len() / 2;
        let (_, &mut median, _) = uses.select_nth_unstable(half);
        self.entries.retain(|_, e| e.last_use > median);
    }
}

thread_local! {
    static CACHE: RefCell<Cache> = RefCell::new(Cache::default());
    static CAPABILITIES: RefCell<Recent<Capabilities>> = const { RefCell::new(Recent::new()) };
    static NAMESPACES: RefCell<Recent<Namespaces>> = const { RefCell::new(Recent::new()) };
}

/// Values kept encoded per thread, per type: a node's processes share a few of each.
const RECENT: usize = 8;

/// The last [`RECENT`] distinct values of a type written, with their JSON; the oldest makes
/// room. Found by comparison (a few words each), not hashed.
struct Recent<T> {
    entries: Vec<(T, Json)>,
    next: usize,
}

impl<T: Serialize + PartialEq + Clone> Recent<T> {
    const fn new() -> Recent<T> {
        Recent {
            entries: Vec::new(),
            next: 0,
        }
    }

    fn get_or_encode(&mut self, v: &T) -> Option<&Json> {
        let at = match self.entries.iter().position(|(k, _)| k == v) {
            Some(at) => at,
            None => {
                let json = Json::encode(v)?;
                if self.entries.len() < RECENT {
                    self.entries.push((v.clone(), json));
                    self.entries.len() - 1
                } else {
                    let at = self.next;
                    self.next = (self.next + 1) % RECENT;
                    self.entries[at] = (v.clone(), json);
                    at
                }
            }
        };
        Some(&self.entries[at].1)
    }
}

/// Serializes `v` through the thread's `recent` cache when `S` is serde_json's.
fn through_recent<T, S>(
    recent: &'static std::thread::LocalKey<RefCell<Recent<T>>>,
    v: &T,
    s: S,
) -> Result<S::Ok, S::Error>
where
    T: Serialize + PartialEq + Clone + 'static,
    S: Serializer,
{
    if !is_serde_json::<S>() {
        return v.serialize(s);
    }
    recent.with(|c| match c.try_borrow_mut() {
        Ok(mut recent) => match recent.get_or_encode(v) {
            Some(raw) => raw.serialize(s),
            None => v.serialize(s),
        },
        Err(_) => v.serialize(s),
    })
}

/// `serialize_with` for a process's capability sets.
pub(crate) fn capabilities<S: Serializer>(v: &Capabilities, s: S) -> Result<S::Ok, S::Error> {
    through_recent(&CAPABILITIES, v, s)
}

/// `serialize_with` for a process's namespaces.
pub(crate) fn namespaces<S: Serializer>(v: &Namespaces, s: S) -> Result<S::Ok, S::Error> {
    through_recent(&NAMESPACES, v, s)
}

/// Whether `S` is serde_json's serializer (to a writer or to a `Value`), which alone writes a
/// raw JSON token as JSON rather than as a map of one magic key, and whether this serde_json
/// still does so for [`RAW_TOKEN`] (checked once: a release that renamed it would otherwise
/// have every process written as `{"$serde_json::private::RawValue": "..."}`).
fn is_serde_json<S: Serializer>() -> bool {
    static WRITES_RAW: std::sync::LazyLock<bool> = std::sync::LazyLock::new(|| {
        let text = r#"{"a":[1]}"#;
        serde_json::to_string(&Json::plain(text.into())).is_ok_and(|written| written == text)
    });
    let name = std::any::type_name::<S>();
    (name.starts_with("&mut serde_json::ser::Serializer<")
        || name.starts_with("serde_json::value::ser::Serializer"))
        && *WRITES_RAW
}

/// `serialize_with` for an `Arc<Process>` field.
pub(crate) fn process<S: Serializer>(p: &Arc<Process>, s: S) -> Result<S::Ok, S::Error> {
    if !is_serde_json::<S>() {
        return p.serialize(s);
    }
    CACHE.with(|c| {
        // A process serialized from inside another's serialization (never, today) would find
        // the cache borrowed: it is then encoded directly.
        let Ok(mut cache) = c.try_borrow_mut() else {
            return p.serialize(s);
        };
        match cache.get_or_encode(p) {
            Some(raw) => raw.serialize(s),
            None => Json::process(p).serialize(s),
        }
    })
}

/// Marks `process` ended: its `refcnt` becomes 0, and this thread's JSON of it follows, less
/// that member, so that an exit does not encode its process anew.
///
/// In place when nothing else holds the `Arc` but this thread's cache (the usual case: the
/// events that carried the running process were written and dropped), which saves copying
/// every string of the process. Otherwise (an event holding the running process is still to
/// be written, or another thread keeps it encoded) the ended process is a new `Arc` and the
/// running one is left as it is: a held process never changes under its holder.
pub fn end(process: &mut Arc<Process>) {
    if process.refcnt == 0 {
        return;
    }
    let key = Arc::as_ptr(process) as usize;
    CACHE.with(|c| {
        let Ok(mut cache) = c.try_borrow_mut() else {
            end_as_new(process);
            return;
        };
        let Some(entry) = cache.entries.get_mut(&key) else {
            // Not written by this thread: nothing to keep in step.
            match Arc::get_mut(process) {
                Some(p) => p.refcnt = 0,
                None => end_as_new(process),
            }
            return;
        };
        // The caller's reference and the entry's, and no other: the entry's is released for a
        // moment (a placeholder in its place), the process changed, and the entry given back
        // the same process, its text cut to match. The key (the address) stays the same.
        if Arc::strong_count(process) == 2 && Arc::weak_count(process) == 0 {
            drop(std::mem::replace(&mut entry._process, PLACEHOLDER.clone()));
            if let Some(p) = Arc::get_mut(process) {
                p.refcnt = 0;
                entry.json.cut_refcnt();
                entry._process = process.clone();
                return;
            }
            entry._process = process.clone();
        }
        let cut = entry.json.without_refcnt();
        end_as_new(process);
        if let Some(cut) = cut {
            cache.insert(process, cut);
        }
    });
}

/// Held by an entry while [`end`] changes its process in place.
static PLACEHOLDER: std::sync::LazyLock<Arc<Process>> = std::sync::LazyLock::new(Default::default);

fn end_as_new(process: &mut Arc<Process>) {
    *process = Arc::new(Process {
        refcnt: 0,
        ..Process::clone(process)
    });
}

/// JSON text this module wrote with serde_json (or cut a member out of, [`end`]),
/// written again as it is. serde_json's `RawValue` does the same, but one made from a string
/// (the cut text) is parsed again first, which cost about as much as encoding the process
/// anew: this text was written by serde_json and needs no check.
struct Json {
    text: String,
    /// Where a process's `refcnt` member is in `text` (`,"refcnt":1`), as the writer put it
    /// there; `None` in any other text.
    refcnt: Option<std::ops::Range<usize>>,
}

/// The name serde_json's own raw values serialize under: given it, serde_json's serializers
/// (to text and to a `Value`) write the text as it is. `a_json_text_is_written_as_it_is` fails
/// if a serde_json release renames it, and `is_serde_json` then writes every value itself.
const RAW_TOKEN: &str = "$serde_json::private::RawValue";

impl Json {
    /// Text without a `refcnt` member.
    fn plain(text: String) -> Json {
        Json { text, refcnt: None }
    }

    fn encode<T: Serialize + ?Sized>(v: &T) -> Option<Json> {
        serde_json::to_string(v).ok().map(Json::plain)
    }

    /// A process's JSON ([`crate::json_writer`]).
    fn process(p: &Process) -> Json {
        let (text, refcnt) = crate::json_writer::encode(p, objects);
        // Checked, so that cutting it can never panic (in `end`, between taking an entry's
        // reference and giving it back).
        let refcnt = refcnt.filter(|member| {
            text.get(member.clone())
                .is_some_and(|m| m.starts_with(",\"refcnt\":"))
        });
        Json {
            text: text.into(),
            refcnt,
        }
    }

    /// A copy of this process's JSON less its `refcnt` member; `None` when it has none.
    fn without_refcnt(&self) -> Option<Json> {
        let member = self.refcnt.clone()?;
        let mut text = String::with_capacity(self.text.len() - member.len());
        text.push_str(&self.text[..member.start]);
        text.push_str(&self.text[member.end..]);
        Some(Json::plain(text))
    }

    /// This process's JSON less its `refcnt` member, cut in place (kept at its length: a
    /// shorter allocation would be a copy, for 11 bytes or so).
    fn cut_refcnt(&mut self) {
        if let Some(member) = self.refcnt.take() {
            self.text.replace_range(member, "");
        }
    }
}

/// Appends a process's `cap` and `ns` members, each when it is written, from this thread's
/// recent ones.
fn objects(p: &Process, out: &mut Vec<u8>) {
    if !p.cap.unwritten() {
        out.extend_from_slice(b",\"cap\":");
        recent_text(&CAPABILITIES, &p.cap, out);
    }
    if !p.ns.unwritten() {
        out.extend_from_slice(b",\"ns\":");
        recent_text(&NAMESPACES, &p.ns, out);
    }
}

/// Appends `p`'s JSON: kept from its first appearance, as [`process`] writes it.
pub(crate) fn write_process(p: &Arc<Process>, out: &mut Vec<u8>) {
    CACHE.with(|c| {
        if let Ok(mut cache) = c.try_borrow_mut() {
            if let Some(json) = cache.get_or_encode(p) {
                out.extend_from_slice(json.text.as_bytes());
                return;
            }
        }
        crate::json_writer::write_process(p, out, objects);
    })
}

/// Appends `v`'s JSON, from the thread's `recent` cache when it can.
fn recent_text<T>(
    recent: &'static std::thread::LocalKey<RefCell<Recent<T>>>,
    v: &T,
    out: &mut Vec<u8>,
) where
    T: Serialize + PartialEq + Clone + 'static,
{
    recent.with(|c| {
        if let Ok(mut recent) = c.try_borrow_mut() {
            if let Some(json) = recent.get_or_encode(v) {
                out.extend_from_slice(json.text.as_bytes());
                return;
            }
        }
        // Objects of names and numbers: serde_json cannot fail on them.
        let _ = serde_json::to_writer(&mut *out, v);
    })
}

impl Serialize for Json {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut raw = s.serialize_struct(RAW_TOKEN, 1)?;
        raw.serialize_field(RAW_TOKEN, &*self.text)?;
        raw.end()
    }
}

/// `serialize_with` for an `Option<Arc<Process>>` field (skipped when `None`).
pub(crate) fn parent<S: Serializer>(p: &Option<Arc<Process>>, s: S) -> Result<S::Ok, S::Error> {
    match p {
        Some(p) => process(p, s),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Event, EventBody, ExecId, ProcessExec};

    fn exec(process: Arc<Process>, parent: Arc<Process>) -> Event {
        Event {
            body: EventBody::ProcessExec(ProcessExec {
                process,
                parent: Some(parent),
                ancestors: vec![],
            }),
            node_name: "n".into(),
            node_labels: Default::default(),
            time: "t".into(),
        }
    }

    fn proc(pid: u32, binary: &str) -> Arc<Process> {
        Arc::new(Process {
            exec_id: ExecId(format!("id-{pid}").into()),
            pid,
            binary: binary.into(),
            arguments: "a \"quoted\" \\ arg\n".into(),
            ..Default::default()
        })
    }

    /// What serde_json writes without the cache: the process serialized field by field.
    fn uncached(e: &Event) -> String {
        let mut v = serde_json::Map::new();
        let EventBody::ProcessExec(x) = &e.body else {
            unreachable!()
        };
        let mut body = serde_json::Map::new();
        body.insert("process".into(), serde_json::to_value(&*x.process).unwrap());
        let parent = x.parent.as_ref().unwrap();
        body.insert("parent".into(), serde_json::to_value(&**parent).unwrap());
        v.insert("process_exec".into(), body.into());
        v.insert("node_name".into(), e.node_name.to_string().into());
        v.insert("time".into(), e.time.clone().into());
        serde_json::Value::Object(v).to_string()
    }

    #[test]
    fn cached_processes_encode_exactly_as_uncached_ones() {
        let parent = proc(1, "/bin/bash");
        for n in 0..3 {
            // Held elsewhere too, as the process cache holds it: kept encoded.
            let process = proc(100 + n, "/usr/bin/curl");
            let e = exec(process.clone(), parent.clone());
            let direct: serde_json::Value = serde_json::from_str(&uncached(&e)).unwrap();
            let text = serde_json::to_string(&e).unwrap();
            let via_cache: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert_eq!(via_cache, direct);
            assert_eq!(serde_json::to_value(&e).unwrap(), direct, "to_value too");
            let back: Event = serde_json::from_str(&text).unwrap();
            assert_eq!(back, e, "and it reads back");
            assert!(kept(&process), "a process held elsewhere is kept encoded");
        }
    }

    fn kept(p: &Arc<Process>) -> bool {
        CACHE.with(|c| c.borrow().entries.contains_key(&(Arc::as_ptr(p) as usize)))
    }

    #[test]
    fn a_process_only_its_event_holds_is_written_but_not_kept() {
        let e = exec(proc(5, "/bin/true"), proc(4, "/bin/sh"));
        let text = serde_json::to_string(&e).unwrap();
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&text).unwrap(),
            serde_json::from_str::<serde_json::Value>(&uncached(&e)).unwrap()
        );
        let EventBody::ProcessExec(x) = &e.body else {
            unreachable!()
        };
        assert!(!kept(&x.process));
    }

    #[test]
    fn a_changed_process_is_a_new_arc_and_encodes_anew() {
        let parent = proc(1, "/bin/bash");
        let e = exec(proc(2, "/bin/true"), parent.clone());
        assert!(serde_json::to_string(&e).unwrap().contains("/bin/bash"));
        let mut changed = parent.clone();
        Arc::make_mut(&mut changed).binary = "/bin/zsh".into();
        let e = exec(proc(3, "/bin/true"), changed);
        let text = serde_json::to_string(&e).unwrap();
        assert!(
            text.contains("/bin/zsh") && !text.contains("/bin/bash"),
            "{text}"
        );
    }

    #[test]
    fn shared_sets_encode_exactly_as_written_field_by_field_and_stay_bounded() {
        let full = crate::caps::CapSet((1u64 << 41) - 1);
        for n in 0..(RECENT as u64 * 3) {
            let mut p = Process {
                pid: n as u32,
                ..Default::default()
            };
            p.cap.detail = crate::Detail::Written;
            p.ns.detail = crate::Detail::Written;
            p.cap.permitted = full;
            p.cap.effective = crate::caps::CapSet(n);
            p.ns.mnt.inum = 4026531832 + (n as u32 % 2);
            p.ns.mnt.is_host = n % 2 == 0;
            let direct = {
                let mut v = serde_json::Map::new();
                v.insert("cap".into(), serde_json::to_value(p.cap.clone()).unwrap());
                v.insert("ns".into(), serde_json::to_value(p.ns.clone()).unwrap());
                v
            };
            let text = serde_json::to_string(&p).unwrap();
            let back: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert_eq!(back["cap"], direct["cap"], "{text}");
            assert_eq!(back["ns"], direct["ns"], "{text}");
            assert_eq!(serde_json::from_str::<Process>(&text).unwrap(), p);
        }
        CAPABILITIES.with(|c| assert_eq!(c.borrow().entries.len(), RECENT));
        NAMESPACES.with(|c| assert_eq!(c.borrow().entries.len(), 2));
    }

    #[test]
    fn the_cache_stays_bounded() {
        for n in 0..(CAPACITY as u32 * 3) {
            let (p, parent) = (proc(n, "/bin/true"), proc(n + 1, "/bin/sh"));
            let e = exec(p.clone(), parent.clone());
            serde_json::to_string(&e).unwrap();
            assert!(kept(&p) && kept(&parent));
        }
        CACHE.with(|c| assert!(c.borrow().entries.len() <= CAPACITY));
    }

    #[test]
    fn an_ended_process_is_written_as_if_encoded_anew() {
        let mut running = (*proc(7, "/usr/bin/env")).clone();
        running.refcnt = 1;
        // Text that looks like the member, in a string, and a nested key of the same name.
        running.arguments = r#"x,"refcnt":1,"y" ,\"refcnt\":2}"#.into();
        running.cwd = ",\"refcnt\":3,".into();
        running.cgroup = Some(crate::Cgroup {
            id: 9,
            path: "/refcnt".into(),
        });
        let kept_text = |p: &Arc<Process>| {
            CACHE.with(|c| {
                c.borrow()
                    .entries
                    .get(&(Arc::as_ptr(p) as usize))
                    .map(|e| e.json.text.to_string())
            })
        };
        // Held by an event still to be written: ended as a new Arc, the running one unchanged.
        let held = Arc::new(running.clone());
        let e = exec(held.clone(), proc(1, "/bin/sh"));
        serde_json::to_string(&e).unwrap(); // the running process's JSON is kept now
        let mut ended = held.clone();
        super::end(&mut ended);
        assert!(!Arc::ptr_eq(&held, &ended));
        assert_eq!((held.refcnt, ended.refcnt), (1, 0));
        assert_eq!(
            kept_text(&held),
            Some(serde_json::to_string(&*held).unwrap())
        );
        // Held by nothing else: ended in place, its kept text cut to match.
        let mut alone = Arc::new(running);
        let e = exec(alone.clone(), proc(1, "/bin/sh"));
        serde_json::to_string(&e).unwrap();
        drop(e);
        let before = Arc::as_ptr(&alone);
        super::end(&mut alone);
        assert_eq!((Arc::as_ptr(&alone), alone.refcnt), (before, 0));
        for ended in [ended, alone] {
            let direct = serde_json::to_string(&*ended).unwrap();
            assert_eq!(kept_text(&ended).as_ref(), Some(&direct));
            let e = exec(ended.clone(), proc(1, "/bin/sh"));
            let text = serde_json::to_string(&e).unwrap();
            assert!(text.contains(&direct), "{text}");
            // Ending it again changes nothing.
            let mut again = ended.clone();
            super::end(&mut again);
            assert!(Arc::ptr_eq(&again, &ended));
        }
    }

    #[test]
    fn the_refcnt_member_the_writer_reports_is_cut_exactly() {
        for refcnt in [0, 1, 12, u32::MAX] {
            let p = Process {
                pid: 3,
                refcnt,
                arguments: r#",\"refcnt\":1,"#.into(),
                ..Default::default()
            };
            let ended = Process {
                refcnt: 0,
                ..p.clone()
            };
            let mut json = Json::process(&p);
            assert_eq!(json.text, serde_json::to_string(&p).unwrap());
            let member = json.refcnt.clone().map(|at| json.text[at].to_string());
            let expected = (refcnt != 0).then(|| format!(",\"refcnt\":{refcnt}"));
            assert_eq!(member, expected);
            let copy = json.without_refcnt().map(|j| j.text);
            json.cut_refcnt();
            assert_eq!(json.text, serde_json::to_string(&ended).unwrap());
            assert_eq!(copy.is_some(), refcnt != 0);
            assert!(copy.is_none_or(|c| c == json.text));
            assert!(json.refcnt.is_none());
        }
    }

    #[test]
    fn a_json_text_is_written_as_it_is() {
        let text = r#"{"b":[1,2],"a":"x\"y"}"#;
        let json = Json::plain(text.into());
        assert_eq!(serde_json::to_string(&json).unwrap(), text);
        let v: serde_json::Value = serde_json::from_str(text).unwrap();
        assert_eq!(serde_json::to_value(&json).unwrap(), v);
    }

    #[test]
    fn other_serializers_get_the_process_itself() {
        let e = exec(proc(2, "/bin/true"), proc(1, "/bin/sh"));
        serde_json::to_string(&e).unwrap(); // cached now
        let yaml = serde_yaml::to_string(&e).unwrap();
        assert!(yaml.contains("binary: /bin/true"), "{yaml}");
    }
}
