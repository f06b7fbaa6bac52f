//! Decodes ring-buffer records into events and enriches them (the process, its parent and
//! ancestors from the process cache, the node and cgroup identity, policy names), keeping the
//! process cache up to date.

use std::{sync::Arc, time::Instant};

use vigil_bpf_kprobes::abi::{self, Record};
use vigil_events::{
    Arg, Event, EventBody, ExecId, FileArg, Process, ProcessExec, ProcessExit, ProcessPolicy,
    SockArg, SockaddrArg,
};
use vigil_policy_engine::{
    compile::{HookArgKind, HookRule},
    hook_rule::CapArg,
    hook_rule::KernelObject,
};

use crate::{
    cache::ProcessCache,
    forks::PendingForks,
    identity::{Identity, Origin, ProcessStrings},
    policies::{InstalledHook, InstalledRule, PolicyTable},
};

/// What the enricher adds to each event.
#[derive(Debug, Clone, Copy)]
pub struct EnrichOptions {
    /// Ancestors listed above the parent (0: none).
    pub ancestors: usize,
    /// Clock ticks per second, and the cgroup hierarchy reported: for a process read from
    /// `/proc` when an event names one the cache does not know.
    pub clk_tck: u64,
    /// See `clk_tck`.
    pub cgroup_subsys: u32,
}

/// A policy's match as a record reports it.
struct Match<'a> {
    ktime: u64,
    pid: u32,
    tid: u32,
    action: u32,
    flags: u32,
    /// The policy and its hook, when still installed.
    hook: Option<(&'a str, &'a HookRule)>,
    /// The selector that matched, when still installed.
    selector: Option<u32>,
    /// The function the event names, where the hook does not say it alone (a list's member).
    function: Option<String>,
    /// When it is not (removed while its record was queued): what to call it (`rule-N`,
    /// `hook-N`) and whether the event is `process_lsm`.
    unknown: (&'static str, u32, bool),
    args: Vec<Arg>,
}

/// Record-to-event conversion and the process cache it reads and writes.
pub struct EventEnricher {
    /// Node-wide identity.
    pub identity: Identity,
    /// The process cache.
    pub cache: ProcessCache,
    opts: EnrichOptions,
    /// Names a new execution's pod before it is cached, on a Kubernetes node.
    pub pods: Option<crate::k8s::identity::PodIdentity>,
    /// Selectors' `rateLimit` on Post.
    pub rate_limit: crate::rate_limit::PostRateLimit,
    /// The build ids of the files loader events name.
    build_ids: crate::build_id::BuildIds,
    /// Encryption awareness, when remote ranges are configured ([`crate::flows`]).
    pub flows: Option<crate::flows::FlowTracker>,
    /// Forks whose child was not asked for yet ([`crate::forks`]): every lookup of a process
    /// by pid looks here first ([`EventEnricher::current`]).
    forks: PendingForks,
    /// The node labels of an event before the pod stage sets them: one empty map shared by
    /// every event, where a default `Arc` is a new allocation (and a map to drop) per event.
    no_labels: Arc<std::collections::BTreeMap<String, String>>,
}

impl EventEnricher {
    /// An enricher over a (seeded) cache.
    pub fn new(identity: Identity, cache: ProcessCache, opts: EnrichOptions) -> Self {
        EventEnricher {
            identity,
            cache,
            opts,
            pods: None,
            rate_limit: Default::default(),
            build_ids: Default::default(),
            forks: PendingForks::default(),
            no_labels: Default::default(),
            flows: None,
        }
    }

    /// Applies one record; returns the event it produces, if any (forks produce none, as in
    /// Tetragon: they are kept until their child is asked for, [`crate::forks`]).
    pub fn apply(
        &mut self,
        record: Record<'_>,
        now: Instant,
        policies: Option<&PolicyTable>,
    ) -> Option<Event> {
        match record {
            Record::Hook(h) => {
                let installed = policies.and_then(|t| t.hook(h.event.hook_id));
                let (hook_id, ktime) = (h.event.hook_id, h.event.hdr.ktime);
                let limit = installed.and_then(|i| {
                    let s = i.selector_of(h.event.rule)?;
                    Some((s, i.rule.selectors.get(s as usize)?.rate_limit_secs?))
                });
                let event = self.hook(h, installed);
                match limit {
                    Some((s, secs))
                        if self.rate_limit.holds_back(&event, hook_id, s, secs, ktime) =>
                    {
                        None
                    }
                    _ => Some(event),
                }
            }
            Record::Policy(p) => {
                let installed = policies.and_then(|t| t.rule(p.event.rule));
                Some(self.policy(p, installed))
            }
            Record::Exec(e) => Some(self.exec(e, now)),
            Record::Fork(f) => {
                self.fork(f, now);
                None
            }
            Record::Exit(x) => Some(self.exit(x, now)),
            Record::Flow(f) => self.flow(&f, now),
        }
    }

