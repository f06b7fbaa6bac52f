//! Replays every saved fuzz input through its target's body: `fuzz/corpus/<target>/` (inputs
//! that cover the code, from the repository's test data and from fuzzing runs) and
//! `fuzz/regressions/<target>/` (inputs that crashed once, minimized). Nothing is explored:
//! the same files, the same result, in seconds, on the stable toolchain.

use std::{
    fs,
    panic::{self, AssertUnwindSafe},
    path::{Path, PathBuf},
    time::Instant,
};

use vigil_fuzz_targets::TARGETS;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// The files in `dir`, in a stable order; none when it does not exist.
fn inputs(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = match fs::read_dir(dir) {
        Ok(entries) => entries
            .map(|e| e.expect("readable corpus directory").path())
            .filter(|p| p.is_file())
            .collect(),
        Err(_) => Vec::new(),
    };
    files.sort();
    files
}

#[test]
fn every_saved_fuzz_input_runs_through_its_target_without_a_panic() {
    let mut failures = Vec::new();
    let mut total = 0;
    let started = Instant::now();
    // The failures are listed together below; the default hook would print each panic too.
    let hook = panic::take_hook();
    panic::set_hook(Box::new(|_| {}));
    for (name, body) in TARGETS {
        let mut count = 0;
        for kind in ["corpus", "regressions"] {
            for file in inputs(&fuzz_dir().join(kind).join(name)) {
                let data = fs::read(&file).expect("readable fuzz input");
                count += 1;
                if let Err(e) = panic::catch_unwind(AssertUnwindSafe(|| body(&data))) {
                    let msg = e
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default();
                    failures.push(format!("{name}: {}: {msg}", file.display()));
                }
            }
        }
        assert!(count > 0, "fuzz target {name} has no saved input");
        total += count;
    }
    panic::set_hook(hook);
    let _ = fs::remove_dir_all(vigil_fuzz_targets::spool_scratch_dir());
    eprintln!(
        "replayed {total} fuzz inputs of {} targets in {:.1?}",
        TARGETS.len(),
        started.elapsed()
    );
    assert!(
        failures.is_empty(),
        "{} saved fuzz inputs panic:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn every_target_has_a_cargo_fuzz_binary_and_no_binary_lacks_a_target() {
    let manifest = fs::read_to_string(fuzz_dir().join("Cargo.toml")).expect("fuzz/Cargo.toml");
    let mut bins: Vec<&str> = manifest
        .lines()
        .filter_map(|l| l.strip_prefix("name = \""))
        .filter_map(|l| l.strip_suffix('"'))
        .filter(|n| *n != "vigil-fuzz")
        .collect();
    bins.sort_unstable();
    let mut names: Vec<&str> = TARGETS.iter().map(|(n, _)| *n).collect();
    names.sort_unstable();
    assert_eq!(bins, names, "fuzz/Cargo.toml's [[bin]]s and TARGETS differ");
    for name in names {
        let src = fuzz_dir().join("fuzz_targets").join(format!("{name}.rs"));
        let text = fs::read_to_string(&src).unwrap_or_else(|e| panic!("{}: {e}", src.display()));
        assert!(
            text.contains(&format!("vigil_fuzz_targets::{name}(")),
            "{} does not run vigil_fuzz_targets::{name}",
            src.display()
        );
    }
}
