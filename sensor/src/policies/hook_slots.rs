//! Generic hooks in the kernel: the keys of the attach point its plan chose (a kprobe on the
//! function, the system call's enter tracepoint, or what stands for a socket function), its
//! description in `vigil_hook_configs` and its place in the list of hooks on that point
//! (`vigil_hooks`), and the links to detach when its policy goes.

use aya::Pod;
use vigil_bpf_kprobes::abi;
use vigil_policy_engine::{
    compile::{HookArgKind, HookRule},
    kernel::RunningKernel,
    overrides::{override_gates, overrides},
    plan::{describe_mechanism, Mechanism},
};

use super::{
    hook_rules::{arg_config, selector_rule, HookRulePod, WrittenKey},
    map_err, PolicyLoadError, PolicyTable,
};
use crate::loader::HookLink;

/// Where a generic hook's program must be attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttachTarget {
    /// A kprobe on this function.
    Kprobe(String),
    /// A kretprobe on this function; with `saves`, a kprobe on its entry too, which keeps the
    /// arguments for the return under each entry key's return key.
    Kretprobe {
        function: String,
        saves: Vec<(u64, u64)>,
    },
    /// A uprobe (`ret`: uretprobe) on a function of a binary, its program finding its hooks
    /// by `key` (the attach cookie); with `entry`, a uprobe on the entry too (by that key),
    /// which keeps the arguments for the return.
    Uprobe {
        target: vigil_policy_engine::hook_rule::UprobeTarget,
        ret: bool,
        key: u64,
        entry: Option<u64>,
    },
    /// The `syscalls/<this>` enter tracepoint, with a program reading this many arguments.
    SyscallEnter(String, usize),
    /// What stands for this socket function (sock_hooks.bpf.c: system call returns, TCP state
    /// changes, socket receives).
    SockState(String),
    /// The fmod_ret programs that carry out the hook's Overrides, on these functions (the
    /// hooked `security_*` function, or the LSM checks its system call passes through): each
    /// returns the errno its thread's verdict holds when that verdict names one of `keys`, the
    /// attach points that judge.
    Override { gates: Vec<String>, keys: Vec<u64> },
    /// A policy's tracepoint, served by the program of `slot`, its fields laid out for it.
    Tracepoint {
        subsystem: String,
        event: String,
        slot: u8,
        layout: super::tracepoint_fields::TracepointLayout,
    },
    /// A policy's raw tracepoint, served by the program of `slot`.
    RawTracepoint { event: String, slot: u8 },
    /// Nowhere: this kernel does not implement the system call (it is compiled out and every
    /// call fails with ENOSYS, e.g. init_module without CONFIG_MODULES), so nothing can happen
    /// for the hook to see or stop.
    NotInKernel(String),
}

impl AttachTarget {
    /// The (entry key, return key) pairs whose entries keep the arguments for the return.
    pub fn saves(&self) -> Vec<(u64, u64)> {
        match self {
            AttachTarget::Kretprobe { saves, .. } => saves.clone(),
            AttachTarget::Uprobe {
                key,
                entry: Some(entry),
                ..
            } => vec![(*entry, *key)],
            _ => Vec::new(),
        }
    }
}

impl std::fmt::Display for AttachTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AttachTarget::Kprobe(func) => write!(f, "kprobe {func}"),
            AttachTarget::Kretprobe { function, saves } if saves.is_empty() => {
                write!(f, "kretprobe {function}")
            }
            AttachTarget::Kretprobe { function, .. } => {
                write!(f, "kprobe and kretprobe {function}")
            }
            AttachTarget::Uprobe { target, ret, .. } => write!(
                f,
                "{}",
                describe_mechanism(&Mechanism::Uprobe {
                    target: target.clone(),
                    ret: *ret
                })
            ),
            AttachTarget::SyscallEnter(t, _) => write!(f, "tracepoint syscalls/{t}"),
            AttachTarget::SockState(call) => write!(f, "the programs standing for {call}"),
            AttachTarget::Override { gates, .. } => write!(f, "fmod_ret {}", gates.join(", ")),
            AttachTarget::Tracepoint {
                subsystem, event, ..
            } => write!(f, "tracepoint {subsystem}/{event}"),
            AttachTarget::RawTracepoint { event, .. } => write!(f, "raw tracepoint {event}"),
            AttachTarget::NotInKernel(call) => write!(f, "{call} (not in this kernel)"),
        }
    }
}

