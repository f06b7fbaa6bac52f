// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Generic hooks: one kprobe program attached to every kernel function a policy names, and one
 * tracepoint program attached to the enter tracepoint of every system call a policy names where
 * kprobes are unavailable (and, for the TCP functions, one on the TCP state changes they make).
 * Each finds the hooks on its attach point in vigil_hooks (by the probed address, from
 * bpf_get_func_ip (5.15+), or by system call number) and runs each in turn: decodes the
 * arguments it asks for, walks its selectors (first match wins, as in Tetragon) and acts:
 * reports, kills or signals. Every loaded policy that hooks a function gets its own run.
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

#include "hook_selectors.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* The hooks on each attach point, by key (see vigil_events.h). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u64);
	__type(value, struct vigil_hook_list);
} vigil_hooks SEC(".maps");

/* Each hook's description, by its slot. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, VIGIL_MAX_RULES);
	__type(key, __u32);
	__type(value, struct vigil_hook_config);
} vigil_hook_configs SEC(".maps");

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
	    t != VIGIL_ARG_FD && t != VIGIL_ARG_AT_PATH)
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
	bpf_loop(VIGIL_HOOK_ARGS, emit_step, &w, 0);
	__u64 off = w.off;
	asm volatile("%0 &= 2047" : "+r"(off));
	__u64 size = sizeof(e->ev) + off;
	e->ev.hdr.size = size;
	vigil_emit(&e->ev, size, VIGIL_EVENT_HOOK);
}

/* Evaluates the hook `cfg` describes, the argument registers being in e->regs. */
static __always_inline void run_hook(struct hook_eval *e, struct vigil_hook_config *cfg)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct vigil_config *gcfg = vigil_config();

	if (gcfg && gcfg->agent_tgid == pid_tgid >> 32)
		return;
	__builtin_memcpy(&e->cfg, cfg, sizeof(e->cfg));
	__builtin_memset(&e->ev, 0, sizeof(e->ev));
	e->decoded = 0;
	e->ev.hdr.kind = VIGIL_EVENT_HOOK;
	e->ev.hdr.ktime = bpf_ktime_get_boot_ns();
	e->ev.pid = pid_tgid >> 32;
	e->ev.tid = (__u32)pid_tgid;
	e->ev.hook_id = cfg->hook_id;
	e->ev.nargs = cfg->nargs;
	e->ev.rule = VIGIL_HOOK_NO_RULE;
	for (int i = 0; i < VIGIL_HOOK_ARGS; i++) {
		if (i >= cfg->nargs)
			break;
		__u8 t = cfg->arg_type[i];
		__u64 raw = e->regs[cfg->arg_reg[i] & 7];
		int user = cfg->arg_flags[i] & VIGIL_ARGF_USER;
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
	}

	if (cfg->rule_count) {
		__builtin_memset(&e->walk, 0, sizeof(e->walk));
		e->walk.first = cfg->rule_first;
		__u32 n = cfg->rule_count;
		bpf_loop(n < VIGIL_HOOK_RULES ? n : VIGIL_HOOK_RULES, rule_step, 0, 0);
		if (!e->walk.matched)
			return;
		__u32 slot = e->walk.matched - 1;
		struct vigil_hook_rule *r = bpf_map_lookup_elem(&vigil_hook_rules, &slot);
		if (!r)
			return;
		e->ev.rule = slot;
		e->ev.action = r->action;
		e->ev.action_arg = r->arg;
		if (r->flags & VIGIL_RULE_MONITOR) {
			if (r->action == VIGIL_ACTION_SIGKILL || r->action == VIGIL_ACTION_SIGNAL)
				e->ev.flags = VIGIL_POLICY_MONITOR;
		} else if (r->action == VIGIL_ACTION_SIGKILL) {
			bpf_send_signal(SIGKILL);
			e->ev.flags = VIGIL_POLICY_ENFORCED;
		} else if (r->action == VIGIL_ACTION_SIGNAL) {
			bpf_send_signal(r->arg);
			e->ev.flags = VIGIL_POLICY_ENFORCED;
		}
		if (r->action == VIGIL_ACTION_NOPOST || (r->flags & VIGIL_RULE_NOPOST))
			return;
	}
	emit(e);
}

