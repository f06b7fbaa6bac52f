//! `vigil policy lint` and `explain` over files and directories, several at once: a directory
//! stands for its `*.yaml` and `*.yml` files in name order, as `--policy-dir` reads them, and
//! each policy is said to enforce, only observe, or be in monitor mode.

use std::{path::Path, process::Command};

use serde_json::Value;
use vigil_tests::{fixtures, require_root, vigil_bin, TempDir};

/// `vigil args`: (success, stdout, stderr).
fn vigil(args: &[&Path]) -> (bool, String, String) {
    let out = Command::new(vigil_bin()).args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn lint_and_explain_take_directories_and_several_files_and_say_what_each_policy_does() {
    require_root();
    let dir = TempDir::new("policy-commands");
    let policies = dir.path().join("policies");
    std::fs::create_dir(&policies).unwrap();
    let observe = policies.join("a.yaml");
    let enforce = policies.join("b.yml");
    std::fs::write(&observe, fixtures::SETUID_POLICY).unwrap();
    std::fs::write(&enforce, fixtures::deny_passwd("enforce")).unwrap();
    std::fs::write(policies.join("notes.txt"), "not a policy").unwrap();
    let monitor = dir.path().join("monitor.yaml");
    std::fs::write(&monitor, fixtures::deny_passwd("monitor")).unwrap();
    let p = Path::new;

    let (ok, stdout, stderr) = vigil(&[p("policy"), p("lint"), &policies, &monitor]);
    assert!(ok, "{stdout}{stderr}");
    let expected = [
        format!(
            "{}: ok (policy syscalls, 1 hook, observes only)",
            observe.display()
        ),
        format!(
            "{}: ok (policy deny-passwd, 1 hook, enforces)",
            enforce.display()
        ),
        format!(
            "{}: ok (policy deny-passwd, 1 hook, monitor mode: reports what it would enforce)",
            monitor.display()
        ),
    ];
    assert_eq!(stdout.lines().collect::<Vec<_>>(), expected, "{stderr}");

    let (ok, stdout, stderr) = vigil(&[p("policy"), p("explain"), &policies, &monitor]);
    assert!(ok, "{stdout}{stderr}");
    let headers: Vec<&str> = stdout
        .lines()
        .filter(|l| !l.starts_with(' ') && !l.is_empty())
        .collect();
    assert_eq!(headers.len(), 3, "{stdout}");
    for (header, (file, what)) in headers.iter().zip([
        (&observe, "policy syscalls (observes only)"),
        (&enforce, "policy deny-passwd (enforces)"),
        (
            &monitor,
            "policy deny-passwd (monitor mode: reports what it would enforce)",
        ),
    ]) {
        let start = format!("{}: {what} on kernel ", file.display());
        assert!(header.starts_with(&start), "{header}");
    }

    let (ok, stdout, stderr) =
        vigil(&[p("policy"), p("explain"), p("--json"), &policies, &monitor]);
    assert!(ok, "{stdout}{stderr}");
    let hooks: Vec<Value> = serde_json::from_str(&stdout).unwrap();
    let named: Vec<(&str, &str)> = hooks
        .iter()
        .map(|h| (h["file"].as_str().unwrap(), h["policy"].as_str().unwrap()))
        .collect();
    assert_eq!(
        named,
        [
            (observe.to_str().unwrap(), "syscalls"),
            (enforce.to_str().unwrap(), "deny-passwd"),
            (monitor.to_str().unwrap(), "deny-passwd"),
        ]
    );
    assert!(hooks.iter().all(|h| h["attach"].is_string()), "{stdout}");
}

#[test]
fn a_directory_without_policy_files_is_one_line_naming_it() {
    require_root();
    let dir = TempDir::new("policy-commands-empty");
    for command in ["lint", "explain"] {
        let (ok, stdout, stderr) = vigil(&[Path::new("policy"), Path::new(command), dir.path()]);
        assert!(!ok, "{stdout}");
        assert_eq!(
            stderr,
            format!(
                "vigil: error: {}: no policy files in this directory (*.yaml, *.yml)\n",
                dir.path().display()
            )
        );
    }
}
