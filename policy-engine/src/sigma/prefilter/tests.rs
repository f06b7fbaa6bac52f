use super::super::testing::{engine, exec, fired_as_sigma_rust, rule, selection};
use super::*;

const CREATION: &str = "  category: process_creation\n";

/// Keywords are looked for only in the record types every rule with keywords needs, and
/// in every record once one rule needs none: each rule still fires on what it describes.
#[test]
fn keywords_are_looked_for_in_the_records_their_rules_need() {
    let auditd = "  service: auditd\n";
    let typed = |t: &str, k: &str| {
        rule(
            auditd,
            &format!("  s:\n    type: {t}\n  k:\n    - '{k}'\n  condition: s and k\n"),
        )
    };
    let e = exec("/usr/bin/chattr", "-i x");
    let execve = ("execve.yml", typed("EXECVE", "chattr"));
    let syscall = ("syscall.yml", typed("SYSCALL", "execve"));
    let path = ("path.yml", typed("PATH", "chattr"));
    let anywhere = (
        "anywhere.yml",
        rule(auditd, "  k:\n    - 'execve'\n  condition: k\n"),
    );
    let only_typed = engine(&[execve.clone(), path.clone()]);
    let gate = only_typed.index.get(super::super::auditd::AUDITD).unwrap();
    assert_eq!(
        gate.keywords_only_in.as_deref(),
        Some(&["execve".into(), "path".into()][..])
    );
    assert_eq!(fired_as_sigma_rust(&only_typed, &e), ["execve.yml"]);
    let both = engine(&[execve.clone(), syscall.clone()]);
    assert_eq!(
        fired_as_sigma_rust(&both, &e),
        ["execve.yml", "syscall.yml"]
    );
    let all = engine(&[execve, syscall, path, anywhere]);
    let gate = all.index.get(super::super::auditd::AUDITD).unwrap();
    assert_eq!(gate.keywords_only_in, None);
    assert_eq!(
        fired_as_sigma_rust(&all, &e),
        ["anywhere.yml", "execve.yml", "syscall.yml"]
    );
}

/// A field is answered from memory the second time: what it admits must be what it
/// admitted, for a short value, one longer than is remembered, and one admitting more
/// rules than a slot holds; and a rule set loaded later is never answered from what the
/// fields admitted under an earlier one, though the texts are the same.
#[test]
fn a_field_seen_again_admits_what_it_did_and_never_what_another_rule_set_did() {
    let long = format!("/opt/{}/tool", "d".repeat(MEMO_TEXT));
    let many: Vec<(String, String)> = (0..MEMO_ADMITS + 2)
        .map(|i| {
            (
                format!("many-{i}.yml"),
                selection(CREATION, &format!("Image|endswith: ['/many', '/x{i}']")),
            )
        })
        .collect();
    let mut rules = vec![
        (
            "tool.yml".to_string(),
            selection(CREATION, "Image|endswith: '/tool'"),
        ),
        (
            "cat.yml".to_string(),
            selection(CREATION, "CommandLine|contains: ' /etc/shadow'"),
        ),
    ];
    rules.extend(many);
    let named: Vec<(&str, &String)> = rules.iter().map(|(f, r)| (f.as_str(), r)).collect();
    let first = engine(&named);
    let mut many_fired: Vec<String> = (0..MEMO_ADMITS + 2)
        .map(|i| format!("many-{i}.yml"))
        .collect();
    many_fired.sort();
    for _ in 0..3 {
        assert_eq!(
            fired_as_sigma_rust(&first, &exec("/usr/bin/tool", "")),
            ["tool.yml"]
        );
        assert_eq!(fired_as_sigma_rust(&first, &exec(&long, "")), ["tool.yml"]);
        assert_eq!(
            fired_as_sigma_rust(&first, &exec("/bin/cat", "/etc/shadow")),
            ["cat.yml"]
        );
        assert_eq!(
            fired_as_sigma_rust(&first, &exec("/bin/many", "")),
            many_fired
        );
        assert!(fired_as_sigma_rust(&first, &exec("/bin/true", "")).is_empty());
    }
    // Another rule set, its index built after the first's: the same texts, other rules.
    let second = engine(&[("true.yml", selection(CREATION, "Image|endswith: '/true'"))]);
    for _ in 0..2 {
        assert!(fired_as_sigma_rust(&second, &exec("/usr/bin/tool", "")).is_empty());
        assert_eq!(
            fired_as_sigma_rust(&second, &exec("/bin/true", "")),
            ["true.yml"]
        );
        assert_eq!(
            fired_as_sigma_rust(&first, &exec("/usr/bin/tool", "")),
            ["tool.yml"]
        );
    }
}

/// A slot answers only for the index, field and text it was filled for, and keeps only
/// what fits it.
#[test]
fn a_remembered_field_answers_only_its_own_key() {
    let mut memo = Memo::default();
    let slot = Memo::slot(1, 3, b"/usr/bin/tool");
    memo.put(slot, 1, 3, b"/usr/bin/tool", &[(7, 1), (9, 2)]);
    assert_eq!(
        memo.get(slot, 1, 3, b"/usr/bin/tool"),
        Some(&[(7, 1), (9, 2)][..])
    );
    assert_eq!(
        memo.get(slot, 2, 3, b"/usr/bin/tool"),
        None,
        "another index"
    );
    assert_eq!(
        memo.get(slot, 1, 4, b"/usr/bin/tool"),
        None,
        "another field"
    );
    assert_eq!(memo.get(slot, 1, 3, b"/usr/bin/toal"), None, "another text");
    assert_eq!(memo.get(slot, 1, 3, b"/usr/bin/too"), None, "a prefix");
    memo.put(slot, 1, 3, b"", &[]);
    assert_eq!(memo.get(slot, 1, 3, b""), Some(&[][..]));
    assert_eq!(memo.get(slot, 1, 3, b"/usr/bin/tool"), None, "taken over");
    let long = [b'a'; MEMO_TEXT + 1];
    memo.put(slot, 1, 3, &long, &[]);
    assert_eq!(memo.get(slot, 1, 3, &long), None, "too long to keep");
    let many: Vec<(u32, u8)> = (0..=MEMO_ADMITS as u32).map(|r| (r, 1)).collect();
    memo.put(slot, 1, 3, b"x", &many);
    assert_eq!(memo.get(slot, 1, 3, b"x"), None, "admits too many to keep");
    assert_eq!(
        Memo::default().get(slot, 0, 0, b""),
        None,
        "an empty slot, for an index never remembered"
    );
}

/// More distinct fields than the memory has slots, so that each slot is taken over many
/// times: every field still admits what it must, the first ones included when seen again.
#[test]
fn fields_that_push_each_other_out_of_memory_still_admit_what_they_must() {
    let rules = [("tool.yml", selection(CREATION, "Image|endswith: '/tool'"))];
    let e = engine(&rules);
    for round in 0..2 {
        for i in 0..MEMO_SLOTS * 3 {
            let fired = fired_as_sigma_rust(&e, &exec(&format!("/b{i}/tool"), ""));
            assert_eq!(fired, ["tool.yml"], "round {round}, binary {i}");
            assert!(fired_as_sigma_rust(&e, &exec(&format!("/b{i}/tools"), "")).is_empty());
        }
    }
}
