//! Capability sets: kept as the kernel's bit mask ([`CapSet`]) and written as the names of
//! Tetragon's `CapabilitiesType` enum, so a root process's 41 capabilities cost no allocation per
//! event. Those names are the kernel's `CAP_*` names except one: capability 1 is
//! `DAC_OVERRIDE` in Tetragon's enum (no prefix), and that is what is written. Both spellings
//! are read, since policies and Sigma rules use the kernel's `CAP_DAC_OVERRIDE`.

use serde::{de, ser::SerializeSeq, Deserialize, Deserializer, Serialize, Serializer};

/// Tetragon's `CapabilitiesType` names, by bit.
const NAMES: [&str; 41] = [
    "CAP_CHOWN",
    "DAC_OVERRIDE",
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

/// The bit of a capability name: Tetragon's (`CAP_SYS_ADMIN`, `DAC_OVERRIDE`), the kernel's
/// (`CAP_DAC_OVERRIDE`) or `CAP_<bit>`.
pub fn bit(name: &str) -> Option<u32> {
    if let Some(i) = NAMES.iter().position(|n| *n == name) {
        return Some(i as u32);
    }
    let rest = name.strip_prefix("CAP_")?;
    // `CAP_DAC_OVERRIDE`: the kernel's spelling of a name Tetragon writes without the prefix.
    if let Some(i) = NAMES
        .iter()
        .position(|n| !n.starts_with("CAP_") && *n == rest)
    {
        return Some(i as u32);
    }
    rest.parse().ok().filter(|b| *b < 64)
}

/// A capability set as the kernel keeps it: bit N set means capability N.
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CapSet(pub u64);

impl CapSet {
    /// The names of the capabilities in the set, lowest bit first.
    pub fn names(&self) -> Vec<String> {
        self.bits().map(name).collect()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0 == 0
    }

    fn bits(&self) -> impl Iterator<Item = u32> + '_ {
        (0..64).filter(|b| self.0 & (1u64 << b) != 0)
    }
}

impl Serialize for CapSet {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.count_ones() as usize))?;
        for b in self.bits() {
            match NAMES.get(b as usize) {
                Some(n) => seq.serialize_element(n)?,
                None => seq.serialize_element(&format!("CAP_{b}"))?,
            }
        }
        seq.end()
    }
}

impl<'de> Deserialize<'de> for CapSet {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let names = Vec::<String>::deserialize(d)?;
        let mut set = 0u64;
        for n in names {
            let b = bit(&n).ok_or_else(|| de::Error::custom(format!("unknown capability {n}")))?;
            set |= 1u64 << b;
        }
        Ok(CapSet(set))
    }
}

#[cfg(test)]
mod tests {
    use super::CapSet;

    #[test]
    fn names_follow_bit_order() {
        assert_eq!(CapSet(0b1001).names(), vec!["CAP_CHOWN", "CAP_FOWNER"]);
        assert_eq!(super::name(21), "CAP_SYS_ADMIN");
        assert_eq!(super::name(40), "CAP_CHECKPOINT_RESTORE");
        assert_eq!(super::name(63), "CAP_63");
    }

    #[test]
    fn dac_override_is_written_as_tetragon_names_it_and_read_in_both_spellings() {
        assert_eq!(super::name(1), "DAC_OVERRIDE");
        assert_eq!(
            serde_json::to_string(&CapSet(0b11)).unwrap(),
            r#"["CAP_CHOWN","DAC_OVERRIDE"]"#
        );
        assert_eq!(super::bit("DAC_OVERRIDE"), Some(1));
        assert_eq!(super::bit("CAP_DAC_OVERRIDE"), Some(1));
        assert_eq!(super::bit("CAP_CAP_CHOWN"), None);
        assert_eq!(super::bit("CHOWN"), None);
        let read: CapSet =
            serde_json::from_str(r#"["CAP_DAC_OVERRIDE","DAC_OVERRIDE","CAP_KILL"]"#).unwrap();
        assert_eq!(read, CapSet((1 << 1) | (1 << 5)));
    }
}

#[cfg(test)]
mod serde_tests {
    use super::CapSet;

    #[test]
    fn round_trips_through_names() {
        let set = CapSet((1 << 21) | (1 << 0) | (1 << 63));
        let json = serde_json::to_string(&set).unwrap();
        assert_eq!(json, r#"["CAP_CHOWN","CAP_SYS_ADMIN","CAP_63"]"#);
        assert_eq!(serde_json::from_str::<CapSet>(&json).unwrap(), set);
        assert!(serde_json::from_str::<CapSet>(r#"["CAP_NOPE"]"#).is_err());
    }
}
