// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Generic hooks: one kprobe program attached to every kernel function a policy names, one
 * kretprobe program for the hooks on a function's return, a uprobe and a uretprobe program for
 * the functions of binaries, and, where kprobes are unavailable,
 * tracepoint programs (one per arity) attached to the enter tracepoint of every system call a
 * policy names (sock_hooks.bpf.c has what stands for the socket functions).
 * Each finds the hooks on its attach point in vigil_hooks (by the probed address, from
 * bpf_get_func_ip (5.15+), VIGIL_HOOK_KEY_RETURN flipped in it for a return, or by system call number)
 * and runs each in turn (through one runner program per program type, see hook_run.h): decodes the arguments it asks for, walks its selectors (first match
 * wins, as in Tetragon) and acts: reports, kills or signals. Every loaded policy that hooks a
 * function gets its own run.
 *
 * Integers and sockets are decoded up front. Strings, paths and buffers cost a copy or a path
 * walk, so they are decoded the first time a condition or the event needs them: a selector
 * whose integer condition fails never walks a path.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_endian.h>

#include "hook_run.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

__noinline int gate_admits(__u32 setup, __u32 gate, __u32 generation);

/* Whether the gates of list `hooks` turn this call away before its hooks run: the flags gate
 * (one AND) and the file gate (gate_admits). The arguments are in e->regs. */
static __always_inline int gate_closed(struct vigil_hook_list *hooks, struct hook_eval *e)
{
	if (hooks->gate_mask && !(e->regs[hooks->gate_mask_reg & 7] & hooks->gate_mask))
		return 1;
	return hooks->gate_ops &&
	       !gate_admits(hooks->gate_ops | (__u32)hooks->gate_reg << 8 |
				    (__u32)hooks->gate_type << 16,
			    hooks->gate_key, hooks->gate_generation);
}

SEC("kprobe/vigil_generic")
int vigil_kprobe(struct pt_regs *ctx)
{
	__u64 ip = bpf_get_func_ip(ctx);
	struct vigil_hook_list *hooks = bpf_map_lookup_elem(&vigil_hooks, &ip);
	__u64 *save = bpf_map_lookup_elem(&vigil_entry_saves, &ip);
	struct hook_eval *e = hook_eval();

	/* The registers are read before the two lookups are tested, each on its own: clang
	 * would OR the pointers to test both at once, which the verifier refuses. */
	if (!e)
		return 0;
	/* Copy the argument registers out with constant offsets (the verifier refuses computed
	 * offsets into the context), from the inner pt_regs for a syscall wrapper. */
	if (hooks && (hooks->flags & VIGIL_LIST_SYSCALL_REGS)) {
		struct pt_regs *regs = (struct pt_regs *)PT_REGS_PARM1(ctx);
		e->regs[0] = PT_REGS_PARM1_CORE_SYSCALL(regs);
		e->regs[1] = PT_REGS_PARM2_CORE_SYSCALL(regs);
		e->regs[2] = PT_REGS_PARM3_CORE_SYSCALL(regs);
		e->regs[3] = PT_REGS_PARM4_CORE_SYSCALL(regs);
		e->regs[4] = PT_REGS_PARM5_CORE_SYSCALL(regs);
	} else {
		e->regs[0] = PT_REGS_PARM1(ctx);
		e->regs[1] = PT_REGS_PARM2(ctx);
		e->regs[2] = PT_REGS_PARM3(ctx);
		e->regs[3] = PT_REGS_PARM4(ctx);
		e->regs[4] = PT_REGS_PARM5(ctx);
	}
	e->regs[5] = 0;
	/* No return value yet: a return hook judged here (it overrides) reads 0 until it does. */
	e->regs[VIGIL_HOOK_RETURN_REG] = 0;
	if (save)
		save_entry(e, save);
	if (!hooks)
		return 0;
	e->connect_addr = 0;
	e->lookup_key = ip;
	/* After the entry is saved: the hooks on the return have lists, and gates, of their own.
	 * The caller's class before the gate, which may read a path. */
	if (!hooks_apply(hooks, e) || gate_closed(hooks, e))
		return 0;
	RUN_HOOKS_BY_TAIL_CALL(ctx, vigil_kprobe_runner);
	return 0;
}