    /// A flow's verdict, new or changed: `flow_encryption` (none when the agent tracks no
    /// ranges: a record of programs an earlier agent left attached).
    /// A verdict whose opener is not known yet waits for it ([`crate::flows::OPENER_WAIT`]).
    fn flow(&mut self, f: &abi::FlowEvent, now: Instant) -> Option<Event> {
        let body = self.flows.as_mut()?.verdict(f);
        let time = self.identity.clock.rfc3339(f.hdr.ktime);
        let known = body.process.is_some();
        let event = self.event_at(time, EventBody::FlowEncryption(Box::new(body)));
        if known {
            return Some(event);
        }
        self.flows.as_mut()?.hold(f.key, event, now);
        None
    }

    /// `flow_encryption` events that waited for their process and go now.
    pub fn released_flows(&mut self, now: Instant) -> Vec<Event> {
        match self.flows.as_mut() {
            Some(f) if f.has_released(now) => f.released(now).collect(),
            _ => Vec::new(),
        }
    }

    /// The current execution of `pid`: a fork of it not described yet is described and cached
    /// first.
    fn current(&mut self, pid: u32) -> Option<Arc<Process>> {
        match self.forks.take(pid) {
            Some(fork) => {
                self.cache.count_hit();
                Some(self.cache_fork(fork))
            }
            None => self.cache.by_pid(pid),
        }
    }

    fn cache_fork(&mut self, fork: crate::forks::PendingFork) -> Arc<Process> {
        let (process, seen) = fork.describe(&self.identity);
        self.cache.insert(process, seen)
    }

    /// Describes and caches every fork not described yet: before the process cache is read
    /// otherwise than by pid through [`EventEnricher::current`].
    fn describe_forks(&mut self) {
        for fork in self.forks.take_all() {
            self.cache_fork(fork);
        }
    }

    fn parent_of(&mut self, ppid: u32) -> (ExecId, Option<Arc<Process>>) {
        match self.current(ppid) {
            Some(p) => (p.exec_id.clone(), Some(p)),
            None if ppid == 0 => (self.identity.exec_id(1, 0), None),
            None => (ExecId::default(), None),
        }
    }

    fn exec(&mut self, e: abi::Exec<'_>, now: Instant) -> Event {
        let raw = e.event.proc;
        let ktime = e.event.hdr.ktime;
        let (parent_exec_id, parent) = self.parent_of(raw.ppid);
        let strings = ProcessStrings {
            binary: vigil_events::text::lossy(e.binary).into_owned(),
            argv: e.args,
            cwd: vigil_events::text::lossy(e.cwd).into_owned(),
            cgroup: vigil_events::text::lossy(e.cgroup).into_owned(),
        };
        // The first exec after a fork is flagged `clone`, as Tetragon does: the fork is kept
        // (or cached, when its child was asked for) until now, and is replaced unseen.
        let forked = self.forks.take(raw.pid).is_some();
        if forked {
            self.cache.count_hit();
        }
        let after_fork = forked
            || self
                .cache
                .by_pid(raw.pid)
                .is_some_and(|p| p.flags.split(' ').next() == Some("clone"));
        let origin = Origin::Execve { after_fork };
        let mut process = self
            .identity
            .process(&raw, ktime, origin, strings, parent_exec_id);
        // Named here, before it is shared, when its pod is known: the pod stage then has
        // nothing to do for this execution's events.
        if let Some(pods) = self.pods.as_mut() {
            pods.name_new(&mut process);
        }
        let ancestors = self.ancestors(&process);
        // The exec's time is the process's start: its text is made once.
        let time = process.start_time.clone();
        let process = self.cache.insert(process, now);
        self.event_at(
            time,
            EventBody::ProcessExec(ProcessExec {
                process,
                parent,
                ancestors,
            }),
        )
    }

    /// A child runs its parent's image until it execs, which it usually does at once: the fork
    /// is kept, and described only when something asks for the child ([`crate::forks`]).
    fn fork(&mut self, f: abi::ForkEvent, now: Instant) {
        let parent = self.current(f.proc.ppid);
        for due in self.forks.insert(f, parent, now) {
            self.cache_fork(due);
        }
    }

    fn exit(&mut self, x: abi::ExitEvent, now: Instant) -> Event {
        if let Some(fork) = self.forks.take(x.pid) {
            // A child that ended without an exec (a subshell, a worker).
            self.cache_fork(fork);
        }
        let process = match self.cache.exit(x.pid, now) {
            // The exit names the thread that ended the process, which is rarely not the leader.
            Some(p) if p.tid != x.tid => Arc::new(Process {
                tid: x.tid,
                ..(*p).clone()
            }),
            Some(p) => p,
            // Not seen before (evicted by the capacity bound): report what the kernel said.
            None => Arc::new(Process::unknown(x.pid, x.tid)),
        };
        let parent = self.cache.get(&process.parent_exec_id);
        let ancestors = self.ancestors(&process);
        let (status, signal) = decode_exit_code(x.exit_code);
        let time = self.identity.clock.rfc3339(x.hdr.ktime);
        self.event_at(
            time.clone(),
            EventBody::ProcessExit(ProcessExit {
                process,
                parent,
                signal,
                status,
                time,
                ancestors,
            }),
        )
    }

