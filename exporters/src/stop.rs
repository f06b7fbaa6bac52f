//! How the agent stops its sinks' workers: finish, then, past the grace period, abandon.

use tokio::sync::watch;

const RUNNING: u8 = 0;
const FINISHING: u8 = 1;
const ABANDONED: u8 = 2;

/// Tells the workers to stop: first to finish (deliver what is queued in memory, spool what
/// fails), then, when the grace period is over, to abandon the delivery in flight and spool
/// what is left, so that a destination that hangs cannot make the agent lose what it still holds.
pub struct StopHandle(watch::Sender<u8>);

/// A worker's view of the [`StopHandle`].
#[derive(Clone)]
pub struct StopSignal(watch::Receiver<u8>);

/// A handle and the signal its workers watch.
pub fn stop_signal() -> (StopHandle, StopSignal) {
    let (tx, rx) = watch::channel(RUNNING);
    (StopHandle(tx), StopSignal(rx))
}

impl StopHandle {
    /// Deliver what is queued, then return.
    pub fn finish(&self) {
        self.0.send_if_modified(|s| {
            let was = *s;
            *s = was.max(FINISHING);
            was != *s
        });
    }

    /// Give up the delivery in flight and spool what is left.
    pub fn abandon(&self) {
        let _ = self.0.send(ABANDONED);
    }
}

impl StopSignal {
    pub(crate) fn finishing(&self) -> bool {
        *self.0.borrow() >= FINISHING
    }

    pub(crate) fn is_abandoned(&self) -> bool {
        *self.0.borrow() >= ABANDONED
    }

    async fn reached(&mut self, state: u8) {
        if self.0.wait_for(|s| *s >= state).await.is_err() {
            // The handle is gone without saying so: never.
            std::future::pending::<()>().await;
        }
    }

    /// Returns once the workers are to finish.
    pub(crate) async fn finished(&mut self) {
        self.reached(FINISHING).await;
    }

    /// Returns once the delivery in flight is to be abandoned.
    pub(crate) async fn abandoned(&mut self) {
        self.reached(ABANDONED).await;
    }
}
