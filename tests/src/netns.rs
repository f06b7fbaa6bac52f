//! Network namespaces for the network scenarios, made with system calls alone so the same test
//! runs on the host and in the VM (whose busybox `ip` knows no namespaces): a fresh namespace
//! whose loopback device carries an address of the test's choosing, threads that join it, and
//! children forked inside it.

use std::{fs::File, net::Ipv4Addr, os::fd::AsRawFd};

/// A network namespace, alive while this handle is.
pub struct NetNs {
    fd: File,
    /// The address its loopback device carries (instead of 127.0.0.1).
    pub addr: Ipv4Addr,
    /// Its inode number, as events report it.
    pub inode: u64,
}

fn check(rc: i32, what: &str) {
    assert!(rc >= 0, "{what}: {}", std::io::Error::last_os_error());
}

/// Brings `lo` up with `addr` in the calling thread's namespace.
fn loopback_up(addr: Ipv4Addr) {
    // SAFETY: ioctls on a socket we own, with ifreq structs we fill.
    unsafe {
        let sock = libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0);
        check(sock, "socket");
        let mut ifr: libc::ifreq = std::mem::zeroed();
        for (d, s) in ifr.ifr_name.iter_mut().zip(b"lo\0") {
            *d = *s as libc::c_char;
        }
        let sin = &mut ifr.ifr_ifru.ifru_addr as *mut libc::sockaddr as *mut libc::sockaddr_in;
        (*sin).sin_family = libc::AF_INET as libc::sa_family_t;
        (*sin).sin_addr.s_addr = u32::from(addr).to_be();
        check(libc::ioctl(sock, libc::SIOCSIFADDR, &ifr), "SIOCSIFADDR lo");
        check(
            libc::ioctl(sock, libc::SIOCGIFFLAGS, &mut ifr),
            "SIOCGIFFLAGS lo",
        );
        ifr.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        check(
            libc::ioctl(sock, libc::SIOCSIFFLAGS, &ifr),
            "SIOCSIFFLAGS lo",
        );
        libc::close(sock);
    }
}

fn inode_of(path: &str) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).unwrap().ino()
}

/// The inode of the calling thread's network namespace.
pub fn current_inode() -> u64 {
    inode_of("/proc/thread-self/ns/net")
}

impl NetNs {
    /// A new namespace whose loopback device is up with `addr`.
    pub fn create(addr: Ipv4Addr) -> NetNs {
        std::thread::spawn(move || {
            // A thread's network namespace is its own: the rest of the process stays put.
            // SAFETY: unshare has no memory preconditions.
            check(
                unsafe { libc::unshare(libc::CLONE_NEWNET) },
                "unshare(CLONE_NEWNET)",
            );
            loopback_up(addr);
            NetNs {
                fd: File::open("/proc/thread-self/ns/net").unwrap(),
                addr,
                inode: current_inode(),
            }
        })
        .join()
        .unwrap()
    }

    /// Gives its loopback device IPv6 address `addr` (/128) as well.
    pub fn add_ipv6(&self, addr: std::net::Ipv6Addr) {
        self.run_inside(move || {
            // SAFETY: an ioctl on a socket we own, with an in6_ifreq we fill.
            unsafe {
                let sock = libc::socket(libc::AF_INET6, libc::SOCK_DGRAM, 0);
                check(sock, "socket(AF_INET6)");
                let mut req: libc::in6_ifreq = std::mem::zeroed();
                req.ifr6_addr.s6_addr = addr.octets();
                req.ifr6_prefixlen = 128;
                req.ifr6_ifindex = libc::if_nametoindex(c"lo".as_ptr()) as libc::c_int;
                check(
                    libc::ioctl(sock, libc::SIOCSIFADDR, &req),
                    "SIOCSIFADDR lo (IPv6)",
                );
                libc::close(sock);
            }
        })
    }

    /// Runs `f` on a thread that joined the namespace. Sockets it makes stay in the namespace;
    /// processes it forks start there.
    pub fn run_inside<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let fd = self.fd.try_clone().unwrap();
        std::thread::spawn(move || {
            // SAFETY: setns on a descriptor we own, for this thread only.
            check(
                unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) },
                "setns",
            );
            f()
        })
        .join()
        .unwrap()
    }
}

/// Forks a child that runs `f` (raw system calls only: the parent has threads) and exits with
/// its result; returns the child's pid and its wait status.
pub fn fork_and_wait(f: impl FnOnce() -> i32) -> (libc::pid_t, i32) {
    // SAFETY: the child calls only async-signal-safe system calls in `f`, then _exit.
    unsafe {
        let pid = libc::fork();
        check(pid, "fork");
        if pid == 0 {
            libc::_exit(f());
        }
        let mut status = 0;
        libc::waitpid(pid, &mut status, 0);
        (pid, status)
    }
}

/// connect() to `addr:port` with a raw socket: 0 on success, the errno otherwise.
pub fn raw_connect(addr: Ipv4Addr, port: u16) -> i32 {
    // SAFETY: a socket and a sockaddr_in we own.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
        if fd < 0 {
            return -1;
        }
        let mut sin: libc::sockaddr_in = std::mem::zeroed();
        sin.sin_family = libc::AF_INET as libc::sa_family_t;
        sin.sin_port = port.to_be();
        sin.sin_addr.s_addr = u32::from(addr).to_be();
        let rc = libc::connect(
            fd,
            &sin as *const libc::sockaddr_in as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
        libc::close(fd);
        if rc == 0 {
            0
        } else {
            *libc::__errno_location()
        }
    }
}
