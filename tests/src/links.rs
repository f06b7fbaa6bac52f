//! Network links between namespaces the test creates, for the encryption scenarios: named
//! namespaces, veth pairs, addresses and routes made with iproute2's `ip` (the host's, which
//! the VM image carries too), a tun device opened by the test, and the kernel modules the VM's
//! kernel keeps these in.
//!
//! Everything is removed when its handle drops. Addresses are the test's own ranges (10.2xx/16
//! and 198.18/15, the benchmarking block): nothing leaves the machine.

use std::{
    fs::File,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    path::Path,
    process::Command,
};

/// iproute2's `ip`, by full path: busybox's applet (first in the VM's PATH) knows no netns,
/// veth peers or xfrm.
pub const IP: &str = "/usr/sbin/ip";

/// Runs `ip args`; panics with its error output when it fails.
pub fn ip(args: &[&str]) {
    let out = Command::new(IP)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{IP}: {e} (iproute2 is a test dependency: make test-deps)"));
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `ip args` and ignores the outcome (clean-up of what may not exist).
fn ip_quiet(args: &[&str]) {
    let _ = Command::new(IP).args(args).output();
}

/// A named network namespace (`ip netns add`), deleted on drop.
pub struct NamedNs {
    /// Its name.
    pub name: String,
}

impl NamedNs {
    /// Creates namespace `name` (deleting a leftover of that name first), its loopback up.
    pub fn new(name: &str) -> NamedNs {
        // The VM's root has no /run: ip keeps its namespaces' mount points there.
        std::fs::create_dir_all("/run/netns").expect("/run/netns");
        ip_quiet(&["netns", "del", name]);
        ip(&["netns", "add", name]);
        let ns = NamedNs {
            name: name.to_string(),
        };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// Runs `ip -n <name> args`.
    pub fn ip(&self, args: &[&str]) {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        ip(&all);
    }

    /// Runs `f` on a thread that joined the namespace (sockets it makes stay there).
    pub fn run_inside<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let file = File::open(Path::new("/run/netns").join(&self.name))
            .unwrap_or_else(|e| panic!("/run/netns/{}: {e}", self.name));
        std::thread::spawn(move || {
            // SAFETY: setns on a descriptor we own, for this thread only.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .unwrap()
    }
}

impl Drop for NamedNs {
    fn drop(&mut self) {
        ip_quiet(&["netns", "del", &self.name]);
    }
}

/// A veth pair, `a` in namespace `a_ns` (None: the test's own) and `b` in `b_ns`, each with
/// its address (`10.0.0.1/24` form) and up. Deleted on drop (deleting one end deletes both).
pub struct Veth {
    a: String,
    a_ns: Option<String>,
}

impl Veth {
    /// Makes the pair.
    pub fn new(
        a: &str,
        a_ns: Option<&NamedNs>,
        a_addr: &str,
        b: &str,
        b_ns: Option<&NamedNs>,
        b_addr: &str,
    ) -> Veth {
        ip_quiet(&["link", "del", a]);
        ip(&["link", "add", a, "type", "veth", "peer", "name", b]);
        let veth = Veth {
            a: a.to_string(),
            a_ns: a_ns.map(|n| n.name.clone()),
        };
        for (dev, ns, addr) in [(a, a_ns, a_addr), (b, b_ns, b_addr)] {
            if let Some(ns) = ns {
                ip(&["link", "set", dev, "netns", &ns.name]);
            }
            let pre: Vec<&str> = ns.map_or(vec![], |n| vec!["-n", n.name.as_str()]);
            ip(&[pre.as_slice(), &["addr", "add", addr, "dev", dev]].concat());
            ip(&[pre.as_slice(), &["link", "set", dev, "up"]].concat());
        }
        veth
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        match &self.a_ns {
            Some(ns) => ip_quiet(&["-n", ns, "link", "del", &self.a]),
            None => ip_quiet(&["link", "del", &self.a]),
        }
    }
}

/// A tun device the test holds open (IFF_TUN, no packet information), up with `addr`: what is
/// routed to it comes out of [`Tun::read`]. Gone when the handle drops.
pub struct Tun {
    fd: OwnedFd,
    /// Its name.
    pub name: String,
}

impl Tun {
    /// Opens tun device `name` and gives it `addr` (`10.0.0.1/24` form).
    pub fn open(name: &str, addr: &str) -> Tun {
        const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
        // SAFETY: an open of a device node and an ioctl with an ifreq we fill; the descriptor
        // is owned at once.
        let fd = unsafe {
            let fd = libc::open(c"/dev/net/tun".as_ptr(), libc::O_RDWR | libc::O_NONBLOCK);
            assert!(fd >= 0, "/dev/net/tun: {}", std::io::Error::last_os_error());
            let fd = OwnedFd::from_raw_fd(fd);
            let mut ifr: libc::ifreq = std::mem::zeroed();
            for (d, s) in ifr.ifr_name.iter_mut().zip(name.bytes()) {
                *d = s as libc::c_char;
            }
            ifr.ifr_ifru.ifru_flags = (libc::IFF_TUN | libc::IFF_NO_PI) as libc::c_short;
            let rc = libc::ioctl(fd.as_raw_fd(), TUNSETIFF, &ifr);
            assert_eq!(
                rc,
                0,
                "TUNSETIFF {name}: {}",
                std::io::Error::last_os_error()
            );
            fd
        };
        ip(&["addr", "add", addr, "dev", name]);
        ip(&["link", "set", name, "up"]);
        Tun {
            fd,
            name: name.to_string(),
        }
    }

    /// The packets the kernel handed the device so far.
    pub fn read(&self) -> Vec<Vec<u8>> {
        let mut packets = Vec::new();
        let mut buf = [0u8; 2048];
        loop {
            // SAFETY: a read into a buffer we own, of at most its length.
            let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                return packets;
            }
            packets.push(buf[..n as usize].to_vec());
        }
    }
}

/// Loads `modules` (paths under `/lib/modules/<release>/`) on a kernel that keeps them as
/// modules (the VM's), in the order given, each unless it is loaded; does nothing where
/// `/lib/modules/<release>` is absent (the host's kernel has them built in).
pub fn load_modules(modules: &[&str]) {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let dir = Path::new("/lib/modules").join(release.trim());
    if !dir.is_dir() {
        return;
    }
    for m in modules {
        let name = Path::new(m)
            .file_stem()
            .map(|s| s.to_string_lossy().replace('-', "_"))
            .unwrap_or_default();
        if Path::new("/sys/module").join(&name).exists() {
            continue;
        }
        let out = Command::new("/bin/busybox")
            .arg("insmod")
            .arg(dir.join(m))
            .output()
            .unwrap_or_else(|e| panic!("insmod {m}: {e}"));
        assert!(
            out.status.success() || Path::new("/sys/module").join(&name).exists(),
            "insmod {m}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