/// Where a hook goes: the `vigil_hooks` keys it is listed under, where its programs attach,
/// and, for a list hook, the member each key stands for (its events name that member).
#[derive(Debug, Clone, Default)]
pub(super) struct Placement {
    pub keys: Vec<u64>,
    pub targets: Vec<AttachTarget>,
    pub members: Vec<(u64, String)>,
}

impl Placement {
    fn one(keys: Vec<u64>, target: AttachTarget) -> Self {
        Placement {
            keys,
            targets: vec![target],
            members: Vec::new(),
        }
    }
}

/// A generic hook in the kernel, as events name it.
pub struct InstalledHook {
    /// The policy's name.
    pub policy: String,
    /// What it reads.
    pub rule: HookRule,
    keys: Vec<u64>,
    links: Vec<HookLink>,
    rule_first: usize,
    written: Vec<WrittenKey>,
    /// The entry keys whose programs keep the arguments for this hook, with its return key.
    saves: Vec<(u64, u64)>,
    /// A list hook's members, by the key of their attach point.
    members: Vec<(u64, String)>,
    /// The scope of its policy (0: every process): which lists it is on.
    pub(super) scope: u16,
    /// Its description's `VIGIL_HOOK_*` flags.
    pub(super) cfg_flags: u32,
}

impl InstalledHook {
    /// The function events of this hook name: a list's member that fired (by the record's
    /// attach-point key), else the hook's own.
    pub fn function_name(&self, key: u64) -> String {
        match self.members.iter().find(|(k, _)| *k == key) {
            Some((_, member)) => {
                vigil_policy_engine::kernel::reported_function(member, self.rule.syscall)
            }
            None => {
                vigil_policy_engine::kernel::reported_function(&self.rule.call, self.rule.syscall)
            }
        }
    }

    /// The attach points' keys it is listed under.
    pub(super) fn keys(&self) -> &[u64] {
        &self.keys
    }

    /// The index, among this hook's selectors, of the selector rule in slot `rule`.
    pub fn selector_of(&self, rule: u32) -> Option<u32> {
        let i = (rule as usize).checked_sub(self.rule_first)?;
        (i < self.rule.selectors.len()).then_some(i as u32)
    }

    /// The bytes of kernel map entries this hook holds: its configuration, its selectors'
    /// rules and the values they match.
    pub fn kernel_bytes(&self) -> usize {
        std::mem::size_of::<abi::HookConfig>()
            + self.rule.selectors.len() * std::mem::size_of::<abi::HookRule>()
            + self
                .written
                .iter()
                .map(WrittenKey::entry_bytes)
                .sum::<usize>()
    }
}

#[cfg(test)]
impl InstalledHook {
    /// A hook as events name it, with nothing of it in the kernel.
    pub fn describing(policy: &str, rule: HookRule) -> Self {
        InstalledHook {
            policy: policy.to_string(),
            rule,
            keys: Vec::new(),
            links: Vec::new(),
            rule_first: 0,
            written: Vec::new(),
            saves: Vec::new(),
            members: Vec::new(),
            scope: 0,
            cfg_flags: 0,
        }
    }
}

#[derive(Clone, Copy)]
#[repr(transparent)]
pub(super) struct HookConfigPod(abi::HookConfig);
// SAFETY: #[repr(C)] integers and bytes only.
unsafe impl Pod for HookConfigPod {}

