//! A few realistic events, one of each kind and argument type, for the targets whose input is
//! a rule or a filter rather than an event.

use std::sync::OnceLock;

use vigil_events::Event;

/// The events of `sample_events.jsonl`, decoded once.
pub fn events() -> &'static [Event] {
    static EVENTS: OnceLock<Vec<Event>> = OnceLock::new();
    EVENTS.get_or_init(|| {
        include_str!("sample_events.jsonl")
            .lines()
            .map(|l| serde_json::from_str(l).expect("sample events decode"))
            .collect()
    })
}