/* A hook on a function's return: the return value, and the arguments its entry kept. */
SEC("kretprobe/vigil_generic")
int vigil_kretprobe(struct pt_regs *ctx)
{
	__u64 key = bpf_get_func_ip(ctx) ^ VIGIL_HOOK_KEY_RETURN;
	struct vigil_hook_list *hooks = bpf_map_lookup_elem(&vigil_hooks, &key);
	struct hook_eval *e = hook_eval();

	if (!hooks || !e)
		return 0;
	restore_entry(e, key, PT_REGS_RC(ctx));
	e->connect_addr = 0;
	e->lookup_key = key;
	if (!hooks_apply(hooks, e))
		return 0;
	RUN_HOOKS_BY_TAIL_CALL(ctx, vigil_kprobe_runner);
	return 0;
}

/*
 * A uprobe on a function of a binary: the same hooks and runner as a kprobe (a uprobe program is
 * a kprobe program), found by the attach cookie the agent gave the attachment (its hooks' key),
 * since a user address differs from process to process. Pointer arguments are user memory (the
 * agent marks them so).
 */
SEC("uprobe/vigil_generic")
int vigil_uprobe(struct pt_regs *ctx)
{
	__u64 key = bpf_get_attach_cookie(ctx);
	struct vigil_hook_list *hooks = bpf_map_lookup_elem(&vigil_hooks, &key);
	__u64 *save = bpf_map_lookup_elem(&vigil_entry_saves, &key);
	struct hook_eval *e = hook_eval();

	/* The registers are read before the two lookups are tested, each on its own: clang
	 * would OR the pointers to test both at once, which the verifier refuses. */
	if (!e)
		return 0;
	e->regs[0] = PT_REGS_PARM1(ctx);
	e->regs[1] = PT_REGS_PARM2(ctx);
	e->regs[2] = PT_REGS_PARM3(ctx);
	e->regs[3] = PT_REGS_PARM4(ctx);
	e->regs[4] = PT_REGS_PARM5(ctx);
	e->regs[5] = 0;
	if (save)
		save_entry(e, save);
	if (!hooks || !hooks_apply(hooks, e))
		return 0;
	e->connect_addr = 0;
	e->lookup_key = key;
	RUN_HOOKS_BY_TAIL_CALL(ctx, vigil_kprobe_runner);
	return 0;
}

/* A uprobe on a function's return: the return value, and the arguments its entry kept. */
SEC("uretprobe/vigil_generic")
int vigil_uretprobe(struct pt_regs *ctx)
{
	__u64 key = bpf_get_attach_cookie(ctx);
	struct vigil_hook_list *hooks = bpf_map_lookup_elem(&vigil_hooks, &key);
	struct hook_eval *e = hook_eval();

	if (!hooks || !e)
		return 0;
	restore_entry(e, key, PT_REGS_RC(ctx));
	e->connect_addr = 0;
	e->lookup_key = key;
	if (!hooks_apply(hooks, e))
		return 0;
	RUN_HOOKS_BY_TAIL_CALL(ctx, vigil_kprobe_runner);
	return 0;
}

/*
 * The gate of a hook list (struct vigil_hook_list): 1 when its hooks must run, 0 when every
 * selector on the list compares the file of one argument with values and none of them matches
 * this call's file. The decision is path_hit's, cached per file for VIGIL_PATH_CACHE_NS as a
 * selector's is, so a call to a file no policy names (a write to a log, to /dev/null) costs the
 * descriptor's lookup and one cache lookup instead of the hooks' walk. The caller holds the list
 * and passes its gate as scalars (`setup`: gate_ops | gate_reg << 8 | gate_type << 16), so the
 * list is not looked up twice. The argument is set up as the first of a hook's (run_hook sets up
 * the hook's own before its selectors read them). A global function: verified once, apart from
 * the programs calling it.
 */