/* Pointers only: the callback's frame and its callers' share the kernel's 512-byte stack. */
struct hooks_walk {
	const struct vigil_hook_list *list;
	struct hook_eval *e;
};

static long hook_step(__u32 i, void *vctx)
{
	struct hooks_walk *w = vctx;
	__u32 slot;

	if (i >= VIGIL_HOOKS_PER_KEY)
		return 1;
	_Static_assert(VIGIL_HOOKS_PER_KEY == 8, "BOUND_SLOT masks to 8");
	BOUND_SLOT(i); /* kept where the compiler would drop the bound */
	slot = w->list->slot[i];
	struct vigil_hook_config *cfg = bpf_map_lookup_elem(&vigil_hook_configs, &slot);
	if (cfg)
		run_hook(w->e, cfg);
	return 0;
}

/* Runs every hook on an attach point, the argument registers being in e->regs. One loop
 * body: run_hook is verified once per program, however many policies share the point. */
static __always_inline void run_hooks(struct hook_eval *e, const struct vigil_hook_list *l)
{
	struct hooks_walk w = { .list = l, .e = e };
	__u32 n = l->n;

	bpf_loop(n < VIGIL_HOOKS_PER_KEY ? n : VIGIL_HOOKS_PER_KEY, hook_step, &w, 0);
}

/* The first hook on an attach point (they agree on what the point is). */
static __always_inline struct vigil_hook_config *first_hook(const struct vigil_hook_list *l)
{
	__u32 slot = l->slot[0];

	return l->n ? bpf_map_lookup_elem(&vigil_hook_configs, &slot) : 0;
}

