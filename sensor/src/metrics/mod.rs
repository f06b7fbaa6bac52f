//! The agent's Prometheus endpoint: `/metrics` (the OpenMetrics text of the agent's counters),
//! `/healthz` (the agent's loop turns) and `/readyz` (the agent finished its start).
//!
//! The counters live in the agent's loop, which owns them without locks. A scrape is a request
//! queued to the loop, which answers every waiting scrape from one rendering on its next tick,
//! so what a scrape shows is at most a tick old, the loop renders at most once a tick however
//! many clients ask, and nothing on the event path pays for metrics. The HTTP server runs on a
//! thread and runtime of its own with a cap on connections and short deadlines, so a local
//! user's slow or numerous connections cost neither the loop's time nor its descriptors. If the
//! address cannot be bound, the agent says so, runs without the endpoint and tries again.

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use axum::{extract::State, http::StatusCode, response::IntoResponse, routing::get, Router};
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    service::TowerToHyperService,
};
use tokio::sync::{mpsc, oneshot, Semaphore};

mod render;
pub use render::{label, render, MetricsView, ProgramRuns};

/// Tetragon's metrics address, where users' scrapers already look.
pub const DEFAULT_ADDRESS: &str = "127.0.0.1:2112";
/// How long a scrape waits for the loop before it fails: a loop that cannot answer in this time
/// is wedged.
const SCRAPE_WAIT: Duration = Duration::from_secs(5);
/// A loop that has not turned for this long is reported unhealthy.
const STALL: Duration = Duration::from_secs(10);
/// Scrapes waiting for the loop's next tick; more wait for room (and their deadline).
const QUEUED_SCRAPES: usize = 4;
/// Connections served at once; more are closed at once.
const MAX_CONNECTIONS: usize = 16;
/// A request's head must arrive within this, and a connection ends within [`CONNECTION_LIFE`].
const HEADER_WAIT: Duration = Duration::from_secs(5);
const CONNECTION_LIFE: Duration = Duration::from_secs(15);
/// The most bytes read of a request (a scrape's request is a line and a few headers).
const MAX_REQUEST_BYTES: usize = 16 * 1024;

/// A scrape waiting for the loop's counters, rendered.
pub struct Scrape(pub oneshot::Sender<Arc<str>>);

/// The loop's side: its heartbeat and readiness, and the scrapes to answer. Dropping it stops
/// the server and frees the address.
pub struct MetricsEndpoint {
    /// The address served (the port the kernel chose, where 0 was asked).
    pub address: SocketAddr,
    scrapes: mpsc::Receiver<Scrape>,
    shared: Arc<Shared>,
    _stop: oneshot::Sender<()>,
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
    /// Binds `address` and serves the endpoint on a thread of its own.
    pub fn start(address: SocketAddr) -> std::io::Result<MetricsEndpoint> {
        let listener = std::net::TcpListener::bind(address)?;
        listener.set_nonblocking(true)?;
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
        let (stop_tx, stop) = oneshot::channel();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        std::thread::Builder::new()
            .name("vigil-metrics".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => l,
                        Err(e) => {
                            crate::agent::log(format!("the metrics endpoint stopped: {e}"));
                            return;
                        }
                    };
                    tokio::select! {
                        _ = accept_loop(listener, app) => {}
                        _ = stop => {}
                    }
                })
            })?;
        Ok(MetricsEndpoint {
            address,
            scrapes,
            shared,
            _stop: stop_tx,
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

    /// Answers every scrape waiting with one rendering by `render` (not called when no client
    /// still waits).
    pub fn answer(&mut self, render: impl FnOnce() -> String) {
        let mut waiting = Vec::new();
        while let Ok(s) = self.scrapes.try_recv() {
            if !s.0.is_closed() {
                waiting.push(s);
            }
        }
        if waiting.is_empty() {
            return;
        }
        let text: Arc<str> = render().into();
        for s in waiting {
            let _ = s.0.send(text.clone());
        }
    }
}

/// Serves connections, at most [`MAX_CONNECTIONS`] at once, each with its deadlines.
async fn accept_loop(listener: tokio::net::TcpListener, app: Router) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut turned_away = 0u64;
    loop {
        let (tcp, from) = match listener.accept().await {
            Ok(c) => c,
            Err(_) => {
                // Out of descriptors or memory for a moment: the next accept may succeed.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            turned_away += 1;
            if turned_away.is_power_of_two() {
                crate::agent::log(format!("metrics: {MAX_CONNECTIONS} connections are open: {turned_away} connections closed at once so far (the last from {from})"));
            }
            continue;
        };
        let service = TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(TokioTimer::new())
                .header_read_timeout(HEADER_WAIT)
                .keep_alive(false)
                .max_buf_size(MAX_REQUEST_BYTES);
            let connection = http.serve_connection(TokioIo::new(tcp), service);
            let _ = tokio::time::timeout(CONNECTION_LIFE, connection).await;
            drop(slot);
        });
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
            text.to_string(),
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
    let stalled = now.saturating_sub(last);
    if s.shared.ready.load(Ordering::Relaxed) && stalled > STALL.as_millis() as u64 {
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
