//! What the agent needs from the host before it loads anything: privileges, kernel BTF, the
//! pseudo-filesystems (tracefs, bpffs, securityfs, which our machines do not mount at boot),
//! the node's name and the offset between the kernel's boot-time clock and wall time.

use std::{ffi::CString, path::Path};

use thiserror::Error;

/// Where the kernel publishes its own BTF.
pub const KERNEL_BTF: &str = "/sys/kernel/btf/vmlinux";

/// Why the host cannot run the agent.
#[derive(Debug, Error)]
pub enum HostError {
    /// Loading eBPF programs needs root or CAP_BPF + CAP_PERFMON + CAP_SYS_ADMIN.
    #[error("vigil must run as root (or with CAP_BPF, CAP_PERFMON and CAP_SYS_ADMIN); effective uid is {euid}")]
    NotPrivileged {
        /// The effective uid we run with.
        euid: u32,
    },
    /// CO-RE needs the kernel's type information.
    #[error("the kernel has no BTF at {path}: vigil needs a kernel built with CONFIG_DEBUG_INFO_BTF=y (or pass --btf FILE)")]
    NoBtf {
        /// The path that was tried.
        path: String,
    },
    /// A pseudo-filesystem was missing and could not be mounted.
    #[error("cannot mount {fstype} on {target}: {source}")]
    Mount {
        /// Filesystem type.
        fstype: &'static str,
        /// Mount point.
        target: &'static str,
        /// The mount(2) error.
        source: std::io::Error,
    },
}

/// Capabilities the loader needs (bit numbers from linux/capability.h).
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// Fails unless this process may load and attach tracing programs.
pub fn check_privileges() -> Result<(), HostError> {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    if euid == 0 {
        return Ok(());
    }
    let eff = effective_caps().unwrap_or(0);
    let has = |c: u32| eff & (1u64 << c) != 0;
    if has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON)) {
        Ok(())
    } else {
        Err(HostError::NotPrivileged { euid })
    }
}

fn effective_caps() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))?
        .trim();
    u64::from_str_radix(hex, 16).ok()
}

/// Fails unless the BTF file exists.
pub fn check_btf(path: &str) -> Result<(), HostError> {
    if Path::new(path).is_file() {
        Ok(())
    } else {
        Err(HostError::NoBtf {
            path: path.to_string(),
        })
    }
}

/// A pseudo-filesystem the agent relies on.
struct PseudoFs {
    fstype: &'static str,
    target: &'static str,
    /// A file that exists only once the filesystem is mounted.
    marker: &'static str,
    /// Mount options.
    data: &'static str,
}

const PSEUDO_FS: [PseudoFs; 3] = [
    PseudoFs {
        fstype: "tracefs",
        target: "/sys/kernel/tracing",
        marker: "events",
        data: "",
    },
    PseudoFs {
        fstype: "bpf",
        target: "/sys/fs/bpf",
        marker: "",
        // Root's alone: others must not make the directory the agent pins in first.
        data: "mode=0700",
    },
    PseudoFs {
        fstype: "securityfs",
        target: "/sys/kernel/security",
        marker: "lsm",
        data: "",
    },
];

/// Mounts tracefs, bpffs and securityfs where they are missing; returns a line per mount made.
pub fn mount_pseudo_filesystems() -> Result<Vec<String>, HostError> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let mut made = Vec::new();
    for fs in &PSEUDO_FS {
        let mounted = mounts.lines().any(|l| {
            let mut f = l.split_whitespace();
            let (_, target, fstype) = (f.next(), f.next(), f.next());
            target == Some(fs.target) && fstype == Some(fs.fstype)
        });
        if mounted || (!fs.marker.is_empty() && Path::new(fs.target).join(fs.marker).exists()) {
            continue;
        }
        mount(fs.fstype, fs.target, fs.data).map_err(|source| HostError::Mount {
            fstype: fs.fstype,
            target: fs.target,
            source,
        })?;
        let private = fs.fstype == "bpf" && !in_init_mount_namespace();
        made.push(format!(
            "mounted {} on {}{}",
            fs.fstype,
            fs.target,
            if private {
                " in this process's own mount namespace: enforcement pinned there does not outlive it (mount bpffs on the host's /sys/fs/bpf, or give the agent the host's)"
            } else {
                ""
            }
        ));
    }
    Ok(made)
}

/// Whether this process shares the mount namespace of pid 1 (the host's init, with hostPID).
fn in_init_mount_namespace() -> bool {
    match (
        std::fs::read_link("/proc/self/ns/mnt"),
        std::fs::read_link("/proc/1/ns/mnt"),
    ) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

fn mount(fstype: &str, target: &str, data: &str) -> std::io::Result<()> {
    std::fs::create_dir_all(target).ok();
    let src = CString::new(fstype).expect("no NUL");
    let tgt = CString::new(target).expect("no NUL");
    let data = CString::new(data).expect("no NUL");
    // SAFETY: all pointers are valid NUL-terminated strings; data may be NULL.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            tgt.as_ptr(),
            src.as_ptr(),
            0,
            if data.is_empty() {
                std::ptr::null()
            } else {
                data.as_ptr().cast()
            },
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// The node name events carry: `$NODE_NAME` (set by the DaemonSet) or the host name.
pub fn node_name(explicit: Option<&str>) -> String {
    if let Some(n) = explicit.filter(|n| !n.is_empty()) {
        return n.to_string();
    }
    if let Ok(n) = std::env::var("NODE_NAME") {
        if !n.is_empty() {
            return n;
        }
    }
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".to_string())
}

fn clock_ns(clock: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid out-pointer.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as i128 * 1_000_000_000 + ts.tv_nsec as i128
}

/// Wall-clock nanoseconds at boot: realtime − boottime, read back to back.
pub fn boot_epoch_ns() -> i128 {
    let boot = clock_ns(libc::CLOCK_BOOTTIME);
    let real = clock_ns(libc::CLOCK_REALTIME);
    real - boot
}

/// Clock ticks per second, the unit of `/proc/<pid>/stat` start times.
pub fn clk_tck() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}
