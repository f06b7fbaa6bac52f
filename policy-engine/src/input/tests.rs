use std::{
    os::unix::fs::PermissionsExt,
    path::PathBuf,
    time::{Duration, Instant},
};

use super::*;
use crate::load_policy;

const HEAD: &str = "apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n  name: x\n";

/// A fresh directory under the system's temporary directory, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("vigil-input-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        TempDir(dir)
    }

    fn write(&self, name: &str, text: &str, mode: u32) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The only error of `text` as a policy, which must come back within a second.
fn refused(text: &str) -> PolicyError {
    let started = Instant::now();
    let errors = load_policy("hostile.yaml", text).unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(errors.0.len(), 1, "{errors}");
    errors.0[0].clone()
}

#[test]
fn a_block_sequence_nested_100000_levels_deep_is_refused_at_the_first_level_too_deep() {
    let text = format!("{HEAD}spec:\n  kprobes:\n  {}x\n", "- ".repeat(100_000));
    let e = refused(&text);
    assert!(e.reason.contains("nest more than 64 levels"), "{e}");
    // `spec` is level 2, `kprobes`' sequence 3: the 65th level is the 63rd `- `.
    assert_eq!((e.line, e.column), (7, 3 + 2 * 62), "{e}");
    assert!(e.fix.contains("indentation"), "{e}");
}

#[test]
fn flow_sequences_and_mappings_nested_100000_levels_deep_are_refused() {
    let seqs = format!(
        "{HEAD}spec: {}{}\n",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    assert!(refused(&seqs).reason.contains("nest more than 64 levels"));
    let maps = format!(
        "{HEAD}spec: {}x{}\n",
        "{a: ".repeat(100_000),
        "}".repeat(100_000)
    );
    assert!(refused(&maps).reason.contains("nest more than 64 levels"));
}

#[test]
fn block_mappings_nested_past_the_limit_are_refused() {
    let mut text = format!("{HEAD}spec:\n");
    for level in 1..1000 {
        text.push_str(&" ".repeat(2 * level));
        text.push_str("a:\n");
    }
    let e = refused(&text);
    assert!(e.reason.contains("nest more than 64 levels"), "{e}");
    assert_eq!(e.line, 5 + 64, "{e}");
}

#[test]
fn expanding_aliases_are_refused_naming_the_first_alias() {
    let mut text = format!("{HEAD}spec:\n  a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..10 {
        let p = i - 1;
        text.push_str(&format!(
            "  a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
        ));
    }
    let e = refused(&text);
    assert!(e.reason.contains("YAML alias `*a0`"), "{e}");
    assert_eq!((e.line, e.column), (7, 12), "{e}");
    assert!(e.fix.contains("write the value out"), "{e}");
}

#[test]
fn a_document_with_more_nodes_than_the_limit_is_refused() {
    let limits = Limits {
        nodes: 100,
        ..Limits::POLICY
    };
    let text = format!("{HEAD}spec: [{}]\n", "1, ".repeat(200));
    let e = check_yaml("many.yaml", &text, &limits).unwrap_err();
    assert!(e.reason.contains("more than 100 values"), "{e}");
    assert!(check_yaml("many.yaml", &text, &Limits::POLICY).is_ok());
}

#[test]
fn a_syntax_error_stops_the_gate_with_its_position() {
    let e = check_yaml("bad.yaml", "a: b\nc: [d\n", &Limits::POLICY).unwrap_err();
    assert!(e.reason.starts_with("YAML syntax error: "), "{e}");
    assert_eq!(e.file, "bad.yaml");
}

#[test]
fn a_file_of_100_megabytes_is_refused_without_reading_it() {
    let dir = TempDir::new("large");
    let path = dir.0.join("large.yaml");
    // Sparse: the test does not write 100 MB, and reading it all would show in the time.
    std::fs::File::create(&path)
        .unwrap()
        .set_len(100 << 20)
        .unwrap();
    let started = Instant::now();
    let e = read_yaml(&path, &Limits::POLICY).unwrap_err();
    assert!(started.elapsed() < Duration::from_millis(200));
    let msg = e.to_string();
    assert!(
        msg.contains("104857600 bytes, more than the 4194304"),
        "{msg}"
    );
    assert!(msg.starts_with(&path.display().to_string()), "{msg}");
}

#[test]
fn a_text_past_the_size_limit_is_refused_before_parsing() {
    let text = format!("{HEAD}{}", "#".repeat(1 << 20));
    let e = check_yaml("big.yml", &text, &Limits::SIGMA).unwrap_err();
    assert!(e.reason.contains("more than the 1048576 bytes"), "{e}");
}

#[test]
fn a_policy_file_others_can_write_is_refused_with_the_fix() {
    let dir = TempDir::new("mode");
    let path = dir.write("open.yaml", HEAD, 0o666);
    let msg = read_yaml(&path, &Limits::POLICY).unwrap_err().to_string();
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(msg.contains("writable by group or others"), "{msg}");
    assert!(msg.contains("chmod go-w"), "{msg}");
    let path = dir.write("closed.yaml", HEAD, 0o644);
    assert_eq!(read_yaml(&path, &Limits::POLICY).unwrap(), HEAD);
}
