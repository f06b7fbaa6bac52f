// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Generic hooks: one kprobe program attached to every kernel function a policy names, and one
 * tracepoint program attached to the enter tracepoint of every system call a policy names where
 * kprobes are unavailable. Each finds its hook's description in vigil_hooks (by the probed
 * address, from bpf_get_func_ip (5.15+), or by system call number) and reports the arguments it
 * asks for, decoded by type: integers from registers, sockets from struct sock.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_endian.h>

#include "vigil_events.h"
#include "maps.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define AF_INET 2
#define AF_INET6 10

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u64);
	__type(value, struct vigil_hook_config);
} vigil_hooks SEC(".maps");

static __always_inline void read_sock(struct sock *sk, struct vigil_sock_value *v)
{
	v->family = BPF_CORE_READ(sk, __sk_common.skc_family);
	v->type = BPF_CORE_READ(sk, sk_type);
	v->protocol = BPF_CORE_READ(sk, sk_protocol);
	v->state = BPF_CORE_READ(sk, __sk_common.skc_state);
	v->sport = BPF_CORE_READ(sk, __sk_common.skc_num);
	v->dport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	if (v->family == AF_INET) {
		__u32 s = BPF_CORE_READ(sk, __sk_common.skc_rcv_saddr);
		__u32 d = BPF_CORE_READ(sk, __sk_common.skc_daddr);
		__builtin_memcpy(v->saddr, &s, 4);
		__builtin_memcpy(v->daddr, &d, 4);
	} else if (v->family == AF_INET6) {
		BPF_CORE_READ_INTO(&v->saddr, sk, __sk_common.skc_v6_rcv_saddr.in6_u.u6_addr8);
		BPF_CORE_READ_INTO(&v->daddr, sk, __sk_common.skc_v6_daddr.in6_u.u6_addr8);
	}
}

/* Fills and emits the event for `cfg`, the raw argument values given in `raw`. */
static __always_inline void report(struct vigil_hook_config *cfg, __u64 *raw)
{
	struct vigil_scratch *s = vigil_scratch();
	if (!s)
		return;
	struct vigil_hook_event *ev = (struct vigil_hook_event *)&s->exec;
	__u64 pid_tgid = bpf_get_current_pid_tgid();

	__builtin_memset(ev, 0, sizeof(*ev));
	ev->hdr.kind = VIGIL_EVENT_HOOK;
	ev->hdr.size = sizeof(*ev);
	ev->hdr.ktime = bpf_ktime_get_boot_ns();
	ev->pid = pid_tgid >> 32;
	ev->tid = (__u32)pid_tgid;
	ev->hook_id = cfg->hook_id;
	ev->nargs = cfg->nargs;
	for (int i = 0; i < VIGIL_HOOK_ARGS; i++) {
		if (i >= cfg->nargs)
			break;
		ev->args[i].type = cfg->arg_type[i];
		if (cfg->arg_type[i] == VIGIL_ARG_INT)
			ev->args[i].int_value = (__s64)raw[i];
		else if (cfg->arg_type[i] == VIGIL_ARG_SOCK && raw[i])
			read_sock((struct sock *)raw[i], &ev->args[i].sock);
	}
	vigil_emit(ev, sizeof(*ev), VIGIL_EVENT_HOOK);
}

SEC("kprobe/vigil_generic")
int vigil_kprobe(struct pt_regs *ctx)
{
	__u64 ip = bpf_get_func_ip(ctx);
	struct vigil_hook_config *cfg = bpf_map_lookup_elem(&vigil_hooks, &ip);
	__u64 all[8] = {}, raw[VIGIL_HOOK_ARGS] = {};

	if (!cfg)
		return 0;
	/* Copy the argument registers out with constant offsets (the verifier refuses computed
	 * offsets into the context), from the inner pt_regs for a syscall wrapper. */
	if (cfg->flags & VIGIL_HOOK_SYSCALL) {
		struct pt_regs *regs = (struct pt_regs *)PT_REGS_PARM1(ctx);
		all[0] = PT_REGS_PARM1_CORE_SYSCALL(regs);
		all[1] = PT_REGS_PARM2_CORE_SYSCALL(regs);
		all[2] = PT_REGS_PARM3_CORE_SYSCALL(regs);
		all[3] = PT_REGS_PARM4_CORE_SYSCALL(regs);
		all[4] = PT_REGS_PARM5_CORE_SYSCALL(regs);
	} else {
		all[0] = PT_REGS_PARM1(ctx);
		all[1] = PT_REGS_PARM2(ctx);
		all[2] = PT_REGS_PARM3(ctx);
		all[3] = PT_REGS_PARM4(ctx);
		all[4] = PT_REGS_PARM5(ctx);
	}
	for (int i = 0; i < VIGIL_HOOK_ARGS; i++)
		raw[i] = all[cfg->arg_reg[i] & 7];
	report(cfg, raw);
	return 0;
}

/* syscalls/sys_enter_*: common fields (which tracepoint programs may not read), then
 * `int __syscall_nr` at 8 and the arguments from 16. */
struct syscall_enter_ctx {
	__u64 common;
	__s32 nr;
	__s32 _pad0;
	__u64 args[6];
};

/*
 * One program per arity: attaching checks that a program reads no further into the context
 * than the tracepoint's record reaches, so a program that reads N arguments attaches to system
 * calls with at least N. The agent picks the smallest that covers the arguments a hook reads.
 */
static __always_inline int syscall_enter(struct syscall_enter_ctx *ctx, __u64 *all)
{
	__u64 key = VIGIL_HOOK_KEY_SYSCALL | (__u32)ctx->nr;
	struct vigil_hook_config *cfg = bpf_map_lookup_elem(&vigil_hooks, &key);
	__u64 raw[VIGIL_HOOK_ARGS] = {};

	if (!cfg)
		return 0;
	for (int i = 0; i < VIGIL_HOOK_ARGS; i++)
		raw[i] = all[cfg->arg_reg[i] & 7];
	report(cfg, raw);
	return 0;
}

#define SYSCALL_ENTER(n)                                                                           \
	SEC("tracepoint/syscalls/vigil_generic")                                                   \
	int vigil_syscall_enter_##n(struct syscall_enter_ctx *ctx)                                 \
	{                                                                                          \
		__u64 all[8] = {};                                                                 \
		for (int i = 0; i < n; i++)                                                        \
			all[i] = ctx->args[i];                                                     \
		return syscall_enter(ctx, all);                                                    \
	}

SYSCALL_ENTER(1)
SYSCALL_ENTER(2)
SYSCALL_ENTER(3)
SYSCALL_ENTER(4)
SYSCALL_ENTER(5)
SYSCALL_ENTER(6)
