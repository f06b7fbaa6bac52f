//! The harness for vigil's end-to-end tests and benchmarks: it starts the real `vigil agent`
//! binary on the real kernel, waits until its programs are attached, lets the test run real
//! processes, stops the agent (which drains its ring buffer) and hands back every event it
//! wrote and its final counters.
//!
//! Nothing here is simulated. A test that cannot run (not root, binary not built) panics with
//! the reason instead of passing.

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{mpsc, Arc, Mutex},
    time::{Duration, Instant},
};

use serde_json::Value;

pub mod api_client;
pub mod certs;
pub mod dns;
pub mod fixtures;
pub mod floor;
pub mod kernels;
pub mod kube_api;
pub mod links;
pub mod measure;
pub mod netns;
pub mod pod_cgroups;
pub mod scale;
pub mod tunnels;
pub mod vm;

/// The node name every test agent uses, so exec ids are predictable.
pub const NODE: &str = "test-node";

/// Path of the `vigil` binary: `$VIGIL_BIN`, else beside the test executable's `deps/`.
pub fn vigil_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("VIGIL_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe.parent().expect("exe dir");
    let dir = if dir.ends_with("deps") {
        dir.parent().expect("profile dir")
    } else {
        dir
    };
    let bin = dir.join("vigil");
    assert!(
        bin.is_file(),
        "{} is not built: run `make test` (or cargo build -p vigil-sensor first)",
        bin.display()
    );
    bin
}

/// The shipped policies: `$VIGIL_RULES_DIR` (set in the VM), else the repository's
/// `rules/policies/`.
pub fn rules_dir() -> PathBuf {
    std::env::var_os("VIGIL_RULES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules/policies"))
}

/// The broken-policy corpus: `$VIGIL_BROKEN_DIR` (set in the VM), else the repository's
/// `policy-engine/tests/broken/`.
pub fn broken_policies_dir() -> PathBuf {
    std::env::var_os("VIGIL_BROKEN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../policy-engine/tests/broken")
        })
}

/// Tetragon's example policies: `$VIGIL_TETRAGON_DIR` (set in the VM), else the shared test
/// data beside the repository.
pub fn tetragon_policies_dir() -> PathBuf {
    std::env::var_os("VIGIL_TETRAGON_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/testdata/tetragon-policies")
        })
}

/// SigmaHQ's Linux rules: `$VIGIL_SIGMA_DIR` (set in the VM), else the shared test data beside
/// the repository.
pub fn sigma_rules_dir() -> PathBuf {
    std::env::var_os("VIGIL_SIGMA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/testdata/sigma-linux")
        })
}

/// `vigil probe --json`, parsed; panics with stderr when it fails.
pub fn probe_json() -> Value {
    let out = Command::new(vigil_bin())
        .args(["probe", "--json"])
        .output()
        .expect("run vigil probe");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("probe prints JSON")
}

/// Panics unless the tests run as root: they load eBPF programs.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "the end-to-end tests load eBPF programs and must run as root (make test does)"
    );
}

/// What the tests' agents are started with unless a test is about persistence: an agent
/// pins its enforcement by default so that it outlives it (`sensor/src/loader/pins.rs`), and a
/// test's must not: it would go on enforcing the test's policies after the test, and the next
/// agent would spend its start detaching it.
pub const NO_PERSIST: &str = "--no-persist";

/// Spawns `command`, whose program a test may have just written (an upgrade's build): while
/// another test's thread forks, its child holds a copy of every descriptor open in this
/// process until it execs, the one the program was written through among them, and the kernel
/// refuses to run a file open for writing (`ETXTBSY`). That lasts a fork's moment: tried again.
fn spawn_written(command: &mut Command) -> std::io::Result<Child> {
    let mut tries = 0;
    loop {
        match command.spawn() {
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy && tries < 50 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            spawned => return spawned,
        }
    }
}

/// The flags that keep a test's agent's state (the API's policies) and API socket in `dir`,
/// off the machine's /var/lib/vigil and /run/vigil: unless the test names its own.
pub fn private_state(dir: &Path, extra: &[&str]) -> Vec<String> {
    let mut flags = Vec::new();
    if !extra.contains(&"--state-dir") {
        flags.push("--state-dir".to_string());
        flags.push(dir.join("state").display().to_string());
    }
    if !extra.contains(&"--api-socket") && !extra.contains(&"--no-api-socket") {
        flags.push("--api-socket".to_string());
        flags.push(dir.join("run/vigil.sock").display().to_string());
    }
    // A port of its own: two agents of an upgrade run at once, and the machine's own agent
    // may hold the default.
    if !extra.contains(&"--metrics-address") && !extra.contains(&"--no-metrics") {
        flags.push("--metrics-address".to_string());
        flags.push("127.0.0.1:0".to_string());
    }
    flags
}

