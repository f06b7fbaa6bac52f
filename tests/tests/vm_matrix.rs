//! The kernel matrix: every scenario, built once (static), runs again inside Debian's own
//! kernel under qemu, where kprobe, fentry and LSM programs load. A scenario that fails there
//! fails `make test` and prints its part of the console; a scenario that skips itself there
//! fails too, because that kernel has every hook the matrix knows.

use std::{
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Mutex,
    },
    time::{Duration, Instant},
};

use vigil_tests::{
    kernels::{Kernel, DEBIAN_VM, DEBIAN_VM_NO_BPF_LSM},
    require_root, vigil_bin,
    vm::{
        boot, guest_event_count, parse_console, read_guest_events, DebianKernel, Initramfs,
        NO_BPF_LSM_CMDLINE,
    },
    EVENT_ARCHIVE_VAR,
};

/// The scenario test binaries (one per file in `tests/tests/`, this one excepted).
const SCENARIOS: [&str; 25] = [
    "process_lifecycle",
    "cli_errors",
    "kernel_hooks",
    "file_policies",
    "shipped_policies",
    "hook_selectors",
    "sigma_detection",
    "exporters",
    "network_policies",
    "privilege_policies",
    "file_changes",
    "policy_verdicts",
    "kubernetes",
    "persistence",
    "enforcement_rungs",
    "walkarounds",
    "uprobes",
    "lists",
    "arg_types",
    "overrides",
    "policy_tracepoints",
    "kernel_modules",
    "metrics",
    "encryption",
    "policy_scale",
];

/// Scenarios that run on the host only, and why: they test what the agent does with its files,
/// its outputs and its inputs, which no kernel hook changes.
const HOST_ONLY: [(&str, &str); 14] = [
    (
        "api",
        "its clients are Python's grpcio (the VM's initramfs has no Python) and the CLI over the same socket; the API reads events and changes policies through the loop's own paths, which the VM's scenarios cover on its kernel (persistence, file_policies)",
    ),
    (
        "forensics",
        "the store is the agent's own thread and database and its clients are Python's grpcio and the CLI; the events it keeps come from hooks the VM's scenarios cover on its kernel (network_policies, file_changes)",
    ),
    (
        "elastic_search",
        "the Elasticsearch translation of a search and the test server's checks of it: no kernel is involved",
    ),
    (
        "helm_chart",
        "renders the chart with helm and checks what it renders: no kernel is involved",
    ),
    (
        "elastic_rules",
        "Elastic's rules read the documents the Elasticsearch sink makes of events, which do not depend on the kernel (the VM's own events are checked as documents by ecs_documents)",
    ),
    (
        "ecs_documents",
        "checks the archive of the whole run after the scenarios, the VM's events included (they come back to the host), through the Elasticsearch sink",
    ),
    (
        "cli_pipes",
        "every command's stdout closed by its reader: how vigil writes, not what a kernel hook sees",
    ),
    (
        "agent_outputs",
        "which outputs carry the events (stdout, the export file, a configured sink): the agent's own files",
    ),
    (
        "policy_commands",
        "lint and explain over files and directories: how the commands read their arguments (the plans per kernel are policy_verdicts', which the VM runs)",
    ),
    (
        "readme_commands",
        "the READMEs' examples, read from the repository, which the image does not hold",
    ),
    (
        "start_up",
        "what the agent refuses to start with, the steps it logs, and that no program outlives its stop (read with bpftool, which the image lacks); every VM scenario starts and stops agents the same way",
    ),
    (
        "hardening",
        "cgroup names, spool files, planted links, a closed stdout and hostile policy files: the agent's own files and inputs",
    ),
    (
        "policy_install",
        "an attach made to fail by covering tracefs files in a mount namespace: the rollback is the agent's, not the kernel's",
    ),
    (
        "tetragon_schema",
        "parsing the events with Tetragon's protos needs Python, grpcio-tools and protobuf, which the image does not hold; the guest's own events come back to the host (VIGIL_EVENT_ARCHIVE) and are parsed there with the host's",
    ),
];

/// How long one guest may take: each of the guests with BPF LSM ran its half of the scenarios
/// in about 270 s on our 2-core machines under emulation, the one without in about a minute;
/// past this, the guest is taken for hung and its console is shown.
const VM_LIMIT: Duration = Duration::from_secs(600);

/// Copies the files under `dir` (subdirectories included) to `dest` in the image.
fn add_tree(fs: &mut vigil_tests::vm::Initramfs, dir: &Path, dest: &str) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if p.is_dir() {
            add_tree(fs, &p, &format!("{dest}/{name}"));
        } else {
            fs.add_file(&p, &format!("{dest}/{name}")).unwrap();
        }
    }
}

