//! `vigil-walkaround`: the ways around a file-open deny an adversary with a shell tries, each
//! as a subcommand the walk-around scenarios (tests/tests/walkarounds.rs) run against a
//! protected file. Each prints one line saying what it got and exits 0 when it read the file,
//! 1 when the kernel refused, 2 when the way is not open on this machine (the reason printed).
//!
//! - `read PATH`: open(2) and read.
//! - `io-uring-read PATH`: IORING_OP_OPENAT through a ring of its own, then read(2).
//! - `int80-read PATH`: the 32-bit open (int 0x80) from this 64-bit process, then read(2).
//! - `static32-read PATH`: a 32-bit static program (tests/walkaround32/read32.c, carried in this
//!   binary) opens and reads it, 32-bit system calls only.
//! - `clone-files-read PATH`: a child made with clone(CLONE_FILES) shares the descriptor table;
//!   the parent opens, the child reads whatever descriptor the parent left once it is gone.
//! - `open-trunc PATH`: open(O_WRONLY | O_TRUNC), nothing written.
//! - `handle-read PATH`: name_to_handle_at, then open_by_handle_at (no path at all), and read.
//! - `bind-read FILE ALIAS`: in a user and mount namespace of its own, bind-mounts FILE on
//!   ALIAS and reads ALIAS.
//! - `bind-exec BINARY OVER ARGS...`: the same namespaces, BINARY bind-mounted over OVER, then
//!   OVER executed with ARGS.

use std::{ffi::CString, io::Write, process::exit};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| -> &str {
        args.get(i).map(String::as_str).unwrap_or_else(|| {
            eprintln!("usage: vigil-walkaround read|io-uring-read|int80-read|clone-files-read|open-trunc PATH | bind-read FILE ALIAS | bind-exec BINARY OVER ARGS...");
            exit(64)
        })
    };
    match arg(0) {
        "read" => read_path(arg(1)),
        "io-uring-read" => io_uring_read(arg(1)),
        "int80-read" => int80_read(arg(1)),
        "static32-read" => static32_read(arg(1)),
        "clone-files-read" => clone_files_read(arg(1)),
        "open-trunc" => open_trunc(arg(1)),
        "handle-read" => handle_read(arg(1)),
        "bind-read" => {
            own_namespaces();
            bind(arg(1), arg(2));
            read_path(arg(2))
        }
        "bind-exec" => {
            own_namespaces();
            bind(arg(1), arg(2));
            let prog = cstr(arg(2));
            let argv: Vec<CString> = args[2..].iter().map(|a| cstr(a)).collect();
            let mut ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
            ptrs.push(std::ptr::null());
            // SAFETY: NUL-terminated strings and a NULL-terminated array that outlive the call.
            unsafe { libc::execv(prog.as_ptr(), ptrs.as_ptr()) };
            fail(2, "execv", errno())
        }
        other => {
            eprintln!("unknown walk-around {other}");
            exit(64)
        }
    }
}

fn cstr(s: &str) -> CString {
    CString::new(s).expect("no NUL in arguments")
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// Prints what the kernel answered and exits: 1 for a refusal, 2 for a way not open here.
fn fail(code: i32, what: &str, err: i32) -> ! {
    println!(
        "{what}: {} (errno {err})",
        std::io::Error::from_raw_os_error(err)
    );
    let _ = std::io::stdout().flush();
    exit(code)
}

/// Reads `fd` to the end and exits 0, saying how many bytes came.
fn read_fd(fd: i32, how: &str) -> ! {
    let mut total = 0usize;
    let mut buf = [0u8; 4096];
    loop {
        // SAFETY: reading into a buffer we own.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            fail(1, "read", errno());
        }
        if n == 0 {
            break;
        }
        total += n as usize;
    }
    println!("read {total} bytes through {how}");
    let _ = std::io::stdout().flush();
    exit(0)
}

fn read_path(path: &str) -> ! {
    let p = cstr(path);
    // SAFETY: a NUL-terminated path.
    let fd = unsafe { libc::open(p.as_ptr(), libc::O_RDONLY) };
    if fd < 0 {
        fail(1, "open", errno());
    }
    read_fd(fd, "open(2)")
}

