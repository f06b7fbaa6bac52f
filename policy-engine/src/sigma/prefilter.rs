//! The literal prefilter: which rules of a category an event's view may match, found for all
//! rules at once. A rule's literals (`literals`) are sorted by how they are found: a literal
//! that must be a field's whole value (`type: SYSCALL`, `euid: 33`, a plain keyword in any
//! field) is looked up in a table; any other is found by one Aho-Corasick automaton walked
//! over the fields such literals name. A rule is a candidate once a literal of each of its
//! clauses was found where the rule says; the engine then decides the candidates
//! (`super::exact`, or sigma-rust).
//!
//! What a field admits depends on its category's index, its name and its text alone, and most
//! fields repeat from one event to the next: a shell's children share their `ParentImage` and
//! `ParentCommandLine`, a node runs the same binaries from the same directories. Each thread
//! remembers the rules the last short fields admitted ([`Memo`]), so a field seen before costs
//! a hash and a comparison instead of the automaton's walk and the tables' lookups.

use std::{
    cell::RefCell,
    collections::HashMap,
    hash::Hasher,
    sync::atomic::{AtomicU64, Ordering},
};

use aho_corasick::{
    automaton::{Automaton, StateID},
    dfa::DFA,
    Anchored, MatchKind, PatternID,
};
use rustc_hash::FxHashMap;

use super::{
    fields::{self, Field, FieldValue, SigmaFields},
    literals, SigmaRule,
};

/// The rules of one category and their prefilter.
#[derive(Default)]
pub(super) struct CategoryIndex {
    /// Tells this index from every other built in this process (0: never remembered), so that
    /// a field remembered under a replaced rule set is never taken for the new one's.
    id: u64,
    /// Rules evaluated on every event of the category.
    always: Vec<usize>,
    /// Finds every rule literal that may sit anywhere in a field, or at one end, in the
    /// fields searched.
    automaton: Option<DFA>,
    /// For each automaton pattern, the rules it admits by the field the text must be found in.
    pattern_rules: Vec<Vec<FieldAdmits>>,
    /// By field: the literals that must be its whole value (`type: SYSCALL`, `euid: 33`),
    /// looked up in one table instead of searched for, and whether it is searched.
    plans: Vec<FieldPlan>,
    /// Keywords without wildcards: literals that must be the whole value of any field.
    any_field: WholeValues,
    /// A rule has keywords with wildcards, found in any field: every field is searched.
    search_all: bool,
    /// Where every rule with keywords needs its record's `type` to be one of these (auditd's
    /// SigmaHQ rules all do: `type: EXECVE` and keywords), keywords are looked for only in
    /// records of these types: a SYSCALL record's thirteen fields are not each looked up for
    /// keywords only an EXECVE record can hold.
    keywords_only_in: Option<Vec<Box<str>>>,
    /// Some pattern of the automaton may be found in a number's text (it is all digits and
    /// minus signs): else numbers (pids, uids, ports) are never searched.
    numbers_searched: bool,
    /// Per rule (by index into the engine's rules), the bits of all its clauses.
    clause_bits: Vec<u8>,
}

/// Literals that must be a whole value: lower-cased text to the rules (and clause bits) each
/// admits. Most values are none of them, and are told so by their length and first byte
/// before they are lower-cased and hashed.
#[derive(Default)]
struct WholeValues {
    admits: FxHashMap<Box<str>, Vec<(usize, u8)>>,
    /// Bit `n`: a literal `n` bytes long (63: that long or longer).
    lengths: u64,
    /// Bit `b`: a literal whose first byte is `b`, lower-cased.
    firsts: [u64; 4],
}

impl WholeValues {
    fn add(&mut self, text: &str, rule: usize, bit: u8) {
        let Some(&first) = text.as_bytes().first() else {
            return;
        };
        self.lengths |= 1 << text.len().min(63);
        let first = first.to_ascii_lowercase();
        self.firsts[usize::from(first >> 6)] |= 1 << (first & 63);
        self.admits
            .entry(text.into())
            .or_default()
            .push((rule, bit));
    }

    fn is_empty(&self) -> bool {
        self.admits.is_empty()
    }