#[derive(Clone, Copy)]
#[repr(transparent)]
pub(super) struct HookListPod(pub(super) abi::HookList);
// SAFETY: #[repr(C)] integers only.
unsafe impl Pod for HookListPod {}

/// The vigil_hooks keys of a hook and where its program attaches, exactly as its plan says;
/// only the kprobed function's address is read here (from `/proc/kallsyms`).
pub(super) fn hook_keys(
    h: &HookRule,
    mechanism: &Mechanism,
    kernel: Option<&RunningKernel>,
) -> Result<Placement, String> {
    if let Mechanism::List(each) = mechanism {
        let mut all = Placement::default();
        for (member, m) in each {
            // The member keeps `list`: its arguments are read as a list member's.
            let rule = HookRule {
                call: member.clone(),
                ..h.clone()
            };
            let p = hook_keys(&rule, m, kernel)?;
            all.members
                .extend(p.keys.iter().map(|k| (*k, member.clone())));
            all.keys.extend(p.keys);
            all.targets.extend(p.targets);
        }
        return Ok(all);
    }
    let (keys, target) = match mechanism {
        Mechanism::SockState(call) => {
            let s = abi::stand_in(call, h.returns)
                .ok_or_else(|| format!("nothing stands for {call}"))?;
            Ok((
                vec![abi::HOOK_KEY_SOCK_STATE | s.code],
                AttachTarget::SockState(call.clone()),
            ))
        }
        Mechanism::Kprobe(function) | Mechanism::Kretprobe(function) => {
            let kernel =
                kernel.ok_or("cannot read /proc/kallsyms to find the function's address")?;
            let addr = kernel
                .address(function)
                .ok_or_else(|| format!("no address for {function} in /proc/kallsyms"))?;
            // A return hook that overrides is judged at the entry (plan.rs).
            let returns = matches!(mechanism, Mechanism::Kretprobe(_));
            let keys = abi::kprobe_keys(addr, returns).to_vec();
            Ok(if returns {
                // Arguments besides the return value are read at the entry and kept.
                let saves = if h.args.len() > 1 {
                    let entry = abi::kprobe_keys(addr, false);
                    entry.into_iter().zip(keys.iter().copied()).collect()
                } else {
                    Vec::new()
                };
                (
                    keys,
                    AttachTarget::Kretprobe {
                        function: function.clone(),
                        saves,
                    },
                )
            } else {
                (keys, AttachTarget::Kprobe(function.clone()))
            })
        }
        Mechanism::SyscallEnter(call) => {
            let nr = abi::syscall_nr(call)
                .ok_or_else(|| format!("{call} is not an x86-64 system call"))?;
            let arity = h
                .args
                .iter()
                .map(|a| match a.kind {
                    HookArgKind::CharBuf { size_index } => a.index.max(size_index) as usize + 1,
                    HookArgKind::AtPath { dirfd: Some(d) } => a.index.max(d) as usize + 1,
                    _ => a.index as usize + 1,
                })
                .max()
                .unwrap_or(0);
            // A list's member may take fewer arguments than the hook reads (the record has no
            // room past them): those read as 0.
            let arity = match syscall_params(call) {
                Some(n) if h.list.is_some() => arity.min(n),
                _ => arity,
            };
            Ok((
                vec![abi::HOOK_KEY_SYSCALL | nr as u64],
                AttachTarget::SyscallEnter(format!("sys_enter_{call}"), arity),
            ))
        }
        Mechanism::Uprobe { target, ret } => {
            let key_of = |ret| {
                abi::uprobe_key(
                    &target.file,
                    target.symbol.as_deref().unwrap_or(""),
                    target.offset,
                    ret,
                )
            };
            let key = key_of(*ret);
            Ok((
                vec![key],
                AttachTarget::Uprobe {
                    target: target.clone(),
                    ret: *ret,
                    key,
                    entry: (*ret && h.args.len() > 1).then(|| key_of(false)),
                },
            ))
        }
        Mechanism::NotInKernel(call) => Ok((Vec::new(), AttachTarget::NotInKernel(call.clone()))),
        Mechanism::Tracepoint(t) if t.raw => {
            let slot = super::tracepoint_fields::slot(t)?;
            Ok((
                vec![abi::HOOK_KEY_RAW_TP | slot as u64],
                AttachTarget::RawTracepoint {
                    event: t.event.clone(),
                    slot,
                },
            ))
        }
        Mechanism::Tracepoint(t) => {
            let layout = super::tracepoint_fields::layout(t)?;
            let slot = super::tracepoint_fields::slot(t)?;
            Ok((
                vec![abi::HOOK_KEY_TP | slot as u64],
                AttachTarget::Tracepoint {
                    subsystem: t.subsystem.clone(),
                    event: t.event.clone(),
                    slot,
                    layout,
                },
            ))
        }
        other => Err(format!(
            "{} does not run generic hooks",
            describe_mechanism(other)
        )),
    }?;
    let mut placement = Placement::one(keys, target);
    if overrides(h) {
        // Attached before the hook's own program, so no judged call goes unoverridden.
        let gates = override_gates(h, mechanism)?;
        placement.targets.insert(
            0,
            AttachTarget::Override {
                gates,
                keys: placement.keys.clone(),
            },
        );
    }
    Ok(placement)
}

