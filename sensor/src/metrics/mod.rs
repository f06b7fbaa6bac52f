//! The agent's Prometheus endpoint: `/metrics` (the OpenMetrics text of the agent's counters),
//! `/healthz` (the agent's loop turns) and `/readyz` (the agent finished its start).
//!
//! The counters live in the agent's loop, which owns them without locks; a scrape is a request
//! the loop answers between two reads of the ring buffer (as an API call is), so what a scrape
//! shows is exact at that moment and nothing on the event path pays for metrics. The server
//! only serves: if it cannot bind its address the agent says so and runs without it.

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use axum::{extract::State, http::StatusCode, response::IntoResponse, routing::get, Router};
use tokio::sync::{mpsc, oneshot};

mod render;
pub use render::{render, MetricsView, ProgramRuns};

/// Tetragon's metrics address, where users' scrapers already look.
pub const DEFAULT_ADDRESS: &str = "127.0.0.1:2112";
/// How long a scrape waits for the loop before it fails: a loop that cannot answer in this time
/// is wedged, which `/healthz` says too.
const SCRAPE_WAIT: Duration = Duration::from_secs(5);
/// A loop that has not turned for this long is reported unhealthy.
const STALL: Duration = Duration::from_secs(10);
/// Scrapes waiting for the loop before a scraper waits for room.
const QUEUED_SCRAPES: usize = 8;

/// A scrape waiting for the loop's counters, rendered.
pub struct Scrape(pub oneshot::Sender<String>);

/// The loop's side: its heartbeat and readiness, and the scrapes to answer.
pub struct MetricsEndpoint {
    /// The address served (the port the kernel chose, where 0 was asked).
    pub address: SocketAddr,
    /// Scrapes to answer.
    pub scrapes: mpsc::Receiver<Scrape>,
    shared: Arc<Shared>,
}

struct Shared {
    started: Instant,
    /// Milliseconds since `started` at the loop's last turn.
    last_turn_ms: AtomicU64,
    ready: AtomicBool,
}

#[derive(Clone)]
struct Served {
    shared: Arc<Shared>,
    scrapes: mpsc::Sender<Scrape>,
}

impl MetricsEndpoint {
    /// Binds `address` and serves the endpoint on the runtime.
    pub async fn start(address: SocketAddr) -> std::io::Result<MetricsEndpoint> {
        let listener = tokio::net::TcpListener::bind(address).await?;
        let address = listener.local_addr()?;
        let shared = Arc::new(Shared {
            started: Instant::now(),
            last_turn_ms: AtomicU64::new(0),
            ready: AtomicBool::new(false),
        });
        let (tx, scrapes) = mpsc::channel(QUEUED_SCRAPES);
        let app = Router::new()
            .route("/metrics", get(metrics))
            .route("/healthz", get(healthz))
            .route("/readyz", get(readyz))
            .with_state(Served {
                shared: shared.clone(),
                scrapes: tx,
            });
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                crate::agent::log(format!("the metrics endpoint stopped: {e}"));
            }
        });
        Ok(MetricsEndpoint {
            address,
            scrapes,
            shared,
        })
    }

    /// The loop turned (called on every tick).
    pub fn turned(&self) {
        let ms = self.shared.started.elapsed().as_millis() as u64;
        self.shared.last_turn_ms.store(ms, Ordering::Relaxed);
    }

    /// The agent finished its start: `/readyz` says so from now on.
    pub fn set_ready(&self) {
        self.turned();
        self.shared.ready.store(true, Ordering::Relaxed);
    }
}

async fn metrics(State(s): State<Served>) -> impl IntoResponse {
    let (tx, rx) = oneshot::channel();
    let asked = tokio::time::timeout(SCRAPE_WAIT, s.scrapes.send(Scrape(tx))).await;
    let answer = match asked {
        Ok(Ok(())) => tokio::time::timeout(SCRAPE_WAIT, rx)
            .await
            .ok()
            .and_then(Result::ok),
        _ => None,
    };
    match answer {
        Some(text) => (
            StatusCode::OK,
            [(
                axum::http::header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "the agent's loop did not answer the scrape\n",
        )
            .into_response(),
    }
}

async fn healthz(State(s): State<Served>) -> impl IntoResponse {
    let now = s.shared.started.elapsed().as_millis() as u64;
    let last = s.shared.last_turn_ms.load(Ordering::Relaxed);
    let ready = s.shared.ready.load(Ordering::Relaxed);
    let stalled = now.saturating_sub(last);
    if ready && stalled > STALL.as_millis() as u64 {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "the agent's loop has not turned for {:.1} s\n",
                stalled as f64 / 1000.0
            ),
        )
    } else {
        (StatusCode::OK, "ok\n".to_string())
    }
}

async fn readyz(State(s): State<Served>) -> impl IntoResponse {
    if s.shared.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting\n")
    }
}

/// The next scrape to answer; never, without an endpoint.
pub async fn next_scrape(endpoint: &mut Option<MetricsEndpoint>) -> Scrape {
    match endpoint.as_mut() {
        Some(m) => match m.scrapes.recv().await {
            Some(s) => s,
            None => std::future::pending().await,
        },
        None => std::future::pending().await,
    }
}
