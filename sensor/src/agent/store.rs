//! The agent's forensic store: opened at the start unless it is off, or, while another agent
//! still holds it (a hand-off), opened by the housekeeping once it lets go.

use std::path::PathBuf;

use vigil_store::{EventStore, StoreConfig, StoreError, StoreStats};

use super::{log, AgentOptions};

/// The store, or what is needed to open it later.
#[derive(Default)]
pub(super) struct StoreSlot {
    /// The open store.
    pub(super) store: Option<EventStore>,
    /// Its database, for searches (set whenever the store is on).
    pub(super) db: Option<PathBuf>,
    /// Why it is not open yet, while the agent waits for it.
    pub(super) waiting_reason: Option<String>,
    waiting: Option<(PathBuf, StoreConfig)>,
}

fn say_recovery(store: &EventStore) {
    let r = store.recovery;
    if r.lost > 0 {
        log(format!(
            "event store: the previous agent stopped without closing it: {} of the events it took were never committed and are lost ({} committed, {} shed)",
            r.lost, r.committed, r.shed
        ));
    } else if r.previous_run > 0 && !r.clean {
        log(format!(
            "event store: the previous agent stopped without closing it, but every event it took was committed ({})",
            r.committed
        ));
    }
}

impl StoreSlot {
    /// Opens the store in the state directory, unless it is off. A store that cannot be
    /// opened is logged and left out: enforcement and the other outputs never depend on it.
    pub(super) fn open(opts: &AgentOptions) -> StoreSlot {
        let config = opts
            .config
            .as_ref()
            .map(|c| c.store.clone())
            .unwrap_or_default();
        if opts.no_store || !config.enabled {
            return StoreSlot::default();
        }
        let dir = opts.state_dir.join("store");
        let mut slot = StoreSlot {
            db: Some(dir.join(vigil_store::DB_FILE)),
            waiting: Some((dir, config)),
            ..Default::default()
        };
        slot.retry();
        slot
    }

    /// Tries again to open a store another agent held.
    pub(super) fn retry(&mut self) {
        let Some((dir, config)) = self.waiting.take() else {
            return;
        };
        match EventStore::open(&dir, &config) {
            Ok(store) => {
                if self.waiting_reason.take().is_some() {
                    log("event store: the agent before this one let it go; events are kept from now");
                }
                say_recovery(&store);
                self.store = Some(store);
            }
            Err(e @ StoreError::Busy { .. }) => {
                if self.waiting_reason.is_none() {
                    log(format!("event store: {e}"));
                }
                self.waiting_reason = Some(e.to_string());
                self.waiting = Some((dir, config));
            }
            Err(e) => {
                log(format!("event store: {e}; events are not kept on this node (the outputs and enforcement go on)"));
                self.db = None;
            }
        }
    }

    /// Hands the events filed since the last time to the writer (the loop's timer).
    pub(super) fn hand_off(&mut self) {
        if let Some(s) = self.store.as_mut() {
            s.hand_off();
        }
    }

    /// Whether the store can take a burst now ([`EventStore::has_room`]); a closed or absent
    /// store always can.
    pub(super) fn has_room(&mut self) -> bool {
        self.store.as_mut().is_none_or(EventStore::has_room)
    }

    /// Commits what is queued and closes the store.
    pub(super) fn close(&mut self) -> Option<StoreStats> {
        self.store.take().map(EventStore::close)
    }
}
