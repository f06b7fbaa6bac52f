//! `vigil-syscall CALL PATH`: makes exactly one system call on PATH, so a scenario knows which
//! call a policy sees (a shell or coreutils may pick another: `mkdir` or `mkdirat`, `rm`'s
//! `unlink` or `unlinkat`). CALL is one of `openat`, `mkdir`, `chdir`, `truncate`, `unlink`,
//! `rmdir`, `access`, `statfs`, `chmod`. It prints the call's result and exits 0 whatever the
//! call returned; a kill by a policy shows as the signal.

use std::{ffi::CString, process::exit};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(call), Some(path)) = (args.first(), args.get(1)) else {
        eprintln!("usage: vigil-syscall openat|mkdir|chdir|truncate|unlink|rmdir|access|statfs|chmod PATH");
        exit(64)
    };
    let p = CString::new(path.as_str()).unwrap_or_else(|_| exit(64));
    let p = p.as_ptr();
    let mut statfs = [0u8; 256];
    // SAFETY: `p` is a NUL-terminated string that outlives each call; statfs's buffer is
    // larger than struct statfs.
    let rc = unsafe {
        match call.as_str() {
            "openat" => libc::syscall(libc::SYS_openat, libc::AT_FDCWD, p, libc::O_RDONLY),
            "mkdir" => libc::syscall(libc::SYS_mkdir, p, 0o700),
            "chdir" => libc::syscall(libc::SYS_chdir, p),
            "truncate" => libc::syscall(libc::SYS_truncate, p, 0),
            "unlink" => libc::syscall(libc::SYS_unlink, p),
            "rmdir" => libc::syscall(libc::SYS_rmdir, p),
            "access" => libc::syscall(libc::SYS_access, p, libc::F_OK),
            "statfs" => libc::syscall(libc::SYS_statfs, p, statfs.as_mut_ptr()),
            "chmod" => libc::syscall(libc::SYS_chmod, p, 0o600),
            other => {
                eprintln!("vigil-syscall: no call {other}");
                exit(64)
            }
        }
    };
    let errno = std::io::Error::last_os_error();
    if rc < 0 {
        println!("{call} {path}: {errno}");
    } else {
        println!("{call} {path}: {rc}");
    }
}