fn open_trunc(path: &str) -> ! {
    let p = cstr(path);
    // SAFETY: a NUL-terminated path.
    let fd = unsafe { libc::open(p.as_ptr(), libc::O_WRONLY | libc::O_TRUNC) };
    if fd < 0 {
        fail(1, "open", errno());
    }
    println!("opened with O_TRUNC");
    exit(0)
}

/// Writes the 32-bit program out and runs it on `path`, passing on its output and status
/// (exit 1 for a refusal; killed, the same signal).
fn static32_read(path: &str) -> ! {
    use std::os::unix::{fs::PermissionsExt, process::ExitStatusExt};
    const READ32: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/read32"));
    let dir = std::env::temp_dir().join(format!("vigil-read32-{}", std::process::id()));
    let _ = std::fs::create_dir(&dir);
    let bin = dir.join("read32");
    std::fs::write(&bin, READ32).expect("write the 32-bit program");
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = std::process::Command::new(&bin).arg(path).output();
    let _ = std::fs::remove_dir_all(&dir);
    let out = match out {
        Ok(o) => o,
        // ENOEXEC: this kernel runs no 32-bit programs.
        Err(e) => fail(
            2,
            "the 32-bit program: this kernel runs none",
            e.raw_os_error().unwrap_or(0),
        ),
    };
    if let Some(sig) = out.status.signal() {
        // Die as it died, with nothing said: the scenario reads the signal.
        // SAFETY: signalling ourselves.
        unsafe { libc::kill(libc::getpid(), sig) };
        exit(128 + sig)
    }
    if out.status.code() == Some(0) {
        println!(
            "read {} bytes through a 32-bit static program",
            out.stdout.len()
        );
        exit(0)
    }
    fail(1, "the 32-bit program's open", libc::EPERM)
}

/// The file by its handle: name_to_handle_at(2) gives it, open_by_handle_at(2) opens it with
/// only a descriptor of its mount and the handle (root's CAP_DAC_READ_SEARCH).
fn handle_read(path: &str) -> ! {
    #[repr(C)]
    struct Handle {
        bytes: u32,
        kind: i32,
        data: [u8; 128],
    }
    let mut h = Handle {
        bytes: 128,
        kind: 0,
        data: [0; 128],
    };
    let mut mount_id = 0i32;
    let p = cstr(path);
    // SAFETY: a NUL-terminated path and a handle buffer of the size it says.
    if unsafe {
        libc::syscall(
            libc::SYS_name_to_handle_at,
            libc::AT_FDCWD,
            p.as_ptr(),
            &mut h as *mut Handle,
            &mut mount_id as *mut i32,
            0,
        )
    } != 0
    {
        fail(
            2,
            "name_to_handle_at: this file system gives no handles",
            errno(),
        );
    }
    let dir = cstr(
        std::path::Path::new(path)
            .parent()
            .and_then(|d| d.to_str())
            .unwrap_or("/"),
    );
    // SAFETY: a NUL-terminated path.
    let mount_fd = unsafe { libc::open(dir.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY) };
    if mount_fd < 0 {
        fail(2, "open of the file's directory", errno());
    }
    // SAFETY: the handle name_to_handle_at filled.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_by_handle_at,
            mount_fd,
            &mut h as *mut Handle,
            libc::O_RDONLY,
        )
    } as i32;
    if fd < 0 {
        fail(1, "open_by_handle_at", errno());
    }
    read_fd(fd, "open_by_handle_at(2)")
}

/// The 32-bit open system call (number 5 in the i386 table) through int 0x80, with the path
/// in the low 4 GiB where a 32-bit pointer reaches it.
fn int80_read(path: &str) -> ! {
    // SAFETY: an anonymous private mapping, written only within its length.
    let page = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_32BIT,
            -1,
            0,
        )
    };
    if page == libc::MAP_FAILED {
        fail(2, "mmap(MAP_32BIT)", errno());
    }
    let bytes = path.as_bytes();
    assert!(bytes.len() < 4095, "path too long");
    // SAFETY: the mapping is 4096 bytes, the path and its NUL fit.
    unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), page.cast::<u8>(), bytes.len());
        *page.cast::<u8>().add(bytes.len()) = 0;
    }
    let ret: i32;
    // SAFETY: int 0x80 with eax = 5 (open), ebx = path, ecx = O_RDONLY, edx = 0; rbx is LLVM's,
    // so the path goes through a scratch register swapped in and out around the call.
    unsafe {
        std::arch::asm!(
            "xchg {p:r}, rbx",
            "int 0x80",
            "xchg {p:r}, rbx",
            p = inout(reg) page as u64 => _,
            inlateout("eax") 5i32 => ret,
            in("ecx") 0i32,
            in("edx") 0i32,
        );
    }
    if ret == -libc::ENOSYS {
        fail(
            2,
            "int 0x80 open: no 32-bit system calls on this kernel",
            libc::ENOSYS,
        );
    }
    if ret < 0 {
        fail(1, "int 0x80 open", -ret);
    }
    read_fd(ret, "the 32-bit open (int 0x80)")
}

