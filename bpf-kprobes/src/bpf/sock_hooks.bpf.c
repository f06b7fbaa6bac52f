// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * What stands for the socket functions policies name (tcp_connect, tcp_close,
 * inet_csk_listen_start, inet_csk_accept's return, udp_sendmsg, udp_recvmsg), in the calling
 * process's context: the system calls' entries and returns, the TCP state changes and, from
 * 6.3, the socket receive tracepoint. Each runs the hooks on its stand-in's key
 * (VIGIL_HOOK_KEY_SOCK_STATE | code) like the generic programs do.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_endian.h>

/* hooks.bpf.c defines the argument decoder both families call. */
#define VIGIL_DECODE_STR_ELSEWHERE
#include "hook_run.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* The kernel's TCP states (include/net/tcp_states.h). */
#define VIGIL_TCP_ESTABLISHED 1
#define VIGIL_TCP_FIN_WAIT1 4
#define VIGIL_TCP_CLOSE 7
#define VIGIL_TCP_CLOSE_WAIT 8
#define VIGIL_TCP_LAST_ACK 9
#define VIGIL_TCP_LISTEN 10

#define VIGIL_ECONNREFUSED 111
#define VIGIL_ETIMEDOUT 110

/* The hooks on stand-in `code`, if a policy asked for them, with `sk` set as their first
 * argument and the stand-in's key in e->lookup_key. The caller has set e->regs[1] and [2] (a
 * datagram's first bytes in user memory and its length) and e->connect_addr (the call's peer
 * sockaddr: connect(), an unconnected send or receive), or zeroed them. */
static __always_inline struct vigil_hook_list *sock_hooks(struct hook_eval *e, __u64 code,
							  struct sock *sk)
{
	e->lookup_key = VIGIL_HOOK_KEY_SOCK_STATE | code;
	struct vigil_hook_list *hooks = bpf_map_lookup_elem(&vigil_hooks, &e->lookup_key);

	if (!hooks)
		return 0;
	e->regs[0] = (__u64)sk;
	for (int i = 3; i < 6; i++)
		e->regs[i] = 0;
	return hooks;
}

/* Runs them through the tracepoint runner (the calling program's last act: a tail call does
 * not return). */
static __always_inline void tail_sock_hook(void *ctx, struct hook_eval *e, __u64 code,
					   struct sock *sk)
{
	struct vigil_hook_list *hooks = sock_hooks(e, code, sk);

	if (hooks && hooks_apply(hooks, e))
		RUN_HOOKS_BY_TAIL_CALL(ctx, vigil_tp_runner);
}

/*
 * What stands for the socket functions policies name (the TCP ones where kprobes are not
 * available, the UDP ones on every kernel), each in the calling process's context so the
 * process is the one that connects, listens, closes, sends or receives:
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
 *   (busybox's and Go's resolvers use them). Which descriptors are connected UDP sockets is
 *   learnt at the return from connect(), so the writes of everything else cost one lookup.
 *
 * The datagram is the first buffer of the (first) message: its bytes are copied only when a
 * hook reads them (a DNS argument) and its selectors let it through.
 */
struct connect_call {
	__s64 fd;
	__u64 sk;   /* the datagram calls: the UDP socket found at entry (not looked up twice) */
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
		call->sk = (__u64)sk;
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
 * What a program needs only on one path lives in these subprograms' frames, and what the hooks
 * read goes straight into the per-CPU state, which the runner reads after the tail call.
 */

/* The socket of `fd` when it is one of `protocol` that the call `code` returning `ret` is a
 * stand-in for, else 0. A connect() that made `fd` a connected UDP socket is remembered for
 * its reads and writes instead. */
static __noinline __u64 stand_in_sock(__s64 fd, int protocol, __u64 code, __s64 ret)
{
	struct sock *sk = fd_sock(fd);

	if (!sk)
		return 0;
	int proto = BPF_CORE_READ(sk, sk_protocol);
	if (code == VIGIL_SOCK_STATE_CONNECT && proto == IPPROTO_UDP) {
		struct udp_fd_key k = {
			.tgid = bpf_get_current_pid_tgid() >> 32,
			.fd = (__s32)fd,
		};
		__u8 one = 1;

		if (ret == 0)
			bpf_map_update_elem(&vigil_udp_fds, &k, &one, BPF_ANY);
		return 0;
	}
	if (proto != protocol)
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
	/* The key in the per-CPU state, not this frame (see above). */
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
	tail_sock_hook(ctx, e, VIGIL_SOCK_STATE_UDP_SEND, sk);
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
 * receives, attached to their exit tracepoints (one program is one verification; the runner it
 * calls is verified once for all of them).
 */
SEC("tracepoint/syscalls/sys_exit_sock")
int vigil_sock_syscall_exit(struct syscall_exit_ctx *ctx)
{
	/* What the hooks read goes straight into the per-CPU state (see above). */
	struct hook_eval *e = hook_eval();
	__s64 fd = ctx->ret;
	__u64 code;
	int protocol = IPPROTO_TCP;

	if (!e)
		return 0;
	e->regs[0] = e->regs[1] = e->regs[2] = e->connect_addr = 0;
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
		e->regs[0] = c->sk;
		e->connect_addr = c->addr;
		e->regs[1] = c->buf;
		e->regs[2] = c->lenp;
		bpf_map_delete_elem(&vigil_connect_calls, &e->lookup_key);
		if (ctx->nr == VIGIL_NR_CONNECT) {
			code = VIGIL_SOCK_STATE_CONNECT;
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
	/* A datagram call's socket was found at entry; the others' are looked up now. */
	struct sock *sk = e->regs[0] ? (struct sock *)e->regs[0]
				     : (struct sock *)stand_in_sock(fd, protocol, code, ctx->ret);
	if (sk)
		tail_sock_hook(ctx, e, code, sk);
	return 0;
}

/*
 * Where the kernel has it (6.3+), every receive on a socket, in the receiving process once the
 * data is in the caller's buffer: a read() on a connected UDP socket is served here, so read()s
 * of files cost nothing (read()'s exit tracepoint, the fallback, runs for every read on the
 * machine). The call and its buffer are the caller's registers at entry.
 */
SEC("tracepoint/sock/sock_recv_length")
int vigil_sock_recv(struct trace_event_raw_sock_msg_length *ctx)
{
	struct sock *sk = (struct sock *)ctx->sk;

	if (ctx->ret <= 0 || BPF_CORE_READ(sk, sk_protocol) != IPPROTO_UDP)
		return 0;
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
	struct hook_eval *e = hook_eval();

	if (!regs || !e || BPF_CORE_READ(regs, orig_ax) != VIGIL_NR_READ)
		return 0;
	e->regs[1] = BPF_CORE_READ(regs, si);
	e->regs[2] = ctx->ret;
	e->connect_addr = 0;
	tail_sock_hook(ctx, e, VIGIL_SOCK_STATE_UDP_RECV, sk);
	return 0;
}

/* The TCP state changes (the classic tracepoint, not the BTF one: a tracepoint program can
 * tail-call the runner, a BTF tracepoint program would carry a runner of its own). */
SEC("tracepoint/sock/inet_sock_set_state")
int vigil_sock_state(struct trace_event_raw_inet_sock_set_state *ctx)
{
	struct sock *sk = (struct sock *)ctx->skaddr;
	int oldstate = ctx->oldstate, newstate = ctx->newstate;
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
	tail_sock_hook(ctx, e, code, sk);
	return 0;
}
