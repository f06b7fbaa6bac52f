/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Running the generic hooks on an attach point: the maps that list them and describe each,
 * the evaluation of one hook (decode its arguments, walk its selectors, act, report) and the
 * loop that runs every hook on a point. Shared by the program families of hooks.bpf.c
 * (kprobes, kretprobes and system call entries) and sock_hooks.bpf.c (what stands for the
 * socket functions); each object carries its own copy of the static functions.
 */
#ifndef VIGIL_HOOK_RUN_H
#define VIGIL_HOOK_RUN_H

#include "hook_selectors.h"
#include "scope.h"

/* The hooks on each attach point that apply to every process, by key (see vigil_events.h);
 * an attach point where only scoped policies have hooks has an entry too (n 0, flag
 * VIGIL_LIST_SCOPED), so one lookup tells whether anything runs there. Room for a list hook on
 * every system call and the rest of the policies beside it. Lists are replaced whole (a hash
 * map's update is seen entire or not at all), and take memory only where they exist. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, VIGIL_HOOK_KEYS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u64);
	__type(value, struct vigil_hook_list);
} vigil_hooks SEC(".maps") __vigil_shared;

/* The hooks of scoped policies, by key and caller class: looked up only for a caller whose
 * class is not 0, on a key whose list says scoped policies hook it. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, VIGIL_CLASS_LISTS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct vigil_class_list_key);
	__type(value, struct vigil_hook_list);
} vigil_class_hooks SEC(".maps") __vigil_shared;

/* Each hook's description, by its slot. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, VIGIL_HOOK_SLOTS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u32);
	__type(value, struct vigil_hook_config);
} vigil_hook_configs SEC(".maps") __vigil_shared;

/*
 * run_hooks is what makes a program slow to verify (about half a second), so each program type
 * that runs hooks has one program that runs them, reached by tail call with the attach point's
 * key in e->lookup_key: the system call and socket tracepoint programs share vigil_tp_run_hooks,
 * the kprobe and kretprobe programs vigil_kprobe_run_hooks (a tail call stays within one program
 * type). The agent puts each runner in its array before it attaches a program that calls it.
 * (BTF tracepoint programs could not share one: each is bound to its tracepoint's prototype.)
 */
struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} vigil_tp_runner SEC(".maps") __vigil_shared;

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} vigil_kprobe_runner SEC(".maps") __vigil_shared;

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} vigil_raw_tp_runner SEC(".maps") __vigil_shared;

/*
 * A hook that reads a function's arguments and its return value: the entry's program keeps the
 * argument registers for the thread, under the return's key, where the agent listed the entry's
 * key in vigil_entry_saves (its value: the return's key); the return's program takes them back.
 * Where the return finds none (a recursive call's inner return took them, or the map evicted
 * them), the arguments read as zero: a pointer then decodes to nothing, never to another
 * call's data.
 */
struct vigil_entry_key {
	__u64 pid_tgid;
	__u64 ret_key;
};

struct vigil_entry_regs {
	__u64 regs[6];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u64);
	__type(value, __u64);
} vigil_entry_saves SEC(".maps") __vigil_shared;

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct vigil_entry_key);
	__type(value, struct vigil_entry_regs);
} vigil_entry_regs SEC(".maps") __vigil_shared;

/* At an entry: keeps the argument registers in e->regs for the return, if a hook wants them. */
static __always_inline void save_entry(struct hook_eval *e, const __u64 *ret_key)
{
	struct vigil_entry_key k = { .pid_tgid = bpf_get_current_pid_tgid(), .ret_key = *ret_key };
	struct vigil_entry_regs v;

	__builtin_memcpy(v.regs, e->regs, sizeof(v.regs));
	bpf_map_update_elem(&vigil_entry_regs, &k, &v, BPF_ANY);
}

/* At a return: the return value in its own slot (every hook on a return reads it there), then
 * the arguments the entry kept, if it kept them. */
