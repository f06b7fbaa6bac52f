//! The userspace reference evaluator of generic hooks: which selector of a hook the kernel's
//! `hooks.bpf.c` picks for one call, from the same compiled selectors with the same semantics
//! (first matching selector; integers as the kernel normalizes them; strings and paths on their
//! first `abi::MATCH_MAX` bytes; addresses in CIDRs with IPv4 as IPv4; a process matching a
//! pid filter with followForks when it is a fork that has not exec'd of a listed pid).
//! `vigil policy test` replays recorded events through it.

use std::net::IpAddr;

use crate::{
    compile::MatchKind,
    hook_rule::{CapFilter, CondOp, HookRule, HookSelector, NsFilter, NsValue, PidFilter},
};

/// One decoded argument of a call.
#[derive(Debug, Clone, PartialEq)]
pub enum CallArg {
    /// An integer, as the kernel normalized it.
    Int(i64),
    /// A string, buffer or resolved path.
    Text(String),
    /// A socket or a socket address (whose address and port are both source and destination).
    Sock {
        /// Address family number.
        family: u16,
        /// Protocol number.
        protocol: u8,
        /// Source address.
        saddr: Option<IpAddr>,
        /// Destination address.
        daddr: Option<IpAddr>,
        /// Source port.
        sport: u16,
        /// Destination port.
        dport: u16,
    },
}

/// A call as the kernel sees it: its arguments in the hook's order and the calling process.
#[derive(Debug, Clone, Default)]
pub struct HookCall {
    /// The arguments, in the order the hook declares them.
    pub args: Vec<CallArg>,
    /// The process's binary.
    pub binary: String,
    /// Its pid.
    pub pid: u32,
    /// When it is a fork that has not exec'd, its parent's pid (followForks).
    pub fork_of: Option<u32>,
    /// Namespace inode and whether it is the host's, by vigil's namespace index.
    pub ns: [(u32, bool); vigil_bpf_kprobes::abi::NS_COUNT],
    /// Effective, permitted, inheritable capability masks.
    pub caps: [u64; 3],
}

fn cut(s: &str) -> &[u8] {
    &s.as_bytes()[..s.len().min(vigil_bpf_kprobes::abi::MATCH_MAX)]
}

fn text_hit(kind: MatchKind, values: &[String], subject: &str) -> bool {
    let subject = cut(subject);
    values.iter().any(|v| {
        let v = cut(v);
        match kind {
            MatchKind::Exact => subject == v,
            MatchKind::Prefix => subject.starts_with(v),
            MatchKind::Postfix => subject.ends_with(v),
        }
    })
}

fn cond_holds(op: &CondOp, arg: &CallArg) -> bool {
    match (op, arg) {
        (CondOp::IntIn(vs), CallArg::Int(v)) => vs.contains(v),
        (CondOp::Gt(x), CallArg::Int(v)) => v > x,
        (CondOp::Lt(x), CallArg::Int(v)) => v < x,
        (CondOp::Mask(m), CallArg::Int(v)) => v & m != 0,
        (CondOp::Text(kind, vs), CallArg::Text(t)) => text_hit(*kind, vs, t),
        (CondOp::Addr(source, nets), CallArg::Sock { saddr, daddr, .. }) => {
            let addr = if *source { saddr } else { daddr };
            addr.is_some_and(|a| nets.iter().any(|n| n.contains(&a)))
        }
        (CondOp::Port(source, ports), CallArg::Sock { sport, dport, .. }) => {
            ports.contains(if *source { sport } else { dport })
        }
        (CondOp::Protocol(ps), CallArg::Sock { protocol, .. }) => ps.contains(protocol),
        (CondOp::Family(fs), CallArg::Sock { family, .. }) => fs.contains(family),
        // An argument the kernel could not read compares as zero / empty and fails.
        _ => false,
    }
}

fn pids_hold(f: &PidFilter, call: &HookCall) -> bool {
    let mut found = f.values.contains(&call.pid);
    if !found && f.follow_forks {
        found = call.fork_of.is_some_and(|p| f.values.contains(&p));
    }
    found != f.not_in
}

fn ns_holds(f: &NsFilter, call: &HookCall) -> bool {
    let (inum, is_host) = call.ns[f.ns];
    let hit = f.values.iter().any(|v| match v {
        NsValue::Inode(i) => *i == inum,
        NsValue::Host => is_host,
    });
    hit != f.not_in
}

fn caps_hold(f: &CapFilter, call: &HookCall) -> bool {
    let caps = call.caps[(f.set as usize).saturating_sub(1).min(2)];
    (caps & f.mask != 0) != f.not_in
}

