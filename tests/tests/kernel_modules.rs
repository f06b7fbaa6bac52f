//! Kernel modules, loaded and unloaded for real: Tetragon's module-monitoring example reports
//! the module file read for `finit_module`, the module started (`module` argument: its name and
//! taints) and the module freed; a hook on the loader's own layout step reports the `load_info`
//! being loaded with the verdict on its signature. The hooks are kprobes and the module is the
//! kernel's own `dummy.ko`, which the VM image carries from the same Debian package, so the
//! scenarios run in the VM matrix and are recorded as skipped where kprobes are missing.

use std::{os::fd::AsRawFd, path::PathBuf, process::Command};

use serde_json::Value;
use vigil_tests::{
    kernels::{scenario_needs, Hook},
    require_root, tetragon_policies_dir,
    vm::GUEST_MODULES,
    Agent, TempDir,
};

/// The module the scenarios load, by its name in the kernel.
const MODULE: &str = "dummy";

/// `dummy.ko` of the running kernel, where the distribution keeps it, as the kernel names the
/// file it reads (the links on its path resolved). A machine without it, or that uses the module
/// already (the scenario unloads what it loaded), cannot run the scenario, which says so.
fn module_file() -> PathBuf {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let path = PathBuf::from("/lib/modules")
        .join(release.trim())
        .join(GUEST_MODULES[0]);
    let path = std::fs::canonicalize(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}: the scenario loads the running kernel's own dummy module, uncompressed \
             (the VM image carries it from Debian's package, tests/src/vm.rs GUEST_MODULES)",
            path.display()
        )
    });
    assert!(
        !std::path::Path::new("/sys/module").join(MODULE).exists(),
        "the {MODULE} module is loaded on this machine: the scenario would unload it"
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

/// Loads and unloads the module under an agent started with `policy`, and has the kernel read
/// its file for kexec; the agent's events, and the module's file.
fn load_and_unload(policy: &str) -> (vigil_tests::AgentRun, PathBuf) {
    let module = module_file();
    let agent = Agent::start(&["--policy", policy]);
    let loaded = modutil("insmod", &[module.to_str().unwrap()]);
    let unloaded = loaded.is_ok().then(|| modutil("rmmod", &[MODULE]));
    let kexec = kexec_read(&module);
    let run = agent.stop();
    // The kernel read the file for kexec (and found no kernel in it): a read a module selector
    // must leave out.
    assert_eq!(
        kexec,
        libc::ENOEXEC,
        "kexec_file_load of {}",
        module.display()
    );
    loaded.unwrap_or_else(|e| panic!("{e}"));
    if let Some(Err(e)) = unloaded {
        panic!("{e}");
    }
    (run, module)
}

/// Has the kernel read `file` as a kexec image (READING_KEXEC_IMAGE), which fails after the read
/// since a module is no kernel; the errno.
fn kexec_read(file: &std::path::Path) -> i32 {
    let f = std::fs::File::open(file).unwrap();
    const KEXEC_FILE_NO_INITRAMFS: libc::c_ulong = 4;
    // SAFETY: an open descriptor, no initramfs, an empty command line (length 0, no pointer).
    let rc = unsafe {
        libc::syscall(
            libc::SYS_kexec_file_load,
            f.as_raw_fd(),
            -1,
            0usize,
            std::ptr::null::<u8>(),
            KEXEC_FILE_NO_INITRAMFS,
        )
    };
    if rc == 0 {
        panic!("kexec_file_load took {} as a kernel", file.display());
    }
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
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
    let (run, module) = load_and_unload(policy.to_str().unwrap());
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
    // The kexec read of the same file (and any other read by the kernel: firmware, a policy)
    // is left out by the selector.
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
    let (run, _) = load_and_unload(policy.to_str().unwrap());
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
