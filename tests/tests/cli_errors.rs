//! What a user sees when the agent cannot run, and what `vigil probe` says about this kernel.

use std::{
    os::unix::process::CommandExt,
    process::{Command, Output},
};

use vigil_tests::{kernels, require_root, vigil_bin};

/// What the agent wrote to stderr, without the notices of the filesystems it mounted (tracefs,
/// bpffs, securityfs): the first run after boot mounts them and says so, whatever then fails.
fn stderr_lines(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| !l.starts_with("vigil: mounted "))
        .map(str::to_string)
        .collect()
}

/// One line, no panic, no backtrace, a non-zero exit.
fn assert_one_clear_line(out: &Output, needle: &str) {
    let lines = stderr_lines(out);
    assert!(!out.status.success(), "exit status {:?}", out.status);
    assert_eq!(lines.len(), 1, "exactly one line expected: {lines:#?}");
    assert!(lines[0].starts_with("vigil: error: "), "{}", lines[0]);
    assert!(
        lines[0].contains(needle),
        "{:?} does not mention {needle:?}",
        lines[0]
    );
    let text = lines[0].to_lowercase();
    assert!(
        !text.contains("panicked") && !text.contains("backtrace"),
        "{}",
        lines[0]
    );
}

#[test]
fn an_unprivileged_user_gets_one_line_not_a_panic() {
    require_root();
    // Dropping uid 0 clears the effective capabilities (and std clears the groups).
    let out = Command::new(vigil_bin())
        .arg("agent")
        .uid(65534)
        .gid(65534)
        .output()
        .expect("run vigil as nobody");
    assert_one_clear_line(&out, "must run as root");
}

#[test]
fn a_kernel_without_btf_gets_one_line_naming_the_config() {
    require_root();
    let out = Command::new(vigil_bin())
        .args(["agent", "--btf", "/nonexistent/vmlinux"])
        .output()
        .expect("run vigil");
    assert_one_clear_line(&out, "CONFIG_DEBUG_INFO_BTF");
}

#[test]
fn a_btf_file_that_is_not_btf_gets_one_line() {
    require_root();
    let out = Command::new(vigil_bin())
        .args(["agent", "--btf", "/etc/hostname"])
        .output()
        .expect("run vigil");
    assert_one_clear_line(&out, "/etc/hostname");
}

/// What the probe reports must agree with the kernel matrix's table for this kernel, and with
/// facts the kernel publishes elsewhere.
#[test]
fn probe_json_agrees_with_the_kernel() {
    require_root();
    let report = vigil_tests::probe_json();
    let kind = |k: &str| {
        report["program_kinds"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["kind"] == k)
            .unwrap_or_else(|| panic!("no {k} in the report"))
            .clone()
    };
    let kernel = kernels::current();
    for hook in kernels::ALL_HOOKS {
        let r = kind(hook.probe_kind());
        assert_eq!(
            r["available"],
            kernel.hooks.contains(&hook),
            "kernel {}: the matrix says {:?} is {}, vigil probe says {r}",
            kernel.name,
            hook,
            if kernel.hooks.contains(&hook) {
                "available"
            } else {
                "unavailable"
            }
        );
    }
    assert_eq!(
        kind("raw_tracepoint")["available"],
        true,
        "the process sensor runs on it"
    );
    // A kprobe attaches only where the kernel has the kprobe PMU.
    let kprobe_pmu = std::path::Path::new("/sys/bus/event_source/devices/kprobe/type").exists();
    assert_eq!(kind("kprobe")["attaches"], kprobe_pmu);
    assert_eq!(report["btf"], true);
    assert!(
        report["lsms"].as_array().is_some_and(|l| !l.is_empty()),
        "securityfs was mounted and read"
    );
    let helper = |h: &str| {
        report["helpers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["helper"] == h)
            .unwrap()["available"]
            .clone()
    };
    assert_eq!(helper("bpf_ringbuf_output"), true);
    assert_eq!(helper("bpf_loop"), true, "the path walker needs it");
}

/// A kernel that refuses every program: the agent runs under a seccomp filter that makes
/// `bpf(BPF_PROG_LOAD, ...)` fail with EPERM — what a locked-down kernel answers — while maps and
/// BTF still load, so the refusal comes exactly where a real kernel's would.
#[test]
fn a_kernel_that_refuses_every_program_kind_gets_one_line() {
    require_root();
    let mut cmd = Command::new(vigil_bin());
    cmd.arg("agent");
    // SAFETY: the closure runs between fork and exec and only makes prctl(2) system calls.
    unsafe { cmd.pre_exec(deny_prog_load) };
    let out = cmd.output().expect("run vigil");
    assert_one_clear_line(&out, "refuses every eBPF program kind");
}

/// Installs a seccomp filter: `bpf(BPF_PROG_LOAD, ...)` fails with EPERM, all else is allowed.
fn deny_prog_load() -> std::io::Result<()> {
    const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
    const NR_BPF: u32 = 321;
    const BPF_PROG_LOAD: u32 = 5;
    const RET_ALLOW: u32 = 0x7fff_0000;
    const RET_EPERM: u32 = 0x0005_0000 | libc::EPERM as u32;
    let stmt = |code: u16, k: u32| libc::sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    };
    let jump = |code: u16, k: u32, jt: u8, jf: u8| libc::sock_filter { code, jt, jf, k };
    let (ld_w_abs, jeq_k, ret_k) = (0x20, 0x15, 0x06);
    let filter = [
        stmt(ld_w_abs, 4), // seccomp_data.arch
        jump(jeq_k, AUDIT_ARCH_X86_64, 0, 4),
        stmt(ld_w_abs, 0), // seccomp_data.nr
        jump(jeq_k, NR_BPF, 0, 2),
        stmt(ld_w_abs, 16), // low half of seccomp_data.args[0], the bpf command
        jump(jeq_k, BPF_PROG_LOAD, 1, 0),
        stmt(ret_k, RET_ALLOW),
        stmt(ret_k, RET_EPERM),
    ];
    let prog = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr() as *mut _,
    };
    // SAFETY: prctl with valid arguments; `prog` outlives the call.
    unsafe {
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
            || libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER,
                &prog as *const _,
            ) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