/// A policy tracepoint's arguments name the registers its program puts their fields in (see
/// tracepoint_fields.rs), through the layout its attach target was planned with; a pointer
/// field of a system call's tracepoint points to user memory.
fn tracepoint_registers(
    h: &HookRule,
    targets: &[AttachTarget],
    cfg: &mut abi::HookConfig,
) -> Result<(), String> {
    let Some(t) = h.tracepoint.as_ref().filter(|t| !t.raw) else {
        return Ok(());
    };
    let Some(layout) = targets.iter().find_map(|target| match target {
        AttachTarget::Tracepoint { layout, .. } => Some(layout),
        _ => None,
    }) else {
        return Err(format!(
            "{}/{} was planned without its tracepoint",
            t.subsystem, t.event
        ));
    };
    let first = vigil_policy_engine::tracepoints::COMMON_FIELDS;
    for (i, a) in h.args.iter().enumerate() {
        if matches!(a.kind, HookArgKind::CharBuf { .. }) {
            return Err(format!(
                "args[{i}]: a tracepoint's `char_buf` is not read (its length's field is not mapped); read the field as `string`, or hook the function with a kprobe"
            ));
        }
        let r = a
            .index
            .checked_sub(first)
            .filter(|r| (*r as usize) < abi::HOOK_ARGS);
        let Some(r) = r else {
            return Err(format!(
                "args[{i}]: field {} of {}/{}: vigil reads the first {} fields after the {first} common ones (indexes {first} to {})",
                a.index,
                t.subsystem,
                t.event,
                abi::HOOK_ARGS,
                first as usize + abi::HOOK_ARGS - 1
            ));
        };
        if layout.fields.f[r as usize].kind == abi::tp_field::NONE {
            return Err(format!(
                "args[{i}]: {}/{} has no field {}",
                t.subsystem, t.event, a.index
            ));
        }
        cfg.arg_reg[i] = r as u8;
        if layout.pointers[r as usize] && t.subsystem.ends_with("syscalls") {
            cfg.arg_flags[i] |= abi::ARGF_USER;
        }
    }
    Ok(())
}

/// How many arguments system call `call` takes, from its enter tracepoint's format (the
/// fields after `__syscall_nr`); `None` where tracefs cannot be read.
fn syscall_params(call: &str) -> Option<usize> {
    let format = std::fs::read_to_string(format!(
        "/sys/kernel/tracing/events/syscalls/sys_enter_{call}/format"
    ))
    .ok()?;
    let mut fields = format
        .lines()
        .filter(|l| l.trim_start().starts_with("field:"));
    fields.find(|l| l.contains("__syscall_nr"))?;
    Some(fields.count())
}