fn selector_holds(s: &HookSelector, call: &HookCall) -> bool {
    s.conds.iter().all(|c| {
        call.args
            .get(c.arg)
            .is_some_and(|a| cond_holds(&c.op, a) != c.negate)
    }) && s
        .binary
        .as_ref()
        .is_none_or(|f| text_hit(f.kind, &f.values, &call.binary) != f.negate)
        && s.pids.as_ref().is_none_or(|f| pids_hold(f, call))
        && s.namespaces.iter().all(|f| ns_holds(f, call))
        && s.caps.iter().all(|f| caps_hold(f, call))
}

/// The selector of `hook` the kernel picks for `call`: the first that matches. A hook without
/// selectors reports every call, which is `Some(None)`; `None` means nothing is reported or done.
pub fn first_hook_match<'h>(
    hook: &'h HookRule,
    call: &HookCall,
) -> Option<Option<&'h HookSelector>> {
    if hook.selectors.is_empty() {
        return Some(None);
    }
    hook.selectors
        .iter()
        .find(|s| selector_holds(s, call))
        .map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::RuleAction;
    use crate::hook_rule::Cond;

    fn sel(conds: Vec<Cond>, action: RuleAction) -> HookSelector {
        HookSelector {
            conds,
            binary: None,
            pids: None,
            namespaces: vec![],
            caps: vec![],
            action,
            kill: false,
            post: true,
            rate_limit_secs: None,
            sock_action: None,
        }
    }

    fn hook(selectors: Vec<HookSelector>) -> HookRule {
        HookRule {
            hook_path: "spec.kprobes[0]".into(),
            call: "sys_setuid".into(),
            lsm: false,
            syscall: true,
            args: vec![],
            returns: false,
            selectors,
            monitor: false,
            message: None,
            tags: vec![],
            uprobe: None,
            list: None,
            return_sock: None,
            tracepoint: None,
            loader: false,
        }
    }

    #[test]
    fn first_matching_selector_wins_and_negation_flips() {
        let h = hook(vec![
            sel(
                vec![Cond {
                    arg: 0,
                    op: CondOp::IntIn(vec![0]),
                    negate: false,
                }],
                RuleAction::Sigkill,
            ),
            sel(
                vec![Cond {
                    arg: 0,
                    op: CondOp::Gt(100),
                    negate: true,
                }],
                RuleAction::Post,
            ),
        ]);
        let call = |v| HookCall {
            args: vec![CallArg::Int(v)],
            ..Default::default()
        };
        assert_eq!(
            first_hook_match(&h, &call(0)).unwrap().unwrap().action,
            RuleAction::Sigkill
        );
        assert_eq!(
            first_hook_match(&h, &call(50)).unwrap().unwrap().action,
            RuleAction::Post
        );
        assert!(first_hook_match(&h, &call(500)).is_none());
    }

    #[test]
    fn addresses_compare_by_cidr_and_follow_forks_counts_the_parent() {
        let mut s = sel(
            vec![Cond {
                arg: 0,
                op: CondOp::Addr(false, vec!["10.0.0.0/8".parse().unwrap()]),
                negate: true,
            }],
            RuleAction::Sigkill,
        );
        s.pids = Some(PidFilter {
            values: vec![7],
            not_in: false,
            namespace: false,
            follow_forks: true,
        });
        let h = hook(vec![s]);
        let call = |daddr: &str, pid, fork_of| HookCall {
            args: vec![CallArg::Sock {
                family: 2,
                protocol: 6,
                saddr: None,
                daddr: Some(daddr.parse().unwrap()),
                sport: 0,
                dport: 443,
            }],
            pid,
            fork_of,
            ..Default::default()
        };
        assert!(first_hook_match(&h, &call("192.0.2.1", 7, None)).is_some());
        assert!(first_hook_match(&h, &call("10.1.2.3", 7, None)).is_none());
        assert!(first_hook_match(&h, &call("192.0.2.1", 8, Some(7))).is_some());
        assert!(first_hook_match(&h, &call("192.0.2.1", 8, None)).is_none());
    }

    #[test]
    fn values_are_normalized_like_the_kernel_reads_registers() {
        assert_eq!(crate::hook_rule::normalize(0xffff_ffff, 32, true), -1);
        assert_eq!(crate::hook_rule::normalize(-1, 32, false), 0xffff_ffff);
        assert_eq!(crate::hook_rule::normalize(-5, 64, true), -5);
    }
}