/// The newest `<name>-<16 hex>` executable cargo built beside this test.
fn test_binary(deps: &Path, name: &str) -> PathBuf {
    std::fs::read_dir(deps)
        .expect("deps dir")
        .filter_map(|e| e.ok())
        .filter(|e| {
            let f = e.file_name().to_string_lossy().into_owned();
            f.strip_prefix(name)
                .and_then(|rest| rest.strip_prefix('-'))
                .is_some_and(|h| h.len() == 16 && h.chars().all(|c| c.is_ascii_hexdigit()))
        })
        .max_by_key(|e| e.metadata().and_then(|m| m.modified()).ok())
        .map(|e| e.path())
        .unwrap_or_else(|| {
            panic!(
                "no test binary {name}-* in {}: build with `cargo test --profile release --workspace --no-run`",
                deps.display()
            )
        })
}

#[test]
fn the_scenario_list_names_every_scenario_file() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    for (name, _) in HOST_ONLY {
        assert!(
            dir.join(format!("{name}.rs")).is_file(),
            "HOST_ONLY names {name}, which is gone"
        );
    }
    // Scenario files only: a directory holds a module some scenarios share.
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "rs"))
        .map(|e| {
            e.file_name()
                .to_string_lossy()
                .trim_end_matches(".rs")
                .to_string()
        })
        .filter(|n| n != "vm_matrix" && !HOST_ONLY.iter().any(|(h, _)| h == n))
        .collect();
    files.sort();
    let mut listed: Vec<String> = SCENARIOS.iter().map(|s| s.to_string()).collect();
    listed.sort();
    assert_eq!(
        files, listed,
        "add the new scenario file to SCENARIOS so the VM runs it too (or to HOST_ONLY, with the reason)"
    );
}

/// The scenarios that run again with the kernel booted without BPF LSM, where file opens are
/// denied through fmod_ret: the rungs and their gaps, and the persistence of that rung's links.
const NO_BPF_LSM_SCENARIOS: [&str; 3] = ["enforcement_rungs", "persistence", "walkarounds"];

