//! The selectors of generic hooks in the kernel: one `vigil_hook_rules` slot per selector (a
//! hook's selectors take a contiguous run, walked in order), and their values in the value,
//! CIDR and string maps. Every key written is remembered, so removing a hook removes exactly
//! what it added.

use aya::{
    maps::{lpm_trie::Key, HashMap, LpmTrie, MapData},
    Pod,
};
use vigil_bpf_kprobes::abi::{self, op, pids, rule};
use vigil_policy_engine::{
    compile::{Filter, MatchKind, RuleAction},
    hook_rule::{Cond, CondOp, HookArgKind, HookRule, HookSelector, KernelObject, NsValue},
};

use super::{kernel_action, map_err, MatchKeyPod, PolicyLoadError, PolicyTable};

#[derive(Clone, Copy)]
#[repr(transparent)]
pub(super) struct HookRulePod(pub abi::HookRule);
// SAFETY: #[repr(C)] integers only.
unsafe impl Pod for HookRulePod {}

/// `struct vigil_value_key` (include/hook_state.h).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
#[repr(C)]
pub(super) struct ValueKey {
    rule: u32,
    _pad0: u32,
    value: i64,
}
// SAFETY: #[repr(C)] integers only, no implicit padding.
unsafe impl Pod for ValueKey {}

/// Bytes of a CIDR key's data: the rule key, then an IPv6 (or IPv4-mapped) address.
pub(super) const CIDR_DATA: usize = 20;

/// A key a hook wrote, to delete when it goes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum WrittenKey {
    Value(ValueKey),
    Cidr(u32, [u8; CIDR_DATA]),
    Exact(abi::MatchKey),
    Prefix(u32, [u8; abi::LPM_DATA]),
    Postfix(u32, [u8; abi::LPM_DATA]),
    BinExact(abi::MatchKey),
    BinPrefix(u32, [u8; abi::LPM_DATA]),
}

impl WrittenKey {
    /// The bytes of its map entry: the key, with an LPM trie key's prefix length, and the
    /// one-byte value every value map holds.
    pub(super) fn entry_bytes(&self) -> usize {
        let key = match self {
            WrittenKey::Value(k) => std::mem::size_of_val(k),
            WrittenKey::Cidr(_, d) => 4 + d.len(),
            WrittenKey::Exact(k) | WrittenKey::BinExact(k) => std::mem::size_of_val(k),
            WrittenKey::Prefix(_, d) | WrittenKey::Postfix(_, d) | WrittenKey::BinPrefix(_, d) => {
                4 + d.len()
            }
        };
        key + 1
    }
}

/// The kernel's description of how to read each argument (policy-engine refused a hook
/// reading more than `abi::HOOK_ARGS`).
pub(super) fn arg_config(h: &HookRule, cfg: &mut abi::HookConfig) -> Result<(), String> {
    if h.args.len() > abi::HOOK_ARGS {
        return Err(format!(
            "{} arguments; the kernel reads at most {}",
            h.args.len(),
            abi::HOOK_ARGS
        ));
    }
    // A system call's and a uprobe's pointers are user memory.
    let user = if h.syscall || h.uprobe.is_some() {
        abi::ARGF_USER
    } else {
        0
    };
    for (i, a) in h.args.iter().enumerate() {
        cfg.arg_reg[i] = a.index as u8;
        let (t, flags, bits) = match a.kind {
            HookArgKind::Int { bits, signed, .. } => (
                abi::ARG_INT,
                if signed { abi::ARGF_SIGNED } else { 0 },
                bits as u8,
            ),
            HookArgKind::Sock => (abi::ARG_SOCK, 0, 0),
            HookArgKind::Sockaddr => (abi::ARG_SOCKADDR, user, 0),
            HookArgKind::String => (abi::ARG_STRING, user, 0),
            HookArgKind::CharBuf { size_index } => (abi::ARG_BUF, user, size_index as u8),
            HookArgKind::File => (abi::ARG_FILE, 0, 0),
            HookArgKind::Path => (abi::ARG_PATH, 0, 0),
            HookArgKind::Fd => (abi::ARG_FD, 0, 0),
            // The stand-in's datagram: user memory, its length at position 2.
            HookArgKind::Dns => (abi::ARG_BUF, abi::ARGF_USER, 2),
            HookArgKind::Cred => (abi::ARG_CRED, 0, 0),
            HookArgKind::Skb => (abi::ARG_SKB, 0, 0),
            HookArgKind::Dentry => (abi::ARG_DENTRY, 0, 0),
            HookArgKind::Kiocb => (abi::ARG_KIOCB, 0, 0),
            // The iterator's own count bounds what is read: no length argument.
            HookArgKind::IovIter => (abi::ARG_IOV, 0, 0xff),
            HookArgKind::Cap(_) => (abi::ARG_CAP, 0, 64),
            HookArgKind::Binprm => (abi::ARG_BINPRM, 0, 0),
            HookArgKind::Object(o) => (
                match o {
                    KernelObject::BpfAttr => abi::ARG_BPF_ATTR,
                    KernelObject::BpfMap => abi::ARG_BPF_MAP,
                    KernelObject::PerfEvent => abi::ARG_PERF_EVENT,
                    KernelObject::Module => abi::ARG_MODULE,
                    KernelObject::LoadInfo => abi::ARG_LOAD_INFO,
                },
                0,
                0,
            ),
            HookArgKind::AtPath { dirfd } => (
                abi::ARG_AT_PATH,
                abi::ARGF_USER,
                dirfd.map_or(abi::AT_CWD, |d| d as u8),
            ),
        };
        cfg.arg_type[i] = t as u8;
        cfg.arg_flags[i] = flags;
        cfg.arg_bits[i] = bits;
    }
    cfg.nargs = h.args.len() as u8;
    Ok(())
}