static __always_inline void restore_entry(struct hook_eval *e, __u64 ret_key, __u64 rc)
{
	struct vigil_entry_key k = { .pid_tgid = bpf_get_current_pid_tgid(), .ret_key = ret_key };
	struct vigil_entry_regs *v = bpf_map_lookup_elem(&vigil_entry_regs, &k);

	for (int i = 0; i < 6; i++)
		e->regs[i] = 0;
	e->regs[VIGIL_HOOK_RETURN_REG] = rc;
	if (v) {
		__builtin_memcpy(e->regs, v->regs, sizeof(v->regs));
		bpf_map_delete_elem(&vigil_entry_regs, &k);
	}
}

/*
 * Which process a socket belongs to (TrackSock, UntrackSock): an event about a tracked socket
 * names that process, also where the kernel runs the hook in no process's context (a packet
 * received, a connection accepted in softirq). An LRU: a socket never untracked ages out.
 */
struct vigil_sock_owner {
	__u32 tgid;
	__u32 tid;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct vigil_sock_owner);
} vigil_sock_owners SEC(".maps") __vigil_shared;

/* The event names the process that owns its first tracked socket argument, but the one at
 * position `skip`: the socket a TrackSock is about to give an owner (a new socket may sit at the
 * address of a freed one that was never untracked, whose owner it must not inherit). A global
 * function: verified once. */
#ifdef VIGIL_DECODE_STR_ELSEWHERE
extern int name_sock_owner(__u32 skip);
#else
__noinline int name_sock_owner(__u32 skip)
{
	struct hook_eval *e = hook_eval();

	if (!e)
		return 0;
	for (__u32 i = 0; i < VIGIL_HOOK_ARGS; i++) {
		if (i >= e->cfg.nargs || i == skip || e->cfg.arg_type[i] != VIGIL_ARG_SOCK)
			continue;
		__u64 sk = e->regs[e->cfg.arg_reg[i] & 7];
		struct vigil_sock_owner *o = sk ? bpf_map_lookup_elem(&vigil_sock_owners, &sk) : 0;
		if (o) {
			e->ev.pid = o->tgid;
			e->ev.tid = o->tid;
			return 0;
		}
	}
	return 0;
}
#endif

/* TrackSock (the socket becomes the event's process's) or UntrackSock on socket `sk`. */
static __always_inline void sock_track(struct hook_eval *e, __u64 sk, int track)
{
	if (!sk)
		return;
	if (track) {
		struct vigil_sock_owner o = { .tgid = e->ev.pid, .tid = e->ev.tid };
		bpf_map_update_elem(&vigil_sock_owners, &sk, &o, BPF_ANY);
	} else {
		bpf_map_delete_elem(&vigil_sock_owners, &sk);
	}
}

/* Calls whose hooks did not run because a runner was missing from its array: counted, so that an
 * emptied or tampered array shows in the agent's stats instead of going quiet. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} vigil_runner_misses SEC(".maps") __vigil_shared;

/* Tail-calls the runner of `array`; returns (and counts) only when it is missing. */
#define RUN_HOOKS_BY_TAIL_CALL(ctx, array)                                                        \
	do {                                                                                       \
		__u32 __zero = 0;                                                                  \
		bpf_tail_call(ctx, &array, 0);                                                     \
		__u64 *__misses = bpf_map_lookup_elem(&vigil_runner_misses, &__zero);             \
		if (__misses)                                                                      \
			*__misses += 1;                                                            \
	} while (0)

struct emit_walk {
	__u32 off;
};

/* Appends argument `a`'s bytes behind the event, if it has any. Every index is the masked
 * `i`: older verifiers do not carry a bound from one register copy to another. */
