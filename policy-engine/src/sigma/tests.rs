use super::*;

#[test]
fn every_shared_testdata_rule_loads() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/testdata/sigma-linux");
    if !dir.exists() {
        panic!(
            "{} is missing: the test data sits beside the project",
            dir.display()
        );
    }
    let (engine, errors) = SigmaEngine::load(&[dir]);
    assert!(errors.is_empty(), "{errors:#?}");
    assert!(engine.rules().len() >= 48, "{}", engine.rules().len());
}

#[test]
fn the_shipped_rules_name_only_fields_vigil_fills() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules/sigma");
    let (engine, errors) = SigmaEngine::load(&[dir]);
    assert!(errors.is_empty(), "{errors:#?}");
    let warnings: Vec<String> = engine.warnings().map(|w| w.to_string()).collect();
    assert!(warnings.is_empty(), "{warnings:#?}");
}

/// The prefilter finds a literal three ways: a field's whole value looked up, a keyword
/// as the whole of any value, and the rest searched for. Each admits what sigma-rust
/// matches, whatever the case and whether the value is a number.
#[test]
fn whole_values_keywords_and_searched_literals_admit_what_sigma_rust_matches() {
    use testing::{engine, exec_of, fired_as_sigma_rust, rule, selection};
    let auditd = "  service: auditd\n";
    let keywords = |k: &str| {
        rule(
            auditd,
            &format!("  keywords:\n    - '{k}'\n  condition: keywords\n"),
        )
    };
    let rules = [
        (
            "type-and-uid.yml",
            rule(
                auditd,
                "  s:\n    type: syscall\n    euid: 33\n  condition: s\n",
            ),
        ),
        ("number-keyword.yml", keywords("33")),
        ("name-keyword.yml", keywords("CHATTR")),
        ("part-keyword.yml", keywords("hatt")),
        ("wild-keyword.yml", keywords("*hatt*")),
        ("number-start.yml", selection(auditd, "pid|startswith: '4'")),
        ("exe-end.yml", selection(auditd, "exe|endswith: '/CHATTR'")),
    ];
    let engine = engine(&rules);
    let e = exec_of(
        vigil_events::Process {
            binary: "/usr/bin/chattr".into(),
            arguments: "-i x".into(),
            pid: 42,
            uid: 33,
            ..Default::default()
        },
        None,
    );
    assert_eq!(
        fired_as_sigma_rust(&engine, &e),
        [
            "exe-end.yml",
            "name-keyword.yml",
            "number-keyword.yml",
            "number-start.yml",
            "type-and-uid.yml",
            "wild-keyword.yml"
        ]
    );
}

const CREATION: &str = "  category: process_creation\n";

/// A literal repeated through a field is taken once, and again where it ends the field:
/// each anchor still admits what sigma-rust matches.
#[test]
fn a_literal_repeated_through_a_field_admits_every_anchor() {
    use testing::{engine, exec, fired_as_sigma_rust, selection};
    let rules = [
        (
            "contains.yml",
            selection(CREATION, "CommandLine|contains: '/tmp/'"),
        ),
        (
            "endswith.yml",
            selection(CREATION, "CommandLine|endswith: '/tmp/'"),
        ),
        (
            "startswith.yml",
            selection(CREATION, "CommandLine|startswith: '/bin/x /tmp/'"),
        ),
        (
            "not-at-end.yml",
            selection(CREATION, "CommandLine|endswith: '/tmp/y'"),
        ),
    ];
    let e = exec("/bin/x", &"/tmp/".repeat(5000));
    assert_eq!(
        fired_as_sigma_rust(&engine(&rules), &e),
        ["contains.yml", "endswith.yml", "startswith.yml"]
    );
}

/// sigma-rust lower-cases values by Unicode's rules: a Kelvin sign is a `k` to it, and `İ`
/// an `i` and a combining dot. The prefilter admits such values as sigma-rust reads them.
#[test]
fn letters_unicode_lower_cases_into_ascii_are_admitted_as_sigma_rust_reads_them() {
    use testing::{engine, exec, fired_as_sigma_rust, selection};
    let rules = [
        ("kelvin.yml", selection(CREATION, "Image|endswith: '/kill'")),
        (
            "dotted.yml",
            selection(CREATION, "CommandLine|contains: ' xi'"),
        ),
        ("whole.yml", selection(CREATION, "Image: '/usr/bin/kill'")),
    ];
    let e = exec("/usr/bin/\u{212A}ill", "x\u{130}");
    assert_eq!(
        fired_as_sigma_rust(&engine(&rules), &e),
        ["dotted.yml", "kelvin.yml", "whole.yml"]
    );
}