/// The address as the CIDR map stores it: IPv6, IPv4 mapped to ::ffff:a.b.c.d.
fn cidr_key(rule_key: u32, net: &ipnet::IpNet) -> (u32, [u8; CIDR_DATA]) {
    let mut data = [0u8; CIDR_DATA];
    data[..4].copy_from_slice(&rule_key.to_be_bytes());
    let (addr, bits) = match net {
        ipnet::IpNet::V4(n) => (
            n.network().to_ipv6_mapped().octets(),
            96 + n.prefix_len() as u32,
        ),
        ipnet::IpNet::V6(n) => (n.network().octets(), n.prefix_len() as u32),
    };
    data[4..].copy_from_slice(&addr);
    (32 + bits, data)
}

/// The kernel form of one selector, and the keys its values need; policy-engine refused a
/// selector with more conditions or capability filters than the kernel's rule holds, and one
/// that came this far anyway is an error, never a panic or a filter left out.
pub(super) fn selector_rule(
    s: &HookSelector,
    slot: u32,
    policy_id: u32,
    monitor: bool,
    host_ns: &[u32; abi::NS_COUNT],
) -> Result<(abi::HookRule, Vec<WrittenKey>), String> {
    let empty = abi::HookRule::default();
    if s.conds.len() > empty.conds.len() || s.caps.len() > empty.cap_set.len() {
        return Err(format!(
            "{} conditions and {} capability filters; the kernel's selector holds {} and {}",
            s.conds.len(),
            s.caps.len(),
            empty.conds.len(),
            empty.cap_set.len()
        ));
    }
    let mut keys = Vec::new();
    let (action, arg) = kernel_action(s.action);
    let mut r = abi::HookRule {
        flags: rule::ACTIVE
            | if monitor { rule::MONITOR } else { 0 }
            | if s.kill { rule::KILL } else { 0 }
            | if s.post || s.action == RuleAction::NoPost {
                0
            } else {
                rule::NOPOST
            },
        policy_id,
        action,
        arg,
        nconds: s.conds.len() as u32,
        sock_action: match s.sock_action {
            Some((true, _)) => abi::SOCK_TRACK,
            Some((false, _)) => abi::SOCK_UNTRACK,
            None => 0,
        },
        sock_arg: s.sock_action.map_or(0, |(_, p)| p as u8),
        ..empty
    };
    for (c, cond) in s.conds.iter().enumerate() {
        lower_cond(cond, slot, c, &mut r.conds[c], &mut keys);
    }
    if let Some(b) = &s.binary {
        r.flags |= match b.kind {
            MatchKind::Exact => rule::BIN_EQ,
            _ => rule::BIN_PREFIX,
        } | if b.negate { rule::BIN_NOT } else { 0 };
        keys.extend(binary_keys(abi::hook_rule_key(slot, abi::PART_BINARY), b));
    }
    lower_process_filters(s, slot, host_ns, &mut r, &mut keys);
    Ok((r, keys))
}