    /// The rules and clause bits `text` admits (`lower`: scratch space).
    fn admitted(&self, text: &str, lower: &mut String) -> &[(usize, u8)] {
        let Some(&first) = text.as_bytes().first() else {
            return &[];
        };
        let first = first.to_ascii_lowercase();
        if self.lengths & (1 << text.len().min(63)) == 0
            || self.firsts[usize::from(first >> 6)] & (1 << (first & 63)) == 0
        {
            return &[];
        }
        lower.clear();
        lower.push_str(text);
        lower.make_ascii_lowercase();
        self.admits.get(lower.as_str()).map_or(&[], Vec::as_slice)
    }
}

/// What the prefilter does with one field of an event.
#[derive(Default)]
struct FieldPlan {
    whole: WholeValues,
    /// Whether its text goes into the haystack the automaton searches.
    searched: bool,
}

/// The rules a pattern admits when found in one field (any field: `None`, for keywords): the
/// rule, the bit of the rule's clause it is a literal of, and where in the field it must sit.
struct FieldAdmits {
    field: Option<Field>,
    rules: Vec<(usize, u8, literals::Anchor)>,
}

/// Fields remembered per thread: a direct-mapped table, so that a lookup is one slot whatever
/// the texts (values crafted to share a slot only push each other out: a miss, never a longer
/// search), and the whole of it stays small beside the automata it saves walking.
const MEMO_SLOTS: usize = 1024;
/// The longest text remembered: longer ones (command lines, mostly) are seldom seen twice.
const MEMO_TEXT: usize = 64;
/// The most rule clauses a remembered field admits: most admit none or a few; a literal that
/// several rules share admits each.
const MEMO_ADMITS: usize = 10;

/// What one field admitted: the index, the field and its text are the key.
#[derive(Clone, Copy)]
struct MemoSlot {
    /// [`CategoryIndex::id`]; 0 for an empty slot.
    index: u64,
    field: u8,
    len: u8,
    admitted: u8,
    text: [u8; MEMO_TEXT],
    admits: [(u32, u8); MEMO_ADMITS],
}

const EMPTY_SLOT: MemoSlot = MemoSlot {
    index: 0,
    field: 0,
    len: 0,
    admitted: 0,
    text: [0; MEMO_TEXT],
    admits: [(0, 0); MEMO_ADMITS],
};

/// The rules the last short fields admitted, by index, field and text (see the module's doc).
struct Memo {
    slots: Box<[MemoSlot]>,
}

impl Default for Memo {
    fn default() -> Self {
        Memo {
            slots: vec![EMPTY_SLOT; MEMO_SLOTS].into_boxed_slice(),
        }
    }
}

impl Memo {
    /// The slot of a key: Fx's multiply-and-rotate, then the product's top bits, which depend
    /// on every byte.
    fn slot(index: u64, field: u8, text: &[u8]) -> usize {
        let mut h = rustc_hash::FxHasher::default();
        h.write_u64(index);
        h.write_u8(field);
        h.write(text);
        let mixed = h.finish().wrapping_mul(0x9e37_79b9_7f4a_7c15);
        (mixed >> (64 - MEMO_SLOTS.trailing_zeros())) as usize
    }

    /// What `text` in `field` admitted under `index`, when remembered.
    fn get(&self, slot: usize, index: u64, field: u8, text: &[u8]) -> Option<&[(u32, u8)]> {
        let s = &self.slots[slot];
        (index != 0
            && s.index == index
            && s.field == field
            && usize::from(s.len) == text.len()
            && s.text[..text.len()] == *text)
            .then(|| &s.admits[..usize::from(s.admitted)])
    }

    /// Remembers what `text` admitted, when it and its list are short enough to keep.
    fn put(&mut self, slot: usize, index: u64, field: u8, text: &[u8], admits: &[(u32, u8)]) {
        if index == 0 || text.len() > MEMO_TEXT || admits.len() > MEMO_ADMITS {
            return;
        }
        let s = &mut self.slots[slot];
        s.index = index;
        s.field = field;
        s.len = text.len() as u8;
        s.text[..text.len()].copy_from_slice(text);
        s.admitted = admits.len() as u8;
        s.admits[..admits.len()].copy_from_slice(admits);
    }
}

