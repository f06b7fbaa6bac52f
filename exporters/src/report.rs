//! Problems that repeat, said without flooding the log: a failing destination, a full disk, a
//! spool that cannot be written or a cap that was reached is said once when it starts, then as a
//! count at most once a [`SUMMARY_EVERY`] while it lasts, and once more when it ends. The agent's
//! log stays readable when every event fails the same way, and the counters
//! ([`crate::pipeline::SinkStats`]) keep the exact numbers.

use std::time::{Duration, Instant};

/// Shortest time between two lines about one problem.
pub const SUMMARY_EVERY: Duration = Duration::from_secs(60);

/// One kind of problem of one sink.
#[derive(Debug, Default)]
pub struct Problem {
    /// When it was last said; `None` while all is well.
    said: Option<Instant>,
    /// Occurrences since it was last said.
    unsaid: u64,
    /// Occurrences since it started.
    total: u64,
}

impl Problem {
    /// Counts one occurrence at `now`; the line to log, if one is due.
    pub fn occurred(&mut self, what: &str, now: Instant) -> Option<String> {
        self.total += 1;
        match self.said {
            None => {
                self.said = Some(now);
                Some(what.to_string())
            }
            Some(at) if now.duration_since(at) >= SUMMARY_EVERY => {
                let n = self.unsaid + 1;
                self.said = Some(now);
                self.unsaid = 0;
                Some(format!(
                    "{what} (still: {n} times in the last {} s, {} in all)",
                    now.duration_since(at).as_secs(),
                    self.total
                ))
            }
            Some(_) => {
                self.unsaid += 1;
                None
            }
        }
    }

    /// Whether the problem is going on.
    pub fn active(&self) -> bool {
        self.said.is_some()
    }

    /// The problem ended; the line to log when it had been said.
    pub fn cleared(&mut self, what: &str) -> Option<String> {
        self.said.take()?;
        let total = std::mem::take(&mut self.total);
        self.unsaid = 0;
        Some(format!("{what} after {total} failures"))
    }
}

/// Logs a line about sink `sink` on stderr (stdout may be one of the sinks).
pub fn log(sink: &str, line: &str) {
    eprintln!("{}", log_line(sink, line));
}

/// The line [`log`] writes. Outside text reaches `line` already escaped (the sinks'
/// `peer_text`); escaping the whole line again costs nothing then (no character to escape, no
/// copy) and keeps it one line, without terminal controls, whatever text a future message holds.
fn log_line(sink: &str, line: &str) -> String {
    let line = vigil_events::compact::escape(line);
    format!("vigil: sink {sink}: {line}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeating_problem_is_said_once_then_summarized_then_cleared() {
        let mut p = Problem::default();
        let t0 = Instant::now();
        assert_eq!(p.occurred("disk full", t0).as_deref(), Some("disk full"));
        let said: Vec<_> = (1..1000)
            .filter_map(|i| p.occurred("disk full", t0 + Duration::from_millis(i)))
            .collect();
        assert!(said.is_empty(), "{said:?}");
        let summary = p.occurred("disk full", t0 + SUMMARY_EVERY).unwrap();
        assert!(
            summary.contains("1000 times") && summary.contains("1001 in all"),
            "{summary}"
        );
        assert_eq!(
            p.cleared("recovered").as_deref(),
            Some("recovered after 1001 failures")
        );
        assert_eq!(p.cleared("recovered"), None, "said once");
        assert_eq!(p.occurred("again", t0).as_deref(), Some("again"));
    }

    #[test]
    fn a_log_line_is_one_line_without_terminal_controls() {
        let line = log_line(
            "es",
            "bulk 503: \nvigil: policy x removed (forged)\n\x1b[2J",
        );
        assert_eq!(
            line,
            "vigil: sink es: bulk 503: \\x0avigil: policy x removed (forged)\\x0a\\x1b[2J"
        );
    }
}
