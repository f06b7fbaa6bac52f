//! The events and engines the Sigma unit tests build, made in one place so every test module
//! describes its case and not the shape of an `Event`.

use std::{path::Path, sync::Arc};

use vigil_events::{Arg, Event, EventBody, Process, ProcessExec, ProcessPolicy};

use super::{load_rule, SigmaEngine};

pub(super) fn event(body: EventBody) -> Event {
    Event {
        body,
        node_name: "n".into(),
        node_labels: Default::default(),
        time: "t".into(),
    }
}

/// An exec of `process`, started by `parent`.
pub(super) fn exec_of(process: Process, parent: Option<Arc<Process>>) -> Event {
    event(EventBody::ProcessExec(ProcessExec {
        process: Arc::new(process),
        parent,
        ancestors: Vec::new(),
    }))
}

/// An exec of `binary` with `arguments`, by uid 33 (a web server's, as rules often name).
pub(super) fn exec(binary: &str, arguments: &str) -> Event {
    exec_of(
        Process {
            binary: binary.into(),
            arguments: arguments.into(),
            uid: 33,
            ..Default::default()
        },
        None,
    )
}

/// A policy event on the kernel function `function` with one argument.
pub(super) fn policy_event(function: &str, arg: Arg) -> Event {
    event(EventBody::ProcessKprobe(Box::new(ProcessPolicy {
        function_name: function.into(),
        policy_name: "p".into(),
        args: vec![arg],
        ..Default::default()
    })))
}

/// An engine of rules given as (file name, YAML text); each must load.
pub(super) fn engine<T: AsRef<str>>(rules: &[(&str, T)]) -> SigmaEngine {
    SigmaEngine::from_rules(
        rules
            .iter()
            .map(|(name, text)| load_rule(Path::new(name), text.as_ref()).expect("loads"))
            .collect(),
    )
}

/// A rule's text: product linux with the `logsource` lines given (indented, one per line),
/// the `detection` lines given, level high.
pub(super) fn rule(logsource: &str, detection: &str) -> String {
    format!(
        "title: t\nlogsource:\n  product: linux\n{logsource}detection:\n{detection}level: high\n"
    )
}

/// A rule of one selection, `s`, on one line.
pub(super) fn selection(logsource: &str, s: &str) -> String {
    rule(logsource, &format!("  s:\n    {s}\n  condition: s\n"))
}

/// [`fired`], held to what sigma-rust decides evaluating every rule on every view.
pub(super) fn fired_as_sigma_rust(engine: &SigmaEngine, event: &Event) -> Vec<String> {
    let got = fired(engine, event);
    assert_eq!(
        got.len(),
        engine.evaluate_naive(event),
        "as sigma-rust decides"
    );
    got
}

/// The file names of the rules `engine` fires on `event`, sorted.
pub(super) fn fired(engine: &SigmaEngine, event: &Event) -> Vec<String> {
    let mut fired: Vec<String> = engine
        .evaluate(event)
        .iter()
        .map(|m| m.rule.file.display().to_string())
        .collect();
    fired.sort();
    fired
}
