//! Sigma detection in the agent: every event the agent writes is checked against the loaded
//! rules, and each match is written right after it as a `process_alert` event, so alerts take
//! the same path to every output as the events they are about. Rule directories are rescanned
//! every second; a changed set is loaded whole and replaces the old one, and a rule that does
//! not load is reported with its file while the others keep working. At the start, a path
//! named with `--sigma-dir` that is missing, unreadable or refused stops the agent instead:
//! whoever named it expects it to run. A rule naming a field vigil never fills loads with a
//! warning at that field. `vigil sigma test` runs the same detector over recorded events.

use std::{path::PathBuf, time::SystemTime};

use vigil_events::{Event, EventBody, ProcessAlert};
use vigil_policy_engine::sigma::{rule_files, SigmaEngine, SigmaLoadError, SigmaMatch};

use crate::agent::log;

/// The rule directories and the engine built from them.
pub struct SigmaDetector {
    paths: Vec<PathBuf>,
    engine: SigmaEngine,
    stamp: Vec<(PathBuf, SystemTime, u64)>,
    /// Rule files that did not load at the last (re)load.
    refused: usize,
}

/// Every rule file's path, modification time and size, to notice changes. The files are the
/// ones the loader reads (no symbolic link to a directory followed, the walk bounded); what the
/// walk skips is logged when the rules load, not at every rescan.
fn stamp(paths: &[PathBuf]) -> Vec<(PathBuf, SystemTime, u64)> {
    rule_files(paths)
        .0
        .into_iter()
        .filter_map(|p| {
            let meta = std::fs::metadata(&p).ok()?;
            let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            Some((p, modified, meta.len()))
        })
        .collect()
}

/// Says what loading gave: the refused files, the warnings, the count.
fn report(paths: &[PathBuf], engine: &SigmaEngine, errors: &[SigmaLoadError]) {
    for e in errors {
        log(format!("sigma rule refused, the others keep running: {e}"));
    }
    for w in engine.warnings() {
        log(format!("sigma rule warning: {w}"));
    }
    log(format!(
        "sigma: {} rules loaded from {}",
        engine.rules().len(),
        paths
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    ));
}

impl SigmaDetector {
    /// Loads the rules under `paths` for the agent's start. A path named (a rule file, or a
    /// directory) that is missing, unreadable or refused is an error, one line with its reason,
    /// and nothing is loaded; a rule inside a named directory that does not load is logged and
    /// the others run, as on every later rescan.
    pub fn try_start(paths: Vec<PathBuf>) -> anyhow::Result<SigmaDetector> {
        let (engine, errors) = SigmaEngine::load(&paths);
        let named: Vec<&SigmaLoadError> = errors
            .iter()
            .filter(|e| paths.iter().any(|p| p.display().to_string() == e.file))
            .collect();
        if let Some(first) = named.first() {
            let more = match named.len() {
                1 => String::new(),
                n => format!(" (and {} more rule paths)", n - 1),
            };
            anyhow::bail!("Sigma rule path {first}{more}");
        }
        Ok(SigmaDetector::loaded(paths, engine, &errors))
    }

    fn loaded(
        paths: Vec<PathBuf>,
        engine: SigmaEngine,
        errors: &[SigmaLoadError],
    ) -> SigmaDetector {
        report(&paths, &engine, errors);
        SigmaDetector {
            stamp: stamp(&paths),
            engine,
            paths,
            refused: errors.len(),
        }
    }

    /// The loaded rules' engine.
    pub fn engine(&self) -> &SigmaEngine {
        &self.engine
    }

    /// How many rule files did not load.
    pub fn refused(&self) -> usize {
        self.refused
    }

    /// Reloads the rules when a file under the paths changed, appeared or went.
    pub fn rescan(&mut self) {
        let now = stamp(&self.paths);
        if now != self.stamp {
            let (engine, errors) = SigmaEngine::load(&self.paths);
            report(&self.paths, &engine, &errors);
            self.engine = engine;
            self.refused = errors.len();
            self.stamp = now;
        }
    }

    /// The alerts `event` raises.
    pub fn alerts(&self, event: &Event) -> Vec<Event> {
        self.engine
            .evaluate(event)
            .into_iter()
            .map(|m| alert(event, m))
            .collect()
    }
}

/// The `process_alert` event of a match.
fn alert(event: &Event, m: SigmaMatch<'_>) -> Event {
    let (process, parent) = match &event.body {
        EventBody::ProcessExec(e) => (e.process.clone(), e.parent.clone()),
        EventBody::ProcessExit(e) => (e.process.clone(), e.parent.clone()),
        EventBody::ProcessKprobe(e)
        | EventBody::ProcessLsm(e)
        | EventBody::ProcessUprobe(e)
        | EventBody::ProcessTracepoint(e)
        | EventBody::ProcessLoader(e) => (e.process.clone(), e.parent.clone()),
        EventBody::ProcessAlert(e) => (e.process.clone(), e.parent.clone()),
        // A flow vigil saw only on the wire has no process: the alert names none.
        EventBody::FlowEncryption(e) => (e.process.clone().unwrap_or_default(), e.parent.clone()),
        // No rule is evaluated on it (it has no Sigma view).
        EventBody::RateLimitInfo(_) => (Default::default(), None),
    };
    Event {
        body: EventBody::ProcessAlert(Box::new(ProcessAlert {
            process,
            parent,
            rule_id: m.rule.id.clone(),
            title: m.rule.rule.title.clone(),
            level: m.rule.level.clone(),
            tags: m.rule.rule.tags.clone().unwrap_or_default(),
            rule_file: m.rule.file.display().to_string(),
            category: m.rule.category.to_string(),
            event: Box::new(event.clone()),
        })),
        node_name: event.node_name.clone(),
        node_labels: event.node_labels.clone(),
        time: event.time.clone(),
    }
}