/// `all`, or those of them `VIGIL_VM_SCENARIOS` (comma-separated) names while one is being
/// worked on; `make test` never sets it, and the run says loudly what it left out.
fn chosen_scenarios(all: &[&'static str]) -> Vec<&'static str> {
    let Some(only) = std::env::var_os("VIGIL_VM_SCENARIOS") else {
        return all.to_vec();
    };
    let only = only.to_string_lossy().into_owned();
    let chosen: Vec<&str> = all
        .iter()
        .copied()
        .filter(|s| only.split(',').any(|o| o.trim() == *s))
        .collect();
    eprintln!(
        "VIGIL_VM_SCENARIOS is set: {} of {} scenarios run, the rest are LEFT OUT",
        chosen.len(),
        all.len()
    );
    chosen
}

/// Guests the scenarios with BPF LSM are shared among. One guest ran all of them in 530 s, near
/// [`VM_LIMIT`], on one host thread (`tests/src/vm.rs`) while the host's other CPU sat idle;
/// alternate scenarios of the list go to each guest, which balances them to within a minute.
const GUESTS_WITH_BPF_LSM: usize = 2;

/// One guest to boot: a kernel of the matrix, what its command line adds, the scenarios it
/// runs, and its name in file names and output.
struct Guest {
    matrix: Kernel,
    cmdline: &'static str,
    scenarios: Vec<&'static str>,
    label: String,
}

/// What one guest's scenarios did.
struct GuestRun {
    failures: Vec<String>,
    skips: Vec<String>,
    /// The events its agents archived, when the run archives them.
    events: Option<String>,
}

/// The guests that together run every scenario on both kernels of the VM matrix.
fn guests() -> Vec<Guest> {
    let mut guests: Vec<Guest> = (0..GUESTS_WITH_BPF_LSM)
        .map(|n| Guest {
            matrix: DEBIAN_VM,
            cmdline: "",
            scenarios: SCENARIOS
                .iter()
                .copied()
                .skip(n)
                .step_by(GUESTS_WITH_BPF_LSM)
                .collect(),
            label: format!("{}-{}of{GUESTS_WITH_BPF_LSM}", DEBIAN_VM.name, n + 1),
        })
        .collect();
    guests.push(Guest {
        matrix: DEBIAN_VM_NO_BPF_LSM,
        cmdline: NO_BPF_LSM_CMDLINE,
        scenarios: NO_BPF_LSM_SCENARIOS.to_vec(),
        label: DEBIAN_VM_NO_BPF_LSM.name.to_string(),
    });
    for g in &mut guests {
        g.scenarios = chosen_scenarios(&g.scenarios);
    }
    guests.retain(|g| !g.scenarios.is_empty());
    guests
}

#[test]
fn every_guest_splits_the_scenarios_without_leaving_one_out() {
    let mut split: Vec<&str> = guests()
        .iter()
        .filter(|g| g.matrix == DEBIAN_VM)
        .flat_map(|g| g.scenarios.clone())
        .collect();
    if std::env::var_os("VIGIL_VM_SCENARIOS").is_none() {
        split.sort_unstable();
        let mut all = SCENARIOS.to_vec();
        all.sort_unstable();
        assert_eq!(
            split, all,
            "each scenario runs in exactly one guest with BPF LSM"
        );
    }
}

/// Every scenario in Debian's kernel, and the file-open rungs again with that kernel booted
/// without BPF LSM: the guests boot side by side, as many at once as the host has CPUs.
#[test]
fn every_scenario_passes_in_the_debian_vm_with_and_without_bpf_lsm() {
    require_root();
    let guests = guests();
    if guests.is_empty() {
        eprintln!("VIGIL_VM_SCENARIOS leaves nothing to run in the VM");
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().unwrap().to_path_buf();
    // target/<triple>/<profile>/deps → target/
    let target = deps.ancestors().nth(3).expect("target dir").to_path_buf();
    // Fetched once, before the guests share it.
    let kernel = DebianKernel::fetch(&target.join("vm-kernel"))
        .unwrap_or_else(|e| panic!("cannot get the VM kernel: {e}"));

    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(guests.len());
    let next = AtomicUsize::new(0);
    let runs: Mutex<Vec<(usize, GuestRun)>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                let Some(guest) = guests.get(n) else {
                    break;
                };
                // A guest that panics (a boot past its limit, a cut archive) is one failure
                // among the others' reports, and the guests after it still run.
                let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    run_guest(&kernel, guest, &deps, &target)
                }))
                .unwrap_or_else(|panic| GuestRun {
                    failures: vec![format!(
                        "the guest did not finish: {}",
                        panic
                            .downcast_ref::<String>()
                            .map(String::as_str)
                            .or_else(|| panic.downcast_ref::<&str>().copied())
                            .unwrap_or("a panic without a message")
                    )],
                    skips: Vec::new(),
                    events: None,
                });
                runs.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((n, run));
            });
        }
    });
    let mut runs = runs.into_inner().unwrap_or_else(|e| e.into_inner());
    runs.sort_by_key(|(n, _)| *n);

    let mut failures = Vec::new();
    let mut skips = Vec::new();
    for (n, run) in runs {
        if let Some(events) = run.events {
            vigil_tests::archive_events(&events);
        }
        let label = &guests[n].label;
        failures.extend(run.failures.into_iter().map(|f| format!("[{label}] {f}")));
        skips.extend(run.skips.into_iter().map(|f| format!("[{label}] {f}")));
    }
    assert!(
        failures.is_empty(),
        "scenarios failed in the VM:\n{}",
        failures.join("\n")
    );
    assert!(
        skips.is_empty(),
        "scenarios skipped in the VM, whose kernel has every hook they need:\n{}",
        skips.join("\n")
    );
}

