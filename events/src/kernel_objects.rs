//! Kernel objects a policy's hook reports whole, shaped as Tetragon's `bpf_attr_arg`,
//! `bpf_map_arg`, `perf_event_arg` and `module_arg`, with the kernel's numbers named as its
//! UAPI headers name them (an unknown number stays a number).

use serde::{Deserialize, Serialize};

/// `bpf_attr_arg`: a program being loaded (Tetragon's `KprobeBpfAttr`).
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
#[allow(missing_docs, non_snake_case)]
pub struct BpfAttrArg {
    pub ProgType: String,
    pub InsnCnt: u32,
    pub ProgName: String,
}

/// `bpf_map_arg`: a map (Tetragon's `KprobeBpfMap`).
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
#[allow(missing_docs, non_snake_case)]
pub struct BpfMapArg {
    pub MapType: String,
    pub KeySize: u32,
    pub ValueSize: u32,
    pub MaxEntries: u32,
    pub MapName: String,
}

/// `perf_event_arg`: a perf event being created (Tetragon's `KprobePerfEvent`); its 64-bit
/// numbers are decimal strings, as protojson writes them.
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
#[allow(missing_docs, non_snake_case)]
pub struct PerfEventArg {
    pub KprobeFunc: String,
    pub Type: String,
    #[serde(
        serialize_with = "crate::int64::serialize",
        deserialize_with = "crate::int64::deserialize"
    )]
    pub Config: u64,
    #[serde(
        serialize_with = "crate::int64::serialize",
        deserialize_with = "crate::int64::deserialize"
    )]
    pub ProbeOffset: u64,
}

/// `module_arg`: a kernel module (Tetragon's `KernelModule`).
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ModuleArg {
    /// Its name.
    pub name: String,
    /// Whether its signature verified; absent where the kernel does not say.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature_ok: Option<bool>,
    /// The taints it brings, by name.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tainted: Vec<String>,
}

/// `enum bpf_prog_type` (include/uapi/linux/bpf.h), in order.
const PROG_TYPES: [&str; 33] = [
    "UNSPEC",
    "SOCKET_FILTER",
    "KPROBE",
    "SCHED_CLS",
    "SCHED_ACT",
    "TRACEPOINT",
    "XDP",
    "PERF_EVENT",
    "CGROUP_SKB",
    "CGROUP_SOCK",
    "LWT_IN",
    "LWT_OUT",
    "LWT_XMIT",
    "SOCK_OPS",
    "SK_SKB",
    "CGROUP_DEVICE",
    "SK_MSG",
    "RAW_TRACEPOINT",
    "CGROUP_SOCK_ADDR",
    "LWT_SEG6LOCAL",
    "LIRC_MODE2",
    "SK_REUSEPORT",
    "FLOW_DISSECTOR",
    "CGROUP_SYSCTL",
    "RAW_TRACEPOINT_WRITABLE",
    "CGROUP_SOCKOPT",
    "TRACING",
    "STRUCT_OPS",
    "EXT",
    "LSM",
    "SK_LOOKUP",
    "SYSCALL",
    "NETFILTER",
];

/// `enum bpf_map_type` (include/uapi/linux/bpf.h), in order.
const MAP_TYPES: [&str; 34] = [
    "UNSPEC",
    "HASH",
    "ARRAY",
    "PROG_ARRAY",
    "PERF_EVENT_ARRAY",
    "PERCPU_HASH",
    "PERCPU_ARRAY",
    "STACK_TRACE",
    "CGROUP_ARRAY",
    "LRU_HASH",
    "LRU_PERCPU_HASH",
    "LPM_TRIE",
    "ARRAY_OF_MAPS",
    "HASH_OF_MAPS",
    "DEVMAP",
    "SOCKMAP",
    "CPUMAP",
    "XSKMAP",
    "SOCKHASH",
    "CGROUP_STORAGE",
    "REUSEPORT_SOCKARRAY",
    "PERCPU_CGROUP_STORAGE",
    "QUEUE",
    "STACK",
    "SK_STORAGE",
    "DEVMAP_HASH",
    "STRUCT_OPS",
    "RINGBUF",
    "INODE_STORAGE",
    "TASK_STORAGE",
    "BLOOM_FILTER",
    "USER_RINGBUF",
    "CGRP_STORAGE",
    "ARENA",
];

/// `enum perf_type_id` (include/uapi/linux/perf_event.h): the fixed types; a PMU the kernel
/// registers (kprobe, uprobe) has a number of its own, reported as that number.
const PERF_TYPES: [&str; 7] = [
    "HARDWARE",
    "SOFTWARE",
    "TRACEPOINT",
    "HW_CACHE",
    "RAW",
    "BREAKPOINT",
    "MAX",
];

/// The kernel's taint bits a module can bring (include/linux/panic.h), by bit.
const MODULE_TAINTS: [(u32, &str); 8] = [
    (0, "PROPRIETARY_MODULE"),
    (1, "FORCED_MODULE"),
    (2, "FORCED_UNLOAD_MODULE"),
    (10, "STAGED_MODULE"),
    (12, "OUT_OF_TREE_MODULE"),
    (13, "UNSIGNED_MODULE"),
    (15, "KERNEL_LIVE_PATCH_MODULE"),
    (18, "TEST_MODULE"),
];

fn named(table: &[&str], prefix: &str, n: u32) -> String {
    match table.get(n as usize) {
        Some(name) => format!("{prefix}{name}"),
        None => n.to_string(),
    }
}

/// `BPF_PROG_TYPE_KPROBE` for 2.
pub fn prog_type(n: u32) -> String {
    named(&PROG_TYPES, "BPF_PROG_TYPE_", n)
}

/// `BPF_MAP_TYPE_HASH` for 1.
pub fn map_type(n: u32) -> String {
    named(&MAP_TYPES, "BPF_MAP_TYPE_", n)
}

/// `PERF_TYPE_TRACEPOINT` for 2.
pub fn perf_type(n: u32) -> String {
    named(&PERF_TYPES, "PERF_TYPE_", n)
}

/// The module taints set in `taints`, as `TAINT_...` names; other taint bits are not a
/// module's and are left out.
pub fn module_taints(taints: u64) -> Vec<String> {
    MODULE_TAINTS
        .iter()
        .filter(|(bit, _)| taints & (1 << bit) != 0)
        .map(|(_, name)| format!("TAINT_{name}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_named_as_the_uapi_headers_name_them() {
        assert_eq!(prog_type(2), "BPF_PROG_TYPE_KPROBE");
        assert_eq!(prog_type(29), "BPF_PROG_TYPE_LSM");
        assert_eq!(prog_type(999), "999");
        assert_eq!(map_type(27), "BPF_MAP_TYPE_RINGBUF");
        assert_eq!(perf_type(2), "PERF_TYPE_TRACEPOINT");
        assert_eq!(perf_type(8), "8", "a registered PMU keeps its number");
        assert_eq!(
            module_taints(1 << 12 | 1 << 13 | 1 << 5),
            ["TAINT_OUT_OF_TREE_MODULE", "TAINT_UNSIGNED_MODULE"]
        );
    }

    #[test]
    fn sixty_four_bit_numbers_are_strings() {
        let p = PerfEventArg {
            Config: 1 << 40,
            ..Default::default()
        };
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(v["Config"], "1099511627776");
    }
}