impl PolicyTable {
    /// Writes a policy's hooks into free slots: selector values first, then the selectors,
    /// then the hook's description, then the lists of hooks on its attach points, so the kernel
    /// never sees a selector without its values or a hook without its description. Each slot
    /// is noted in `staged` (with where to attach it) before anything of it is written, so an
    /// abort removes a hook written half-way too.
    pub(super) fn write_hooks(
        &mut self,
        policy: &str,
        staged: &mut super::Installed,
        hooks: Vec<HookRule>,
        placed: Vec<Placement>,
        free: Vec<usize>,
    ) -> Result<(), PolicyLoadError> {
        for ((slot, h), placement) in free.into_iter().zip(hooks).zip(placed) {
            let Placement {
                keys,
                targets,
                members,
            } = placement;
            let n = h.selectors.len();
            let first = self.free_rule_run(n).ok_or_else(|| {
                PolicyLoadError::Refused(format!(
                    "{}: no room for {n} more selectors in a row: the kernel holds {} selectors of generic hooks over every loaded policy (vigil_hook_rules); remove a policy first",
                    h.hook_path,
                    abi::HOOK_RULES
                ))
            })?;
            for owner in &mut self.hook_rule_owner[first..first + n] {
                *owner = Some(slot);
            }
            let flags = if h.syscall && targets.iter().any(|t| matches!(t, AttachTarget::Kprobe(_)))
            {
                abi::HOOK_SYSCALL
            } else {
                0
            } | match h.return_sock {
                Some(true) => abi::HOOK_TRACK_RETURN,
                Some(false) => abi::HOOK_UNTRACK_RETURN,
                None => 0,
            };
            let mut cfg = abi::HookConfig {
                hook_id: slot as u32,
                flags,
                rule_first: first as u16,
                rule_count: n as u16,
                scope: staged.scope,
                ..Default::default()
            };
            arg_config(&h, &mut cfg)
                .map_err(|e| PolicyLoadError::Refused(format!("{}: {e}", h.hook_path)))?;
            tracepoint_registers(&h, &targets, &mut cfg)
                .map_err(|e| PolicyLoadError::Refused(format!("{}: {e}", h.hook_path)))?;
            // A kretprobe's or uretprobe's return value has a register slot of its own, apart
            // from the arguments the entry may have kept for another hook on the same return
            // (what stands for a socket function's return puts its value in slot 0).
            // A return hook judged at the entry (it overrides) reads the slot too: 0 until its
            // Override puts the errno there.
            let return_slot = targets.iter().any(|t| {
                matches!(
                    t,
                    AttachTarget::Kretprobe { .. } | AttachTarget::Uprobe { ret: true, .. }
                ) || (matches!(t, AttachTarget::Kprobe(_)) && overrides(&h))
            });
            if let (true, Some(last)) = (return_slot && h.returns, h.args.len().checked_sub(1)) {
                cfg.arg_reg[last] = abi::HOOK_RETURN_REG;
            }
            let saves: Vec<(u64, u64)> = targets.iter().flat_map(AttachTarget::saves).collect();
            let (selectors, monitor, hook_path) =
                (h.selectors.clone(), h.monitor, h.hook_path.clone());
            self.hook_slots[slot] = Some(InstalledHook {
                policy: policy.to_string(),
                rule: h,
                keys: keys.clone(),
                links: Vec::new(),
                rule_first: first,
                written: Vec::new(),
                saves: saves.clone(),
                members,
                scope: staged.scope,
                cfg_flags: cfg.flags,
            });
            staged.hook_slots.push(slot);
            for (i, s) in selectors.iter().enumerate() {
                let rule_slot = (first + i) as u32;
                let (mut raw, wkeys) =
                    selector_rule(s, rule_slot, staged.policy_id, monitor, &self.host_ns).map_err(
                        |e| PolicyLoadError::Refused(format!("{hook_path}.selectors[{i}]: {e}")),
                    )?;
                self.generation = self.generation.wrapping_add(1);
                raw.generation = self.generation;
                self.insert_keys(policy, &wkeys)?;
                if let Some(installed) = self.hook_slots[slot].as_mut() {
                    installed.written.extend(wkeys);
                }
                self.hook_maps
                    .rules
                    .insert(rule_slot, HookRulePod(raw), 0)
                    .map_err(|e| map_err(policy, "vigil_hook_rules", e))?;
            }
            self.hook_configs
                .insert(slot as u32, HookConfigPod(cfg), 0)
                .map_err(|e| map_err(policy, "vigil_hook_configs", e))?;
            for &(entry, _) in &saves {
                self.write_entry_save(policy, entry)?;
            }
            for k in keys {
                self.write_hook_list(policy, k, staged.scope)?;
            }
            staged.attach.extend(targets.into_iter().map(|t| (slot, t)));
        }
        Ok(())
    }

