//! Capability bit sets as the `CAP_*` names Tetragon prints.

const NAMES: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// The name of capability `bit` (`CAP_<bit>` for bits newer than this table).
pub fn name(bit: u32) -> String {
    NAMES
        .get(bit as usize)
        .map(|s| s.to_string())
        .unwrap_or_else(|| format!("CAP_{bit}"))
}

/// The names of the bits set in `set`, lowest first.
pub fn names(set: u64) -> Vec<String> {
    (0..64)
        .filter(|b| set & (1u64 << b) != 0)
        .map(name)
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_follow_bit_order() {
        assert_eq!(super::names(0b1001), vec!["CAP_CHOWN", "CAP_FOWNER"]);
        assert_eq!(super::name(21), "CAP_SYS_ADMIN");
        assert_eq!(super::name(40), "CAP_CHECKPOINT_RESTORE");
        assert_eq!(super::name(63), "CAP_63");
    }
}