/// `GET path` over HTTP/1.1 from `address` (`host:port`): the status and the body.
pub fn http_get(address: &str, path: &str) -> (u16, String) {
    try_http_get(address, path).unwrap_or_else(|e| panic!("GET {path} from {address}: {e}"))
}

/// The same, an error where no answer came (refused, closed, cut short, timed out).
pub fn try_http_get(address: &str, path: &str) -> Result<(u16, String), String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(address).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("write: {e}"))?;
    let mut response = String::new();
    s.read_to_string(&mut response)
        .map_err(|e| format!("read: {e}"))?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no header end in {response:?}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("no status in {head:?}"))?;
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return Err(format!(
            "a chunked body, which this client does not read: {head}"
        ));
    }
    Ok((status, body.to_string()))
}

/// The value of the series `series` (its name and labels as the text shows them, e.g.
/// `vigil_events_total{type="process_exec"}`) in an OpenMetrics text.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// A running agent.
pub struct Agent {
    child: Child,
    export: PathBuf,
    /// Its API socket (unless the test named another).
    pub socket: PathBuf,
    /// Its event store's database (unless the test named another state directory).
    pub store_db: PathBuf,
    stderr: Arc<Mutex<Vec<String>>>,
    _dir: TempDir,
}

/// What an agent wrote, after it stopped.
pub struct AgentRun {
    /// Every event line, parsed.
    pub events: Vec<Value>,
    /// The `stats` object of its last line.
    pub stats: Value,
    /// All of stderr.
    pub stderr: Vec<String>,
}

impl Agent {
    /// Starts `vigil agent --export-file <tmp> --node-name test-node --alerts-in-stream <extra>`
    /// and waits until it says it is ready (the scenarios read the Sigma alerts from the export
    /// file).
    pub fn start(extra: &[&str]) -> Agent {
        Agent::start_as(extra, true)
    }

    /// The same without `--alerts-in-stream`: the export file is a Tetragon-shaped stream,
    /// without alerts.
    pub fn start_tetragon_stream(extra: &[&str]) -> Agent {
        Agent::start_as(extra, false)
    }

    /// [`Agent::start`] with another build of the agent (an upgrade).
    pub fn start_binary(bin: &Path, extra: &[&str]) -> Agent {
        Agent::start_from(bin, extra, true)
    }

    fn start_as(extra: &[&str], alerts_in_stream: bool) -> Agent {
        Agent::start_from(&vigil_bin(), extra, alerts_in_stream)
    }

