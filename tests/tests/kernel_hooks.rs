//! Hooks beyond tracepoints: where the kernel has them (the Debian VM), vigil's probe must load,
//! attach and run a real program of each kind, an LSM program on `file_open` included.

use std::process::Command;

use serde_json::Value;
use vigil_tests::{
    kernels::{scenario_needs, Hook},
    require_root, vigil_bin,
};

fn probe() -> Value {
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

fn kind(report: &Value, k: &str) -> Value {
    report["program_kinds"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == k)
        .cloned()
        .unwrap_or_else(|| panic!("no {k}"))
}

#[test]
fn an_lsm_program_on_file_open_runs() {
    if !scenario_needs("an_lsm_program_on_file_open_runs", &[Hook::Lsm]) {
        return;
    }
    require_root();
    let report = probe();
    let lsm = kind(&report, "lsm");
    assert_eq!(lsm["loads"], true, "{lsm}");
    assert_eq!(lsm["attaches"], true, "{lsm}");
    assert_eq!(
        lsm["fires"], true,
        "the lsm/file_open program did not run on the probe's own open(): {lsm}"
    );
    assert!(report["lsms"]
        .as_array()
        .unwrap()
        .iter()
        .any(|l| l == "bpf"));
}

#[test]
fn kprobe_and_fentry_programs_run() {
    if !scenario_needs(
        "kprobe_and_fentry_programs_run",
        &[Hook::Kprobe, Hook::Fentry],
    ) {
        return;
    }
    require_root();
    let report = probe();
    for k in ["kprobe", "fentry"] {
        let r = kind(&report, k);
        assert_eq!(r["available"], true, "{r}");
        assert_eq!(
            r["fires"], true,
            "{k} on do_unlinkat did not run on the probe's unlink(): {r}"
        );
    }
}
