//! Kernel modules, loaded and unloaded for real: Tetragon's module-monitoring example reports
//! the module file read for `finit_module`, the module started (`module` argument: its name and
//! taints) and the module freed; a hook on the loader's own layout step reports the `load_info`
//! being loaded with the verdict on its signature. The hooks are kprobes and the module is the
//! kernel's own `dummy.ko`, which the VM image carries from the same Debian package, so the
//! scenarios run in the VM matrix and are recorded as skipped where kprobes are missing.

use std::{path::PathBuf, process::Command};

use serde_json::Value;
use vigil_tests::{
    kernels::{scenario_needs, Hook},
    require_root, tetragon_policies_dir, Agent, TempDir,
};

/// The module the scenarios load, by its name in the kernel.
const MODULE: &str = "dummy";

/// `dummy.ko` of the running kernel, where the distribution keeps it; a machine without it
/// cannot run the scenario, which says so.
fn module_file() -> PathBuf {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let path = PathBuf::from("/lib/modules")
        .join(release.trim())
        .join("kernel/drivers/net/dummy.ko");
    assert!(
        path.is_file(),
        "{} is missing: the scenario loads the running kernel's own dummy module (the VM image \
         carries it from Debian's package, tests/src/vm.rs GUEST_MODULES)",
        path.display()
    );
    path
}

/// Runs busybox's or kmod's `tool` with `args`; Ok, or what it printed.
fn modutil(tool: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(tool)
        .args(args)
        .output()
        .map_err(|e| format!("{tool}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{tool} {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Loads and unloads the module under an agent started with `policy`; the agent's events.
fn load_and_unload(policy: &str) -> vigil_tests::AgentRun {
    let module = module_file();
    // Left loaded by an earlier run that stopped half-way.
    let _ = modutil("rmmod", &[MODULE]);
    let agent = Agent::start(&["--policy", policy]);
    let loaded = modutil("insmod", &[module.to_str().unwrap()]);
    let unloaded = loaded.is_ok().then(|| modutil("rmmod", &[MODULE]));
    let run = agent.stop();
    loaded.unwrap_or_else(|e| panic!("{e}"));
    if let Some(Err(e)) = unloaded {
        panic!("{e}");
    }
    run
}

fn module_arg(event: &Value, index: usize) -> &Value {
    &event["args"][index]["module_arg"]
}

/// tracingpolicy_monitor-kernel-modules.yaml: `finit_module` reads the file (reported with its
/// path and READING_MODULE, and the check's result), `do_init_module` starts the module and
/// `free_module` removes it, both with the module's name.
#[test]
fn a_module_loaded_and_unloaded_is_reported_by_tetragon_s_example() {
    if !scenario_needs(
        "a_module_loaded_and_unloaded_is_reported_by_tetragon_s_example",
        &[Hook::Kprobe],
    ) {
        return;
    }
    require_root();
    let policy = tetragon_policies_dir().join("tracingpolicy_monitor-kernel-modules.yaml");
    let run = load_and_unload(policy.to_str().unwrap());
    let module = module_file();
    let context = || {
        let seen: std::collections::BTreeSet<&str> = run
            .events
            .iter()
            .filter_map(|e| e["process_kprobe"]["function_name"].as_str())
            .collect();
        format!(
            "functions reported: {seen:?}\nagent:\n{}",
            run.stderr.join("\n")
        )
    };
    let reads = run.kprobes("security_kernel_read_file");
    assert!(
        reads.iter().any(
            |e| e["args"][0]["file_arg"]["path"] == module.to_str().unwrap()
                && e["args"][1]["int_arg"] == 2
                && e["return"]["int_arg"] == 0
        ),
        "the module file read for finit_module: {reads:#?}\n{}",
        context()
    );
    // Every other read of a file by the kernel (firmware, a policy) is left out by the
    // selector.
    assert!(
        reads.iter().all(|e| e["args"][1]["int_arg"] == 2),
        "{reads:#?}"
    );
    for function in ["do_init_module", "free_module"] {
        let ours: Vec<&Value> = run
            .kprobes(function)
            .into_iter()
            .filter(|e| module_arg(e, 0)["name"] == MODULE)
            .collect();
        assert_eq!(ours.len(), 1, "{function}: {ours:#?}\n{}", context());
        // Debian's module is in-tree and signed: it brings no taint.
        assert!(module_arg(ours[0], 0).get("tainted").is_none(), "{ours:#?}");
        // A `module` argument has no signature verdict to tell of (load_info has).
        assert!(
            module_arg(ours[0], 0).get("signature_ok").is_none(),
            "{ours:#?}"
        );
    }
}

/// A `load_info` argument, on the loader's symbol-table layout step (Tetragon's own example
/// hooks `find_module_sections`, which Debian 6.1 inlines): the module's name and whether its
/// signature verified, read where the kernel's BTF has the loader's private structure.
#[test]
fn a_module_being_loaded_reports_its_name_and_signature_verdict() {
    if !scenario_needs(
        "a_module_being_loaded_reports_its_name_and_signature_verdict",
        &[Hook::Kprobe],
    ) {
        return;
    }
    require_root();
    let dir = TempDir::new("load-info");
    let policy = dir.path().join("load-info.yaml");
    std::fs::write(
        &policy,
        "apiVersion: cilium.io/v1alpha1\n\
         kind: TracingPolicy\n\
         metadata:\n  name: module-load-info\n\
         spec:\n  kprobes:\n  - call: layout_symtab\n    syscall: false\n    args:\n\
         \x20   - index: 1\n      type: load_info\n",
    )
    .unwrap();
    let run = load_and_unload(policy.to_str().unwrap());
    let ours = run.kprobes("layout_symtab");
    let loading: Vec<&&Value> = ours
        .iter()
        .filter(|e| module_arg(e, 0)["name"] == MODULE)
        .collect();
    assert_eq!(
        loading.len(),
        1,
        "{ours:#?}\nagent:\n{}",
        run.stderr.join("\n")
    );
    // Debian signs its modules with the key the kernel is built with.
    assert_eq!(
        module_arg(loading[0], 0)["signature_ok"],
        true,
        "{loading:#?}"
    );
}
