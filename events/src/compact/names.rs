//! Names for the kernel numbers a line shows: open and clone flags, errno values, ptrace
//! requests and bpf commands, as strace writes them.
//!
//! The values come from `libc` for the architecture the agent is built for, which is the
//! kernel's: open flags differ between x86-64 and arm64 (`O_DIRECTORY` is 0o200000 on one and
//! 0o40000 on the other), so a number typed here would name the wrong flag somewhere.

/// `(value, name)` of each libc constant listed, the name written once.
macro_rules! named {
    ($($name:ident),* $(,)?) => {
        &[$((libc::$name as i64, stringify!($name))),*]
    };
}

/// The open flags besides the access mode. A flag made of others comes before them
/// (`O_TMPFILE` holds `O_DIRECTORY`, `O_SYNC` holds `O_DSYNC`) so it is named whole.
const OPEN_FLAGS: &[(i64, &str)] = named![
    O_TMPFILE,
    O_SYNC,
    O_CREAT,
    O_EXCL,
    O_NOCTTY,
    O_TRUNC,
    O_APPEND,
    O_NONBLOCK,
    O_DSYNC,
    O_ASYNC,
    O_DIRECT,
    // 0 for 64-bit programs, which skips it; the bit of a 32-bit one.
    O_LARGEFILE,
    O_DIRECTORY,
    O_NOFOLLOW,
    O_NOATIME,
    O_CLOEXEC,
    O_PATH,
];

const ACCESS_MODES: &[(i64, &str)] = named![O_RDONLY, O_WRONLY, O_RDWR];

/// What `unshare` and `clone` take: the namespaces first, as they are what a reader looks for.
const CLONE_FLAGS: &[(i64, &str)] = named![
    CLONE_NEWUSER,
    CLONE_NEWNS,
    CLONE_NEWPID,
    CLONE_NEWNET,
    CLONE_NEWUTS,
    CLONE_NEWIPC,
    CLONE_NEWCGROUP,
    CLONE_NEWTIME,
    CLONE_FILES,
    CLONE_FS,
    CLONE_SYSVSEM,
    CLONE_VM,
    CLONE_SIGHAND,
    CLONE_THREAD,
];

/// The errors system calls and LSM hooks return, the aliases (`EWOULDBLOCK`, `ENOTSUP`) left
/// out so each value has one name.
const ERRNOS: &[(i64, &str)] = named![
    EPERM,
    ENOENT,
    ESRCH,
    EINTR,
    EIO,
    ENXIO,
    E2BIG,
    ENOEXEC,
    EBADF,
    ECHILD,
    EAGAIN,
    ENOMEM,
    EACCES,
    EFAULT,
    EBUSY,
    EEXIST,
    EXDEV,
    ENODEV,
    ENOTDIR,
    EISDIR,
    EINVAL,
    ENFILE,
    EMFILE,
    ETXTBSY,
    EFBIG,
    ENOSPC,
    ESPIPE,
    EROFS,
    EMLINK,
    EPIPE,
    ENAMETOOLONG,
    ENOSYS,
    ENOTEMPTY,
    ELOOP,
    ENOTSOCK,
    EDESTADDRREQ,
    EMSGSIZE,
    EPROTOTYPE,
    EPROTONOSUPPORT,
    EOPNOTSUPP,
    EAFNOSUPPORT,
    EADDRINUSE,
    EADDRNOTAVAIL,
    ENETDOWN,
    ENETUNREACH,
    ECONNABORTED,
    ECONNRESET,
    ENOBUFS,
    EISCONN,
    ENOTCONN,
    ETIMEDOUT,
    ECONNREFUSED,
    EHOSTDOWN,
    EHOSTUNREACH,
    EALREADY,
    EINPROGRESS,
    EDQUOT,
];

