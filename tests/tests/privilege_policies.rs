//! The shipped privilege policy (`rules/policies/observe-privilege-changes.yaml`) with real
//! calls, made by this test's own processes so the scenario runs on the host and in the VM
//! alike: a child becoming root (setgid(0), setuid(0)), a child dropping to nobody (not
//! reported: only a change to root is) and then creating a user namespace, and the test itself
//! loading a BPF program, attaching to a child with ptrace and setting its own capability sets;
//! and a real setuid-root program (a copy of `vigil-setuid-helper`, chmod 4755) run by nobody,
//! which makes itself root.

use std::process::Command;

use serde_json::Value;
use vigil_policy_engine::kernel::reported_function;
use vigil_tests::{netns::fork_and_wait, rules_dir, vigil_bin, Agent, AgentRun, TempDir};

const POLICY: &str = "observe-privilege-changes";

/// The policy's events from `function`.
fn events<'a>(run: &'a AgentRun, function: &str) -> Vec<&'a Value> {
    run.events
        .iter()
        .filter_map(|e| e.get("process_kprobe"))
        // A system call is reported by the symbol Tetragon names (`__x64_sys_setuid`).
        .filter(|e| {
            e["policy_name"] == POLICY
                && e["function_name"] == reported_function(function, function.starts_with("sys_"))
        })
        .collect()
}

#[test]
fn becoming_root_user_namespaces_bpf_loads_ptrace_and_capset_are_reported() {
    let policy = rules_dir().join(format!("{POLICY}.yaml"));
    let dir = TempDir::new("setuid-binary");
    let setuid_binary = dir.path().join("setuid-helper");
    std::fs::copy(
        vigil_bin().with_file_name("vigil-setuid-helper"),
        &setuid_binary,
    )
    .expect("vigil-setuid-helper is built beside vigil");
    {
        use std::os::unix::fs::PermissionsExt;
        std::os::unix::fs::chown(&setuid_binary, Some(0), Some(0)).unwrap();
        std::fs::set_permissions(&setuid_binary, std::fs::Permissions::from_mode(0o4755)).unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let agent = Agent::start(&[
        "--policy",
        policy.to_str().unwrap(),
        "--enable-process-cred",
    ]);
    let escalated = {
        use std::os::unix::process::CommandExt;
        let mut child = Command::new(&setuid_binary)
            .uid(65534)
            .gid(65534)
            .spawn()
            .unwrap();
        let pid = child.id();
        (pid, child.wait().unwrap())
    };
    assert!(
        escalated.1.success(),
        "the setuid binary becomes root: {:?}",
        escalated.1
    );

    // SAFETY (both children): raw system calls, then _exit.
    let (root_pid, root) =
        fork_and_wait(|| unsafe { (libc::setgid(0) == 0 && libc::setuid(0) == 0) as i32 ^ 1 });
    assert!(libc::WIFEXITED(root) && libc::WEXITSTATUS(root) == 0);
    let (nobody_pid, nobody) = fork_and_wait(|| unsafe {
        let ok = libc::setresgid(65534, 65534, 65534) == 0
            && libc::setresuid(65534, 65534, 65534) == 0
            && libc::unshare(libc::CLONE_NEWUSER) == 0;
        ok as i32 ^ 1
    });
    assert!(
        libc::WIFEXITED(nobody) && libc::WEXITSTATUS(nobody) == 0,
        "an unprivileged user namespace: status {nobody:#x}"
    );
    // BPF_PROG_LOAD with no attributes: the kernel refuses it, after the call was made.
    // SAFETY: a raw system call with a null attribute pointer, which the kernel checks.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, 5, std::ptr::null::<u8>(), 0) };
    assert_eq!(rc, -1);
    let mut child = Command::new("sleep").arg("30").spawn().unwrap();
    let pid = child.id() as libc::pid_t;
    // SAFETY: attaching to and detaching from our own child.
    unsafe {
        assert_eq!(libc::ptrace(libc::PTRACE_ATTACH, pid, 0, 0), 0);
        let mut status = 0;
        libc::waitpid(pid, &mut status, 0);
        libc::ptrace(libc::PTRACE_DETACH, pid, 0, 0);
    }
    let _ = child.kill();
    let _ = child.wait();
    // capset with the sets we already have.
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    let mut header = Header {
        version: 0x2008_0522, // _LINUX_CAPABILITY_VERSION_3
        pid: 0,
    };
    let mut data = [Data::default(); 2];
    // SAFETY: the kernel fills two Data structs for version 3, then takes them back unchanged.
    unsafe {
        assert_eq!(
            libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()),
            0
        );
        assert_eq!(
            libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()),
            0
        );
    }
    let run = agent.stop();
    let me = std::process::id();

    let of = |evs: &[&Value], pid: i32| evs.iter().filter(|e| e["process"]["pid"] == pid).count();
    let setuid = events(&run, "sys_setuid");
    assert_eq!(of(&setuid, root_pid), 1, "setuid(0): {setuid:#?}");
    assert!(setuid.iter().all(|e| e["args"][0]["int_arg"] == 0));
    // The setuid binary: run by nobody, root by its file's mode, then root for good.
    let by_binary: Vec<_> = setuid
        .iter()
        .filter(|e| e["process"]["pid"] == escalated.0)
        .collect();
    assert_eq!(by_binary.len(), 1, "{setuid:#?}");
    let p = &by_binary[0]["process"];
    assert_eq!(p["binary"], setuid_binary.to_str().unwrap());
    assert_eq!(p["process_credentials"]["uid"], 65534, "{p:#?}");
    assert_eq!(p["process_credentials"]["euid"], 0, "{p:#?}");
    let setgid = events(&run, "sys_setgid");
    assert_eq!(of(&setgid, root_pid), 1, "setgid(0): {setgid:#?}");
    let setresuid = events(&run, "sys_setresuid");
    assert_eq!(
        of(&setresuid, nobody_pid),
        0,
        "dropping to nobody is not becoming root: {setresuid:#?}"
    );
    let unshare = events(&run, "sys_unshare");
    let ours: Vec<_> = unshare
        .iter()
        .filter(|e| e["process"]["pid"] == nobody_pid)
        .collect();
    assert_eq!(ours.len(), 1, "{unshare:#?}");
    assert_eq!(ours[0]["args"][0]["int_arg"], libc::CLONE_NEWUSER);
    let bpf = events(&run, "sys_bpf");
    assert!(
        bpf.iter()
            .any(|e| e["process"]["pid"] == me && e["args"][0]["int_arg"] == 5),
        "{bpf:#?}"
    );
    let ptrace = events(&run, "sys_ptrace");
    assert!(
        ptrace.iter().any(|e| e["process"]["pid"] == me
            && e["args"][0]["int_arg"] == 16
            && e["args"][1]["int_arg"] == pid),
        "{ptrace:#?}"
    );
    let capset = events(&run, "sys_capset");
    assert!(
        capset.iter().any(|e| e["process"]["pid"] == me),
        "{capset:#?}"
    );
}