const RULE: &str = "title: t\nlogsource:\n  product: linux\n  category: process_creation\ndetection:\n  s:\n    Image: /bin/x\n  condition: s\n";

/// `f` on another thread, which must finish within `secs`.
fn within<T: Send + 'static>(secs: u64, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(f()));
    rx.recv_timeout(std::time::Duration::from_secs(secs))
        .expect("did not finish in time")
}

#[test]
fn symlink_loops_in_a_rule_directory_are_not_followed_and_are_reported() {
    use std::os::unix::fs::symlink;
    let dir = std::env::temp_dir().join(format!("vigil-sigma-loop-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("rules/sub")).unwrap();
    std::fs::write(dir.join("rules/sub/a.yml"), RULE).unwrap();
    std::fs::write(dir.join("b.yml"), RULE.replace("/bin/x", "/bin/y")).unwrap();
    // Two links back up: every level doubles the paths a following walk takes.
    symlink(dir.join("rules"), dir.join("rules/sub/up")).unwrap();
    symlink("..", dir.join("rules/sub/parent")).unwrap();
    // A link to a rule file is followed (Kubernetes mounts ConfigMaps so).
    symlink(dir.join("b.yml"), dir.join("rules/b.yml")).unwrap();
    let root = dir.join("rules");
    let (engine, errors) = within(5, move || {
        let (e, errors) = SigmaEngine::load(&[root]);
        (e.rules().len(), errors)
    });
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(engine, 2, "{errors:#?}");
    assert_eq!(errors.len(), 2, "{errors:#?}");
    for e in &errors {
        assert!(
            e.reason.contains("symbolic link to a directory"),
            "{errors:#?}"
        );
    }
}

#[test]
fn a_rule_directory_walk_stops_at_its_depth_limit() {
    let dir = std::env::temp_dir().join(format!("vigil-sigma-deep-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let deep = (0..MAX_WALK_DEPTH + 4).fold(dir.clone(), |p, i| p.join(format!("d{i}")));
    std::fs::create_dir_all(&deep).unwrap();
    std::fs::write(deep.join("a.yml"), RULE).unwrap();
    std::fs::write(dir.join("a.yml"), RULE).unwrap();
    let (files, skipped) = rule_files(std::slice::from_ref(&dir));
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(files, vec![dir.join("a.yml")]);
    assert_eq!(skipped.len(), 1, "{skipped:#?}");
    assert!(skipped[0].reason.contains("deeper than"), "{skipped:#?}");
}

#[test]
fn a_rule_file_others_can_write_is_refused_with_the_fix() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("vigil-sigma-mode-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("a.yml");
    std::fs::write(&f, RULE).unwrap();
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o666)).unwrap();
    let (engine, errors) = SigmaEngine::load(std::slice::from_ref(&dir));
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(engine.rules().is_empty());
    assert_eq!(errors[0].file, f.display().to_string());
    assert!(errors[0].reason.contains("chmod go-w"), "{errors:#?}");
    assert!(
        !errors[0].reason.starts_with(&errors[0].file),
        "{errors:#?}"
    );
}

#[test]
fn a_rule_with_expanding_aliases_or_deep_nesting_is_refused_by_the_gate() {
    let aliases = RULE.replace("Image: /bin/x", "Image: &i /bin/x\n    CommandLine: *i");
    let e = load_rule(Path::new("a.yml"), &aliases).err().unwrap();
    assert!(e.reason.contains("YAML alias `*i`"), "{e}");
    let deep = RULE.replace(
        "/bin/x",
        &format!("{}x{}", "[".repeat(100_000), "]".repeat(100_000)),
    );
    let e = within(2, move || {
        load_rule(Path::new("d.yml"), &deep).err().unwrap()
    });
    assert!(e.reason.contains("nest more than 64 levels"), "{e}");
}

#[test]
fn a_condition_of_100000_operators_or_parentheses_is_refused_not_overflowing_the_stack() {
    for condition in [
        format!("{}s{}", "(".repeat(100_000), ")".repeat(100_000)),
        format!("s{}", " and s".repeat(100_000)),
        format!("{}s", "not ".repeat(100_000)),
    ] {
        let text = RULE.replace("condition: s", &format!("condition: {condition}"));
        let e = within(2, move || {
            load_rule(Path::new("c.yml"), &text).err().unwrap()
        });
        assert!(e.reason.contains("operators and parentheses"), "{e}");
    }
    // At the limit, on a thread's default stack, the rule loads and evaluates.
    let condition = format!(
        "(s{}) and not s",
        " or s".repeat(MAX_CONDITION_OPERATORS - 3)
    );
    let text = RULE.replace("condition: s", &format!("condition: {condition}"));
    let rule = within(2, move || {
        let r = load_rule(Path::new("c.yml"), &text).unwrap();
        let event = sigma_rust::event_from_json(r#"{"Image": "/bin/x"}"#).unwrap();
        r.rule.is_match(&event)
    });
    assert!(!rule);
}

#[test]
fn a_condition_outside_ascii_is_refused_not_a_panic_in_sigma_rust() {
    let text = RULE.replace("condition: s", "condition: s\u{e9} and s");
    let text = text.replace("  s:\n", "  s\u{e9}:\n    Image: /bin/y\n  s:\n");
    let e = within(2, move || {
        load_rule(Path::new("u.yml"), &text).err().unwrap()
    });
    assert!(e.reason.contains("outside ASCII"), "{e}");
    assert!(e.reason.contains("(character 2)"), "{e}");
}

/// sigma-rust reads every key of a detection but `condition` as a search identifier,
/// `timeframe` too: the prefilter admits what `1 of them` may match through it.
#[test]
fn a_timeframe_written_as_a_selection_is_one_to_the_prefilter_too() {
    use testing::{engine, exec, fired_as_sigma_rust, rule};
    let rules = [(
        "timeframe.yml",
        rule(
            "  service: auditd\n",
            "  s:\n    type: EXECVE\n    a0: nothing-like-this\n  timeframe: ['evilarg']\n  condition: 1 of them\n",
        ),
    )];
    let e = exec("/usr/bin/x", "evilarg");
    assert_eq!(fired_as_sigma_rust(&engine(&rules), &e), ["timeframe.yml"]);
}

/// A tag is refused by the gate: serde_yaml keeps a tagged condition apart, which would
/// have let it past the checks on its size to sigma-rust, whose parser reads it plainly.
#[test]
fn a_tagged_value_is_refused_by_the_gate() {
    for tagged in [
        RULE.replace("condition: s", "condition: !x s"),
        RULE.replace("condition: s", "!x condition: s"),
        RULE.replace("detection:", "!x detection:"),
        RULE.replace("Image: /bin/x", "Image: !!str /bin/x"),
    ] {
        let e = load_rule(Path::new("t.yml"), &tagged).err().unwrap();
        assert!(e.reason.contains("YAML tag `!"), "{tagged}: {e}");
    }
}

/// A detection key that is not text (`1:`) is a search identifier to sigma-rust: refused,
/// not left out of what `1 of them` may match.
#[test]
fn a_detection_key_that_is_not_text_is_refused_with_the_quoting() {
    for key in ["1", "true", "~"] {
        let text = RULE.replace("  s:\n", &format!("  {key}:\n    Image: /evil\n  s:\n"));
        let e = load_rule(Path::new("k.yml"), &text).err().unwrap();
        assert!(e.reason.contains("is not text: quote it"), "{key}: {e}");
    }
    let quoted = RULE.replace("  s:\n", "  '1':\n    Image: /evil\n  s:\n");
    assert!(load_rule(Path::new("q.yml"), &quoted).is_ok());
}

#[test]
fn a_rule_for_another_product_is_refused_with_the_reason() {
    let text = "title: t\nlogsource:\n  product: windows\n  category: process_creation\ndetection:\n  s:\n    Image: x\n  condition: s\n";
    let e = load_rule(Path::new("w.yml"), text).err().unwrap();
    assert!(e.reason.contains("Linux events only"), "{e}");
}
