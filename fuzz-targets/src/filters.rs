//! `filters`: redaction patterns and export filters, and an event, all from the fuzzer's
//! bytes: the patterns compile or are refused, and redaction and filtering of the event never
//! panic. Patterns are drawn from the configurations users write (and those known to have
//! broken redaction) as often as from random text, so the fuzzer spends its time on patterns
//! that compile.

use std::{any::Any, cell::RefCell, collections::HashMap};

use arbitrary::{Arbitrary, Result, Unstructured};
use vigil_events::Event;
use vigil_exporters::filter::{ExportFilter, FilterSpec, Redactor, REDACTED};

/// Patterns of real configurations: the documented examples and nested capture groups
/// (finding 2 of issue 13).
const KNOWN: &[&str] = &[
    r"--password[ =](\S+)",
    r"(?i)token=(\w+)",
    r"(?:token=)(\w+)",
    r"(--(password|token)=\S+)",
    r"((a)(b(c)))",
    r"(\S*)",
    r"()",
    r"(.)(.)",
    r"^(/usr/bin/)?(curl|wget)$",
    r"(\w+)@(\w+)",
    r"(é+)(.)",
];

/// Label selectors as users write them, and broken ones.
const SELECTORS: &[&str] = &[
    "app=web",
    "app in (web, api),tier!=db",
    "!canary,owner",
    "team notin (ops)",
    "app in web",
    "a b=c",
    ",",
];

fn selectors(u: &mut Unstructured<'_>) -> Result<Vec<String>> {
    let n = u.int_in_range(0..=2)?;
    (0..n)
        .map(|_| {
            if u.arbitrary()? {
                Ok(u.choose(SELECTORS)?.to_string())
            } else {
                u.arbitrary()
            }
        })
        .collect()
}

fn pattern(u: &mut Unstructured<'_>) -> Result<String> {
    if u.arbitrary()? {
        Ok(u.choose(KNOWN)?.to_string())
    } else {
        u.arbitrary()
    }
}

fn patterns(u: &mut Unstructured<'_>) -> Result<Vec<String>> {
    let n = u.int_in_range(0..=3)?;
    (0..n).map(|_| pattern(u)).collect()
}

fn spec(u: &mut Unstructured<'_>) -> Result<FilterSpec> {
    Ok(FilterSpec {
        event_set: u.arbitrary()?,
        binary_regex: patterns(u)?,
        parent_binary_regex: patterns(u)?,
        arguments_regex: patterns(u)?,
        pid: u.arbitrary()?,
        pid_set: u.arbitrary()?,
        policy_names: u.arbitrary()?,
        namespace: u.arbitrary()?,
        pod_regex: patterns(u)?,
        labels: selectors(u)?,
    })
}

fn specs(u: &mut Unstructured<'_>) -> Result<Vec<FilterSpec>> {
    let n = u.int_in_range(0..=2)?;
    (0..n).map(|_| spec(u)).collect()
}

/// Compiles with `build`, or takes what an earlier input with the same patterns compiled:
/// compiling the patterns users write (Unicode classes) costs milliseconds under the
/// sanitizer, and the fuzzer draws them again and again. Bounded, so random patterns cannot
/// fill memory.
fn cached<T: Clone + 'static>(key: String, build: impl FnOnce() -> Option<T>) -> Option<T> {
    thread_local! {
        static CACHE: RefCell<HashMap<String, Option<Box<dyn Any>>>> = RefCell::default();
    }
    CACHE.with(|c| {
        if let Some(hit) = c.borrow().get(&key) {
            return hit
                .as_ref()
                .map(|v| v.downcast_ref::<T>().expect("one type per key").clone());
        }
        let built = build();
        let mut c = c.borrow_mut();
        if c.len() >= 1024 {
            c.clear();
        }
        c.insert(key, built.clone().map(|v| Box::new(v) as Box<dyn Any>));
        built
    })
}

fn run(u: &mut Unstructured<'_>) -> Result<()> {
    let redact = patterns(u)?;
    let allow = specs(u)?;
    let deny = specs(u)?;
    let mut event = if u.arbitrary()? {
        u.choose(crate::samples::events())?.clone()
    } else {
        Event::arbitrary(u)?
    };
    if let Some(r) = cached(format!("redact {redact:?}"), || Redactor::new(&redact).ok()) {
        let before = event.process().arguments.clone();
        r.apply(&mut event);
        // Redaction only ever hides: text it did not change is still there, so a line it
        // leaves alone comes out as it went in.
        let after = &event.process().arguments;
        if !after.contains(REDACTED) {
            assert_eq!(
                after, &before,
                "redaction changed a line without hiding anything"
            );
        }
    }
    let key = format!("filter {allow:?} {deny:?}");
    if let Some(f) = cached(key, || ExportFilter::new(&allow, &deny, "sinks[0]").ok()) {
        f.passes(&event);
    }
    Ok(())
}

/// See the module's documentation.
pub fn filters(data: &[u8]) {
    let _ = run(&mut Unstructured::new(data));
}
