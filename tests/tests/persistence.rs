//! Enforcement that outlives the agent: with the shipped deny policy pinned, a loop that runs
//! `cat /etc/shadow` every millisecond never reads it, across an agent killed with SIGKILL, the
//! time no agent runs, a new agent's start, and an upgrade to a build of another pinned-state
//! version that starts while the old agent still runs (a DaemonSet's surge) and takes over. The
//! new agents say what the old programs wrote while no agent read it.

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use std::os::unix::fs::PermissionsExt;

use serde_json::Value;
use vigil_tests::{rules_dir, vigil_bin, Agent, TempDir};

/// A pin directory of the test's own in bpffs, removed with `vigil agent --cleanup` at the
/// end, whatever happened.
struct PinDir(PathBuf);

impl PinDir {
    fn new(name: &str) -> PinDir {
        let dir = PathBuf::from(format!(
            "/sys/fs/bpf/vigil-test-{}-{name}",
            std::process::id()
        ));
        PinDir(dir)
    }

    fn arg(&self) -> &str {
        self.0.to_str().unwrap()
    }

    /// The generation directories in it.
    fn generations(&self) -> Vec<String> {
        let mut all: Vec<String> = std::fs::read_dir(&self.0)
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        all.sort();
        all
    }
}

impl Drop for PinDir {
    fn drop(&mut self) {
        let _ = Command::new(vigil_bin())
            .args(["agent", "--cleanup", "--bpf-dir"])
            .arg(&self.0)
            .output();
    }
}

/// One run of the loop: when it ended and whether it read the file.
struct Run {
    at: Instant,
    read: bool,
}