    /// A file-open rule matched: the opened file, and what the kernel did.
    fn policy(&mut self, p: abi::Policy<'_>, installed: Option<&InstalledRule>) -> Event {
        let ev = p.event;
        self.matched(Match {
            ktime: ev.hdr.ktime,
            pid: ev.pid,
            tid: ev.tid,
            action: ev.action,
            flags: ev.flags,
            hook: installed.map(|i| (i.policy.as_str(), &*i.rule.hook)),
            selector: installed.map(|i| i.rule.selector),
            function: None,
            // A rule removed while its record was queued.
            unknown: ("rule", ev.rule, true),
            args: vec![Arg::FileArg(FileArg::new(
                vigil_events::text::lossy(p.path).into_owned(),
                ev.flags & abi::policy_flags::TRUNC_PATH != 0,
                ev.mode,
            ))],
        })
    }

    /// A generic hook fired: its arguments decoded by the types the policy declared, and what
    /// its matching selector did.
    fn hook(&mut self, h: abi::Hook<'_>, installed: Option<&InstalledHook>) -> Event {
        let ev = h.event;
        // The record holds at most HOOK_ARGS arguments whatever its count says (the decoder
        // refuses a larger count; the enricher does not rely on it).
        let mut args = installed.map_or_else(Vec::new, |i| {
            i.rule
                .args
                .iter()
                .zip(ev.args.iter().zip(h.strings))
                .take(ev.nargs as usize)
                .map(|(spec, (raw, text))| decode_arg(spec.kind, raw, text))
                .collect()
        });
        // How each socket's flow leaves the node, and which of them are tracked.
        let mut tracked = Vec::new();
        if let Some(flows) = self.flows.as_mut() {
            for (arg, raw) in args.iter_mut().zip(ev.args.iter()) {
                if let Arg::SockArg(s) = arg {
                    tracked.extend(flows.annotate(&raw.sock(), s));
                }
            }
        }
        let event = self.matched(Match {
            ktime: ev.hdr.ktime,
            pid: ev.pid,
            tid: ev.tid,
            action: ev.action,
            flags: ev.flags,
            hook: installed.map(|i| (i.policy.as_str(), &i.rule)),
            selector: installed.and_then(|i| i.selector_of(ev.rule)),
            function: installed.map(|i| i.function_name(ev.key)),
            unknown: ("hook", ev.hook_id, false),
            args,
        });
        if let (Some(flows), false) = (self.flows.as_mut(), tracked.is_empty()) {
            let process = event.shared_processes().next().cloned();
            let parent = event.shared_processes().nth(1).cloned();
            if let Some(p) = process {
                for key in tracked {
                    flows.opened(key, p.clone(), parent.clone());
                }
            }
        }
        event
    }

    /// The event of a policy's match, from either kind of record: the process (by pid, its
    /// current execution), the policy's hook and what the kernel did.
    fn matched(&mut self, mut m: Match<'_>) -> Event {
        let mut process = self.process_of(m.pid, m.tid);
        // The thread that made the call, as Tetragon's process.tid says (the cache holds the
        // process as its first thread started it).
        if m.tid != 0 && process.tid != m.tid {
            Arc::make_mut(&mut process).tid = m.tid;
        }
        let parent = self.cache.get(&process.parent_exec_id);
        let ancestors = self.ancestors(&process);
        let (policy_name, function_name, message, tags, lsm) = match m.hook {
            Some((policy, h)) => (
                policy.to_string(),
                m.function.take().unwrap_or_else(|| {
                    vigil_policy_engine::kernel::reported_function(&h.call, h.syscall)
                }),
                h.message.clone().unwrap_or_default(),
                h.tags.clone(),
                h.lsm,
            ),
            None => (
                format!("{}-{}", m.unknown.0, m.unknown.1),
                String::new(),
                String::new(),
                Vec::new(),
                m.unknown.2,
            ),
        };
        let uprobe = m.hook.and_then(|(_, h)| h.uprobe.as_ref());
        let tracepoint = m.hook.and_then(|(_, h)| h.tracepoint.as_ref());
        if m.hook.is_some_and(|(_, h)| h.loader) {
            return self.loaded(m.ktime, process, parent, ancestors, m.args);
        }
        // A hook on the function's return read one value: the return value. A uprobe's event
        // has no `return` (Tetragon's process_uprobe has none): the value stays its argument.
        let return_arg = match m.hook {
            Some((_, h)) if h.returns && uprobe.is_none() => m.args.pop(),
            _ => None,
        };
        // The event was posted when the function returned: posting is the one action a return
        // takes, since `returnArgAction` is refused.
        let return_action = match return_arg {
            Some(_) => action_name(abi::action::POST).into(),
            None => String::new(),
        };
        let body = ProcessPolicy {
            process,
            parent,
            function_name: if uprobe.is_some() || tracepoint.is_some() {
                String::new()
            } else {
                function_name
            },
            subsys: tracepoint.map(|t| t.subsystem.clone()).unwrap_or_default(),
            event: tracepoint.map(|t| t.event.clone()).unwrap_or_default(),
            path: uprobe.map(|u| u.path.clone()).unwrap_or_default(),
            symbol: uprobe.and_then(|u| u.symbol.clone()).unwrap_or_default(),
            offset: uprobe.map_or(0, |u| u.offset),
            args: m.args,
            return_arg,
            action: action_name(done_action(m.action, m.flags)).into(),
            policy_name,
            message,
            tags,
            outcome: outcome(m.action, m.flags).into(),
            ancestors,
            return_action,
            selector: m.selector,
            buildid: String::new(),
        };
        let body = if uprobe.is_some() {
            EventBody::ProcessUprobe(Box::new(body))
        } else if tracepoint.is_some() {
            EventBody::ProcessTracepoint(Box::new(body))
        } else if lsm {
            EventBody::ProcessLsm(Box::new(body))
        } else {
            EventBody::ProcessKprobe(Box::new(body))
        };
        self.event(m.ktime, body)
    }