    fn start_from(bin: &Path, extra: &[&str], alerts_in_stream: bool) -> Agent {
        require_root();
        let dir = TempDir::new("agent");
        let export = dir.path().join("events.jsonl");
        let mut command = Command::new(bin);
        command
            .arg("agent")
            .arg("--export-file")
            .arg(&export)
            .args(["--node-name", NODE])
            .args(alerts_in_stream.then_some("--alerts-in-stream"))
            .args((!extra.contains(&"--bpf-dir")).then_some(NO_PERSIST))
            .args(private_state(dir.path(), extra))
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = spawn_written(&mut command).expect("spawn vigil agent");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let (ready_tx, ready_rx) = mpsc::channel();
        let lines = stderr.clone();
        let pipe = child.stderr.take().expect("stderr piped");
        std::thread::spawn(move || {
            // One log message of several lines (a refusal and its reasons) is one write: its
            // lines are kept together, when nothing more of it is buffered, so a test polling
            // the log never sees half a message.
            let mut reader = BufReader::new(pipe);
            let mut pending = Vec::new();
            loop {
                let mut line = String::new();
                match reader.read_line(&mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                let line = line.trim_end_matches('\n').to_string();
                let ready = line.contains("agent ready");
                pending.push(line);
                if reader.buffer().is_empty() || ready {
                    // Kept before the start returns, so a test sees the ready line in the log.
                    lines.lock().unwrap().append(&mut pending);
                }
                if ready {
                    let _ = ready_tx.send(());
                }
            }
            lines.lock().unwrap().append(&mut pending);
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if ready_rx.recv_timeout(Duration::from_millis(100)).is_ok() {
                break;
            }
            if let Some(status) = child.try_wait().expect("try_wait") {
                std::thread::sleep(Duration::from_millis(200));
                panic!(
                    "vigil agent exited with {status} before it was ready:\n{}",
                    stderr.lock().unwrap().join("\n")
                );
            }
            assert!(
                Instant::now() < deadline,
                "vigil agent not ready after 60 s:\n{}",
                stderr.lock().unwrap().join("\n")
            );
        }
        Agent {
            child,
            export,
            socket: dir.path().join("run/vigil.sock"),
            store_db: dir.path().join("state/store/events.db"),
            stderr,
            _dir: dir,
        }
    }

    /// Waits until the agent has logged a line containing `needle` (after `skip` earlier
    /// matches); panics with its log after 30 s.
    pub fn wait_for_log(&self, needle: &str, skip: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let found = self
                .stderr
                .lock()
                .unwrap()
                .iter()
                .filter(|l| l.contains(needle))
                .count();
            if found > skip {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no log line {needle:?} after 30 s:\n{}",
                self.stderr.lock().unwrap().join("\n")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Where its metrics endpoint listens (`host:port`), from its start's log.
    pub fn metrics_address(&self) -> String {
        self.log_lines()
            .iter()
            .find_map(|l| {
                let rest = l.split_once("metrics served on http://")?.1;
                Some(rest.split_once('/')?.0.to_string())
            })
            .unwrap_or_else(|| {
                panic!(
                    "the agent logged no metrics address:\n{}",
                    self.log_lines().join("\n")
                )
            })
    }

    /// The events written to its export file so far (a line still being written is left out).
    pub fn events_so_far(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.export)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Every line the agent has logged so far.
    pub fn log_lines(&self) -> Vec<String> {
        self.stderr.lock().unwrap().clone()
    }

    /// The agent's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops the agent with SIGTERM and collects the events it wrote.
    pub fn stop(self) -> AgentRun {
        let (text, stats, stderr) = self.stop_inner();
        let events = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l}: {e}")))
            .collect();
        AgentRun {
            events,
            stats,
            stderr,
        }
    }

    /// Kills the agent with SIGKILL, as a crash or the OOM killer would, and returns what it
    /// had logged.
    pub fn kill(mut self) -> Vec<String> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // The reader thread finishes when the pipe closes.
        std::thread::sleep(Duration::from_millis(100));
        self.stderr.lock().unwrap().clone()
    }

    /// Stops the agent and returns its export file as text (for `-o compact`) and its stats.
    pub fn stop_raw(self) -> (String, Value) {
        let (text, stats, _) = self.stop_inner();
        (text, stats)
    }

    fn stop_inner(mut self) -> (String, Value, Vec<String>) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let status = wait_timeout(&mut self.child, Duration::from_secs(60));
        let stderr = {
            // The reader thread finishes when the pipe closes; give it a moment.
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                let done = self
                    .stderr
                    .lock()
                    .unwrap()
                    .iter()
                    .any(|l| l.contains("vigil: stats "));
                if done || Instant::now() > deadline {
                    break self.stderr.lock().unwrap().clone();
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        };
        assert!(
            status.success(),
            "vigil agent exited with {status}:\n{}",
            stderr.join("\n")
        );
        wait_for_detach(&stderr);
        let stats = stderr
            .iter()
            .find_map(|l| l.strip_prefix("vigil: stats "))
            .map(|s| serde_json::from_str(s).expect("stats line is JSON"))
            .unwrap_or_else(|| panic!("no stats line from the agent:\n{}", stderr.join("\n")));
        let text = std::fs::read_to_string(&self.export).expect("export file exists");
        archive_events(&text);
        (text, stats, stderr)
    }
}

/// Names a file every agent's JSON event lines are appended to when the scenarios stop their
/// agents, for the Tetragon schema check of all of them (tests/tests/tetragon_schema.rs).
pub const EVENT_ARCHIVE_VAR: &str = "VIGIL_EVENT_ARCHIVE";

/// Appends the JSON event lines of an agent's export file (compact lines are not events) to
/// the file `VIGIL_EVENT_ARCHIVE` names, when it is set; does nothing otherwise.
pub fn archive_events(text: &str) {
    use std::io::Write;
    let Some(path) = std::env::var_os(EVENT_ARCHIVE_VAR) else {
        return;
    };
    let lines: String = text
        .lines()
        .filter(|l| serde_json::from_str::<Value>(l).is_ok_and(|v| v.is_object()))
        .flat_map(|l| [l, "\n"])
        .collect();
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("{EVENT_ARCHIVE_VAR}={}: {e}", path.to_string_lossy()));
    f.write_all(lines.as_bytes())
        .unwrap_or_else(|e| panic!("{EVENT_ARCHIVE_VAR}={}: {e}", path.to_string_lossy()));
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until the process the agent handed its kernel objects to at its stop has exited, so
/// that the kernel has detached its programs before the next test's agent starts (one agent's
/// policies never act in another's test).
pub fn wait_for_detach(stderr: &[String]) {
    let Some(pid) = stderr.iter().find_map(|l| {
        l.split_once("the kernel finishes detaching in process ")
            .and_then(|(_, p)| p.trim().parse::<u32>().ok())
    }) else {
        return;
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        // Gone, a zombie (its descriptors are closed before it becomes one), or the pid taken
        // by another program since.
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(stat)
                if stat.contains("(vigil)")
                    && !stat
                        .rsplit_once(") ")
                        .is_some_and(|(_, r)| r.starts_with('Z')) => {}
            _ => return,
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("the agent's detaching process {pid} still runs 30 s after the agent stopped");
}

fn wait_timeout(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            return s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("vigil agent did not stop within {limit:?} of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl AgentRun {
    /// The `process_kprobe` events of `function`; a system call named `sys_<name>` is matched
    /// by the symbol Tetragon reports it under (`__x64_sys_setuid`).
    pub fn kprobes(&self, function: &str) -> Vec<&Value> {
        let reported =
            vigil_policy_engine::kernel::reported_function(function, function.starts_with("sys_"));
        self.events
            .iter()
            .filter_map(|e| e.get("process_kprobe"))
            .filter(|e| e["function_name"] == reported)
            .collect()
    }

    /// Events of `kind` (`process_exec`, ...) whose process has `pid`.
    pub fn of_pid(&self, kind: &str, pid: u32) -> Vec<&Value> {
        self.events
            .iter()
            .filter(|e| e[kind]["process"]["pid"] == pid)
            .collect()
    }

    /// The one event of `kind` for `pid` whose binary is `binary`.
    pub fn one(&self, kind: &str, pid: u32, binary: &str) -> &Value {
        let found: Vec<_> = self
            .of_pid(kind, pid)
            .into_iter()
            .filter(|e| e[kind]["process"]["binary"] == binary)
            .collect();
        assert_eq!(
            found.len(),
            1,
            "expected one {kind} of {binary} for pid {pid}, got {}: {found:#?}",
            found.len()
        );
        &found[0][kind]
    }

    /// The one `process_exec` event (whole, with `node_name`) of `binary` run with exactly
    /// these `arguments`.
    pub fn exec_with(&self, binary: &str, arguments: &str) -> &Value {
        let found: Vec<_> = self
            .events
            .iter()
            .filter(|e| {
                let p = &e["process_exec"]["process"];
                p["binary"] == binary && p["arguments"].as_str().unwrap_or("") == arguments
            })
            .collect();
        assert_eq!(
            found.len(),
            1,
            "expected one exec of {binary} {arguments}: {found:#?}"
        );
        found[0]
    }

    /// The exit event with this exec id.
    pub fn exit_of(&self, exec_id: &Value) -> &Value {
        let found: Vec<_> = self
            .events
            .iter()
            .filter(|e| e["process_exit"]["process"]["exec_id"] == *exec_id)
            .collect();
        assert_eq!(
            found.len(),
            1,
            "expected one process_exit for {exec_id}, got {found:#?}"
        );
        &found[0]["process_exit"]
    }
}

/// The path the kernel resolves `p` to (`/bin/echo` is `/usr/bin/echo` on merged-/usr hosts).
pub fn resolved(p: &str) -> String {
    std::fs::canonicalize(p)
        .unwrap_or_else(|e| panic!("{p}: {e}"))
        .to_string_lossy()
        .into_owned()
}

/// The exec id vigil and Tetragon give a process found in /proc: ktime from its start time.
pub fn procfs_exec_id(pid: u32) -> String {
    use base64::Engine;
    // Bytes: a process may name itself in anything but UTF-8.
    let raw = std::fs::read(format!("/proc/{pid}/stat")).expect("stat");
    let close = raw.iter().rposition(|b| *b == b')').expect("comm");
    let stat = String::from_utf8_lossy(&raw[close + 2..]);
    let after_comm = &*stat;
    let starttime: u64 = after_comm
        .split_whitespace()
        .nth(19)
        .expect("field 22")
        .parse()
        .expect("number");
    // SAFETY: sysconf has no preconditions.
    let tck = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    base64::engine::general_purpose::STANDARD
        .encode(format!("{NODE}:{}:{pid}", starttime * 1_000_000_000 / tck))
}

/// A directory removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    /// A fresh directory under the system temp dir.
    pub fn new(tag: &str) -> TempDir {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("vigil-{tag}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }

    /// A fresh directory at `path` (what was there is removed): for a staging directory that
    /// must be on the same filesystem as where its contents go.
    pub fn at(path: PathBuf) -> std::io::Result<TempDir> {
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path)?;
        Ok(TempDir(path))
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
