//! `vigil sigma test`: the agent's detection, offline, over recorded events.

use std::path::Path;

use vigil_policy_engine::sigma::SigmaEngine;

use crate::{agent::log, sigma_alerts::alert, stdout::outln};

/// Runs the rules under `rules` over the recorded events in `events` and prints each alert.
pub fn test(rules: &Path, events: &Path, json: bool) -> anyhow::Result<()> {
    let (engine, errors) = SigmaEngine::load(&[rules.to_path_buf()]);
    for e in &errors {
        log(format!("sigma rule refused: {e}"));
    }
    let input = std::fs::read_to_string(events)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", events.display()))?;
    let (mut read, mut alerts) = (0usize, 0usize);
    for (n, line) in input.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let event: vigil_events::Event = serde_json::from_str(line).map_err(|e| {
            anyhow::anyhow!("{}:{}: not a vigil event: {e}", events.display(), n + 1)
        })?;
        read += 1;
        for m in engine.evaluate(&event) {
            alerts += 1;
            if json {
                outln!("{}", serde_json::to_string(&alert(&event, m))?)?;
            } else {
                outln!(
                    "{} {} [{}] {} ({}) {}",
                    event.time,
                    event.process().binary,
                    m.rule.level,
                    m.rule.rule.title,
                    m.rule.id,
                    m.rule.file.display()
                )?;
            }
        }
    }
    if !json {
        outln!(
            "{read} events, {} rules ({} refused), {alerts} alerts",
            engine.rules().len(),
            errors.len()
        )?;
    }
    if !errors.is_empty() {
        anyhow::bail!("{} rule files did not load", errors.len());
    }
    Ok(())
}