    /// A loader's event: the executable file the process mapped, with its build id (read from
    /// the file, as Tetragon's loader reads it from the mapping), as Tetragon's
    /// `process_loader`.
    fn loaded(
        &mut self,
        ktime: u64,
        process: Arc<Process>,
        parent: Option<Arc<Process>>,
        ancestors: Vec<Arc<Process>>,
        args: Vec<Arg>,
    ) -> Event {
        use base64::Engine;
        let path = match args.into_iter().next() {
            Some(Arg::FileArg(f)) => f.path,
            _ => String::new(),
        };
        let buildid = self
            .build_ids
            .of(&path)
            .map(|id| base64::engine::general_purpose::STANDARD.encode(id))
            .unwrap_or_default();
        let body = ProcessPolicy {
            process,
            parent,
            function_name: String::new(),
            subsys: String::new(),
            event: String::new(),
            path,
            symbol: String::new(),
            offset: 0,
            args: Vec::new(),
            return_arg: None,
            action: String::new(),
            policy_name: String::new(),
            message: String::new(),
            tags: Vec::new(),
            outcome: String::new(),
            buildid,
            ancestors,
            return_action: String::new(),
            selector: None,
        };
        self.event(ktime, EventBody::ProcessLoader(Box::new(body)))
    }

    /// The current execution of `pid`: from the cache, else read from `/proc` (a process that
    /// started while the agent was starting), else, when it is gone, what the kernel said of
    /// it.
    fn process_of(&mut self, pid: u32, tid: u32) -> Arc<Process> {
        if let Some(p) = self.current(pid) {
            return p;
        }
        // A process the agent never saw start: read from /proc, with its parent from the cache
        // by pid, where a fork may be waiting.
        self.describe_forks();
        crate::proc_seed::resolve(
            pid,
            &mut self.cache,
            &self.identity,
            self.opts.clk_tck,
            self.opts.cgroup_subsys,
        )
        .unwrap_or_else(|| Arc::new(Process::unknown(pid, tid)))
    }

    fn ancestors(&mut self, p: &Process) -> Vec<Arc<Process>> {
        if self.opts.ancestors == 0 {
            return Vec::new();
        }
        self.cache.ancestors(p, self.opts.ancestors)
    }

    /// The `rate_limit_info` event saying `lost` records were lost, stamped now.
    pub fn lost_events(&self, lost: u64) -> Event {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i128);
        Event {
            body: EventBody::RateLimitInfo(vigil_events::RateLimitInfo {
                number_of_dropped_process_events: lost,
            }),
            node_name: self.identity.node.clone(),
            node_labels: self.no_labels.clone(),
            time: vigil_events::time::rfc3339(now),
        }
    }

    fn event(&self, ktime: u64, body: EventBody) -> Event {
        self.event_at(self.identity.clock.rfc3339(ktime), body)
    }

    /// An event at `time` (RFC 3339).
    fn event_at(&self, time: String, body: EventBody) -> Event {
        Event {
            body,
            node_name: self.identity.node.clone(),
            node_labels: self.no_labels.clone(),
            time,
        }
    }
}