/// `cat /etc/shadow` every millisecond in a thread, each run recorded.
struct ShadowLoop {
    runs: Arc<Mutex<Vec<Run>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ShadowLoop {
    fn start() -> ShadowLoop {
        let runs = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (r, s) = (runs.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let out = Command::new("/usr/bin/cat")
                    .arg("/etc/shadow")
                    .output()
                    .expect("run cat");
                let read = out.status.success() || !out.stdout.is_empty();
                r.lock().unwrap().push(Run {
                    at: Instant::now(),
                    read,
                });
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        ShadowLoop {
            runs,
            stop,
            thread: Some(thread),
        }
    }

    fn count(&self) -> usize {
        self.runs.lock().unwrap().len()
    }

    /// Waits until `n` more runs have ended.
    fn wait_runs(&self, n: usize) {
        let target = self.count() + n;
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.count() < target {
            assert!(Instant::now() < deadline, "the cat loop stalled");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn finish(mut self) -> Vec<Run> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        std::mem::take(&mut *self.runs.lock().unwrap())
    }
}

/// A copy of the agent's binary whose pinned-state version (the bytes
/// `vigil-pinned-abi=NNNN`, read at run time) is `version`: what a build with that version
/// constant changed is.
fn build_of_version(dir: &TempDir, version: u32) -> PathBuf {
    let mut bytes = std::fs::read(vigil_bin()).unwrap();
    let mark = b"vigil-pinned-abi=";
    let at: Vec<usize> = bytes
        .windows(mark.len())
        .enumerate()
        .filter(|(_, w)| w == mark)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(at.len(), 1, "the binary carries its version once");
    let digits = format!("{version:04}");
    bytes[at[0] + mark.len()..at[0] + mark.len() + 4].copy_from_slice(digits.as_bytes());
    let path = dir.path().join("vigil-next");
    std::fs::write(&path, bytes).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// The line an agent logged when it replaced an earlier generation, and the generation.
fn replaced(log: &[String]) -> &str {
    log.iter()
        .find(|l| l.contains("replaced the enforcement an earlier agent left pinned"))
        .unwrap_or_else(|| panic!("no replacement logged:\n{}", log.join("\n")))
}

fn previous(stats: &Value) -> &Value {
    &stats["previous_agents"][0]
}

#[test]
fn a_deny_holds_across_a_killed_agent_a_restart_and_an_upgrade() {
    let pins = PinDir::new("deny");
    let policy = rules_dir().join("deny-credential-reads.yaml");
    let args = [
        "--bpf-dir",
        pins.arg(),
        "--policy",
        policy.to_str().unwrap(),
    ];
    let first = Agent::start(&args);
    let first_gen = pins.generations();
    assert_eq!(first_gen.len(), 1, "{first_gen:?}");
    assert!(first_gen[0].starts_with("gen-0001-"), "{first_gen:?}");

    let cats = ShadowLoop::start();
    cats.wait_runs(20);
    let killed = Instant::now();
    let first_log = first.kill();
    // No agent runs: the pinned programs go on denying.
    cats.wait_runs(20);
    assert_eq!(
        pins.generations(),
        first_gen,
        "the killed agent's pins stay"
    );
    let second = Agent::start(&args);
    let second_ready = Instant::now();
    cats.wait_runs(20);
    let second_gen = pins.generations();
    assert_eq!(second_gen.len(), 1, "{second_gen:?}");
    assert_ne!(
        second_gen, first_gen,
        "the new agent replaced the old generation"
    );

    // An upgrade: the next build starts while this one runs, and takes over.
    let dir = TempDir::new("upgrade");
    let next = build_of_version(&dir, 2);
    let third = Agent::start_binary(&next, &args);
    cats.wait_runs(20);
    let second_run = second.stop();
    cats.wait_runs(20);
    let third_gen = pins.generations();
    assert_eq!(third_gen.len(), 1, "{third_gen:?}");
    assert!(third_gen[0].starts_with("gen-0002-"), "{third_gen:?}");
    let third_run = third.stop();
    let runs = cats.finish();

    let read: Vec<usize> = (0..runs.len()).filter(|&i| runs[i].read).collect();
    assert!(
        read.is_empty(),
        "cat read /etc/shadow in runs {read:?} of {}",
        runs.len()
    );
    let unguarded = runs
        .iter()
        .filter(|r| r.at > killed && r.at < second_ready)
        .count();
    assert!(
        unguarded >= 20,
        "the loop ran {unguarded} times while no agent ran"
    );

    // The second agent says what the first one's programs wrote while no agent read: at
    // least an exec and an exit per cat that ran meanwhile.
    let line = replaced(&second_run.stderr);
    assert!(line.contains(&first_gen[0]), "{line}");
    // Until then, the first agent's programs left the second one alone, as its own do.
    assert!(
        second_run
            .stderr
            .iter()
            .any(|l| l.contains("1 earlier agents' pinned programs leave this agent alone")),
        "{:#?}",
        second_run.stderr
    );
    let lost = previous(&second_run.stats);
    assert_eq!(lost["generation"], first_gen[0].as_str(), "{lost}");
    let unread = lost["unread"].as_u64().unwrap();
    assert!(
        unread >= 2 * unguarded as u64,
        "{lost} for {unguarded} runs"
    );
    assert!(
        line.contains(&format!(
            "{} records lost while no agent read them",
            unread + lost["dropped"].as_u64().unwrap()
        )),
        "{line}"
    );
    assert!(
        !first_log.iter().any(|l| l.contains("stats")),
        "the first agent was killed, not stopped"
    );
    // The upgrade replaced the second agent's generation, of the older version, while it ran
    // (so its records were left to it, not drained); the second agent saw it gone when it
    // stopped.
    let line = third_run
        .stderr
        .iter()
        .find(|l| l.contains("took over from an agent still running"))
        .unwrap_or_else(|| panic!("no take-over logged:\n{}", third_run.stderr.join("\n")));
    assert!(
        line.contains(&format!("({}, version 1)", second_gen[0])),
        "{line}"
    );
    assert_eq!(previous(&third_run.stats)["abi"], 1);
    assert_eq!(previous(&third_run.stats)["running"], true);
    assert_eq!(previous(&third_run.stats)["unread"], 0);
    assert!(
        second_run
            .stderr
            .iter()
            .any(|l| l.contains("taken over by a newer agent")),
        "{:#?}",
        second_run.stderr
    );
    // The last agent left its enforcement pinned.
    assert!(
        third_run
            .stderr
            .iter()
            .any(|l| l.contains("enforcement stays attached, pinned in")),
        "{:#?}",
        third_run.stderr
    );
}

/// `vigil agent --cleanup` removes what an agent left pinned, and then nothing denies.
#[test]
fn cleanup_lifts_the_pinned_enforcement() {
    let pins = PinDir::new("cleanup");
    let policy = rules_dir().join("deny-credential-reads.yaml");
    let agent = Agent::start(&[
        "--bpf-dir",
        pins.arg(),
        "--policy",
        policy.to_str().unwrap(),
    ]);
    agent.stop();
    let denied = Command::new("/usr/bin/cat")
        .arg("/etc/shadow")
        .output()
        .unwrap();
    assert!(!denied.status.success(), "pinned after the stop");
    let out = Command::new(vigil_bin())
        .args(["agent", "--cleanup", "--bpf-dir", pins.arg()])
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("links detached"), "{log}");
    assert!(!Path::new(pins.arg()).exists(), "{log}");
    let read = Command::new("/usr/bin/cat")
        .arg("/etc/shadow")
        .output()
        .unwrap();
    assert!(read.status.success(), "{read:?} after --cleanup");
}

/// A start that fails while the programs load (a BTF file that is not BTF) or after they were
/// loaded and pinned (a kubeconfig that is not there) leaves nothing pinned and nothing
/// acting; and an agent that does not persist leaves another's pinned enforcement alone.
#[test]
fn a_failed_start_pins_nothing_and_a_non_persisting_agent_takes_nothing_over() {
    let pins = PinDir::new("failed");
    let policy = rules_dir().join("deny-credential-reads.yaml");
    for (fault, said) in [
        (["--btf", "/etc/hostname"], "/etc/hostname"),
        (["--kubeconfig", "/nonexistent/kubeconfig"], "kubeconfig"),
    ] {
        let out = Command::new(vigil_bin())
            .args(["agent", "--bpf-dir", pins.arg(), "--policy"])
            .arg(&policy)
            .args(fault)
            .output()
            .unwrap();
        let log = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{log}");
        assert!(log.contains(said), "{log}");
        assert_eq!(pins.generations(), Vec::<String>::new(), "{log}");
    }
    let read = Command::new("/usr/bin/cat")
        .arg("/etc/shadow")
        .output()
        .unwrap();
    assert!(
        read.status.success(),
        "{read:?}: the failed start's deny still acts"
    );

    // A persisting agent's generation, then an agent with --no-persist beside it.
    Agent::start(&[
        "--bpf-dir",
        pins.arg(),
        "--policy",
        policy.to_str().unwrap(),
    ])
    .stop();
    let pinned = pins.generations();
    assert_eq!(pinned.len(), 1, "{pinned:?}");
    let run = Agent::start(&[
        "--bpf-dir",
        pins.arg(),
        vigil_tests::NO_PERSIST,
        "--policy",
        policy.to_str().unwrap(),
    ])
    .stop();
    assert_eq!(pins.generations(), pinned, "{:#?}", run.stderr);
    assert!(!run
        .stderr
        .iter()
        .any(|l| l.contains("replaced the enforcement")));
}
