//! The ways around a file-open deny, tried on the rung this kernel gives (BPF LSM, fmod_ret,
//! or the open system calls' tracepoints): io_uring, the 32-bit open, a descriptor table
//! shared with clone(CLONE_FILES), O_TRUNC, a hard link, open_by_handle_at, a bind mount of the file inside a user
//! and mount namespace of one's own, and a binary bind-mounted over an allowed binary's path.
//! Each is either stopped (refused, or the process killed before it read a byte), or it gets
//! through and `vigil policy explain` lists it as a gap of this rung, by name. Nothing else
//! passes: a walk-around that gets through unlisted, or a listed gap that is stopped (the list
//! is then wrong), fails the scenario.

use std::{
    os::unix::process::ExitStatusExt,
    path::{Path, PathBuf},
    process::{Command, Output},
};

use serde_json::Value;
use vigil_tests::{
    kernels::{self, FileOpenRung},
    require_root, vigil_bin, Agent, TempDir,
};

const SECRET: &str = "the protected file's contents\n";

/// The protected file, its hard link, the bind-mount target, and the allowed binary.
struct Stage {
    dir: TempDir,
    policy: PathBuf,
}

impl Stage {
    fn new() -> Stage {
        let dir = TempDir::new("walkaround");
        let d = dir.path();
        std::fs::write(d.join("secret"), SECRET).unwrap();
        std::fs::hard_link(d.join("secret"), d.join("hard-link")).unwrap();
        std::fs::write(d.join("alias"), "").unwrap();
        // The only binary allowed to read the file, and another one (both copies of the
        // walk-around helper, so either can read).
        std::fs::copy(helper(), d.join("allowed")).unwrap();
        std::fs::copy(helper(), d.join("other")).unwrap();
        let policy = d.join("walkaround-deny.yaml");
        std::fs::write(
            &policy,
            format!(
                r#"apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: walkaround-deny
spec:
  lsmhooks:
  - hook: file_open
    args:
    - index: 0
      type: file
    selectors:
    - matchBinaries:
      - operator: NotIn
        values:
        - "{dir}/allowed"
      matchArgs:
      - index: 0
        operator: Equal
        values:
        - "{dir}/secret"
      matchActions:
      - action: Override
        argError: -1
"#,
                dir = d.display()
            ),
        )
        .unwrap();
        Stage { dir, policy }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_str().unwrap().to_string()
    }
}

fn helper() -> PathBuf {
    vigil_bin().with_file_name("vigil-walkaround")
}

fn run(binary: &Path, args: &[&str]) -> Output {
    // Said before it runs: a walk-around that wedges the kernel is named on the console.
    eprintln!("walk-around: {} {}", binary.display(), args.join(" "));
    Command::new(binary).args(args).output().unwrap()
}

/// The gaps `vigil policy explain --json` lists for the policy's file-open hook here.
fn explained_gaps(policy: &Path) -> Vec<String> {
    let out = Command::new(vigil_bin())
        .args(["policy", "explain", "--json"])
        .arg(policy)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let plans: Value = serde_json::from_slice(&out.stdout).unwrap();
    plans
        .as_array()
        .expect("a list of hook plans")
        .iter()
        .flat_map(|p| p["gaps"].as_array().cloned().unwrap_or_default())
        .map(|g| g["name"].as_str().unwrap().to_string())
        .collect()
}

/// What became of one walk-around.
#[derive(Debug, PartialEq)]
enum Outcome {
    /// The open failed with EPERM and the process lived.
    Refused,
    /// The process was killed before it read a byte.
    Killed,
    /// It read the protected file.
    GotThrough,
    /// The way is not open on this machine (the helper's line says why).
    NotOpenHere(String),
}

fn outcome(out: &Output) -> Outcome {
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    match (out.status.code(), out.status.signal()) {
        (_, Some(9)) if !said.contains("read ") => Outcome::Killed,
        (Some(1), _)
            if said.contains("Operation not permitted") || said.contains("no descriptor left") =>
        {
            Outcome::Refused
        }
        (Some(2), _) => Outcome::NotOpenHere(said),
        _ if said.contains(&format!("read {} bytes", SECRET.len())) => Outcome::GotThrough,
        _ => panic!("unexpected result: {out:?}"),
    }
}