/// One argument of a generic hook, by its declared type; `text` holds the bytes of string,
/// buffer and path arguments.
fn decode_arg(kind: HookArgKind, raw: &abi::ArgValue, text: &[u8]) -> Arg {
    use base64::Engine;
    let lossy = || vigil_events::text::lossy(text).into_owned();
    match kind {
        HookArgKind::String => Arg::StringArg(lossy()),
        HookArgKind::CharBuf { .. } | HookArgKind::IovIter => {
            Arg::BytesArg(base64::engine::general_purpose::STANDARD.encode(text))
        }
        HookArgKind::File | HookArgKind::Fd | HookArgKind::Kiocb => {
            let f = raw.file();
            Arg::FileArg(FileArg::new(lossy(), f.cut != 0, f.mode))
        }
        HookArgKind::Path | HookArgKind::AtPath { .. } | HookArgKind::Dentry => {
            let f = raw.file();
            Arg::PathArg(FileArg::new(lossy(), f.cut != 0, f.mode))
        }
        HookArgKind::Sockaddr => {
            let s = raw.sock();
            let sock = sock_arg(&s);
            Arg::SockaddrArg(SockaddrArg {
                family: sock.family,
                addr: sock.saddr,
                port: s.sport,
            })
        }
        HookArgKind::Int { bits, signed, size } => {
            let v = raw.int();
            // Widths come from the policy (8 to 64); any other reads the whole 64 bits rather
            // than shift by 64 or more.
            let shift = 64u32.saturating_sub(bits) % 64;
            if size || (!signed && shift == 0) {
                Arg::SizeArg(v as u64)
            } else if signed {
                Arg::IntArg((v << shift) >> shift)
            } else {
                Arg::IntArg(((v as u64) << shift >> shift) as i64)
            }
        }
        HookArgKind::Sock => Arg::SockArg(sock_arg(&raw.sock())),
        // The kernel sets the value when the datagram was longer than the bytes it copied.
        HookArgKind::Dns => Arg::DnsArg(vigil_events::dns::DnsArg::decode(text, raw.int() != 0)),
        HookArgKind::Cred => Arg::ProcessCredentialsArg(credentials_arg(&raw.cred())),
        HookArgKind::Skb => Arg::SkbArg(skb_arg(&raw.skb())),
        HookArgKind::Object(o) => object_arg(o, &raw.kobj()),
        HookArgKind::Binprm => {
            let f = raw.file();
            Arg::LinuxBinprmArg(FileArg::new(lossy(), f.cut != 0, f.mode))
        }
        HookArgKind::Cap(set) => {
            // Tetragon's form: the set in 16 hex digits.
            let hex = format!("{:016x}", raw.int() as u64);
            match set {
                CapArg::Any => Arg::KernelCapTArg(hex),
                CapArg::Effective => Arg::CapEffectiveArg(hex),
                CapArg::Inheritable => Arg::CapInheritableArg(hex),
                CapArg::Permitted => Arg::CapPermittedArg(hex),
            }
        }
    }
}

/// A kernel object as Tetragon shapes it (hook_args.h `read_kobj` says where each number is).
fn object_arg(o: KernelObject, v: &abi::KobjValue) -> Arg {
    use vigil_events::kernel_objects as k;
    match o {
        KernelObject::BpfAttr => Arg::BpfAttrArg(k::BpfAttrArg {
            ProgType: k::prog_type(v.n[0]),
            InsnCnt: v.n[1],
            ProgName: v.name(),
        }),
        KernelObject::BpfMap => Arg::BpfMapArg(k::BpfMapArg {
            MapType: k::map_type(v.n[0]),
            KeySize: v.n[1],
            ValueSize: v.n[2],
            MaxEntries: v.n[3],
            MapName: v.name(),
        }),
        KernelObject::PerfEvent => Arg::PerfEventArg(k::PerfEventArg {
            KprobeFunc: v.name(),
            Type: k::perf_type(v.n[4]),
            Config: v.wide(0),
            ProbeOffset: v.wide(2),
        }),
        KernelObject::Module | KernelObject::LoadInfo => Arg::ModuleArg(k::ModuleArg {
            name: v.name(),
            signature_ok: match v.n[2] {
                0 => Some(false),
                1 => Some(true),
                _ => None,
            },
            tainted: k::module_taints(v.wide(0)),
        }),
    }
}

/// A packet as Tetragon's `skb_arg`: its addresses and ports from the headers the kernel had
/// placed, the protocol by number and name.
fn skb_arg(s: &abi::SkbValue) -> vigil_events::SkbArg {
    let as_sock = abi::SockValue {
        family: s.family,
        protocol: s.protocol,
        saddr: s.saddr,
        daddr: s.daddr,
        ..Default::default()
    };
    let named = sock_arg(&as_sock);
    vigil_events::SkbArg {
        hash: s.hash,
        len: s.len,
        priority: s.priority,
        mark: s.mark,
        saddr: named.saddr,
        daddr: named.daddr,
        sport: s.sport.into(),
        dport: s.dport.into(),
        proto: s.protocol.into(),
        protocol: if s.protocol == 0 {
            String::new()
        } else {
            named.protocol
        },
        family: named.family,
    }
}

/// A `struct cred *` as Tetragon's `process_credentials_arg`: its user namespace is the host's
/// at level 0.
fn credentials_arg(c: &abi::CredValue) -> vigil_events::CredentialsArg {
    use vigil_events::{caps::CapSet, Capabilities, CredentialsArg, Namespace, UserNamespace};
    CredentialsArg {
        uid: c.uid,
        gid: c.gid,
        euid: c.euid,
        egid: c.egid,
        suid: c.suid,
        sgid: c.sgid,
        fsuid: c.fsuid,
        fsgid: c.fsgid,
        securebits: vigil_events::securebits_names(c.securebits),
        caps: Capabilities {
            permitted: CapSet(c.cap_permitted),
            effective: CapSet(c.cap_effective),
            inheritable: CapSet(c.cap_inheritable),
            detail: vigil_events::Detail::Written,
        },
        user_ns: UserNamespace {
            level: c.ns_level,
            uid: c.ns_uid,
            gid: c.ns_gid,
            ns: Namespace {
                inum: c.ns_inum,
                is_host: c.ns_level == 0,
            },
        },
    }
}