/// A value key of selector `slot`, in value-key part `part`.
fn value_key(slot: u32, part: u32, v: i64) -> WrittenKey {
    WrittenKey::Value(ValueKey {
        rule: abi::hook_rule_key(slot, part),
        _pad0: 0,
        value: v,
    })
}

/// Condition `c` of selector `slot`: its operator in `kc`, its values as keys.
fn lower_cond(
    cond: &Cond,
    slot: u32,
    c: usize,
    kc: &mut abi::HookCond,
    keys: &mut Vec<WrittenKey>,
) {
    let part = c as u32;
    let key = abi::hook_rule_key(slot, part);
    kc.arg = cond.arg as u8;
    kc.negate = cond.negate as u8;
    match &cond.op {
        CondOp::IntIn(vs) => {
            kc.op = op::INT_IN;
            keys.extend(vs.iter().map(|v| value_key(slot, part, *v)));
        }
        CondOp::Gt(v) => (kc.op, kc.value) = (op::GT, *v),
        CondOp::Lt(v) => (kc.op, kc.value) = (op::LT, *v),
        CondOp::Mask(v) => (kc.op, kc.value) = (op::MASK, *v),
        CondOp::Text(kind, vs) => {
            kc.op = match kind {
                MatchKind::Exact => op::STR_EQ,
                MatchKind::Prefix => op::STR_PREFIX,
                MatchKind::Postfix => op::STR_POSTFIX,
            };
            keys.extend(vs.iter().map(|v| text_key(*kind, key, v)));
        }
        CondOp::Addr(source, nets) => {
            kc.op = if *source { op::SADDR } else { op::DADDR };
            for n in nets {
                let (b, d) = cidr_key(key, n);
                keys.push(WrittenKey::Cidr(b, d));
            }
        }
        CondOp::Port(source, ports) => {
            kc.op = if *source { op::SPORT } else { op::DPORT };
            keys.extend(ports.iter().map(|p| value_key(slot, part, *p as i64)));
        }
        CondOp::Protocol(ps) => {
            kc.op = op::PROTOCOL;
            keys.extend(ps.iter().map(|p| value_key(slot, part, *p as i64)));
        }
        CondOp::Family(fs) => {
            kc.op = op::FAMILY;
            keys.extend(fs.iter().map(|f| value_key(slot, part, *f as i64)));
        }
        CondOp::State(ss) => {
            kc.op = op::STATE;
            keys.extend(ss.iter().map(|s| value_key(slot, part, *s as i64)));
        }
    }
}

/// The pid, namespace and capability filters of a selector.
fn lower_process_filters(
    s: &HookSelector,
    slot: u32,
    host_ns: &[u32; abi::NS_COUNT],
    r: &mut abi::HookRule,
    keys: &mut Vec<WrittenKey>,
) {
    if let Some(p) = &s.pids {
        r.pid_flags = if p.not_in { pids::NOT_IN } else { pids::IN }
            | if p.namespace { pids::NS } else { 0 }
            | if p.follow_forks { pids::FOLLOW } else { 0 };
        keys.extend(
            p.values
                .iter()
                .map(|v| value_key(slot, abi::PART_PIDS, *v as i64)),
        );
    }
    for n in &s.namespaces {
        let bit = 1u32 << n.ns;
        if n.not_in {
            r.ns_not_in |= bit;
        } else {
            r.ns_in |= bit;
        }
        for v in &n.values {
            let inode = match v {
                NsValue::Inode(i) => *i,
                NsValue::Host => host_ns[n.ns],
            };
            keys.push(value_key(slot, abi::PART_NS + n.ns as u32, inode as i64));
        }
    }
    for (j, c) in s.caps.iter().enumerate() {
        r.cap_set[j] = c.set;
        r.cap_not[j] = c.not_in as u8;
        r.cap_mask[j] = c.mask;
    }
}

/// The key of a string or path value compared by `kind`, under the map key `key` (a rule slot
/// or a selector's value key): the postfix maps hold values reversed.
pub(super) fn text_key(kind: MatchKind, key: u32, v: &str) -> WrittenKey {
    match kind {
        MatchKind::Exact => WrittenKey::Exact(abi::MatchKey::new(key, v.as_bytes())),
        MatchKind::Prefix => {
            let (b, d) = abi::lpm_key(key, v.as_bytes());
            WrittenKey::Prefix(b, d)
        }
        MatchKind::Postfix => {
            let rev: Vec<u8> = v.bytes().rev().collect();
            let (b, d) = abi::lpm_key(key, &rev);
            WrittenKey::Postfix(b, d)
        }
    }
}

