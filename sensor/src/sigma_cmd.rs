//! `vigil sigma test`: the agent's detection, offline, over recorded events. The rules load as
//! at the agent's start (a rule path that does not load stops the command) and every event
//! goes through the agent's detector.

use std::path::Path;

use vigil_events::{Event, EventBody};

use crate::{sigma_alerts::SigmaDetector, stdout::outln};

/// Runs the rules under `rules` over the recorded events in `events` and prints each alert.
pub fn test(rules: &Path, events: &Path, json: bool) -> anyhow::Result<()> {
    let detector = SigmaDetector::try_start(vec![rules.to_path_buf()])?;
    let input = std::fs::read_to_string(events)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", events.display()))?;
    let (mut read, mut alerts, mut unknown_uid) = (0usize, 0usize, 0usize);
    for (n, line) in input.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let event: Event = serde_json::from_str(line).map_err(|e| {
            anyhow::anyhow!("{}:{}: not a vigil event: {e}", events.display(), n + 1)
        })?;
        read += 1;
        if detector.engine().reads_auditd()
            && vigil_policy_engine::sigma::auditd::has_syscall_record(&event)
            && !event.process().process_credentials.detail.is_known()
        {
            unknown_uid += 1;
        }
        for alert in detector.alerts(&event) {
            alerts += 1;
            if json {
                outln!("{}", serde_json::to_string(&alert)?)?;
            } else if let EventBody::ProcessAlert(a) = &alert.body {
                outln!(
                    "{} {} [{}] {} ({}) {}",
                    alert.time,
                    a.process.binary,
                    a.level,
                    a.title,
                    a.rule_id,
                    a.rule_file
                )?;
            }
        }
    }
    if !json {
        outln!(
            "{read} events, {} rules ({} refused), {alerts} alerts",
            detector.engine().rules().len(),
            detector.refused()
        )?;
    }
    if unknown_uid > 0 {
        // Left out of the records rather than read as 0 (root): say so, or a rule on them
        // would seem not to fire where the agent's own detection does.
        crate::agent::log(format!(
            "{unknown_uid} of {read} events have no process_credentials: their auditd records \
             have no uid or UID (record with an agent started with --enable-process-cred)"
        ));
    }
    if detector.refused() > 0 {
        anyhow::bail!("{} rule files did not load", detector.refused());
    }
    Ok(())
}