#[test]
fn policy_lint_names_file_line_field_reason_and_fix() {
    require_root();
    let dir = vigil_tests::TempDir::new("lint");
    let good = dir.path().join("good.yaml");
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&good, vigil_tests::fixtures::SETUID_POLICY).unwrap();
    std::fs::write(
        &bad,
        vigil_tests::fixtures::SETUID_POLICY.replace("type: \"int\"", "type: \"integer\""),
    )
    .unwrap();

    let ok = Command::new(vigil_bin())
        .args(["policy", "lint"])
        .arg(&good)
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );
    assert!(
        String::from_utf8_lossy(&ok.stdout).contains("ok (policy syscalls, 1 hook, observes only)")
    );

    let out = Command::new(vigil_bin())
        .args(["policy", "lint"])
        .arg(&good)
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let expected = format!(
        "{}:11:13: spec.kprobes[0].args[0].type: argument type `integer` is not supported by vigil (fix: use one of:",
        bad.display()
    );
    assert!(stdout.contains(&expected), "{stdout}");
    assert_eq!(
        stderr_lines(&out),
        vec!["vigil: error: 1 of 2 policy files have problems"]
    );
}

/// The same policy plans to BPF LSM where the kernel has it and to the syscall fallback with
/// SIGKILL where it does not, and says which guarantee each gives.
#[test]
fn policy_explain_shows_the_plan_for_this_kernel() {
    require_root();
    let dir = vigil_tests::TempDir::new("explain");
    let file = dir.path().join("deny.yaml");
    std::fs::write(&file, vigil_tests::fixtures::deny_passwd("enforce")).unwrap();
    let out = Command::new(vigil_bin())
        .args(["policy", "explain"])
        .arg(&file)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!(
            "{}: policy deny-passwd (enforces) on kernel ",
            file.display()
        )),
        "{stdout}"
    );
    if kernels::current().hooks.contains(&kernels::Hook::Lsm) {
        assert!(
            stdout.contains("attach:    BPF LSM on file_open"),
            "{stdout}"
        );
        assert!(stdout.contains("action:    deny with -1"), "{stdout}");
        assert!(
            stdout.contains("guarantee: denied before the effect"),
            "{stdout}"
        );
    } else {
        assert!(
            stdout.contains("attach:    system call tracepoints sys_exit_openat"),
            "{stdout}"
        );
        assert!(
            stdout.contains("action:    SIGKILL (the policy asks: deny with -1)"),
            "{stdout}"
        );
        assert!(
            stdout.contains("guarantee: process killed after the operation, before it returns"),
            "{stdout}"
        );
    }
}

/// A `--config` file the agent cannot use stops the start before anything is loaded, with one
/// line that names the file and what to do: missing, not a regular file, another user's, or
/// writable by others.
#[test]
fn a_missing_unreadable_or_refused_config_stops_the_start_with_one_line() {
    use std::os::unix::fs::{chown, PermissionsExt};
    require_root();
    let dir = vigil_tests::TempDir::new("config-refused");
    let file = |name: &str, mode: u32, owner: u32| {
        let path = dir.path().join(name);
        std::fs::write(&path, "exporters: {}\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        chown(&path, Some(owner), None).unwrap();
        path
    };
    let cases = [
        (dir.path().join("missing.yaml"), "missing.yaml: cannot read"),
        (
            dir.path().to_path_buf(),
            "is a directory, not a regular file",
        ),
        (file("theirs.yaml", 0o600, 65534), "`chown root"),
        (file("open.yaml", 0o666, 0), "`chmod go-w"),
    ];
    for (path, needle) in cases {
        let out = Command::new(vigil_bin())
            .arg("agent")
            .arg("--config")
            .arg(&path)
            .output()
            .unwrap();
        assert_one_clear_line(&out, needle);
    }
}

/// A typo deep inside a sink is reported at the field's own line and column, with its path
/// written once.
#[test]
fn a_config_typo_inside_a_sink_is_reported_at_its_own_line_once() {
    require_root();
    let dir = vigil_tests::TempDir::new("config-typo");
    let path = dir.path().join("vigil.yaml");
    std::fs::write(
        &path,
        "exporters:\n  spool_dir: /var/lib/vigil/spool\n  sinks:\n  - name: local\n    type: file\n    path: /var/log/vigil/events.jsonl\n    format: json\n    max_size_mb: 100\n    max_bakups: 5\n",
    )
    .unwrap();
    let out = Command::new(vigil_bin())
        .arg("agent")
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    let expected = format!(
        "{}:9:5: exporters.sinks[0].max_bakups: unknown field `max_bakups`, expected one of",
        path.display()
    );
    assert_one_clear_line(&out, &expected);
    let line = &stderr_lines(&out)[0];
    assert_eq!(line.matches("sinks[0]").count(), 1, "{line}");
    assert!(!line.contains(" at line "), "{line}");
}