static long emit_step(__u32 a, void *vctx)
{
	struct emit_walk *w = vctx;
	struct hook_eval *e = hook_eval();
	__u32 i = a;

	BOUND_SLOT(i);
	if (!e || i >= VIGIL_HOOK_ARGS || i >= e->cfg.nargs)
		return 1;
	__u8 t = e->cfg.arg_type[i];
	if (t != VIGIL_ARG_STRING && t != VIGIL_ARG_BUF && t != VIGIL_ARG_FILE && t != VIGIL_ARG_PATH &&
	    t != VIGIL_ARG_FD && t != VIGIL_ARG_AT_PATH && t != VIGIL_ARG_DENTRY &&
	    t != VIGIL_ARG_KIOCB && t != VIGIL_ARG_IOV && t != VIGIL_ARG_BINPRM)
		return 0;
	decode_str(i);
	e = hook_eval();
	BOUND_SLOT(i);
	if (!e)
		return 1;
	__u32 len = e->slen[i];
	__u32 off = w->off;
	if (len > VIGIL_MATCH_MAX)
		len = VIGIL_MATCH_MAX;
	if (off > (VIGIL_HOOK_ARGS - 1) * VIGIL_MATCH_LEN)
		return 1;
	bpf_probe_read_kernel(&e->strs[off], len, e->key[i].path);
	if (i < VIGIL_HOOK_ARGS)
		e->ev.str_len[i] = len;
	w->off = off + len;
	return 0;
}

/* Copies the string arguments behind the event and writes it. */
static __always_inline void emit(struct hook_eval *e)
{
	struct emit_walk w = {};

	__builtin_memset(e->ev.str_len, 0, sizeof(e->ev.str_len));
	/* run_hook cleared only the arguments the hook has: the rest leave zeroed, never as an
	 * earlier event's. The time is taken here, where a call becomes an event. */
	for (int i = 0; i < VIGIL_HOOK_ARGS; i++)
		if (i >= e->ev.nargs)
			__builtin_memset(&e->ev.args[i], 0, sizeof(e->ev.args[i]));
	e->ev.hdr.ktime = bpf_ktime_get_boot_ns();
	bpf_loop(VIGIL_HOOK_ARGS, emit_step, &w, 0);
	__u64 off = w.off;
	asm volatile("%0 &= 2047" : "+r"(off));
	__u64 size = sizeof(e->ev) + off;
	e->ev.hdr.size = size;
	vigil_emit(&e->ev, size, VIGIL_EVENT_HOOK);
}

/*
 * Whether the caller is the agent (or the next agent, while it takes over): its tgid and its
 * start (to the clock tick, as /proc shows it), so that a process reusing the pid of an agent
 * that died while its programs stayed pinned is not exempt from the policies.
 */
static __always_inline int vigil_is_agent(struct vigil_config *cfg, __u64 pid_tgid)
{
	__u32 tgid = pid_tgid >> 32;
	__u64 ticks;

	if (tgid == cfg->agent_tgid)
		ticks = cfg->agent_start_ticks;
	else if (tgid == cfg->successor_tgid)
		ticks = cfg->successor_start_ticks;
	else
		return 0;
	if (!tgid || !cfg->tick_ns)
		return 0;
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct task_struct *leader = BPF_CORE_READ(task, group_leader);
	return vigil_task_start_boottime(leader) / cfg->tick_ns == ticks;
}


/*
 * Override: the call fails with the errno of selector `slot`. The fmod_ret program on the
 * function (or on the LSM check the system call passes through) returns it instead of running
 * the function; it takes the verdict this thread leaves, which names the attach point that
 * judged. A hook reading the return value is judged at the entry when it overrides, and its
 * event reports the errno as the return value. A verdict that cannot be left still stops the
 * process (`named`: the event is about the process that runs). A global function: verified
 * once, apart from the runner it would otherwise grow.
 */