/// Packs `guest`'s image, boots it and reads what each of its scenarios did.
fn run_guest(kernel: &DebianKernel, guest: &Guest, deps: &Path, target: &Path) -> GuestRun {
    let label = &guest.label;
    let mut fs = Initramfs::new(&target.join(format!("vm-root-{label}")))
        .unwrap_or_else(|e| panic!("[{label}] {e}"));
    fs.add_binary(&vigil_bin(), "vigil").unwrap();
    // A stand-in for setuid-root programs, installed setuid by the privilege scenario.
    let helper = vigil_bin().with_file_name("vigil-setuid-helper");
    fs.add_binary(&helper, "vigil-setuid-helper").unwrap();
    // The walk-arounds of a file-open deny (walkarounds.rs).
    let walkaround = vigil_bin().with_file_name("vigil-walkaround");
    fs.add_binary(&walkaround, "vigil-walkaround").unwrap();
    // One system call on a path, for the policy-scale scenario (policy_scale.rs).
    let syscall = vigil_bin().with_file_name("vigil-syscall");
    fs.add_binary(&syscall, "vigil-syscall").unwrap();
    // The system's own bash and openssl with their libraries, which the uprobe scenarios hook,
    // and procps' kill, which Tetragon's list examples select.
    // iproute2's ip and wireguard-tools' wg: the encryption scenario's links and tunnels.
    for program in [
        "/usr/bin/bash",
        "/usr/bin/openssl",
        "/usr/bin/kill",
        vigil_tests::links::IP,
        "/usr/bin/wg",
    ] {
        fs.add_dynamic(Path::new(program))
            .unwrap_or_else(|e| panic!("{program}: {e}"));
    }
    // OpenSSL reads its configuration at start (/usr/lib/ssl/openssl.cnf leads to /etc/ssl).
    for dest in ["etc/ssl/openssl.cnf", "usr/lib/ssl/openssl.cnf"] {
        fs.add_file(Path::new("/etc/ssl/openssl.cnf"), dest)
            .unwrap();
    }
    for s in &guest.scenarios {
        fs.add_scenario(&test_binary(deps, s), s).unwrap();
    }
    // The kernel's own modules the module scenarios load, where the distribution keeps them.
    add_tree(&mut fs, &kernel.modules, "lib/modules");
    // The shipped policies and the broken-policy corpus, for the scenarios that load them.
    for (dir, dest) in [
        (vigil_tests::rules_dir(), "vigil/rules/policies"),
        (vigil_tests::broken_policies_dir(), "vigil/broken"),
        (vigil_tests::tetragon_policies_dir(), "vigil/tetragon"),
        (vigil_tests::sigma_rules_dir(), "vigil/sigma"),
        (
            vigil_tests::rules_dir().parent().unwrap().join("sigma"),
            "vigil/rules/sigma",
        ),
    ] {
        add_tree(&mut fs, &dir, dest);
    }
    // The guest's events join the host's archive, for the Tetragon schema check of both.
    let archiving = std::env::var_os(EVENT_ARCHIVE_VAR).is_some();
    if archiving {
        fs.keep_events();
    }
    let initramfs = target.join(format!("vm-initramfs-{label}.gz"));
    fs.pack(guest.matrix.name, &initramfs)
        .unwrap_or_else(|e| panic!("[{label}] {e}"));

    let started = Instant::now();
    let second_serial = target.join(format!("vm-ttyS1-{label}"));
    let console = boot(kernel, &initramfs, VM_LIMIT, &second_serial, guest.cmdline)
        .unwrap_or_else(|e| panic!("[{label}] {e}"));
    eprintln!(
        "[{label}] {} {} booted and ran {} scenarios in {:.0?}",
        kernel.package,
        kernel.version,
        guest.scenarios.len(),
        started.elapsed()
    );

    let (runs, skips) = parse_console(&console);
    let mut failures = Vec::new();
    for s in &guest.scenarios {
        match runs.iter().find(|r| r.name == *s) {
            None => failures.push(format!("{s}: never started\n--- console ---\n{console}")),
            Some(r) => {
                let passed = r
                    .output
                    .lines()
                    .any(|l| l.starts_with("test result: ok.") && !l.contains(" 0 passed"));
                if r.rc != Some(0) || !passed {
                    failures.push(format!(
                        "{s}: exit {:?}\n--- its console ---\n{}",
                        r.rc, r.output
                    ));
                } else {
                    // VIGIL_VM_SHOW=1 prints what a passing scenario printed (its tables).
                    if std::env::var_os("VIGIL_VM_SHOW").is_some() {
                        eprintln!("--- [{label}] {s} ---\n{}", r.output);
                    }
                    eprintln!(
                        "[{label}] {s}: {}",
                        r.output
                            .lines()
                            .find(|l| l.starts_with("test result"))
                            .unwrap_or("")
                    );
                }
            }
        }
    }
    let events = archiving.then(|| {
        let events = read_guest_events(&second_serial).unwrap_or_else(|e| panic!("[{label}] {e}"));
        let kept = events.lines().count();
        eprintln!(
            "[{label}] the guest's agents wrote {kept} events, added to ${EVENT_ARCHIVE_VAR}"
        );
        assert_eq!(
            Some(kept),
            guest_event_count(&console),
            "[{label}] the lines read back are the lines the guest archived"
        );
        assert!(
            kept > 0 || !failures.is_empty(),
            "[{label}] {EVENT_ARCHIVE_VAR} is set but the guest archived no event"
        );
        for line in events.lines() {
            assert!(
                serde_json::from_str::<serde_json::Value>(line).is_ok_and(|v| v.is_object()),
                "[{label}] the guest archived a line that is no JSON event: {line}"
            );
        }
        events
    });
    GuestRun {
        failures,
        skips,
        events,
    }
}