    /// Writes whether the entry at `key` keeps the arguments for its return (and under which
    /// return key), from the hooks installed now, or removes the key when none wants them.
    fn write_entry_save(&mut self, policy: &str, key: u64) -> Result<(), PolicyLoadError> {
        let wanted = self
            .hook_slots
            .iter()
            .flatten()
            .flat_map(|h| &h.saves)
            .find(|(entry, _)| *entry == key)
            .map(|&(_, ret)| ret);
        match wanted {
            Some(ret) => self
                .entry_saves
                .insert(key, ret, 0)
                .map_err(|e| map_err(policy, "vigil_entry_saves", e)),
            None => {
                let _ = self.entry_saves.remove(&key);
                Ok(())
            }
        }
    }

    /// Records where a hook's program was attached, so removal can detach it.
    pub fn add_link(&mut self, slot: usize, link: HookLink) {
        if let Some(h) = self.hook_slots[slot].as_mut() {
            h.links.push(link);
        }
    }

    /// The generic hook in `slot`, for events.
    pub fn hook(&self, slot: u32) -> Option<&InstalledHook> {
        self.hook_slots.get(slot as usize).and_then(|h| h.as_ref())
    }

    /// The hook slots of policy `name`, but those in `except`.
    pub(super) fn hook_slots_of(&self, name: &str, except: &[usize]) -> Vec<usize> {
        (0..self.hook_slots.len())
            .filter(|s| !except.contains(s))
            .filter(|&s| {
                self.hook_slots[s]
                    .as_ref()
                    .is_some_and(|h| h.policy == name)
            })
            .collect()
    }

    /// Removes the hooks in `slots`; returns their links to detach.
    pub(super) fn remove_hook_slots(&mut self, slots: &[usize]) -> Vec<HookLink> {
        let mut links = Vec::new();
        for &slot in slots {
            let Some(h) = self.hook_slots.get_mut(slot).and_then(Option::take) else {
                continue;
            };
            // The attach points stop running the hook before its selectors go; other
            // policies' hooks on the same function stay.
            for &k in &h.keys {
                let _ = self.write_hook_list(&h.policy, k, h.scope);
            }
            for &(entry, _) in &h.saves {
                let _ = self.write_entry_save(&h.policy, entry);
            }
            // The selectors stop matching before their values go.
            let _ = self.hook_configs.remove(&(slot as u32));
            for i in h.rule_first..h.rule_first + h.rule.selectors.len() {
                let _ = self.hook_maps.rules.remove(&(i as u32));
                self.hook_rule_owner[i] = None;
            }
            let _ = self.write_keys(&h.policy, &h.written, false);
            links.extend(h.links);
        }
        links
    }
}
