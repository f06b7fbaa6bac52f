//! The kernel matrix: which hooks each kernel we test on gives, and how a scenario declares the
//! hooks it needs.
//!
//! The table is a checked fact, not a guess: the `probe_json_agrees_with_the_kernel` scenario
//! asserts that `vigil probe` finds exactly these hooks on the kernel it runs on. A scenario whose
//! hooks the current kernel lacks returns early and records the skip (see [`scenario_needs`]);
//! the VM matrix test fails on any skip inside the VM, whose kernel has every hook, so a scenario
//! is skipped on the host only because the VM runs it.

use std::io::Write;

/// A program kind a scenario can depend on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    /// Tracepoints and raw tracepoints.
    Tracepoint,
    /// kprobes.
    Kprobe,
    /// fentry/fexit.
    Fentry,
    /// BPF LSM.
    Lsm,
    /// fmod_ret on security_file_open (vigil loads it itself).
    FmodRet,
}

impl Hook {
    /// The program kind `vigil probe` reports for this hook.
    pub fn probe_kind(self) -> &'static str {
        match self {
            Hook::Tracepoint => "tracepoint",
            Hook::Kprobe => "kprobe",
            Hook::Fentry => "fentry",
            Hook::Lsm => "lsm",
            Hook::FmodRet => "fmod_ret",
        }
    }
}

/// A kernel of the matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kernel {
    /// Its name in test output.
    pub name: &'static str,
    /// The hooks it gives.
    pub hooks: &'static [Hook],
}

/// The developer and CI host (Linux 6.18, sandboxed: no kprobe PMU, fentry and LSM refused).
pub const HOST: Kernel = Kernel {
    name: "host",
    hooks: &[Hook::Tracepoint],
};

/// Debian's 6.1 cloud kernel under qemu.
pub const DEBIAN_VM: Kernel = Kernel {
    name: "debian-vm",
    hooks: &[
        Hook::Tracepoint,
        Hook::Kprobe,
        Hook::Fentry,
        Hook::Lsm,
        Hook::FmodRet,
    ],
};

/// The same kernel booted with an `lsm=` list that leaves out `bpf`: trampolines work, BPF LSM
/// programs load but the kernel never runs them, so the probe does not count them.
pub const DEBIAN_VM_NO_BPF_LSM: Kernel = Kernel {
    name: "debian-vm-no-bpf-lsm",
    hooks: &[Hook::Tracepoint, Hook::Kprobe, Hook::Fentry, Hook::FmodRet],
};

/// The rung of the attach plan's ladder file opens are enforced on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileOpenRung {
    /// BPF LSM: denied before the open.
    Lsm,
    /// fentry and fmod_ret on security_file_open: denied before the open.
    FmodRet,
    /// The open system calls' exit tracepoints: killed before the process sees the file.
    Tracepoints,
}

impl Kernel {
    /// The rung file opens are enforced on here.
    pub fn file_open_rung(&self) -> FileOpenRung {
        if self.hooks.contains(&Hook::Lsm) {
            FileOpenRung::Lsm
        } else if self.hooks.contains(&Hook::FmodRet) {
            FileOpenRung::FmodRet
        } else {
            FileOpenRung::Tracepoints
        }
    }
}

/// Every hook kind the matrix knows.
pub const ALL_HOOKS: [Hook; 5] = [
    Hook::Tracepoint,
    Hook::Kprobe,
    Hook::Fentry,
    Hook::Lsm,
    Hook::FmodRet,
];

/// Environment variable the VM's init sets to name its kernel.
pub const KERNEL_ENV: &str = "VIGIL_TEST_KERNEL";
/// Environment variable naming the file scenario skips are appended to.
pub const SKIP_LOG_ENV: &str = "VIGIL_SKIP_LOG";

/// The kernel these tests run on.
pub fn current() -> Kernel {
    match std::env::var(KERNEL_ENV).as_deref() {
        Ok("debian-vm") => DEBIAN_VM,
        Ok("debian-vm-no-bpf-lsm") => DEBIAN_VM_NO_BPF_LSM,
        _ => HOST,
    }
}

/// Declares that scenario `name` needs `hooks`. Returns whether the current kernel has them;
/// when it does not, records `SKIP <name> on <kernel>: needs <hooks>` in the skip log (or on
/// stderr) so the matrix can check the scenario ran elsewhere.
pub fn scenario_needs(name: &str, hooks: &[Hook]) -> bool {
    let kernel = current();
    let missing: Vec<_> = hooks
        .iter()
        .filter(|h| !kernel.hooks.contains(h))
        .map(|h| h.probe_kind())
        .collect();
    if missing.is_empty() {
        return true;
    }
    let line = format!(
        "SKIP {name} on {}: needs {}\n",
        kernel.name,
        missing.join(", ")
    );
    match std::env::var_os(SKIP_LOG_ENV) {
        Some(path) => {
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .expect("skip log");
            f.write_all(line.as_bytes()).expect("write skip log");
        }
        None => eprint!("{line}"),
    }
    false
}
