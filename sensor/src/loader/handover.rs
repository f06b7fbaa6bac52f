//! A stop that does not wait for the kernel to finish detaching.
//!
//! The last detach from a system call tracepoint waits for RCU grace periods while holding the
//! kernel's trace-event mutex, so detaches run one after another whatever the threads (about
//! 35 ms each: nearly two seconds for the shipped library's fifty tracepoints). The agent
//! hands its kernel objects to a child process first: the child holds a copy of every file
//! descriptor, the agent's own closes only drop references and it exits at once, and the
//! kernel detaches when the child closes them, right after the agent has exited. Before the
//! handover the agent tells its programs that it is stopping (`LoadedObject::stop_policies`),
//! so until they are detached they act on nothing, a next agent included. The child closes
//! its descriptors from the highest down, links before the programs and maps they use. The
//! agent logs the child's pid so that whoever needs the programs gone can wait for it.

use std::os::fd::{FromRawFd, OwnedFd};

/// The child holding the agent's kernel objects until the agent has let go of its own.
pub struct Handover {
    pid: libc::pid_t,
    /// The child exits when this, the write end of its pipe, closes.
    _release: OwnedFd,
}

impl Handover {
    /// Forks the child. It does only what is safe after a fork in a threaded process: it
    /// closes its standard streams (a reader of the agent's output sees the end when the agent
    /// exits), resets the agent's signal handlers, waits for the pipe to close, closes every
    /// descriptor from the highest down and exits.
    pub fn start() -> std::io::Result<Handover> {
        // Read before the fork: the child may not allocate.
        let highest = std::fs::read_dir("/proc/self/fd")?
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
            .max()
            .unwrap_or(1024);
        let mut fds = [0; 2];
        // SAFETY: pipe2 writes two descriptors into the array we own.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: both descriptors are ours and open; each is owned exactly once below.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // SAFETY: the child runs only async-signal-safe calls (close, read, _exit) and never
        // returns into Rust code.
        match unsafe { libc::fork() } {
            -1 => Err(std::io::Error::last_os_error()),
            0 => unsafe {
                libc::close(fds[1]);
                for fd in 0..3 {
                    libc::close(fd);
                }
                for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
                    libc::signal(sig, libc::SIG_DFL);
                }
                let mut byte = 0u8;
                loop {
                    let n = libc::read(fds[0], (&mut byte as *mut u8).cast(), 1);
                    if n == 0 || (n < 0 && *libc::__errno_location() != libc::EINTR) {
                        break;
                    }
                }
                for fd in (3..=highest).rev() {
                    libc::close(fd);
                }
                libc::_exit(0)
            },
            pid => {
                drop(read);
                Ok(Handover {
                    pid,
                    _release: write,
                })
            }
        }
    }

    /// The child's pid.
    pub fn pid(&self) -> libc::pid_t {
        self.pid
    }
}