/// The cookie of the socket at kernel address `addr` (0: no socket): the same for every event
/// about one socket while this agent runs, so a connect and its close pair up (not across a
/// restart, and a socket whose memory is reused later gets the same one, as in Tetragon), and
/// SipHash-2-4 of it under a 128-bit key from the kernel's random source, drawn at the first
/// socket, so that no event gives away where the kernel's memory is (KASLR).
fn socket_cookie(addr: u64) -> u64 {
    use std::hash::Hasher;
    static KEY: std::sync::OnceLock<[u64; 2]> = std::sync::OnceLock::new();
    if addr == 0 {
        return 0;
    }
    let key = KEY.get_or_init(|| {
        let mut k = [0u8; 16];
        let mut got = 0;
        while got < k.len() {
            // SAFETY: getrandom(2) writes at most the given length into the buffer's rest.
            let n = unsafe { libc::getrandom(k[got..].as_mut_ptr().cast(), k.len() - got, 0) };
            if n > 0 {
                got += n as usize;
            } else if std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
                break;
            }
        }
        if got < k.len() {
            // No getrandom(2) (a kernel before 3.17): std's own per-process random keys.
            use std::hash::BuildHasher;
            let s = std::hash::RandomState::new();
            return [s.hash_one(1u8), s.hash_one(2u8)];
        }
        let (a, b) = k.split_at(8);
        [
            u64::from_le_bytes(a.try_into().expect("8 bytes")),
            u64::from_le_bytes(b.try_into().expect("8 bytes")),
        ]
    });
    // std's SipHasher is SipHash-2-4 (deprecated only in favour of the unspecified default).
    #[allow(deprecated)]
    let mut h = std::hash::SipHasher::new_with_keys(key[0], key[1]);
    h.write_u64(addr);
    h.finish().max(1)
}

pub(crate) fn sock_arg(s: &abi::SockValue) -> SockArg {
    let addr = |b: &[u8; 16]| match s.family {
        2 => std::net::Ipv4Addr::new(b[0], b[1], b[2], b[3]).to_string(),
        10 => std::net::Ipv6Addr::from(*b).to_string(),
        _ => String::new(),
    };
    let family = match s.family {
        1 => "AF_UNIX".to_string(),
        2 => "AF_INET".to_string(),
        10 => "AF_INET6".to_string(),
        n => format!("AF_{n}"),
    };
    let sock_type = match s.r#type {
        1 => "SOCK_STREAM".to_string(),
        2 => "SOCK_DGRAM".to_string(),
        3 => "SOCK_RAW".to_string(),
        n => format!("SOCK_{n}"),
    };
    let protocol = match s.protocol {
        6 => "IPPROTO_TCP".to_string(),
        17 => "IPPROTO_UDP".to_string(),
        1 => "IPPROTO_ICMP".to_string(),
        58 => "IPPROTO_ICMPV6".to_string(),
        n => format!("IPPROTO_{n}"),
    };
    use vigil_events::TCP_STATES;
    let state = if s.protocol == 6 {
        TCP_STATES.get(s.state as usize).unwrap_or(&"").to_string()
    } else {
        String::new()
    };
    // Byte counts are reported once a connection carried data or is closing: a socket that is
    // connecting or listening has none to tell.
    let closing = s.protocol == 6
        && (s.bytes_sent > 0 || s.bytes_received > 0 || matches!(s.state, 4 | 5 | 6 | 8 | 9 | 11));
    SockArg {
        family,
        sock_type,
        protocol,
        saddr: addr(&s.saddr),
        daddr: addr(&s.daddr),
        sport: s.sport,
        dport: s.dport,
        state,
        netns: s.netns,
        cookie: socket_cookie(s.cookie),
        bytes_sent: closing.then_some(s.bytes_sent),
        // The kernel counts the peer's FIN as a byte received; it carried no data.
        bytes_received: closing.then_some(if matches!(s.state, 6 | 8 | 9 | 11) {
            s.bytes_received.saturating_sub(1)
        } else {
            s.bytes_received
        }),
        encryption: None,
    }
}

/// Tetragon's name of a compiled rule's action.
pub fn rule_action_name(a: vigil_policy_engine::compile::RuleAction) -> &'static str {
    use vigil_policy_engine::compile::RuleAction;
    action_name(match a {
        RuleAction::Post => abi::action::POST,
        RuleAction::NoPost => abi::action::NOPOST,
        RuleAction::Sigkill => abi::action::SIGKILL,
        RuleAction::Override(_) => abi::action::OVERRIDE,
        RuleAction::Signal(_) => abi::action::SIGNAL,
    })
}

/// What the kernel did of a selector's action: an Override where the open is judged on the
/// system call's return (no BPF LSM) is carried out by SIGKILL, and the event says so (Tetragon's
/// `KPROBE_ACTION_OVERRIDE` means the call failed and the process lives). The policy's wish
/// stays readable in `outcome` (`killed`, `would_have_been_killed`).
fn done_action(action: u32, flags: u32) -> u32 {
    if action == abi::action::OVERRIDE && flags & abi::policy_flags::VIA_LSM == 0 {
        abi::action::SIGKILL
    } else {
        action
    }
}