SEC("kprobe/vigil_generic")
int vigil_kprobe(struct pt_regs *ctx)
{
	__u64 ip = bpf_get_func_ip(ctx);
	struct vigil_hook_list *hooks = bpf_map_lookup_elem(&vigil_hooks, &ip);
	struct hook_eval *e = hook_eval();

	if (!hooks || !e)
		return 0;
	struct vigil_hook_config *cfg = first_hook(hooks);
	if (!cfg)
		return 0;
	/* Copy the argument registers out with constant offsets (the verifier refuses computed
	 * offsets into the context), from the inner pt_regs for a syscall wrapper. */
	if (cfg->flags & VIGIL_HOOK_SYSCALL) {
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
	e->connect_addr = 0;
	run_hooks(e, hooks);
	return 0;
}

/* A hook on a function's return: the one value it reads is the return value. */
SEC("kretprobe/vigil_generic")
int vigil_kretprobe(struct pt_regs *ctx)
{
	__u64 key = bpf_get_func_ip(ctx) | VIGIL_HOOK_KEY_RETURN;
	struct vigil_hook_list *hooks = bpf_map_lookup_elem(&vigil_hooks, &key);
	struct hook_eval *e = hook_eval();

	if (!hooks || !e)
		return 0;
	e->regs[0] = PT_REGS_RC(ctx);
	for (int i = 1; i < 6; i++)
		e->regs[i] = 0;
	e->connect_addr = 0;
	run_hooks(e, hooks);
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
#define SYSCALL_ENTER(n)                                                                           \
	SEC("tracepoint/syscalls/vigil_generic")                                                   \
	int vigil_syscall_enter_##n(struct syscall_enter_ctx *ctx)                                 \
	{                                                                                          \
		__u64 key = VIGIL_HOOK_KEY_SYSCALL | (__u32)ctx->nr;                               \
		struct vigil_hook_list *hooks = bpf_map_lookup_elem(&vigil_hooks, &key);           \
		struct hook_eval *e = hook_eval();                                                 \
		if (!hooks || !e)                                                                  \
			return 0;                                                                  \
		for (int i = 0; i < n; i++)                                                        \
			e->regs[i] = ctx->args[i];                                                 \
		for (int i = n; i < 6; i++)                                                        \
			e->regs[i] = 0;                                                            \
		e->connect_addr = 0;                                                               \
		run_hooks(e, hooks);                                                                  \
		return 0;                                                                          \
	}

SYSCALL_ENTER(1)
SYSCALL_ENTER(2)
SYSCALL_ENTER(3)
SYSCALL_ENTER(4)
SYSCALL_ENTER(5)
SYSCALL_ENTER(6)

/* The kernel's TCP states (include/net/tcp_states.h). */
#define VIGIL_TCP_ESTABLISHED 1
#define VIGIL_TCP_FIN_WAIT1 4
#define VIGIL_TCP_CLOSE 7
#define VIGIL_TCP_CLOSE_WAIT 8
#define VIGIL_TCP_LAST_ACK 9
#define VIGIL_TCP_LISTEN 10

#define VIGIL_ECONNREFUSED 111
#define VIGIL_ETIMEDOUT 110

/* Runs the hooks on stand-in `code`, if a policy asked for them, with `sk` as the first
 * argument. The caller has set e->regs[1] and [2] (a datagram's first bytes in user memory and
 * its length) and e->connect_addr (the call's peer sockaddr: connect(), an unconnected send or
 * receive), or zeroed them. */
static __always_inline void run_sock_hook(struct hook_eval *e, __u64 code, struct sock *sk)
{
	e->lookup_key = VIGIL_HOOK_KEY_SOCK_STATE | code;
	struct vigil_hook_list *hooks = bpf_map_lookup_elem(&vigil_hooks, &e->lookup_key);

	if (!hooks)
		return;
	e->regs[0] = (__u64)sk;
	for (int i = 3; i < 6; i++)
		e->regs[i] = 0;
	run_hooks(e, hooks);
}

/*
 * Where kprobes are not available, what stands for the TCP functions policies name, each in the
 * calling process's context so the process is the one that connects, listens or closes:
 *
 * - tcp_connect: the return from connect() on a TCP socket that sent its SYN (it is connecting
 *   or connected, or the peer refused or never answered). At that point the source port is
 *   chosen, which it is not yet when the socket enters SYN_SENT. The descriptor is kept from
 *   the call's entry.
 * - inet_csk_listen_start: a TCP socket entering LISTEN (listen()).
 * - tcp_close: a connection moving from ESTABLISHED to FIN_WAIT1 or from CLOSE_WAIT to
 *   LAST_ACK (close() or shutdown()).
 * - inet_csk_accept's return: the return from accept() or accept4() with a TCP socket, the new
 *   descriptor resolved to it.
 * - udp_sendmsg: the return from sendto(), sendmsg() or sendmmsg() that sent on a UDP socket;
 *   an unconnected socket's destination is the call's.
 * - udp_recvmsg: the return from recvfrom(), recvmsg() or recvmmsg() that received on a UDP
 *   socket; the peer is the address the call filled in, for an unconnected socket.
 * - Both, for a connected UDP socket: the entry to write() and the return from read()
 *   (busybox's and Go's resolvers use them). Which descriptors are connected UDP sockets is learnt at the return
 *   from connect(), so the reads and writes of everything else cost one lookup.
 *
 * The datagram is the first buffer of the (first) message: its bytes are copied only when a
 * hook reads them (a DNS argument) and its selectors let it through.
 */
struct connect_call {
	__s64 fd;
	__u64 addr; /* the peer's sockaddr, in user memory */
	__u64 buf;  /* the datagram's first buffer, in user memory */
	__u64 lenp; /* sendmmsg, recvmmsg: the first message's msg_len, in user memory */
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64); /* pid_tgid of a thread inside connect() */
	__type(value, struct connect_call);
} vigil_connect_calls SEC(".maps");

/* Descriptors of connected UDP sockets, by process, while a UDP hook is loaded. */
struct udp_fd_key {
	__u32 tgid;
	__s32 fd;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct udp_fd_key);
	__type(value, __u8);
} vigil_udp_fds SEC(".maps");

static __always_inline int hook_on(__u64 code)
{
	__u64 key = VIGIL_HOOK_KEY_SOCK_STATE | code;

	return bpf_map_lookup_elem(&vigil_hooks, &key) != 0;
}

/* The x86-64 numbers of the system calls the programs below serve. */
#define VIGIL_NR_READ 0
#define VIGIL_NR_WRITE 1
#define VIGIL_NR_SENDTO 44
#define VIGIL_NR_RECVFROM 45
#define VIGIL_NR_SENDMSG 46
#define VIGIL_NR_RECVMSG 47
#define VIGIL_NR_CONNECT 42
#define VIGIL_NR_ACCEPT 43
#define VIGIL_NR_ACCEPT4 288
#define VIGIL_NR_RECVMMSG 299
#define VIGIL_NR_SENDMMSG 307