#ifdef VIGIL_DECODE_STR_ELSEWHERE
extern int override_call(__u32 slot, int named);
#else
__noinline int override_call(__u32 slot, int named)
{
	struct hook_eval *e = hook_eval();
	struct vigil_hook_rule *r = bpf_map_lookup_elem(&vigil_hook_rules, &slot);
	__u64 pid_tgid = bpf_get_current_pid_tgid();

	if (!e || !r)
		return 0;
	struct vigil_fmod_verdict v = { .file = e->lookup_key, .verdict = (__s32)r->arg };
	/* Another attach point's pending verdict (a system call on its way to its LSM check, this
	 * hook run from an interrupt) is never overwritten: this one then cannot be left. */
	struct vigil_fmod_verdict *pending = bpf_map_lookup_elem(&vigil_override_verdicts, &pid_tgid);
	long stored = -1;
	if (!pending || pending->file == v.file)
		stored = bpf_map_update_elem(&vigil_override_verdicts, &pid_tgid, &v, BPF_ANY);
	if (stored || (r->flags & VIGIL_RULE_KILL)) {
		if (named)
			bpf_send_signal(SIGKILL);
		if (stored && !named)
			return 0; /* neither denied nor killed: the event says posted */
	}
	for (__u32 i = 0; i < VIGIL_HOOK_ARGS; i++) {
		if (i >= e->cfg.nargs)
			break;
		if ((e->cfg.arg_reg[i] & 7) == VIGIL_HOOK_RETURN_REG &&
		    e->cfg.arg_type[i] == VIGIL_ARG_INT)
			e->ev.args[i].int_value = v.verdict;
	}
	/* Denied at an LSM check, before the effect. */
	e->ev.flags = VIGIL_POLICY_ENFORCED | VIGIL_POLICY_VIA_LSM;
	return 0;
}
#endif

