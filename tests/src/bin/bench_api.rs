//! `make bench`, the API: events per second through `GetEvents` to one client and to ten at
//! once, and the agent's CPU per event with no client, one and ten, measured in one run.
//!
//! The events: a policy posts every open of one file (a `process_lsm` event each), and a child
//! opens and closes it OPENS times. Each client streams the `process_lsm` events over the
//! agent's unix socket and counts them (and what it was told it missed) until it has them all;
//! its rate is events over the time from its first event to its last. The agent's CPU is its
//! utime + stime over the whole run of opens, divided by the events the agent published.

use std::{
    process::Command,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use vigil_api::v1::{self, get_events_response::Response};
use vigil_tests::{measure::cpu_seconds, Agent, TempDir};

const OPENS: usize = 100_000;

fn open_loop(path: &str) {
    for _ in 0..OPENS {
        drop(std::fs::File::open(path).expect("open"));
    }
}

/// What one client got.
#[derive(Default, Clone, Copy)]
struct Streamed {
    events: u64,
    missed: u64,
    secs: f64,
}

/// One client: streams `process_lsm` events until it has (or missed) OPENS of them.
async fn client(addr: vigil_api::ServerAddr, opened: Arc<AtomicUsize>) -> Streamed {
    let mut client = vigil_api::connect(&addr, None).await.unwrap();
    let req = v1::GetEventsRequest {
        allow_list: vec![v1::Filter {
            event_set: vec!["process_lsm".into()],
            ..Default::default()
        }],
        ..Default::default()
    };
    let mut stream = client.get_events(req).await.unwrap().into_inner();
    opened.fetch_add(1, Ordering::SeqCst);
    let mut s = Streamed::default();
    let mut first = None;
    let mut last = Instant::now();
    while s.events + s.missed < OPENS as u64 {
        let m = match tokio::time::timeout(Duration::from_secs(5), stream.message()).await {
            Ok(Ok(Some(m))) => m,
            _ => break,
        };
        match m.response {
            Some(Response::Event(_)) => {
                s.events += 1;
                first.get_or_insert_with(Instant::now);
                last = Instant::now();
            }
            Some(Response::Lost(l)) => s.missed += l.events,
            None => {}
        }
    }
    s.secs = first.map_or(0.0, |f| last.duration_since(f).as_secs_f64());
    s
}

/// Opens `n` streams (read on a thread of their own), then runs the opens; returns each
/// stream's count and the agent's CPU seconds over the opens.
fn run(agent: &Agent, file: &str, n: usize) -> (Vec<Streamed>, f64) {
    let addr = vigil_api::ServerAddr::Unix(agent.socket.clone());
    let opened = Arc::new(AtomicUsize::new(0));
    let readers = {
        let opened = opened.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let mut set = tokio::task::JoinSet::new();
                for _ in 0..n {
                    set.spawn(client(addr.clone(), opened.clone()));
                }
                set.join_all().await
            })
        })
    };
    while opened.load(Ordering::SeqCst) < n {
        std::thread::sleep(Duration::from_millis(10));
    }
    let cpu = cpu_seconds(agent.pid());
    let exe = std::env::current_exe().unwrap();
    let out = Command::new(exe)
        .args(["--open-loop", file])
        .output()
        .unwrap();
    assert!(out.status.success());
    let streamed = readers.join().unwrap();
    settle(agent);
    (streamed, cpu_seconds(agent.pid()) - cpu)
}

/// Waits until the agent has published everything the opens made: its event count stays the
/// same for half a second.
fn settle(agent: &Agent) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let addr = vigil_api::ServerAddr::Unix(agent.socket.clone());
    rt.block_on(async {
        let mut client = vigil_api::connect(&addr, None).await.unwrap();
        let mut last = u64::MAX;
        loop {
            let h = client
                .get_health(v1::GetHealthRequest {})
                .await
                .unwrap()
                .into_inner();
            if h.events == last {
                return;
            }
            last = h.events;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() == 3 && args[1] == "--open-loop" {
        return open_loop(&args[2]);
    }
    vigil_tests::require_root();
    let dir = TempDir::new("bench-api");
    let file = dir.path().join("watched.txt");
    std::fs::write(&file, "x").unwrap();
    let policy = dir.path().join("post-opens.yaml");
    std::fs::write(
        &policy,
        format!(
            "apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n  name: bench-post-opens\nspec:\n  lsmhooks:\n  - hook: file_open\n    args:\n    - index: 0\n      type: file\n    selectors:\n    - matchArgs:\n      - index: 0\n        operator: Equal\n        values:\n        - {}\n      matchActions:\n      - action: Post\n",
            file.display()
        ),
    )
    .unwrap();
    let file = file.to_str().unwrap();
    let agent = Agent::start(&["--policy", policy.to_str().unwrap()]);
    println!("vigil-bench-api: {OPENS} opens of a file a policy posts (one process_lsm event each), streamed over the unix socket");
    let (_, cpu0) = run(&agent, file, 0);
    let per_event = |cpu: f64| cpu / OPENS as f64 * 1e6;
    println!(
        "  no client:   agent CPU {:.2} µs per event",
        per_event(cpu0)
    );
    for n in [1usize, 10] {
        let (streamed, cpu) = run(&agent, file, n);
        let events: u64 = streamed.iter().map(|s| s.events).sum();
        let missed: u64 = streamed.iter().map(|s| s.missed).sum();
        let rate: f64 = streamed
            .iter()
            .filter(|s| s.secs > 0.0)
            .map(|s| s.events as f64 / s.secs)
            .sum();
        println!(
            "  {n:>2} client{}: {:.0} events/s through GetEvents in all ({} streamed, {} missed); agent CPU {:.2} µs per event (×{:.2} of no client), {:.2} µs per streamed event over no client",
            if n == 1 { " " } else { "s" },
            rate,
            events,
            missed,
            per_event(cpu),
            cpu / cpu0,
            (cpu - cpu0) / events.max(1) as f64 * 1e6
        );
    }
    agent.stop();
}