/* Keeps the descriptor, peer and buffer of a call whose return a hook reads. The datagram
 * calls are kept for UDP sockets only: a TCP server's sends and receives cost one lookup. */
static __always_inline void keep_call(__u64 code, struct connect_call *call)
{
	__u64 id = bpf_get_current_pid_tgid();

	/* A connect() matters to the TCP hook, and to the UDP hooks for the reads and writes
	 * on the socket it connects. */
	if (code == VIGIL_SOCK_STATE_CONNECT) {
		if (!hook_on(code) && !hook_on(VIGIL_SOCK_STATE_UDP_SEND) &&
		    !hook_on(VIGIL_SOCK_STATE_UDP_RECV))
			return;
	} else if (!hook_on(code)) {
		return;
	}
	if (code != VIGIL_SOCK_STATE_CONNECT) {
		struct sock *sk = fd_sock(call->fd);
		if (!sk || BPF_CORE_READ(sk, sk_protocol) != IPPROTO_UDP)
			return;
	}
	bpf_map_update_elem(&vigil_connect_calls, &id, call, BPF_ANY);
}

/* The first message of a msghdr (sendmsg, recvmsg) or mmsghdr vector (sendmmsg, recvmmsg):
 * its peer sockaddr, its first buffer and, for a vector, where its length is written. */
static __always_inline void keep_msg(__u64 code, __s64 fd, const void *msgp, int vector)
{
	struct connect_call call = { .fd = fd };
	struct user_msghdr msg = {};
	struct iovec iov = {};

	bpf_probe_read_user(&msg, sizeof(msg), msgp);
	bpf_probe_read_user(&iov, sizeof(iov), msg.msg_iov);
	call.addr = (__u64)msg.msg_name;
	call.buf = (__u64)iov.iov_base;
	if (vector)
		call.lenp = (__u64)msgp + sizeof(struct user_msghdr); /* mmsghdr.msg_len */
	keep_call(code, &call);
}

/* connect(fd, addr, len), sendmsg(fd, msg, flags), sendmmsg(fd, msgvec, n, flags),
 * recvmsg(fd, msg, flags) and recvmmsg(fd, msgvec, n, flags, timeout). */
SEC("tracepoint/syscalls/sys_enter_connect")
int vigil_connect_enter(struct syscall_enter_ctx *ctx)
{
	__s64 fd = (__s64)ctx->args[0];
	const void *msg = (const void *)ctx->args[1];

	switch (ctx->nr) {
	case VIGIL_NR_CONNECT: {
		struct connect_call call = { .fd = fd, .addr = ctx->args[1] };
		keep_call(VIGIL_SOCK_STATE_CONNECT, &call);
		break;
	}
	case VIGIL_NR_SENDMSG:
		keep_msg(VIGIL_SOCK_STATE_UDP_SEND, fd, msg, 0);
		break;
	case VIGIL_NR_SENDMMSG:
		keep_msg(VIGIL_SOCK_STATE_UDP_SEND, fd, msg, 1);
		break;
	case VIGIL_NR_RECVMSG:
		keep_msg(VIGIL_SOCK_STATE_UDP_RECV, fd, msg, 0);
		break;
	case VIGIL_NR_RECVMMSG:
		keep_msg(VIGIL_SOCK_STATE_UDP_RECV, fd, msg, 1);
		break;
	}
	return 0;
}

/* sendto(fd, buf, len, flags, addr, addrlen) and recvfrom(fd, buf, len, flags, addr, addrlen). */
SEC("tracepoint/syscalls/sys_enter_sendto")
int vigil_sendto_enter(struct syscall_enter_ctx *ctx)
{
	struct connect_call call = {
		.fd = (__s64)ctx->args[0],
		.buf = ctx->args[1],
		.addr = ctx->args[4],
	};

	keep_call(ctx->nr == VIGIL_NR_RECVFROM ? VIGIL_SOCK_STATE_UDP_RECV : VIGIL_SOCK_STATE_UDP_SEND,
		  &call);
	return 0;
}