/* Evaluates the hook `cfg` describes, the argument registers being in e->regs. */
static __always_inline void run_hook(struct hook_eval *e, struct vigil_hook_config *cfg)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct vigil_config *gcfg = vigil_config();

	if (!gcfg || gcfg->stopping || vigil_is_agent(gcfg, pid_tgid))
		return;
	__builtin_memcpy(&e->cfg, cfg, sizeof(e->cfg));
	/* Most calls match no selector and never become an event: only what the selectors read
	 * is cleared here (the fields before the arguments, and each argument the hook has);
	 * emit() clears the rest and takes the time. */
	__builtin_memset(&e->ev, 0, __builtin_offsetof(struct vigil_hook_event, args));
	e->decoded = 0;
	e->ev.hdr.kind = VIGIL_EVENT_HOOK;
	e->ev.pid = pid_tgid >> 32;
	e->ev.tid = (__u32)pid_tgid;
	e->ev.hook_id = cfg->hook_id;
	e->ev.nargs = cfg->nargs;
	e->ev.key = e->lookup_key;
	e->ev.rule = VIGIL_HOOK_NO_RULE;
	for (int i = 0; i < VIGIL_HOOK_ARGS; i++) {
		if (i >= cfg->nargs)
			break;
		__u8 t = cfg->arg_type[i];
		__u64 raw = e->regs[cfg->arg_reg[i] & 7];
		int user = cfg->arg_flags[i] & VIGIL_ARGF_USER;
		__builtin_memset(&e->ev.args[i], 0, sizeof(e->ev.args[i]));
		e->ev.args[i].type = t;
		if (t == VIGIL_ARG_INT)
			e->ev.args[i].int_value = normalize_int(raw, cfg->arg_bits[i], cfg->arg_flags[i]);
		else if (t == VIGIL_ARG_CONST)
			e->ev.args[i].int_value = cfg->konst;
		else if (t == VIGIL_ARG_SOCK && raw) {
			read_sock((struct sock *)raw, &e->ev.args[i].sock);
			if (e->connect_addr && !e->ev.args[i].sock.dport)
				read_connect_dest((void *)e->connect_addr, &e->ev.args[i].sock);
		}
		else if (t == VIGIL_ARG_SOCKADDR && raw)
			read_sockaddr((void *)raw, user, &e->ev.args[i].sock);
		else if (t == VIGIL_ARG_CRED || t == VIGIL_ARG_CAP || t == VIGIL_ARG_SKB ||
			 (t >= VIGIL_ARG_BPF_ATTR && t <= VIGIL_ARG_LOAD_INFO))
			decode_object(i);
	}

	if (cfg->rule_count) {
		__builtin_memset(&e->walk, 0, sizeof(e->walk));
		e->walk.first = cfg->rule_first;
		__u32 n = cfg->rule_count;
		bpf_loop(n < VIGIL_HOOK_RULES ? n : VIGIL_HOOK_RULES, rule_step, 0, 0);
		if (!e->walk.matched)
			return;
	}
	/* A scoped policy's hook is on the lists of its pods' classes only (vigil_class_hooks):
	 * it never runs for another caller, so nothing is checked here. */
	struct vigil_hook_rule *r = 0;
	if (e->cfg.rule_count) {
		__u32 slot = e->walk.matched - 1;
		r = bpf_map_lookup_elem(&vigil_hook_rules, &slot);
		if (!r)
			return;
		e->ev.rule = slot;
		e->ev.action = r->action;
		e->ev.action_arg = r->arg;
	}
	/* The socket a TrackSock gives an owner is not asked for its own. */
	__u32 skip = VIGIL_HOOK_ARGS;
	if (e->cfg.flags & VIGIL_HOOK_TRACK_RETURN)
		skip = e->cfg.nargs ? e->cfg.nargs - 1 : 0;
	else if (r && r->sock_action == VIGIL_SOCK_TRACK)
		skip = r->sock_arg;
	name_sock_owner(skip);
	e = hook_eval();
	if (!e)
		return;
	if (e->cfg.flags & (VIGIL_HOOK_TRACK_RETURN | VIGIL_HOOK_UNTRACK_RETURN))
		sock_track(e, e->regs[VIGIL_HOOK_RETURN_REG], e->cfg.flags & VIGIL_HOOK_TRACK_RETURN);
	if (!r) {
		emit(e);
		return;
	}
	if (r->sock_action && r->sock_arg < VIGIL_HOOK_ARGS)
		sock_track(e, e->regs[e->cfg.arg_reg[r->sock_arg % VIGIL_HOOK_ARGS] & 7],
			   r->sock_action == VIGIL_SOCK_TRACK);
	/* A signal reaches the process that runs, and only when the event names that process:
	 * where the kernel works for another (a tracked socket's packet in softirq), the process
	 * the event names is not the one a signal would hit, and none is sent. */
	int named = e->ev.pid == (__u32)(pid_tgid >> 32);
	if (r->flags & VIGIL_RULE_MONITOR) {
		if (r->action == VIGIL_ACTION_SIGKILL || r->action == VIGIL_ACTION_SIGNAL)
			e->ev.flags = VIGIL_POLICY_MONITOR;
		else if (r->action == VIGIL_ACTION_OVERRIDE)
			e->ev.flags = VIGIL_POLICY_MONITOR | VIGIL_POLICY_VIA_LSM;
	} else if (r->action == VIGIL_ACTION_OVERRIDE) {
		override_call(e->ev.rule, named);
		e = hook_eval();
		if (!e)
			return;
	} else if (r->action == VIGIL_ACTION_SIGKILL && named) {
		bpf_send_signal(SIGKILL);
		e->ev.flags = VIGIL_POLICY_ENFORCED;
	} else if (r->action == VIGIL_ACTION_SIGNAL && named) {
		bpf_send_signal(r->arg);
		e->ev.flags = VIGIL_POLICY_ENFORCED;
	}
	if (r->action == VIGIL_ACTION_NOPOST || (r->flags & VIGIL_RULE_NOPOST))
		return;
	emit(e);
}

/* Pointers only: the callback's frame and its callers' share the kernel's 512-byte stack.
 * The hooks for every process first, then those of the caller's class. */
struct hooks_walk {
	const struct vigil_hook_list *all;
	const struct vigil_hook_list *cls;
	struct hook_eval *e;
	__u32 n_all;
};