/// The parent opens; a child sharing its descriptor table waits for it to be gone (killed, or
/// refused and exited), then reads every descriptor it finds open on a regular file.
fn clone_files_read(path: &str) -> ! {
    // SAFETY: getpid has no preconditions.
    let parent = unsafe { libc::getpid() };
    // SAFETY: a fork-like clone (no new stack: the child runs on a copy of ours) that also
    // shares the descriptor table; this process is single-threaded here.
    let child = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (libc::CLONE_FILES | libc::SIGCHLD) as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    if child < 0 {
        fail(2, "clone(CLONE_FILES)", errno());
    }
    if child == 0 {
        for _ in 0..500 {
            // SAFETY: getppid has no preconditions.
            if unsafe { libc::getppid() } != parent {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        for fd in 3..64 {
            let mut st: libc::stat = unsafe { std::mem::zeroed() };
            // SAFETY: fstat into a struct we own.
            if unsafe { libc::fstat(fd, &mut st) } == 0
                && st.st_mode & libc::S_IFMT == libc::S_IFREG
            {
                // SAFETY: rewinding a descriptor we found open.
                unsafe { libc::lseek(fd, 0, libc::SEEK_SET) };
                read_fd(
                    fd,
                    "a descriptor shared by clone(CLONE_FILES) with the opener",
                );
            }
        }
        println!("no descriptor left by the opener");
        exit(1)
    }
    std::thread::sleep(std::time::Duration::from_millis(50));
    let p = cstr(path);
    // SAFETY: a NUL-terminated path.
    let fd = unsafe { libc::open(p.as_ptr(), libc::O_RDONLY) };
    if fd < 0 {
        // Refused: the child finds nothing and says so; wait for it so its line is printed.
        let mut status = 0;
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(child as i32, &mut status, 0) };
        exit(1)
    }
    // Not refused: the parent leaves, the child reads.
    exit(0)
}

/// IORING_OP_OPENAT (18) of `path` relative to the working directory, then read(2).
fn io_uring_read(path: &str) -> ! {
    #[repr(C)]
    #[derive(Default)]
    struct Params {
        sq_entries: u32,
        cq_entries: u32,
        flags: u32,
        sq_thread_cpu: u32,
        sq_thread_idle: u32,
        features: u32,
        wq_fd: u32,
        resv: [u32; 3],
        sq_off: [u32; 10], // head tail ring_mask ring_entries flags dropped array resv1 user_addr(u64)
        cq_off: [u32; 10], // head tail ring_mask ring_entries overflow cqes flags resv1 user_addr(u64)
    }
    const SQ_HEAD: usize = 0;
    const SQ_TAIL: usize = 1;
    const SQ_MASK: usize = 2;
    const SQ_ARRAY: usize = 6;
    const CQ_HEAD: usize = 0;
    const CQ_TAIL: usize = 1;
    const CQ_MASK: usize = 2;
    const CQ_CQES: usize = 5;
    const OFF_SQ_RING: i64 = 0;
    const OFF_CQ_RING: i64 = 0x800_0000;
    const OFF_SQES: i64 = 0x1000_0000;
    const OP_OPENAT: u8 = 18;
    const ENTER_GETEVENTS: u32 = 1;

    let mut params = Params::default();
    // SAFETY: io_uring_setup fills the params we own.
    let ring =
        unsafe { libc::syscall(libc::SYS_io_uring_setup, 4u32, &mut params as *mut Params) } as i32;
    if ring < 0 {
        fail(
            2,
            "io_uring_setup: io_uring is not open to this process",
            errno(),
        );
    }
    let map = |len: usize, off: i64| {
        // SAFETY: mapping the ring's regions as io_uring_setup(2) describes them.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                ring,
                off,
            )
        };
        if p == libc::MAP_FAILED {
            fail(2, "mmap of the ring", errno());
        }
        p.cast::<u8>()
    };
    let sq = map(
        params.sq_off[SQ_ARRAY] as usize + params.sq_entries as usize * 4,
        OFF_SQ_RING,
    );
    let cq = map(
        params.cq_off[CQ_CQES] as usize + params.cq_entries as usize * 16,
        OFF_CQ_RING,
    );
    let sqes = map(params.sq_entries as usize * 64, OFF_SQES);
    let p = cstr(path);
    // SAFETY: offsets and sizes from io_uring_setup; the kernel reads the SQE after the tail
    // moves (a release store), and writes the CQE before the CQ tail (an acquire load).
    unsafe {
        let u32_at = |base: *mut u8, off: u32| base.add(off as usize).cast::<u32>();
        let sqe = sqes;
        std::ptr::write_bytes(sqe, 0, 64);
        *sqe = OP_OPENAT;
        *sqe.add(4).cast::<i32>() = libc::AT_FDCWD;
        *sqe.add(16).cast::<u64>() = p.as_ptr() as u64;
        *sqe.add(28).cast::<u32>() = libc::O_RDONLY as u32;
        *sqe.add(32).cast::<u64>() = 0x5157;
        let mask = *u32_at(sq, params.sq_off[SQ_MASK]);
        let tail = *u32_at(sq, params.sq_off[SQ_TAIL]);
        let _ = *u32_at(sq, params.sq_off[SQ_HEAD]);
        *u32_at(sq, params.sq_off[SQ_ARRAY]).add((tail & mask) as usize) = 0;
        std::sync::atomic::AtomicU32::from_ptr(u32_at(sq, params.sq_off[SQ_TAIL]))
            .store(tail.wrapping_add(1), std::sync::atomic::Ordering::Release);
        let n = libc::syscall(
            libc::SYS_io_uring_enter,
            ring,
            1u32,
            1u32,
            ENTER_GETEVENTS,
            0usize,
            0usize,
        );
        if n < 0 {
            fail(2, "io_uring_enter", errno());
        }
        let head = *u32_at(cq, params.cq_off[CQ_HEAD]);
        let ctail = std::sync::atomic::AtomicU32::from_ptr(u32_at(cq, params.cq_off[CQ_TAIL]))
            .load(std::sync::atomic::Ordering::Acquire);
        if head == ctail {
            fail(2, "io_uring: no completion", 0);
        }
        let cmask = *u32_at(cq, params.cq_off[CQ_MASK]);
        let cqe = cq.add(params.cq_off[CQ_CQES] as usize + ((head & cmask) as usize) * 16);
        let res = *cqe.add(8).cast::<i32>();
        if res < 0 {
            fail(1, "io_uring openat", -res);
        }
        read_fd(res, "io_uring's IORING_OP_OPENAT")
    }
}