/*
 * The exit program's own frame is the first of the chain of frames run_hook's loops build, which
 * together must fit the kernel's 512 bytes (6.1 rounds each up to 32): what it needs only on
 * one path lives in these subprograms' frames instead.
 */

/* Remembers `fd` when connect() made it a connected UDP socket; whether it did. */
static __noinline int remember_udp_fd(__s64 fd, __s64 ret)
{
	struct sock *sk = fd_sock(fd);
	struct udp_fd_key k = {
		.tgid = bpf_get_current_pid_tgid() >> 32,
		.fd = (__s32)fd,
	};
	__u8 one = 1;

	if (ret != 0 || !sk || BPF_CORE_READ(sk, sk_protocol) != IPPROTO_UDP)
		return 0;
	bpf_map_update_elem(&vigil_udp_fds, &k, &one, BPF_ANY);
	return 1;
}

/* The socket of `fd` when it is one of `protocol` that the call `code` returning `ret` is a
 * stand-in for, else 0. */
static __noinline __u64 stand_in_sock(__s64 fd, int protocol, __u64 code, __s64 ret)
{
	struct sock *sk = fd_sock(fd);

	if (!sk || BPF_CORE_READ(sk, sk_protocol) != protocol)
		return 0;
	if (code == VIGIL_SOCK_STATE_CONNECT &&
	    BPF_CORE_READ(sk, __sk_common.skc_state) == VIGIL_TCP_CLOSE &&
	    ret != -VIGIL_ECONNREFUSED && ret != -VIGIL_ETIMEDOUT)
		return 0; /* no SYN left: a bad address, a bound port in use, ... */
	return (__u64)sk;
}

/* The length the kernel wrote into a vector call's first message. */
static __noinline __u64 first_msg_len(__u64 lenp)
{
	__u32 n = 0;

	bpf_probe_read_user(&n, sizeof(n), (void *)lenp);
	return n;
}

/* A read() on a connected UDP socket: its buffer, for the return to find the datagram in. */
static __noinline int keep_read(__s64 fd, __u64 buf)
{
	struct connect_call call = { .fd = fd, .buf = buf };

	keep_call(VIGIL_SOCK_STATE_UDP_RECV, &call);
	return 0;
}

/*
 * read(fd, buf, count) and write(fd, buf, count) on a connected UDP socket. A write's datagram
 * is whole at entry, so the send hooks run here and write()'s exit tracepoint is never attached
 * (every write on the machine would pay for it); a read's is there only at the return.
 */
SEC("tracepoint/syscalls/sys_enter_read")
int vigil_rw_enter(struct syscall_enter_ctx *ctx)
{
	struct hook_eval *e = hook_eval();

	if (!e)
		return 0;
	/* The key in the per-CPU state: this frame starts run_hook's chain (see below). */
	struct udp_fd_key *k = (struct udp_fd_key *)&e->lookup_key;
	k->tgid = bpf_get_current_pid_tgid() >> 32;
	k->fd = (__s32)ctx->args[0];
	if (!bpf_map_lookup_elem(&vigil_udp_fds, k))
		return 0;
	if (ctx->nr == VIGIL_NR_READ)
		return keep_read((__s64)ctx->args[0], ctx->args[1]);
	struct sock *sk = (struct sock *)stand_in_sock((__s64)ctx->args[0], IPPROTO_UDP,
						       VIGIL_SOCK_STATE_UDP_SEND, 0);
	if (!sk)
		return 0;
	e->regs[1] = ctx->args[1];
	e->regs[2] = ctx->args[2];
	e->connect_addr = 0;
	run_sock_hook(e, VIGIL_SOCK_STATE_UDP_SEND, sk);
	return 0;
}

/* syscalls/sys_exit_*: common fields, `int __syscall_nr` at 8, the return value at 16. */
struct syscall_exit_ctx {
	__u64 common;
	__s32 nr;
	__s32 _pad0;
	__s64 ret;
};


/*
 * One program for the returns from connect(), accept(), accept4() and the datagram sends and
 * receives, attached to their exit tracepoints: run_hook makes a program slow to verify, so
 * there is one such program here rather than one per system call.
 */