#[test]
fn every_walk_around_is_stopped_or_listed_as_a_gap_of_this_rung() {
    require_root();
    let rung = kernels::current().file_open_rung();
    let stage = Stage::new();
    let gaps = explained_gaps(&stage.policy);
    let before_effect = matches!(rung, FileOpenRung::Lsm | FileOpenRung::FmodRet);
    let stopped = if before_effect {
        Outcome::Refused
    } else {
        Outcome::Killed
    };

    let agent = Agent::start(&["--policy", stage.policy.to_str().unwrap()]);
    let secret = stage.path("secret");
    let h = helper();
    let tries: Vec<(&str, Output)> = vec![
        ("plain open", run(&h, &["read", &secret])),
        ("io_uring", run(&h, &["io-uring-read", &secret])),
        ("32-bit system calls", run(&h, &["int80-read", &secret])),
        ("32-bit static binary", run(&h, &["static32-read", &secret])),
        (
            "shared descriptor table",
            run(&h, &["clone-files-read", &secret]),
        ),
        ("hard link", run(&h, &["read", &stage.path("hard-link")])),
        ("file handle", run(&h, &["handle-read", &secret])),
        (
            "bind mount",
            run(&h, &["bind-read", &secret, &stage.path("alias")]),
        ),
        (
            "binary bind-mounted",
            run(
                &h,
                &[
                    "bind-exec",
                    &stage.path("other"),
                    &stage.path("allowed"),
                    "read",
                    &secret,
                ],
            ),
        ),
        (
            "allowed binary",
            run(Path::new(&stage.path("allowed")), &["read", &secret]),
        ),
        // Last: on a rung that kills after the open, this one empties the file.
        ("truncate or create", run(&h, &["open-trunc", &secret])),
    ];
    let run = agent.stop();
    let size_after = std::fs::metadata(&secret).unwrap().len();

    let mut table = Vec::new();
    let mut wrong = Vec::new();
    for (name, out) in &tries {
        let got =
            if *name == "truncate or create" && out.status.signal() == Some(9) && size_after == 0 {
                // Killed, but O_TRUNC had emptied the file before the kill.
                Outcome::GotThrough
            } else {
                outcome(out)
            };
        let listed = gaps.iter().any(|g| g == name);
        let fine = match (&got, *name) {
            (Outcome::GotThrough, "allowed binary") => true,
            (_, "allowed binary") => false,
            (Outcome::GotThrough, _) => listed,
            (
                Outcome::NotOpenHere(_),
                "io_uring"
                | "32-bit system calls"
                | "32-bit static binary"
                | "bind mount"
                | "binary bind-mounted",
            ) => true,
            (o, _) => *o == stopped && !listed,
        };
        table.push(format!("{name:<26} {got:?} (listed as a gap: {listed})"));
        if !fine {
            wrong.push(format!(
                "{name}: {got:?}, listed as a gap: {listed}\n  {out:?}"
            ));
        }
    }
    eprintln!("{rung:?}:\n  {}", table.join("\n  "));
    assert!(
        wrong.is_empty(),
        "{rung:?}: gaps {gaps:?}\n{}\nagent:\n{}",
        wrong.join("\n"),
        run.stderr.join("\n")
    );
    if before_effect {
        assert_eq!(
            size_after,
            SECRET.len() as u64,
            "O_TRUNC was refused before it emptied the file"
        );
    }
    // Every stopped open is reported under the policy.
    let reported = run
        .events
        .iter()
        .filter_map(|e| e.get("process_lsm"))
        .filter(|e| e["policy_name"] == "walkaround-deny")
        .count();
    let stopped_count = table
        .iter()
        .filter(|l| l.contains("Refused") || l.contains("Killed"))
        .count();
    assert!(
        reported >= stopped_count,
        "{reported} events for {stopped_count} stopped opens"
    );
}