/// Tetragon's name of a selector action.
fn action_name(a: u32) -> &'static str {
    match a {
        abi::action::POST => "KPROBE_ACTION_POST",
        abi::action::NOPOST => "KPROBE_ACTION_NOPOST",
        abi::action::SIGKILL => "KPROBE_ACTION_SIGKILL",
        abi::action::OVERRIDE => "KPROBE_ACTION_OVERRIDE",
        abi::action::SIGNAL => "KPROBE_ACTION_SIGNAL",
        _ => "KPROBE_ACTION_UNKNOWN",
    }
}

/// What the kernel did, from the record's flags.
fn outcome(action: u32, flags: u32) -> &'static str {
    use abi::{action, policy_flags as f};
    let lsm = flags & f::VIA_LSM != 0;
    match (action, flags & f::MONITOR != 0, flags & f::ENFORCED != 0) {
        (action::OVERRIDE, true, _) if lsm => "would_have_been_denied",
        (action::OVERRIDE | action::SIGKILL, true, _) => "would_have_been_killed",
        (action::SIGNAL, true, _) => "would_have_been_signalled",
        (action::OVERRIDE, false, true) if lsm => "denied",
        (action::OVERRIDE | action::SIGKILL, false, true) => "killed",
        (action::SIGNAL, false, true) => "signalled",
        _ => "posted",
    }
}

/// Splits a wait(2) status into the exit status and the name of the fatal signal.
pub fn decode_exit_code(code: u32) -> (u32, String) {
    let sig = code & 0x7f;
    if sig == 0 {
        ((code >> 8) & 0xff, String::new())
    } else {
        (0, signal_name(sig))
    }
}