/// The field auditd's records name their type in.
const TYPE: Field = fields::field!("type");

/// Numbers the indexes built, from 1.
static NEXT_INDEX_ID: AtomicU64 = AtomicU64::new(1);

/// The working memory of [`CategoryIndex::with_candidates`], one per thread and kept between events,
/// so that evaluating one allocates nothing of its own.
#[derive(Default)]
struct Scratch {
    /// What recent fields admitted.
    memo: Memo,
    /// What the field being read admits: (rule, clause bit), a pair found twice listed twice.
    field_admits: Vec<(u32, u8)>,
    bits_of: Vec<u8>,
    touched: Vec<usize>,
    candidates: Vec<usize>,
    /// A field's value lower-cased, to look up among the whole-value literals.
    lower: String,
    /// Per automaton pattern, the `stamp` of the last field it was found in.
    seen: Vec<u32>,
    /// Numbers the fields searched.
    stamp: u32,
    /// A field's value with the letters sigma-rust lower-cases into ASCII written so.
    folded_text: String,
    /// The patterns a walk of the automaton found, and where each ended.
    found: Vec<(u32, u32)>,
}

/// `text` with the two letters outside ASCII that Unicode lower-cases into ASCII written as
/// their lower case (the Kelvin sign is `k`; `İ` is `i` and a combining dot), when it holds
/// either. sigma-rust lower-cases values by Unicode's rules before comparing them; the
/// prefilter folds ASCII case only, so such a value is looked at both ways, else `/usr/bin/Kill`
/// with a Kelvin sign would match a rule on `/kill` that the prefilter never admitted.
fn unicode_folded<'b>(text: &str, buf: &'b mut String) -> Option<&'b str> {
    if text.is_ascii() || !text.contains(['\u{212A}', '\u{130}']) {
        return None;
    }
    buf.clear();
    for c in text.chars() {
        match c {
            '\u{212A}' => buf.push('k'),
            '\u{130}' => buf.push_str("i\u{307}"),
            c => buf.push(c),
        }
    }
    Some(buf)
}

/// The most matches [`search`] collects before it returns to have them read: a text that
/// holds a literal at every byte is read in pieces, not copied into a list its size.
const SEARCH_BATCH: usize = 256;

/// Walks `dfa` over `text` from `walk`'s place, appending `(pattern, end)` to `found` for every
/// occurrence of every pattern, overlapping ones included, until the text ends (`false`) or
/// [`SEARCH_BATCH`] matches are collected (`true`: call again to go on). The automaton is
/// walked here, a byte at a time, rather than through the crate's iterator: fields are short
/// and hold several literals each, and the iterator's set-up and resumption per match cost more
/// than the walk. Matches are read after the walk so that the loop holds nothing but the state
/// and the text: with their reading inlined, the state went through the stack at every byte.
fn search(dfa: &DFA, text: &[u8], walk: &mut Walk, found: &mut Vec<(u32, u32)>) -> bool {
    let mut state = walk.state;
    for (at, &byte) in text.iter().enumerate().skip(walk.at) {
        state = dfa.next_state(Anchored::No, state, byte);
        if !dfa.is_special(state) {
            continue;
        }
        if dfa.is_dead(state) {
            return false;
        }
        if dfa.is_match(state) {
            let end = (at + 1) as u32;
            for i in 0..dfa.match_len(state) {
                found.push((dfa.match_pattern(state, i).as_u32(), end));
            }
            if found.len() >= SEARCH_BATCH {
                *walk = Walk { state, at: at + 1 };
                return true;
            }
        }
    }
    false
}

/// Where a [`search`] stopped.
struct Walk {
    state: StateID,
    at: usize,
}

/// Notes clause `bit` of `rule` found: the rule is touched the first time.
fn admit(bits_of: &mut [u8], touched: &mut Vec<usize>, rule: usize, bit: u8) {
    let bits = &mut bits_of[rule];
    if *bits == 0 {
        touched.push(rule);
    }
    *bits |= bit;
}