/// The keys of a binary filter's values under the map key `key`.
pub(super) fn binary_keys(key: u32, b: &Filter) -> Vec<WrittenKey> {
    b.values
        .iter()
        .map(|v| match b.kind {
            MatchKind::Exact => WrittenKey::BinExact(abi::MatchKey::new(key, v.as_bytes())),
            _ => {
                let (bits, d) = abi::lpm_key(key, v.as_bytes());
                WrittenKey::BinPrefix(bits, d)
            }
        })
        .collect()
}

/// The generic hooks' maps.
pub(super) struct HookRuleMaps {
    pub rules: HashMap<MapData, u32, HookRulePod>,
    pub values: HashMap<MapData, ValueKey, u8>,
    pub cidrs: LpmTrie<MapData, [u8; CIDR_DATA], u8>,
}

impl PolicyTable {
    /// Inserts `keys`, all or none: when one fails, those already inserted are removed again.
    pub(super) fn insert_keys(
        &mut self,
        policy: &str,
        keys: &[WrittenKey],
    ) -> Result<(), PolicyLoadError> {
        for (i, k) in keys.iter().enumerate() {
            if let Err(e) = self.write_keys(policy, std::slice::from_ref(k), true) {
                let _ = self.write_keys(policy, &keys[..i], false);
                return Err(e);
            }
        }
        Ok(())
    }

    /// Writes (or deletes) keys of the value maps. Deleting goes on past a failure, so as much
    /// as can be removed is; the first error is returned.
    pub(super) fn write_keys(
        &mut self,
        policy: &str,
        keys: &[WrittenKey],
        insert: bool,
    ) -> Result<(), PolicyLoadError> {
        fn hash<K: Pod>(
            map: &mut HashMap<MapData, K, u8>,
            k: K,
            insert: bool,
        ) -> Result<(), aya::maps::MapError> {
            if insert {
                map.insert(k, 1, 0)
            } else {
                match map.remove(&k) {
                    Ok(()) | Err(aya::maps::MapError::KeyNotFound) => Ok(()),
                    Err(e) => Err(e),
                }
            }
        }
        fn lpm<const N: usize>(
            map: &mut LpmTrie<MapData, [u8; N], u8>,
            bits: u32,
            data: [u8; N],
            insert: bool,
        ) -> Result<(), aya::maps::MapError> {
            let key = Key::new(bits, data);
            if insert {
                map.insert(&key, 1, 0)
            } else {
                match map.remove(&key) {
                    Ok(()) | Err(aya::maps::MapError::KeyNotFound) => Ok(()),
                    Err(e) => Err(e),
                }
            }
        }
        let mut first_error = None;
        for k in keys {
            let (res, name) = match k {
                WrittenKey::Value(v) => (
                    hash(&mut self.hook_maps.values, *v, insert),
                    "vigil_hook_values",
                ),
                WrittenKey::Cidr(b, d) => (
                    lpm(&mut self.hook_maps.cidrs, *b, *d, insert),
                    "vigil_hook_cidrs",
                ),
                WrittenKey::Exact(m) => (
                    hash(&mut self.path_exact, MatchKeyPod(*m), insert),
                    "vigil_path_exact",
                ),
                WrittenKey::Prefix(b, d) => (
                    lpm(&mut self.path_prefix, *b, *d, insert),
                    "vigil_path_prefix",
                ),
                WrittenKey::Postfix(b, d) => (
                    lpm(&mut self.path_postfix, *b, *d, insert),
                    "vigil_path_postfix",
                ),
                WrittenKey::BinExact(m) => (
                    hash(&mut self.bin_exact, MatchKeyPod(*m), insert),
                    "vigil_bin_exact",
                ),
                WrittenKey::BinPrefix(b, d) => (
                    lpm(&mut self.bin_prefix, *b, *d, insert),
                    "vigil_bin_prefix",
                ),
            };
            if let Err(e) = res {
                let e = map_err(policy, name, e);
                if insert {
                    return Err(e);
                }
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// A free run of `n` selector slots.
    pub(super) fn free_rule_run(&self, n: usize) -> Option<usize> {
        if n == 0 {
            return Some(0);
        }
        (0..=abi::HOOK_RULES.saturating_sub(n)).find(|&start| {
            self.hook_rule_owner[start..start + n]
                .iter()
                .all(|o| o.is_none())
        })
    }
}