/// A user namespace (this user mapped to root in it) and a mount namespace of its own, its
/// mounts private: what `unshare -Urm` gives any user where unprivileged user namespaces are
/// allowed.
fn own_namespaces() {
    // SAFETY: getuid/getgid have no preconditions.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    // SAFETY: unshare of this single-threaded process.
    if unsafe { libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNS) } != 0 {
        fail(2, "unshare(CLONE_NEWUSER | CLONE_NEWNS)", errno());
    }
    let write = |file: &str, text: String| {
        if let Err(e) = std::fs::write(file, text) {
            fail(2, file, e.raw_os_error().unwrap_or(0));
        }
    };
    write("/proc/self/setgroups", "deny".into());
    write("/proc/self/uid_map", format!("0 {uid} 1"));
    write("/proc/self/gid_map", format!("0 {gid} 1"));
    let root = cstr("/");
    // SAFETY: NUL-terminated strings; flags only.
    if unsafe {
        libc::mount(
            std::ptr::null(),
            root.as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        )
    } != 0
    {
        fail(2, "mount --make-rprivate /", errno());
    }
}

fn bind(from: &str, on: &str) {
    let (f, o) = (cstr(from), cstr(on));
    // SAFETY: NUL-terminated paths.
    if unsafe {
        libc::mount(
            f.as_ptr(),
            o.as_ptr(),
            std::ptr::null(),
            libc::MS_BIND,
            std::ptr::null(),
        )
    } != 0
    {
        fail(2, &format!("mount --bind {from} {on}"), errno());
    }
}