/// `SIGKILL` for 9, and so on; `SIG<n>` for real-time signals.
pub fn signal_name(sig: u32) -> String {
    const NAMES: [&str; 32] = [
        "",
        "SIGHUP",
        "SIGINT",
        "SIGQUIT",
        "SIGILL",
        "SIGTRAP",
        "SIGABRT",
        "SIGBUS",
        "SIGFPE",
        "SIGKILL",
        "SIGUSR1",
        "SIGSEGV",
        "SIGUSR2",
        "SIGPIPE",
        "SIGALRM",
        "SIGTERM",
        "SIGSTKFLT",
        "SIGCHLD",
        "SIGCONT",
        "SIGSTOP",
        "SIGTSTP",
        "SIGTTIN",
        "SIGTTOU",
        "SIGURG",
        "SIGXCPU",
        "SIGXFSZ",
        "SIGVTALRM",
        "SIGPROF",
        "SIGWINCH",
        "SIGIO",
        "SIGPWR",
        "SIGSYS",
    ];
    NAMES
        .get(sig as usize)
        .map(|s| s.to_string())
        .unwrap_or_else(|| format!("SIG{sig}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_policy_engine::hook_rule::{HookArg, HookRule};

    fn enricher() -> EventEnricher {
        EventEnricher::new(
            Identity {
                node: "n".into(),
                exec_ids: vigil_events::ExecIdPrefix::new("n"),
                clock: vigil_events::time::BootClock::new(0),
                host_ns: [0; abi::NS_COUNT],
                details: crate::identity::ProcessDetails::default(),
            },
            ProcessCache::new(
                std::num::NonZeroUsize::new(8).unwrap(),
                std::time::Duration::from_secs(1),
            ),
            EnrichOptions {
                ancestors: 0,
                clk_tck: 100,
                cgroup_subsys: abi::CGROUP_V2,
            },
        )
    }

    fn hook_rule(kinds: &[HookArgKind]) -> HookRule {
        HookRule {
            hook_path: "spec.kprobes[0]".into(),
            call: "security_file_permission".into(),
            lsm: false,
            syscall: false,
            args: kinds
                .iter()
                .enumerate()
                .map(|(i, &kind)| HookArg {
                    index: i as u32,
                    kind,
                    label: None,
                })
                .collect(),
            returns: false,
            selectors: Vec::new(),
            monitor: false,
            message: None,
            tags: Vec::new(),
            uprobe: None,
            list: None,
            return_sock: None,
            tracepoint: None,
            loader: false,
        }
    }

    #[test]
    fn a_hook_record_claiming_more_arguments_than_it_holds_does_not_panic() {
        // A policy reading six arguments (the calling convention has six registers) and a
        // record that claims nine: the enricher reads the five a record holds, never past them.
        let int = HookArgKind::Int {
            bits: 32,
            signed: true,
            size: false,
        };
        let installed = InstalledHook::describing("p", hook_rule(&[int; 6]));
        let record = abi::Hook {
            event: abi::HookEvent {
                nargs: 9,
                ..Default::default()
            },
            strings: [&[]; abi::HOOK_ARGS],
        };
        let ev = enricher().hook(record, Some(&installed));
        let EventBody::ProcessKprobe(p) = ev.body else {
            panic!("not a kprobe event")
        };
        assert_eq!(p.args.len(), abi::HOOK_ARGS);
    }

    #[test]
    fn integer_widths_outside_1_to_64_bits_do_not_overflow_the_shift() {
        let raw = abi::ArgValue::default();
        for bits in [0, 1, 63, 64, 65, u32::MAX] {
            for signed in [false, true] {
                let kind = HookArgKind::Int {
                    bits,
                    signed,
                    size: false,
                };
                let _ = decode_arg(kind, &raw, &[]);
            }
        }
    }

    #[test]
    fn exit_codes_split_into_status_and_signal() {
        assert_eq!(decode_exit_code(3 << 8), (3, String::new()));
        assert_eq!(decode_exit_code(9), (0, "SIGKILL".into()));
        assert_eq!(
            decode_exit_code(0x80 | 11),
            (0, "SIGSEGV".into()),
            "core-dump bit ignored"
        );
        assert_eq!(signal_name(40), "SIG40");
    }

    fn proc_record(pid: u32, ppid: u32) -> abi::Process {
        abi::Process {
            pid,
            tid: pid,
            ppid,
            ..Default::default()
        }
    }

    fn fork_record(pid: u32, ppid: u32, ktime: u64) -> Record<'static> {
        Record::Fork(abi::ForkEvent {
            hdr: abi::EventHeader {
                kind: abi::EVENT_FORK,
                size: 0,
                ktime,
            },
            proc: proc_record(pid, ppid),
        })
    }

    fn exec_record(pid: u32, ppid: u32, ktime: u64, binary: &'static [u8]) -> Record<'static> {
        Record::Exec(abi::Exec {
            event: abi::ExecEvent {
                hdr: abi::EventHeader {
                    kind: abi::EVENT_EXEC,
                    size: 0,
                    ktime,
                },
                proc: proc_record(pid, ppid),
                ..Default::default()
            },
            binary,
            args: b"x\0-a\0",
            cwd: b"/tmp",
            cgroup: b"/user.slice",
        })
    }

    fn exit_record(pid: u32, ktime: u64) -> Record<'static> {
        Record::Exit(abi::ExitEvent {
            hdr: abi::EventHeader {
                kind: abi::EVENT_EXIT,
                size: 0,
                ktime,
            },
            pid,
            tid: pid,
            ..Default::default()
        })
    }

    #[test]
    fn a_fork_is_described_when_its_child_is_asked_for_as_it_was_when_it_forked() {
        let now = Instant::now();
        let mut e = enricher();
        let parent = match e.apply(exec_record(10, 1, 1_000, b"/bin/sh"), now, None) {
            Some(Event {
                body: EventBody::ProcessExec(x),
                ..
            }) => x.process,
            other => panic!("{other:?}"),
        };
        // The child as it was described when it forked, before forks were kept (by an
        // enricher of the same identity).
        let same = enricher();
        let expected = |pid: u32, ktime: u64, parent: &Process| {
            let mut p = same.identity.process(
                &proc_record(pid, parent.pid),
                ktime,
                Origin::Clone,
                ProcessStrings {
                    binary: parent.binary.clone(),
                    argv: &[],
                    cwd: parent.cwd.clone(),
                    cgroup: parent.cgroup.as_ref().unwrap().path.clone(),
                },
                parent.exec_id.clone(),
            );
            p.arguments = parent.arguments.clone();
            p
        };
        let child = expected(11, 2_000, &parent);

        // A child that exits without an exec: its exit names it as it forked.
        assert!(e.apply(fork_record(11, 10, 2_000), now, None).is_none());
        let Some(Event {
            body: EventBody::ProcessExit(x),
            ..
        }) = e.apply(exit_record(11, 3_000), now, None)
        else {
            panic!("no exit")
        };
        assert_eq!(
            *x.process,
            Process {
                refcnt: 0,
                ..child.clone()
            }
        );
        assert_eq!(x.parent.as_deref(), Some(&*parent));

        // A child that forks before it execs: its own child's parent is it, described.
        e.apply(fork_record(12, 10, 4_000), now, None);
        let child = expected(12, 4_000, &parent);
        e.apply(fork_record(13, 12, 5_000), now, None);
        let Some(Event {
            body: EventBody::ProcessExec(x),
            ..
        }) = e.apply(exec_record(13, 12, 6_000, b"/bin/true"), now, None)
        else {
            panic!("no exec")
        };
        assert_eq!(x.parent.as_deref(), Some(&child));
        assert_eq!(x.process.parent_exec_id, child.exec_id);
        assert_eq!(x.process.flags, "execve clone", "the exec after its fork");
        // The fork an exec replaced was never described nor cached.
        assert!(e.cache.get(&e.identity.exec_id(5_000, 13)).is_none());
        assert_eq!(e.current(13).as_deref(), Some(&*x.process));

        // An event of a child that has not exec'd names it as it forked.
        e.apply(fork_record(14, 10, 7_000), now, None);
        assert_eq!(e.process_of(14, 14).as_ref(), &expected(14, 7_000, &parent));

        // A pid reused after a lost exit: the older fork is described and then replaced.
        e.apply(fork_record(15, 10, 8_000), now, None);
        e.apply(fork_record(15, 10, 9_000), now, None);
        assert!(e.cache.get(&e.identity.exec_id(8_000, 15)).is_some());
        assert_eq!(
            e.current(15).as_deref(),
            Some(&expected(15, 9_000, &parent))
        );
    }
}
