//! Every broken policy in `tests/broken/` gets its precise error (file, line, field path,
//! reason, fix), and every Tetragon policy in the shared test data either loads or is refused
//! naming what vigil does not support.

use std::path::{Path, PathBuf};

use vigil_policy_engine::{
    kernel::RunningKernel, load_local_policy, load_policy_for, KernelSymbols,
};

fn kernel() -> Option<RunningKernel> {
    RunningKernel::read().ok()
}

fn check(
    file: &Path,
    kernel: Option<&dyn KernelSymbols>,
) -> Result<String, Vec<vigil_policy_engine::PolicyError>> {
    let text = std::fs::read_to_string(file).unwrap();
    load_local_policy(&file.display().to_string(), &text, kernel)
        .map(|p| p.name)
        .map_err(|e| e.0)
}

#[test]
fn every_broken_policy_gets_its_precise_error() {
    let kernel = kernel().expect("/proc/kallsyms is readable");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/broken");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(files.len() >= 25, "the corpus has {} policies", files.len());
    let mut failures = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        let expect = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect: "))
            .expect("first line is `# expect: LINE PATH | REASON`");
        let (head, fragment) = expect.split_once(" | ").expect("`|` separates the reason");
        let (line, path) = head.split_once(' ').expect("LINE PATH");
        let line: usize = line.parse().unwrap();
        match check(f, Some(&kernel)) {
            Ok(name) => failures.push(format!(
                "{}: loaded as {name}, expected {expect}",
                f.display()
            )),
            Err(errors) => {
                let hit = errors.iter().any(|e| {
                    e.line == line
                        && e.path == path
                        && e.reason.contains(fragment)
                        && !e.fix.is_empty()
                        && e.file == f.display().to_string()
                });
                if !hit {
                    let got: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
                    failures.push(format!(
                        "{}: expected {expect}\n  got:\n  {}",
                        f.display(),
                        got.join("\n  ")
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Every policy in `tests/warned/` loads, with the warning its first line names (`# warn: LINE
/// PATH | REASON`): what loads as Tetragon loads it but may not do what its author meant.
#[test]
fn every_warned_policy_loads_with_its_warning() {
    let kernel = kernel().expect("/proc/kallsyms is readable");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/warned");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(files.len() >= 4, "{} warned policies", files.len());
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        let expect = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# warn: "))
            .expect("first line is `# warn: LINE PATH | REASON`");
        let (head, fragment) = expect.split_once(" | ").unwrap();
        let (line, path) = head.split_once(' ').unwrap();
        let line: usize = line.parse().unwrap();
        let policy = load_policy_for(&f.display().to_string(), &text, Some(&kernel))
            .unwrap_or_else(|e| panic!("{} should load: {e}", f.display()));
        assert!(
            policy.warnings.iter().any(|w| w.line == line
                && w.path == path
                && w.reason.contains(fragment)
                && !w.fix.is_empty()),
            "{}: expected {expect}, got {:#?}",
            f.display(),
            policy.warnings
        );
    }
}

/// Every Tetragon example in the shared test data, and what vigil says of it: `None` where it
/// loads, else words of the reason it is refused for.
const TETRAGON_POLICIES: [(&str, Option<&str>); 57] = [
    ("other_file-block-kubectl-exec-access.yaml", None),
    ("policylibrary_bpf.yaml", None),
    ("policylibrary_egress.yaml", None),
    ("policylibrary_modules.yaml", None),
    ("policylibrary_privileges-raise.yaml", None),
    ("policylibrary_privileges-setuid-root.yaml", None),
    ("policylibrary_sshd.yaml", None),
    ("quickstart_file_monitoring.yaml", None),
    ("quickstart_file_monitoring_enforce.yaml", None),
    ("quickstart_network_egress_cluster.yaml", None),
    ("quickstart_network_egress_cluster_enforce.yaml", None),
    // argError 1 is security_inode_copy_up_xattr's own "discard" (a warning says until 6.10).
    ("tracingpolicy_cve-2023-2640-overlayfs-ubuntu.yaml", None),
    ("tracingpolicy_datagram-with-sock-tracking.yaml", None),
    ("tracingpolicy_datagram.yaml", None),
    ("tracingpolicy_datagram_518.yaml", None),
    ("tracingpolicy_dev_queue_xmit.yaml", None),
    ("tracingpolicy_dns-only-specified-servers.yaml", None),
    ("tracingpolicy_fd_install_caps.yaml", None),
    ("tracingpolicy_fd_install_ns_host.yaml", None),
    ("tracingpolicy_filename_monitoring.yaml", None),
    ("tracingpolicy_filename_monitoring_filtered.yaml", None),
    ("tracingpolicy_hardlink-observe.yaml", None),
    ("tracingpolicy_hardlink-override.yaml", None),
    (
        "tracingpolicy_kill_unprivileged_user_namespace_in_pid_namespace.yaml",
        None,
    ),
    ("tracingpolicy_kprobe_commit_creds.yaml", None),
    ("tracingpolicy_list-generated-ftrace.yaml", None),
    ("tracingpolicy_list-syscalls-generated.yaml", None),
    ("tracingpolicy_list-syscalls-tracepoint.yaml", None),
    ("tracingpolicy_list-syscalls.yaml", None),
    ("tracingpolicy_loader.yaml", None),
    (
        "tracingpolicy_lsm_bprm_check.yaml",
        // The IMA hash of the file executed: not computed by vigil.
        Some("`imaHash` is not supported by vigil"),
    ),
    ("tracingpolicy_lsm_file_open.yaml", None),
    ("tracingpolicy_modules-nohost.yaml", None),
    (
        "tracingpolicy_monitor-kernel-modules.yaml",
        // The host's kernel has no loadable modules; the VM's (6.1) loads the policy.
        Some("this kernel has no function `do_init_module`"),
    ),
    (
        "tracingpolicy_monitor-signed-kernel-modules.yaml",
        Some("this kernel has no function `find_module_sections`"),
    ),
    ("tracingpolicy_override-security.yaml", None),
    (
        "tracingpolicy_process-creds-changed.yaml",
        // override_creds became inline in Linux 6.14: the host has none, the VM (6.1) has it.
        Some("this kernel has no function `override_creds`"),
    ),
    ("tracingpolicy_process-creds-installed.yaml", None),
    (
        "tracingpolicy_process.credentials.changes.at.syscalls.yaml",
        None,
    ),
    ("tracingpolicy_rawtp.yaml", None),
    ("tracingpolicy_security-socket-connect.yaml", None),
    ("tracingpolicy_security_inode_follow_link.yaml", None),
    ("tracingpolicy_symlink-observe.yaml", None),
    ("tracingpolicy_symlink-override.yaml", None),
    ("tracingpolicy_sys_mount.yaml", None),
    ("tracingpolicy_sys_pivot_root.yaml", None),
    ("tracingpolicy_sys_setuid.yaml", None),
    ("tracingpolicy_tcp-accept.yaml", None),
    ("tracingpolicy_tcp-connect-only-private-addrs.yaml", None),
    ("tracingpolicy_tcp-connect-with-selectors.yaml", None),
    ("tracingpolicy_tcp-connect.yaml", None),
    ("tracingpolicy_tty.yaml", None),
    ("tracingpolicy_tty_54.yaml", None),
    (
        "tracingpolicy_uprobe-binaries.yaml",
        // Debian's libc is /usr/lib/x86_64-linux-gnu/libc.so.6, which the error names.
        Some("cannot open /lib64/libc.so.6"),
    ),
    (
        "tracingpolicy_uprobe-host.yaml",
        // /procRoot/ is read as /proc/; init's root is not open to a container's root.
        Some("/proc/1/root/usr/bin/bash"),
    ),
    ("tracingpolicy_usdt.yaml", Some("`usdts` is not supported")),
    ("tracingpolicy_write.yaml", None),
];

#[test]
fn tetragon_policies_load_or_are_refused_by_name() {
    let kernel = kernel().expect("/proc/kallsyms is readable");
    // What Tetragon's quickstart has envsubst fill in; vigil reads the environment.
    std::env::set_var("PODCIDR", "10.0.0.0/16");
    std::env::set_var("SERVICECIDR", "10.96.0.0/12");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/testdata/tetragon-policies");
    let mut listed: Vec<&str> = TETRAGON_POLICIES.iter().map(|p| p.0).collect();
    listed.sort();
    let mut present: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    present.sort();
    assert_eq!(present, listed, "every test-data policy has an expectation");
    for (name, refusal) in TETRAGON_POLICIES {
        let result = check(&dir.join(name), Some(&kernel));
        match (refusal, result) {
            (None, Ok(_)) => {}
            (Some(why), Err(errors)) => assert!(
                errors.iter().any(|e| e.reason.contains(why)),
                "{name}: expected a refusal naming {why:?}, got {errors:#?}"
            ),
            (None, Err(errors)) => panic!("{name} should load: {errors:#?}"),
            (Some(why), Ok(_)) => panic!("{name} loaded but should be refused: {why}"),
        }
    }
}

#[test]
fn shipped_policies_are_valid_and_compile_for_the_kernel() {
    let kernel = kernel().expect("/proc/kallsyms is readable");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules/policies");
    let mut n = 0;
    for f in std::fs::read_dir(&dir).unwrap() {
        let f = f.unwrap().path();
        let text = std::fs::read_to_string(&f).unwrap();
        let policy = load_policy_for(&f.display().to_string(), &text, Some(&kernel))
            .unwrap_or_else(|e| panic!("{e}"));
        vigil_policy_engine::compile::compile(&policy)
            .unwrap_or_else(|e| panic!("{}: {e:?}", f.display()));
        n += 1;
    }
    assert!(n >= 2, "{n} shipped policies");
}

/// Every YAML file vigil ships or tests with passes the gate: it parses the text with another
/// parser than serde's, and must not refuse what serde accepts.
#[test]
fn every_real_policy_rule_and_config_passes_the_gate() {
    use vigil_policy_engine::{check_yaml, Limits};
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "yaml" || x == "yml") {
                out.push(p);
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![root.join("../vigil.example.yaml")];
    for dir in [
        "../rules",
        "../../shared/testdata/tetragon-policies",
        "../../shared/testdata/sigma-linux",
    ] {
        walk(&root.join(dir), &mut files);
    }
    assert!(files.len() > 100, "{} files", files.len());
    let refused: Vec<String> = files
        .iter()
        .filter_map(|f| {
            let text = std::fs::read_to_string(f).unwrap();
            check_yaml(&f.display().to_string(), &text, &Limits::POLICY)
                .err()
                .map(|e| e.to_string())
        })
        .collect();
    assert!(refused.is_empty(), "{}", refused.join("\n"));
}