SEC("tracepoint/syscalls/sys_exit_sock")
int vigil_sock_syscall_exit(struct syscall_exit_ctx *ctx)
{
	/* What the hooks read goes straight into the per-CPU state: this frame is the first of
	 * the chain run_hook's loops build (see above). */
	struct hook_eval *e = hook_eval();
	__s64 fd = ctx->ret;
	__u64 code;
	int protocol = IPPROTO_TCP;

	if (!e)
		return 0;
	e->regs[1] = e->regs[2] = e->connect_addr = 0;
	if (ctx->nr == VIGIL_NR_ACCEPT || ctx->nr == VIGIL_NR_ACCEPT4) {
		if (ctx->ret < 0)
			return 0;
		code = VIGIL_SOCK_STATE_ACCEPT;
	} else {
		/* connect() and the datagram calls: what was kept at entry. */
		e->lookup_key = bpf_get_current_pid_tgid();
		struct connect_call *c = bpf_map_lookup_elem(&vigil_connect_calls, &e->lookup_key);

		if (!c)
			return 0;
		fd = c->fd;
		e->connect_addr = c->addr;
		e->regs[1] = c->buf;
		e->regs[2] = c->lenp;
		bpf_map_delete_elem(&vigil_connect_calls, &e->lookup_key);
		if (ctx->nr == VIGIL_NR_CONNECT) {
			code = VIGIL_SOCK_STATE_CONNECT;
			if (remember_udp_fd(fd, ctx->ret))
				return 0;
		} else {
			/* Failed, or no message of a vector call went. */
			if (ctx->ret < 0 || (ctx->ret == 0 && e->regs[2]))
				return 0;
			int recv = ctx->nr == VIGIL_NR_RECVFROM || ctx->nr == VIGIL_NR_RECVMSG ||
				   ctx->nr == VIGIL_NR_RECVMMSG || ctx->nr == VIGIL_NR_READ;
			code = recv ? VIGIL_SOCK_STATE_UDP_RECV : VIGIL_SOCK_STATE_UDP_SEND;
			protocol = IPPROTO_UDP;
			/* The vector calls return the messages, the others the bytes. */
			e->regs[2] = e->regs[2] ? first_msg_len(e->regs[2]) : ctx->ret;
		}
	}
	struct sock *sk = (struct sock *)stand_in_sock(fd, protocol, code, ctx->ret);
	if (sk)
		run_sock_hook(e, code, sk);
	return 0;
}

/*
 * Where the kernel has it (6.3+), every receive on a socket, in the receiving process once the
 * data is in the caller's buffer: a read() on a connected UDP socket is served here, so read()s
 * of files cost nothing (read()'s exit tracepoint, the fallback, runs for every read on the
 * machine). The call and its buffer are the caller's registers at entry.
 */
SEC("tp_btf/sock_recv_length")
int BPF_PROG(vigil_sock_recv, struct sock *sk, int ret, int flags)
{
	if (ret <= 0 || BPF_CORE_READ(sk, sk_protocol) != IPPROTO_UDP)
		return 0;
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
	struct hook_eval *e = hook_eval();

	if (!regs || !e || BPF_CORE_READ(regs, orig_ax) != VIGIL_NR_READ)
		return 0;
	e->regs[1] = BPF_CORE_READ(regs, si);
	e->regs[2] = ret;
	e->connect_addr = 0;
	run_sock_hook(e, VIGIL_SOCK_STATE_UDP_RECV, sk);
	return 0;
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(vigil_sock_state, struct sock *sk, int oldstate, int newstate)
{
	struct hook_eval *e = hook_eval();
	__u64 code;

	if (!e || BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP)
		return 0;
	if (newstate == VIGIL_TCP_LISTEN)
		code = VIGIL_SOCK_STATE_LISTEN;
	else if ((oldstate == VIGIL_TCP_ESTABLISHED && newstate == VIGIL_TCP_FIN_WAIT1) ||
		 (oldstate == VIGIL_TCP_CLOSE_WAIT && newstate == VIGIL_TCP_LAST_ACK))
		code = VIGIL_SOCK_STATE_CLOSE;
	else
		return 0;
	e->regs[1] = e->regs[2] = e->connect_addr = 0;
	run_sock_hook(e, code, sk);
	return 0;
}