__noinline int gate_admits(__u32 setup, __u32 gate, __u32 generation)
{
	struct hook_eval *e = hook_eval();
	__u8 ops = setup & 0xff;

	if (!e || !ops)
		return 1;
	e->cfg.arg_type[0] = (setup >> 16) & 0xff;
	e->cfg.arg_reg[0] = (setup >> 8) & 7;
	e->cfg.arg_flags[0] = 0;
	e->decoded = 0;
	/* Each comparison's values under a key of its own (VIGIL_GATE_KEY), as its cached
	 * decisions are. */
	if ((ops & VIGIL_GATE_EQ) &&
	    path_hit(e, 0, VIGIL_OP_STR_EQ, VIGIL_GATE_KEY(gate, VIGIL_GATE_EQ), generation))
		return 1;
	if ((ops & VIGIL_GATE_PREFIX) &&
	    path_hit(e, 0, VIGIL_OP_STR_PREFIX, VIGIL_GATE_KEY(gate, VIGIL_GATE_PREFIX), generation))
		return 1;
	if ((ops & VIGIL_GATE_POSTFIX) &&
	    path_hit(e, 0, VIGIL_OP_STR_POSTFIX, VIGIL_GATE_KEY(gate, VIGIL_GATE_POSTFIX), generation))
		return 1;
	return 0;
}

/*
 * One program per arity: attaching checks that a program reads no further into the context
 * than the tracepoint's record reaches, so a program that reads N arguments attaches to system
 * calls with at least N. The agent picks the smallest that covers the arguments a hook reads.
 */
#define SYSCALL_ENTER(n)                                                                           \
	SEC("tracepoint/syscalls/vigil_generic")                                                   \
	int vigil_syscall_enter_##n(struct syscall_enter_ctx *ctx)                                 \
	{                                                                                          \
		__u64 key = VIGIL_HOOK_KEY_SYSCALL | (__u32)ctx->nr;                               \
		struct vigil_hook_list *hooks = bpf_map_lookup_elem(&vigil_hooks, &key);           \
		struct hook_eval *e = hook_eval();                                                 \
		if (!hooks || !e || !hooks_apply(hooks, e))                                        \
			return 0;                                                                  \
		for (int i = 0; i < n; i++)                                                        \
			e->regs[i] = ctx->args[i];                                                 \
		for (int i = n; i < 6; i++)                                                        \
			e->regs[i] = 0;                                                            \
		e->connect_addr = 0;                                                               \
		e->lookup_key = key;                                                               \
		if (gate_closed(hooks, e))                                                         \
			return 0;                                                                  \
		RUN_HOOKS_BY_TAIL_CALL(ctx, vigil_tp_runner);                                      \
		return 0;                                                                          \
	}

SYSCALL_ENTER(0)
SYSCALL_ENTER(1)
SYSCALL_ENTER(2)
SYSCALL_ENTER(3)
SYSCALL_ENTER(4)
SYSCALL_ENTER(5)
SYSCALL_ENTER(6)

/* The fields a policy tracepoint's hooks read, by the tracepoint's key. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, __u64);
	__type(value, struct vigil_tp_fields);
} vigil_tp_fields SEC(".maps") __vigil_shared;

/* Field `f` of the record at `base`. */
static __always_inline __u64 tp_field(__u64 base, const struct vigil_tp_field *f)
{
	__u64 v = 0;
	__u32 loc = 0;

	switch (f->kind) {
	case VIGIL_TP_INT:
		bpf_probe_read_kernel(&v, sizeof(v), (void *)(base + f->off));
		if (f->size < 8)
			v &= (1ull << ((f->size & 7) * 8)) - 1;
		return v;
	case VIGIL_TP_DATA_LOC:
		bpf_probe_read_kernel(&loc, sizeof(loc), (void *)(base + f->off));
		return base + (loc & 0xffff);
	case VIGIL_TP_ARRAY:
		return base + f->off;
	}
	return 0;
}