const PTRACE_REQUESTS: &[(i64, &str)] = named![
    PTRACE_TRACEME,
    PTRACE_PEEKTEXT,
    PTRACE_PEEKDATA,
    PTRACE_PEEKUSER,
    PTRACE_POKETEXT,
    PTRACE_POKEDATA,
    PTRACE_POKEUSER,
    PTRACE_CONT,
    PTRACE_KILL,
    PTRACE_SINGLESTEP,
    PTRACE_ATTACH,
    PTRACE_DETACH,
    PTRACE_SYSCALL,
    PTRACE_SETOPTIONS,
    PTRACE_GETEVENTMSG,
    PTRACE_GETSIGINFO,
    PTRACE_SETSIGINFO,
    PTRACE_GETREGSET,
    PTRACE_SETREGSET,
    PTRACE_SEIZE,
    PTRACE_INTERRUPT,
    PTRACE_LISTEN,
    PTRACE_PEEKSIGINFO,
];

/// `enum bpf_cmd` of the kernel's `include/uapi/linux/bpf.h`, by value: libc does not carry
/// it, and its order is the system call's ABI (a command is only ever added at the end).
const BPF_COMMANDS: [&str; 37] = [
    "BPF_MAP_CREATE",
    "BPF_MAP_LOOKUP_ELEM",
    "BPF_MAP_UPDATE_ELEM",
    "BPF_MAP_DELETE_ELEM",
    "BPF_MAP_GET_NEXT_KEY",
    "BPF_PROG_LOAD",
    "BPF_OBJ_PIN",
    "BPF_OBJ_GET",
    "BPF_PROG_ATTACH",
    "BPF_PROG_DETACH",
    "BPF_PROG_TEST_RUN",
    "BPF_PROG_GET_NEXT_ID",
    "BPF_MAP_GET_NEXT_ID",
    "BPF_PROG_GET_FD_BY_ID",
    "BPF_MAP_GET_FD_BY_ID",
    "BPF_OBJ_GET_INFO_BY_FD",
    "BPF_PROG_QUERY",
    "BPF_RAW_TRACEPOINT_OPEN",
    "BPF_BTF_LOAD",
    "BPF_BTF_GET_FD_BY_ID",
    "BPF_TASK_FD_QUERY",
    "BPF_MAP_LOOKUP_AND_DELETE_ELEM",
    "BPF_MAP_FREEZE",
    "BPF_BTF_GET_NEXT_ID",
    "BPF_MAP_LOOKUP_BATCH",
    "BPF_MAP_LOOKUP_AND_DELETE_BATCH",
    "BPF_MAP_UPDATE_BATCH",
    "BPF_MAP_DELETE_BATCH",
    "BPF_LINK_CREATE",
    "BPF_LINK_UPDATE",
    "BPF_LINK_GET_FD_BY_ID",
    "BPF_LINK_GET_NEXT_ID",
    "BPF_ENABLE_STATS",
    "BPF_ITER_CREATE",
    "BPF_LINK_DETACH",
    "BPF_PROG_BIND_MAP",
    "BPF_TOKEN_CREATE",
];

/// The name of `value` in `table`, else the number.
fn one_of(table: &[(i64, &str)], value: i64) -> String {
    table
        .iter()
        .find(|(v, _)| *v == value)
        .map_or_else(|| value.to_string(), |(_, name)| name.to_string())
}

/// `value` as `A|B|0x40`: each flag of `table` whose bits are all set, its bits then taken off,
/// and what no name covers in hex. Flags worth 0 in this build are skipped (they would match
/// every value).
fn bits(table: &[(i64, &str)], value: u64, names: &mut Vec<String>) {
    let mut rest = value;
    for &(flag, name) in table {
        let flag = flag as u64;
        if flag != 0 && rest & flag == flag {
            names.push(name.to_string());
            rest &= !flag;
        }
    }
    if rest != 0 {
        names.push(format!("{rest:#x}"));
    }
}

