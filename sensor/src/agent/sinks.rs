//! Where the loop's events go: the exporters' pipeline, the Sigma detector and the API's
//! streams, after the pod stage has named them.

use super::*;

/// Where events go: the exporters' pipeline (stdout or the export file, and the configured
/// sinks), which never blocks and never fails, so no output can stop enforcement; and the Sigma
/// detector that adds alerts to them.
pub(super) struct Sinks {
    pub(super) detector: Option<SigmaDetector>,
    /// No output takes the alerts: each is logged on stderr, as a compact line.
    pub(super) log_alerts: bool,
    /// `None` only once shutting down.
    pub(super) exporters: Option<Exporters>,
    /// Names events' pods, on a Kubernetes node.
    pub(super) kube: Option<Kubernetes>,
    /// Events the pod stage let go, reused between calls.
    pub(super) ready: Vec<vigil_events::Event>,
    /// The API's event streams.
    pub(super) hub: Option<EventHub>,
    /// Each policy hook's actions, for the API.
    pub(super) actions: ActionCounts,
    /// The forensic store.
    pub(super) store: super::store::StoreSlot,
}

impl Sinks {
    /// Takes an event from the enricher: names its pod (an event whose pod is not known yet
    /// may wait), then publishes what is ready.
    pub(super) fn deliver(
        &mut self,
        event: vigil_events::Event,
        cache: &mut ProcessCache,
        stats: &mut AgentStats,
        now: Instant,
    ) {
        let Some(k) = self.kube.as_mut() else {
            return self.publish(event, stats);
        };
        let mut ready = std::mem::take(&mut self.ready);
        k.wait.admit(event, &mut k.pods, cache, now, &mut ready);
        self.publish_all(&mut ready, stats);
    }

    /// Publishes the held events whose pod became known or whose wait ran out.
    pub(super) fn release(
        &mut self,
        cache: &mut ProcessCache,
        stats: &mut AgentStats,
        now: Instant,
    ) {
        let Some(k) = self.kube.as_mut() else {
            return;
        };
        let mut ready = std::mem::take(&mut self.ready);
        k.wait.release(&mut k.pods, cache, now, &mut ready);
        self.publish_all(&mut ready, stats);
    }

    /// Publishes every held event (the agent stops).
    pub(super) fn flush(&mut self, stats: &mut AgentStats) {
        let Some(k) = self.kube.as_mut() else {
            return;
        };
        let mut ready = std::mem::take(&mut self.ready);
        k.wait.flush(&mut ready);
        self.publish_all(&mut ready, stats);
    }

    fn publish_all(&mut self, ready: &mut Vec<vigil_events::Event>, stats: &mut AgentStats) {
        for e in ready.drain(..) {
            self.publish(e, stats);
        }
        self.ready = std::mem::take(ready);
    }

    /// Says in the stream that records were lost since the last time (`reported` of `total`
    /// lost in all), as Tetragon's `rate_limit_info` does: a reader of the events alone (a
    /// SIEM, the store) sees where the stream has a gap and how large. It has no process, so
    /// no pod to wait for.
    pub(super) fn publish_lost(
        &mut self,
        enricher: &EventEnricher,
        reported: u64,
        total: u64,
        stats: &mut AgentStats,
    ) {
        let lost = total.saturating_sub(reported);
        if lost > 0 {
            self.publish(enricher.lost_events(lost), stats);
        }
    }

    /// Hands an event to the outputs, then its Sigma alerts.
    fn publish(&mut self, event: vigil_events::Event, stats: &mut AgentStats) {
        let alerts = self.detector.as_ref().map(|d| d.alerts(&event));
        stats.sigma_evaluations += u64::from(alerts.is_some());
        stats.events_by_kind[event.kind_index()] += 1;
        self.emit(event);
        stats.events += 1;
        for alert in alerts.unwrap_or_default() {
            stats.count_alert(&alert);
            self.alert(alert);
            stats.alerts += 1;
        }
    }

    /// Redacts the event, encodes it once for the exporters and the store, files it in the
    /// store's next batch, hands it to the exporters, then moves it (no copy) to the API's
    /// streams: every output gets the same redacted event.
    fn emit(&mut self, mut event: vigil_events::Event) {
        self.actions.record(&event);
        let mut store = self.store.store.as_mut();
        let exporters = self.exporters.as_mut();
        if let Some(e) = &exporters {
            e.redact(&mut event);
        }
        let exporters = exporters.filter(|e| e.takes_events());
        let record = (exporters.is_some() || store.is_some())
            .then(|| vigil_exporters::record::Record::encode(&event));
        if let (Some(s), Some(r)) = (store.as_mut(), &record) {
            s.offer_encoded(&event, r.time_ns, &r.json);
        }
        if let (Some(e), Some(r)) = (exporters, record) {
            e.submit_record(&event, r);
        }
        if let Some(h) = self.hub.as_ref().filter(|h| h.listening()) {
            h.publish(std::sync::Arc::new(event));
        }
    }

    fn alert(&mut self, alert: vigil_events::Event) {
        if self.log_alerts {
            log(format!(
                "alert: {}",
                vigil_events::compact::render(&alert).trim_end()
            ));
        }
        self.emit(alert);
    }
}
