//! The disk spool when what it holds is damaged, on the agent's single-threaded runtime: a
//! segment whose last line a crash cut short, and a line that is not a record. Good records are
//! delivered, bad lines go to the dead-letter file with the reason, and the worker neither spins
//! nor ignores the order to stop.

#[path = "support/common.rs"]
mod common;

use std::{os::unix::fs::PermissionsExt, sync::mpsc, time::Duration};

use common::Dir;
use vigil_exporters::{config::ExportersConfig, record::Record, Exporters};

fn line(n: u32) -> Vec<u8> {
    Record {
        time_ns: 1_764_000_000_000_000_000 + u64::from(n),
        kind: "process_exec",
        exec_id: format!("spooled-{n}").into(),
        json: format!("{{\"process_exec\":{{\"process\":{{\"exec_id\":\"spooled-{n}\"}}}}}}")
            .into_bytes()
            .into(),
    }
    .to_line()
}

/// Runs `f` on a current-thread runtime in its own thread; fails the test instead of hanging
/// when the runtime never comes back (a worker that spins holds the only thread).
fn on_current_thread<T: Send + 'static>(
    secs: u64,
    f: impl FnOnce() -> std::pin::Pin<Box<dyn std::future::Future<Output = T>>> + Send + 'static,
) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _ = tx.send(rt.block_on(f()));
    });
    rx.recv_timeout(Duration::from_secs(secs))
        .expect("the single-threaded runtime hung")
}

#[test]
fn a_torn_last_line_and_a_garbled_line_are_dead_lettered_and_the_worker_still_stops() {
    let dir = Dir::new("torn-spool");
    let segments = dir.join("spool/archive/spool");
    std::fs::create_dir_all(&segments).unwrap();
    let mut seg = Vec::new();
    seg.extend(line(0));
    seg.extend_from_slice(b"not a record\n");
    seg.extend(line(1));
    seg.extend(line(2));
    let torn = line(3);
    seg.extend_from_slice(&torn[..torn.len() / 2]);
    let seg_path = segments.join("seg-0000000000000000.jsonl");
    std::fs::write(&seg_path, &seg).unwrap();
    std::fs::set_permissions(&seg_path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = dir.join("out/events.jsonl");
    let yaml = format!(
        "spool_dir: {}\nsinks:\n- name: archive\n  type: file\n  path: {}\n",
        dir.join("spool").display(),
        out.display()
    );
    let cfg: ExportersConfig = serde_yaml::from_str(&yaml).unwrap();
    let out2 = out.clone();
    let stats = on_current_thread(30, move || {
        Box::pin(async move {
            let mut ex = Exporters::new(&cfg, "node-1").unwrap();
            ex.start();
            for _ in 0..200 {
                let text = std::fs::read_to_string(&out2).unwrap_or_default();
                if (0..3).all(|n| text.contains(&format!("spooled-{n}"))) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            ex.shutdown(Duration::from_secs(2)).await
        })
    });
    let text = std::fs::read_to_string(&out).unwrap();
    let got: Vec<&str> = text.lines().collect();
    assert_eq!(got.len(), 3, "{text}");
    for (n, l) in got.iter().enumerate() {
        assert!(l.contains(&format!("spooled-{n}")), "in order: {text}");
    }
    let dead = std::fs::read_to_string(dir.join("spool/archive/dead-letter.jsonl")).unwrap();
    let dead: Vec<serde_json::Value> = dead
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(dead.len(), 2, "{dead:#?}");
    assert!(
        dead[0]["reason"]
            .as_str()
            .unwrap()
            .contains("not a spool record"),
        "{dead:#?}"
    );
    assert_eq!(dead[0]["line"], "not a record");
    assert!(
        dead[1]["reason"].as_str().unwrap().contains("torn"),
        "{dead:#?}"
    );
    assert!(dead[1]["line"].as_str().unwrap().contains("spooled-3"));
    assert_eq!(stats["archive"]["delivered"], 3, "{stats}");
    assert_eq!(stats["archive"]["dead_lettered"], 2, "{stats}");
    assert_eq!(stats["archive"]["spool_pending"], 0, "{stats}");
    assert!(
        std::fs::read_dir(&segments).unwrap().next().is_none(),
        "the consumed segment is deleted"
    );
}