/*
 * A policy's tracepoint: the fields its hooks read, as the agent laid them out in
 * vigil_tp_fields from the tracepoint's format, in the argument registers. A tracepoint
 * program cannot tell which tracepoint runs it (the record's common fields are filled in after
 * the programs ran), so each slot is a program of its own, with the slot in its key; the agent
 * gives each tracepoint a slot.
 */
#define TRACEPOINT(n)                                                                              \
	SEC("tracepoint/vigil_generic")                                                            \
	int vigil_tracepoint_##n(void *ctx)                                                        \
	{                                                                                          \
		void *record = ctx;                                                                \
		__u64 base = 0, key = VIGIL_HOOK_KEY_TP | n;                                       \
		struct vigil_hook_list *hooks = bpf_map_lookup_elem(&vigil_hooks, &key);           \
		struct vigil_tp_fields *fields = bpf_map_lookup_elem(&vigil_tp_fields, &key);      \
		struct hook_eval *e = hook_eval();                                                 \
		if (!hooks)                                                                        \
			return 0;                                                                  \
		if (!fields || !e || !hooks_apply(hooks, e))                                       \
			return 0;                                                                  \
		/* The record's address as a number: the fields' offsets are the map's. */         \
		bpf_probe_read_kernel(&base, sizeof(base), &record);                               \
		for (int i = 0; i < VIGIL_HOOK_ARGS; i++)                                          \
			e->regs[i] = tp_field(base, &fields->f[i]);                                \
		e->regs[5] = 0;                                                                    \
		e->regs[VIGIL_HOOK_RETURN_REG] = 0;                                                \
		e->connect_addr = 0;                                                               \
		e->lookup_key = key;                                                               \
		RUN_HOOKS_BY_TAIL_CALL(ctx, vigil_tp_runner);                                      \
		return 0;                                                                          \
	}

TRACEPOINT(0)
TRACEPOINT(1)
TRACEPOINT(2)
TRACEPOINT(3)

/*
 * A policy's raw tracepoint: the tracepoint's own arguments (its TP_PROTO), copied out of the
 * context rather than loaded from it, so that one program serves tracepoints of any arity.
 * A raw tracepoint program cannot tell which tracepoint runs it, so each slot is a program of
 * its own, with the slot in its key; the agent gives each raw tracepoint a slot.
 */
#define RAW_TRACEPOINT(n)                                                                          \
	SEC("raw_tracepoint/vigil_generic")                                                        \
	int vigil_raw_tp_##n(struct bpf_raw_tracepoint_args *ctx)                                  \
	{                                                                                          \
		__u64 key = VIGIL_HOOK_KEY_RAW_TP | n;                                             \
		struct vigil_hook_list *hooks = bpf_map_lookup_elem(&vigil_hooks, &key);           \
		struct hook_eval *e = hook_eval();                                                 \
		if (!hooks || !e || !hooks_apply(hooks, e))                                        \
			return 0;                                                                  \
		bpf_probe_read_kernel(e->regs, 6 * sizeof(__u64), ctx);                            \
		e->regs[VIGIL_HOOK_RETURN_REG] = 0;                                                \
		e->connect_addr = 0;                                                               \
		e->lookup_key = key;                                                               \
		RUN_HOOKS_BY_TAIL_CALL(ctx, vigil_raw_tp_runner);                                  \
		return 0;                                                                          \
	}

RAW_TRACEPOINT(0)
RAW_TRACEPOINT(1)
RAW_TRACEPOINT(2)
RAW_TRACEPOINT(3)
_Static_assert(VIGIL_TP_SLOTS == 4, "one program per slot");

SEC("raw_tracepoint/vigil_run_hooks")
int vigil_raw_tp_run_hooks(void *ctx)
{
	run_hooks_of_key();
	return 0;
}

/* The runners the programs above (and the socket tracepoint programs) tail-call: see
 * hook_run.h. Never attached. */
SEC("tracepoint/vigil/run_hooks")
int vigil_tp_run_hooks(void *ctx)
{
	run_hooks_of_key();
	return 0;
}

SEC("kprobe/vigil_run_hooks")
int vigil_kprobe_run_hooks(struct pt_regs *ctx)
{
	run_hooks_of_key();
	return 0;
}