static long hook_step(__u32 i, void *vctx)
{
	struct hooks_walk *w = vctx;
	const struct vigil_hook_list *l = w->all;
	__u32 slot;

	if (i >= w->n_all) {
		l = w->cls;
		i -= w->n_all;
	}
	if (!l || i >= VIGIL_HOOKS_PER_KEY)
		return 1;
	_Static_assert(VIGIL_HOOKS_PER_KEY == 256, "the slot index is masked to 255");
	asm volatile("%0 &= 255" : "+r"(i)); /* kept where the compiler would drop the bound */
	slot = l->slot[i];
	struct vigil_hook_config *cfg = bpf_map_lookup_elem(&vigil_hook_configs, &slot);
	if (cfg)
		run_hook(w->e, cfg);
	return 0;
}

/* Runs the hooks of both lists, the argument registers being in e->regs. One loop body, one
 * call site: run_hook is verified once per program, however many policies share the point. */
static __always_inline void run_hooks(struct hook_eval *e, const struct vigil_hook_list *all,
				      const struct vigil_hook_list *cls)
{
	__u32 n_all = all->n < VIGIL_HOOKS_PER_KEY ? all->n : VIGIL_HOOKS_PER_KEY;
	__u32 n_cls = cls ? (cls->n < VIGIL_HOOKS_PER_KEY ? cls->n : VIGIL_HOOKS_PER_KEY) : 0;
	struct hooks_walk w = { .all = all, .cls = cls, .e = e, .n_all = n_all };

	bpf_loop(n_all + n_cls, hook_step, &w, 0);
}

/*
 * Whether any hook on the attach point `l` lists can apply to the caller: a hook for every
 * process, or a scoped one while the caller is in some scope. Called by every entry program
 * before its tail call, so a call from a process no policy covers ends after the key's lookup
 * and its class (the per-CPU memo, else one lookup), however many scoped policies hook the
 * function.
 */
static __always_inline int hooks_apply(const struct vigil_hook_list *l, struct hook_eval *e)
{
	return l->n || ((l->flags & VIGIL_LIST_SCOPED) && vigil_caller_class(&e->class_memo));
}

/* A runner's body: the hooks on the attach point whose key the calling program left. */
static __always_inline void run_hooks_of_key(void)
{
	struct hook_eval *e = hook_eval();

	if (!e)
		return;
	struct vigil_hook_list *hooks = bpf_map_lookup_elem(&vigil_hooks, &e->lookup_key);

	if (!hooks)
		return;
	/* A verdict an earlier call left unused (it failed before its LSM check) must not deny
	 * this one, which its hooks judge afresh. */
	if (hooks->flags & VIGIL_LIST_CLEARS_VERDICT) {
		__u64 thread = bpf_get_current_pid_tgid();
		struct vigil_fmod_verdict *v = bpf_map_lookup_elem(&vigil_override_verdicts, &thread);
		/* Only this point's own: another's may be on its way to its check. */
		if (v && v->file == e->lookup_key)
			bpf_map_delete_elem(&vigil_override_verdicts, &thread);
	}
	/* The class is found again, not taken from the entry program: a program that ran in
	 * between on this CPU (an interrupt's) may have left another in the scratch. The per-CPU
	 * memo makes it a few loads. */
	struct vigil_hook_list *cls = 0;
	if (hooks->flags & VIGIL_LIST_SCOPED) {
		struct vigil_class_list_key k = { .key = e->lookup_key,
						  .cls = vigil_caller_class(&e->class_memo) };
		if (k.cls)
			cls = bpf_map_lookup_elem(&vigil_class_hooks, &k);
	}
	run_hooks(e, hooks, cls);
}

/* syscalls/sys_enter_*: common fields (which tracepoint programs may not read), then
 * `int __syscall_nr` at 8 and the arguments from 16. */
struct syscall_enter_ctx {
	__u64 common;
	__s32 nr;
	__s32 _pad0;
	__u64 args[6];
};

#endif /* VIGIL_HOOK_RUN_H */