/// Open flags (`O_WRONLY|O_CREAT|O_TRUNC` for 577): the access mode, always named as strace
/// does, then the flags. A value no int holds is shown as it is.
pub(super) fn open_flags(value: i128) -> String {
    let Ok(value) = u32::try_from(value) else {
        return value.to_string();
    };
    let access = i64::from(value) & i64::from(libc::O_ACCMODE);
    let mut names = vec![one_of(ACCESS_MODES, access)];
    bits(OPEN_FLAGS, u64::from(value) & !(access as u64), &mut names);
    names.join("|")
}

/// Clone flags (`CLONE_NEWUSER|CLONE_NEWNS`); 0 as 0.
pub(super) fn clone_flags(value: i128) -> String {
    match u64::try_from(value) {
        Ok(0) | Err(_) => value.to_string(),
        Ok(v) => {
            let mut names = Vec::new();
            bits(CLONE_FLAGS, v, &mut names);
            names.join("|")
        }
    }
}

/// `ECONNREFUSED` for 111, `errno 4000` for a number without a name.
pub(super) fn errno(value: i64) -> String {
    match ERRNOS.iter().find(|(v, _)| *v == value) {
        Some((_, name)) => name.to_string(),
        None => format!("errno {value}"),
    }
}

/// Whether `value` is an errno: the kernel returns -1 to -4095 for errors (`MAX_ERRNO`).
pub(super) fn is_errno(value: i64) -> bool {
    (1..=4095).contains(&value)
}

/// `PTRACE_ATTACH` for 16.
pub(super) fn ptrace_request(value: i128) -> String {
    i64::try_from(value).map_or_else(|_| value.to_string(), |v| one_of(PTRACE_REQUESTS, v))
}

/// `BPF_PROG_LOAD` for 5.
pub(super) fn bpf_command(value: i128) -> String {
    usize::try_from(value)
        .ok()
        .and_then(|v| BPF_COMMANDS.get(v))
        .map_or_else(|| value.to_string(), |name| name.to_string())
}

/// A file mode in octal, as chmod takes it (`0644`, `4755`).
pub(super) fn mode(value: i128) -> String {
    match u32::try_from(value) {
        Ok(v) => format!("{v:04o}"),
        Err(_) => value.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_flags_are_named_as_strace_names_them() {
        assert_eq!(open_flags(577), "O_WRONLY|O_CREAT|O_TRUNC");
        assert_eq!(open_flags(0), "O_RDONLY");
        let cloexec_dir = i128::from(libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC);
        assert_eq!(open_flags(cloexec_dir), "O_RDONLY|O_DIRECTORY|O_CLOEXEC");
        // A flag made of two is named whole, not as its parts.
        let sync = i128::from(libc::O_RDWR | libc::O_SYNC);
        assert_eq!(open_flags(sync), "O_RDWR|O_SYNC");
        let tmp = i128::from(libc::O_WRONLY | libc::O_TMPFILE);
        assert_eq!(open_flags(tmp), "O_WRONLY|O_TMPFILE");
        // Bits without a name stay visible.
        assert_eq!(open_flags(0x4000_0001), "O_WRONLY|0x40000000");
        assert_eq!(open_flags(-1), "-1");
    }

    #[test]
    fn clone_flags_errnos_requests_and_commands_have_their_kernel_names() {
        let user = i128::from(libc::CLONE_NEWUSER | libc::CLONE_NEWNS);
        assert_eq!(clone_flags(user), "CLONE_NEWUSER|CLONE_NEWNS");
        assert_eq!(clone_flags(0), "0");
        assert_eq!(errno(i64::from(libc::ECONNREFUSED)), "ECONNREFUSED");
        assert_eq!(errno(4000), "errno 4000");
        assert_eq!(ptrace_request(0x4206), "PTRACE_SEIZE");
        assert_eq!(ptrace_request(16), "PTRACE_ATTACH");
        assert_eq!(bpf_command(5), "BPF_PROG_LOAD");
        assert_eq!(bpf_command(36), "BPF_TOKEN_CREATE");
        assert_eq!(bpf_command(99), "99");
        assert_eq!(mode(0o600), "0600");
        assert_eq!(mode(0o4755), "4755");
    }
}
