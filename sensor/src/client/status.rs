//! `vigil status` and `vigil version`: how the agent is, and which version answers.

use serde_json::json;
use vigil_api::v1;

use super::{colour, failed, paint, print_json, Exit, Listing, ServerArgs};
use crate::{agent::log, stdout::outln};

/// `vigil status`: the agent's health.
pub async fn status(server: ServerArgs, output: Listing) -> Exit {
    let mut c = match server.connect().await {
        Ok(c) => c,
        Err(e) => return e,
    };
    let h = match c.get_health(v1::GetHealthRequest {}).await {
        Ok(r) => r.into_inner(),
        Err(s) => return failed("GetHealth", &s),
    };
    let ring = h.ring_buffer.unwrap_or_default();
    if output == Listing::Json {
        let v = json!({
            "status": h.status,
            "problems": h.problems,
            "sensors": h.sensors.iter().map(|s| json!({"name": s.name, "state": s.state})).collect::<Vec<_>>(),
            "ring_buffer": {
                "size_bytes": ring.size_bytes,
                "used_bytes": ring.used_bytes,
                "dropped": {"exec": ring.dropped_exec, "fork": ring.dropped_fork, "exit": ring.dropped_exit, "total": ring.dropped_total},
            },
            "records": h.records,
            "events": h.events,
            "decode_errors": h.decode_errors,
            "alerts": h.alerts,
            "hooks_not_run": h.hooks_not_run,
            "process_cache": {"size": h.process_cache_size, "evictions": h.process_cache_evictions},
            "exporters": h.exporters.iter().map(|e| (e.name.clone(), json!(e.counters))).collect::<serde_json::Map<_, _>>(),
            "api": {"streams": h.api_streams, "events_missed": h.api_events_missed},
            "uptime_seconds": h.uptime_seconds,
        });
        return match print_json(&v) {
            Ok(()) => Exit::Ok,
            Err(e) => e,
        };
    }
    let colour = colour();
    let status = if h.status == "ok" {
        paint(colour, "32", &h.status)
    } else {
        paint(colour, "31", &h.status)
    };
    let mut text = format!("status    {status} (up {} s)\n", h.uptime_seconds);
    for p in &h.problems {
        text.push_str(&format!("  {p}\n"));
    }
    for s in &h.sensors {
        text.push_str(&format!("sensor    {}: {}\n", s.name, s.state));
    }
    let waiting = ring
        .used_bytes
        .map(|u| format!(" ({} KiB waiting)", u.div_ceil(1024)))
        .unwrap_or_default();
    text.push_str(&format!(
        "ring      {} MiB{waiting}, {} records dropped (exec {}, fork {}, exit {})\n",
        ring.size_bytes >> 20,
        ring.dropped_total,
        ring.dropped_exec,
        ring.dropped_fork,
        ring.dropped_exit
    ));
    text.push_str(&format!(
        "events    {} from {} records, {} alerts, {} undecodable\n",
        h.events, h.records, h.alerts, h.decode_errors
    ));
    text.push_str(&format!(
        "cache     {} executions, {} evicted\n",
        h.process_cache_size, h.process_cache_evictions
    ));
    for e in &h.exporters {
        let counters: Vec<String> = e
            .counters
            .iter()
            .filter(|(_, v)| **v > 0)
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        text.push_str(&format!("exporter  {}: {}\n", e.name, counters.join(", ")));
    }
    text.push_str(&format!(
        "api       {} streams, {} events missed by slow clients",
        h.api_streams, h.api_events_missed
    ));
    match outln!("{text}") {
        Ok(()) => Exit::Ok,
        Err(e) => {
            log(format!("error: {e}"));
            Exit::Refused
        }
    }
}

/// `vigil version`: this binary's, and the agent's when it answers.
pub async fn version(server: ServerArgs) -> Exit {
    let own = env!("CARGO_PKG_VERSION");
    let mut c = match server.connect().await {
        Ok(c) => c,
        Err(e) => {
            let _ = outln!("client {own}");
            return e;
        }
    };
    match c.get_version(v1::GetVersionRequest {}).await {
        Ok(r) => {
            let v = r.into_inner();
            match outln!(
                "client {own}\nagent  {} (kernel-side layout {})",
                v.version,
                v.abi
            ) {
                Ok(()) => Exit::Ok,
                Err(_) => Exit::Refused,
            }
        }
        Err(s) => {
            let _ = outln!("client {own}");
            failed("GetVersion", &s)
        }
    }
}