/// Adds clause `bit` of `rule` to what a field admits (duplicates are dropped once the field
/// is read, and only when the list is short enough to be remembered).
fn note(admits: &mut Vec<(u32, u8)>, rule: usize, bit: u8) {
    admits.push((rule as u32, bit));
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::default();
}

/// The prefilter of each category: a handful, looked up for every view, by comparing the
/// view's category (one of vigil's static names) with each, its address first.
#[derive(Default)]
pub(super) struct Indexes(Vec<(&'static str, CategoryIndex)>);

impl Indexes {
    pub(super) fn get(&self, category: &str) -> Option<&CategoryIndex> {
        self.0
            .iter()
            .find(|(c, _)| {
                c.len() == category.len() && (c.as_ptr() == category.as_ptr() || *c == category)
            })
            .map(|(_, idx)| idx)
    }

    pub(super) fn contains_key(&self, category: &str) -> bool {
        self.get(category).is_some()
    }
}

/// The prefilter of each category of `rules` (by index in `rules`).
pub(super) fn index(rules: &[SigmaRule]) -> Indexes {
    let mut index: FxHashMap<&'static str, CategoryIndex> = FxHashMap::default();
    // One pattern per distinct literal text of a category, admitting every rule that needs
    // it (in the field and place that rule says).
    let mut patterns: HashMap<&'static str, Vec<String>> = HashMap::new();
    let mut pattern_ids: HashMap<(&'static str, String), usize> = HashMap::new();
    // By category: the `type` values every rule with keywords needs one of; `None` once a
    // rule with keywords needs none.
    let mut keyword_types: FxHashMap<&'static str, Option<Vec<Box<str>>>> = FxHashMap::default();
    for (i, r) in rules.iter().enumerate() {
        let idx = index.entry(r.category).or_default();
        match &r.needs {
            None => idx.always.push(i),
            Some(clauses) => {
                let pats = patterns.entry(r.category).or_default();
                let clauses = &clauses[..clauses.len().min(literals::MAX_CLAUSES)];
                if clauses.iter().flatten().any(|l| l.field.is_none()) {
                    let types = keyword_types.entry(r.category).or_insert(Some(Vec::new()));
                    match (&r.record_types, types.as_mut()) {
                        (Some(needed), Some(types)) => {
                            types.extend(needed.iter().map(|t| t.as_str().into()))
                        }
                        _ => *types = None,
                    }
                }
                if idx.clause_bits.len() <= i {
                    idx.clause_bits.resize(i + 1, 0);
                }
                idx.clause_bits[i] = (1u16 << clauses.len()).wrapping_sub(1) as u8;
                for (bit, clause) in clauses.iter().enumerate() {
                    for l in clause {
                        // A literal in a field vigil never fills is never found.
                        let field = match &l.field {
                            None => None,
                            Some(f) => match fields::known_field(f) {
                                Some(known) => Some(known),
                                None => continue,
                            },
                        };
                        let whole = (l.anchor == literals::Anchor::Whole).then(|| match field {
                            Some(f) => &mut idx.plan_mut(f).whole,
                            None => &mut idx.any_field,
                        });
                        if let Some(table) = whole {
                            table.add(&l.text, i, 1 << bit);
                            continue;
                        }
                        match field {
                            Some(f) => idx.plan_mut(f).searched = true,
                            None => idx.search_all = true,
                        }
                        let id = *pattern_ids
                            .entry((r.category, l.text.clone()))
                            .or_insert_with(|| {
                                pats.push(l.text.clone());
                                idx.pattern_rules.push(Vec::new());
                                pats.len() - 1
                            });
                        let by_field = &mut idx.pattern_rules[id];
                        let at = match by_field.iter().position(|a| a.field == field) {
                            Some(at) => at,
                            None => {
                                by_field.push(FieldAdmits {
                                    field,
                                    rules: Vec::new(),
                                });
                                by_field.len() - 1
                            }
                        };
                        by_field[at].rules.push((i, 1 << bit, l.anchor));
                    }
                }
            }
        }
    }
    for (cat, pats) in patterns {
        let idx = index.get_mut(cat).expect("indexed above");
        // Sigma compares without case by default; literals are lower-cased already.
        // Standard semantics: a match state names every pattern ending there, so the walk
        // sees overlapping literals; no prefilter, whose skips do not pay on short fields.
        idx.numbers_searched = pats
            .iter()
            .any(|p| p.bytes().all(|b| b.is_ascii_digit() || b == b'-'));
        idx.automaton = aho_corasick::dfa::Builder::new()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::Standard)
            .prefilter(false)
            .build(&pats)
            .ok();
        if idx.automaton.is_none() {
            // Cannot happen for plain strings; evaluate those rules always rather than never.
            let mut rules: Vec<usize> = idx
                .pattern_rules
                .drain(..)
                .flatten()
                .flat_map(|a| a.rules.into_iter().map(|r| r.0))
                .collect();
            rules.sort_unstable();
            rules.dedup();
            idx.always.extend(rules);
        }
    }
    for (cat, mut types) in keyword_types {
        let idx = index.get_mut(cat).expect("indexed above");
        if let Some(types) = types.as_mut() {
            types.sort_unstable();
            types.dedup();
        }
        idx.keywords_only_in = types;
    }
    for idx in index.values_mut() {
        idx.id = NEXT_INDEX_ID.fetch_add(1, Ordering::Relaxed);
    }
    Indexes(index.into_iter().collect())
}

impl CategoryIndex {
    /// The plan of `field`.
    fn plan_mut(&mut self, field: Field) -> &mut FieldPlan {
        if self.plans.is_empty() {
            self.plans.resize_with(fields::FIELDS, FieldPlan::default);
        }
        &mut self.plans[usize::from(field.id)]
    }

    /// Calls `then` with the rules of this category that `f` may match, sorted.
    pub(super) fn with_candidates<R>(
        &self,
        f: &SigmaFields,
        then: impl FnOnce(&[usize]) -> R,
    ) -> R {
        SCRATCH.with_borrow_mut(|scratch| {
            self.candidates(f, scratch);
            then(&scratch.candidates)
        })
    }

    /// Notes what `pattern`, found at `start..end` of a `len`-byte value of field `name`, admits.
    fn admit_found(
        &self,
        pattern: usize,
        name: Field,
        len: usize,
        start: usize,
        end: usize,
        field_admits: &mut Vec<(u32, u8)>,
    ) {
        for admits in &self.pattern_rules[pattern] {
            // A keyword's literal (no field) may sit anywhere in any field.
            let whole_field = match admits.field {
                None => None,
                Some(want) if want.id == name.id => Some(len),
                Some(_) => continue,
            };
            for &(rule, bit, anchor) in &admits.rules {
                let placed = match (anchor, whole_field) {
                    (_, None) | (literals::Anchor::Anywhere, _) => true,
                    (literals::Anchor::Start, _) => start == 0,
                    (literals::Anchor::End, Some(len)) => end == len,
                    (literals::Anchor::Whole, Some(len)) => start == 0 && end == len,
                };
                if placed {
                    note(field_admits, rule, bit);
                }
            }
        }
    }

    fn candidates(&self, f: &SigmaFields, scratch: &mut Scratch) {
        let Scratch {
            memo,
            field_admits,
            bits_of,
            touched,
            candidates,
            lower,
            seen,
            stamp,
            folded_text,
            found,
        } = scratch;
        candidates.clear();
        candidates.extend_from_slice(&self.always);
        // The clause bits found per rule (by its index; all zero between calls), and the rules
        // touched: few per event.
        if bits_of.len() < self.clause_bits.len() {
            bits_of.resize(self.clause_bits.len(), 0);
        }
        // Zero already, unless a call before this one stopped half-way (a panic): a stale bit
        // would keep its rule from ever being touched again.
        for &rule in touched.iter() {
            bits_of[rule] = 0;
        }
        touched.clear();
        let mut digits = itoa::Buffer::new();
        let keywords_here = self.keywords_only_in.as_ref().is_none_or(|types| {
            f.values.iter().any(|(name, value)| {
                name.id == TYPE.id
                    && matches!(value, FieldValue::Text(t)
                        if types.iter().any(|want| t.eq_ignore_ascii_case(want)))
            })
        });
        let any_field = Some(&self.any_field).filter(|w| keywords_here && !w.is_empty());
        // What a field admits depends on whether keywords were looked for in its record: the
        // memory keeps the two apart (records of different types share no field but `type`
        // today; nothing here should rest on that). An index never remembered stays 0.
        let memo_index = match self.id {
            0 => 0,
            id => id << 1 | u64::from(keywords_here),
        };
        let search_all = self.search_all && keywords_here;
        if seen.len() < self.pattern_rules.len() {
            seen.resize(self.pattern_rules.len(), 0);
        }
        for (name, value) in &f.values {
            let plan = self.plans.get(usize::from(name.id));
            let number = matches!(value, FieldValue::Int(_));
            let searched = (search_all || plan.is_some_and(|p| p.searched))
                && (self.numbers_searched || !number);
            let whole = plan.map(|p| &p.whole).filter(|w| !w.is_empty());
            if !searched && whole.is_none() && any_field.is_none() {
                continue;
            }
            let text: &str = match value {
                FieldValue::Text(t) => t,
                FieldValue::Int(i) => digits.format(*i),
            };
            // A text too long to be remembered is not hashed only to find that out.
            let slot =
                (text.len() <= MEMO_TEXT).then(|| Memo::slot(memo_index, name.id, text.as_bytes()));
            if let Some(remembered) =
                slot.and_then(|slot| memo.get(slot, memo_index, name.id, text.as_bytes()))
            {
                for &(rule, bit) in remembered {
                    admit(bits_of, touched, rule as usize, bit);
                }
                continue;
            }
            field_admits.clear();
            let field_text = text;
            let folded = unicode_folded(text, folded_text);
            for text in std::iter::once(text).chain(folded) {
                for table in [whole, any_field].into_iter().flatten() {
                    for &(rule, bit) in table.admitted(text, lower) {
                        note(field_admits, rule, bit);
                    }
                }
                if let Some(dfa) = self.automaton.as_ref().filter(|_| searched) {
                    // A pattern found again in the same field adds nothing unless it now ends the
                    // field (an `endswith`): a value that repeats a literal thousands of times
                    // costs its length, not its length times the rules behind the literal.
                    *stamp = stamp.wrapping_add(1);
                    if *stamp == 0 {
                        seen.fill(0);
                        *stamp = 1;
                    }
                    let Ok(state) = dfa.start_state(Anchored::No) else {
                        continue;
                    };
                    let mut walk = Walk { state, at: 0 };
                    loop {
                        found.clear();
                        let more = search(dfa, text.as_bytes(), &mut walk, found);
                        for &(pattern, end) in found.iter() {
                            let (pattern, end) = (pattern as usize, end as usize);
                            if seen[pattern] == *stamp && end != text.len() {
                                continue;
                            }
                            seen[pattern] = *stamp;
                            let start = end - dfa.pattern_len(PatternID::new_unchecked(pattern));
                            self.admit_found(pattern, *name, text.len(), start, end, field_admits);
                        }
                        if !more {
                            break;
                        }
                    }
                }
            }
            for &(rule, bit) in field_admits.iter() {
                admit(bits_of, touched, rule as usize, bit);
            }
            // A long list is not sorted only to find it too long to keep.
            if (MEMO_ADMITS + 1..=8 * MEMO_ADMITS).contains(&field_admits.len()) {
                field_admits.sort_unstable();
                field_admits.dedup();
            }
            if let Some(slot) = slot {
                memo.put(
                    slot,
                    memo_index,
                    name.id,
                    field_text.as_bytes(),
                    field_admits,
                );
            }
        }
        for &rule in touched.iter() {
            if bits_of[rule] == self.clause_bits[rule] {
                candidates.push(rule);
            }
            bits_of[rule] = 0;
        }
        candidates.sort_unstable();
        // A rule is either always evaluated or touched, except where the automaton could not
        // be built (its rules are then always evaluated, and still touched through a whole
        // value): each once all the same.
        candidates.dedup();
    }
}

#[cfg(test)]
mod tests;
