/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Decoding a generic hook's arguments: integers cut to their width, sockets and socket
 * addresses, and strings, buffers and paths (from a file, a path or a descriptor) into the
 * per-call key slots, on first use.
 */
#ifndef VIGIL_HOOK_ARGS_H
#define VIGIL_HOOK_ARGS_H

#include "hook_state.h"
#include "path.h"
#include "route.h"
#include "task.h"

static __always_inline void read_sock(struct sock *sk, struct vigil_sock_value *v)
{
	v->family = BPF_CORE_READ(sk, __sk_common.skc_family);
	v->type = BPF_CORE_READ(sk, sk_type);
	v->protocol = BPF_CORE_READ(sk, sk_protocol);
	v->state = BPF_CORE_READ(sk, __sk_common.skc_state);
	v->sport = BPF_CORE_READ(sk, __sk_common.skc_num);
	v->dport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	v->netns = BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
	v->cookie = (__u64)sk;
	vigil_sock_route(sk, v);
	if (v->protocol == IPPROTO_TCP) {
		/* Data octets sent (retransmissions included), and received (a FIN received counts
		 * one, which the agent takes off). */
		struct tcp_sock *tp = (struct tcp_sock *)sk;
		v->bytes_sent = BPF_CORE_READ(tp, bytes_sent);
		v->bytes_received = BPF_CORE_READ(tp, bytes_received);
	}
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

/* A packet: where the kernel's headers say its IP header is, then its transport header (or, not
 * set yet, the one after the IP header) for the ports of TCP, UDP and SCTP. IPv6 extension
 * headers are not walked: their next header is the protocol then. */
static __always_inline void read_skb(struct sk_buff *skb, struct vigil_skb_value *v)
{
	v->len = BPF_CORE_READ(skb, len);
	v->hash = BPF_CORE_READ(skb, hash);
	v->priority = BPF_CORE_READ(skb, priority);
	v->mark = BPF_CORE_READ(skb, mark);
	unsigned char *head = BPF_CORE_READ(skb, head);
	__u16 nh = BPF_CORE_READ(skb, network_header);
	__u16 th = BPF_CORE_READ(skb, transport_header);
	__u8 first = 0;
	__u32 l4;

	if (nh == (__u16)~0U || bpf_probe_read_kernel(&first, 1, head + nh) < 0)
		return;
	if (first >> 4 == 4) {
		struct iphdr ip;
		if (bpf_probe_read_kernel(&ip, sizeof(ip), head + nh) < 0)
			return;
		v->family = AF_INET;
		v->protocol = ip.protocol;
		__builtin_memcpy(v->saddr, &ip.saddr, 4);
		__builtin_memcpy(v->daddr, &ip.daddr, 4);
		l4 = nh + ip.ihl * 4;
	} else if (first >> 4 == 6) {
		struct ipv6hdr ip6;
		if (bpf_probe_read_kernel(&ip6, sizeof(ip6), head + nh) < 0)
			return;
		v->family = AF_INET6;
		v->protocol = ip6.nexthdr;
		__builtin_memcpy(v->saddr, &ip6.saddr, 16);
		__builtin_memcpy(v->daddr, &ip6.daddr, 16);
		l4 = nh + sizeof(ip6);
	} else {
		return;
	}
	if (th != (__u16)~0U && th > nh)
		l4 = th;
	if (v->protocol == IPPROTO_TCP || v->protocol == IPPROTO_UDP || v->protocol == IPPROTO_SCTP) {
		__u16 ports[2] = {};
		bpf_probe_read_kernel(ports, sizeof(ports), head + l4);
		v->sport = bpf_ntohs(ports[0]);
		v->dport = bpf_ntohs(ports[1]);
	}
}

/* The iov_iter of kernels before 6.0: no `ubuf`, no ITER_UBUF (the pointer union starts with
 * `iov`). A CO-RE flavor, so one object loads on both. */
struct iov_iter___pre_ubuf {
	const struct iovec *iov;
} __attribute__((preserve_access_index));

/* A capability set: `kernel_cap_t` is one 64-bit word (`val`) since Linux 6.3 and two 32-bit
 * ones (`cap[2]`, low word first) before; the 8 bytes at its address read the same on both. */
static __always_inline __u64 read_caps(const void *set)
{
	__u64 v = 0;

	bpf_probe_read_kernel(&v, sizeof(v), set);
	return v;
}

static __always_inline void read_cred(const struct cred *c, struct vigil_cred_value *v)
{
	v->uid = BPF_CORE_READ(c, uid.val);
	v->gid = BPF_CORE_READ(c, gid.val);
	v->euid = BPF_CORE_READ(c, euid.val);
	v->egid = BPF_CORE_READ(c, egid.val);
	v->suid = BPF_CORE_READ(c, suid.val);
	v->sgid = BPF_CORE_READ(c, sgid.val);
	v->fsuid = BPF_CORE_READ(c, fsuid.val);
	v->fsgid = BPF_CORE_READ(c, fsgid.val);
	v->securebits = BPF_CORE_READ(c, securebits);
	v->cap_permitted = read_caps(__builtin_preserve_access_index(&c->cap_permitted));
	v->cap_effective = read_caps(__builtin_preserve_access_index(&c->cap_effective));
	v->cap_inheritable = read_caps(__builtin_preserve_access_index(&c->cap_inheritable));
	struct user_namespace *ns = BPF_CORE_READ(c, user_ns);
	if (!ns)
		return;
	v->ns_level = BPF_CORE_READ(ns, level);
	v->ns_uid = BPF_CORE_READ(ns, owner.val);
	v->ns_gid = BPF_CORE_READ(ns, group.val);
	v->ns_inum = BPF_CORE_READ(ns, ns.inum);
}

static __always_inline long read_mem(void *dst, __u32 size, const void *src, int user)
{
	return user ? bpf_probe_read_user(dst, size, src) : bpf_probe_read_kernel(dst, size, src);
}

/* A sockaddr's address and port go in both halves, so SAddr and DAddr both compare them. */
static __always_inline void read_sockaddr(const void *sa, int user, struct vigil_sock_value *v)
{
	__u16 family = 0, port = 0;

	read_mem(&family, sizeof(family), sa, user);
	v->family = family;
	if (family != AF_INET && family != AF_INET6)
		return;
	read_mem(&port, sizeof(port), sa + 2, user);
	v->sport = v->dport = bpf_ntohs(port);
	if (family == AF_INET)
		read_mem(v->saddr, 4, sa + 4, user);
	else
		read_mem(v->saddr, 16, sa + 8, user);
	__builtin_memcpy(v->daddr, v->saddr, 16);
}

/* The destination of a connect() whose failure cleared it from the socket, from the call's
 * sockaddr. */
static __always_inline void read_connect_dest(const void *sa, struct vigil_sock_value *v)
{
	__u16 family = 0, port = 0;

	bpf_probe_read_user(&family, sizeof(family), sa);
	if (family != v->family)
		return;
	bpf_probe_read_user(&port, sizeof(port), sa + 2);
	v->dport = bpf_ntohs(port);
	if (family == AF_INET)
		bpf_probe_read_user(v->daddr, 4, sa + 4);
	else if (family == AF_INET6)
		bpf_probe_read_user(v->daddr, 16, sa + 8);
}

static __always_inline __s64 normalize_int(__u64 v, __u8 bits, __u8 flags)
{
	int sign = flags & VIGIL_ARGF_SIGNED;

	if (bits == 8)
		return sign ? (__s64)(__s8)v : (__s64)(__u8)v;
	if (bits == 16)
		return sign ? (__s64)(__s16)v : (__s64)(__u16)v;
	if (bits == 32)
		return sign ? (__s64)(__s32)v : (__s64)(__u32)v;
	return (__s64)v;
}

/* The socket behind descriptor `fd` of the current process, or NULL when it is no socket (a
 * socket's file and the socket point at each other). */
static __always_inline struct sock *fd_sock(int fd)
{
	struct file *f = fd_file(fd);
	struct socket *so;

	if (!f)
		return 0;
	so = BPF_CORE_READ(f, private_data);
	if (!so || BPF_CORE_READ(so, file) != f)
		return 0;
	return BPF_CORE_READ(so, sk);
}

/* Walks `p` and keeps its first VIGIL_MATCH_MAX bytes in e->key[a]. */
static __always_inline void decode_path(struct hook_eval *e, __u32 a, const struct path *p)
{
	struct vigil_scratch *s = vigil_scratch();
	__u32 pos;

	if (!s)
		return;
	int trunc = vigil_resolve_path(p, s, &pos) < 0;
	__u32 len = (VIGIL_PATH_MAX - pos) & (VIGIL_PATH_MAX - 1);
	if (len > VIGIL_MATCH_MAX) {
		len = VIGIL_MATCH_MAX;
		trunc = 1;
	}
	bpf_probe_read_kernel(e->key[a].path, len & (VIGIL_MATCH_LEN - 1), &s->path[pos & (VIGIL_PATH_MAX - 1)]);
	e->slen[a] = len;
	e->ev.args[a].int_value = trunc;
	e->ev.args[a].file.mode = BPF_CORE_READ(p, dentry, d_inode, i_mode);
}

/* The `struct path` a file, path, descriptor, dentry or kiocb argument names. A dentry has no
 * mount: its path ends at its filesystem's root, as Tetragon reads it. */
static __always_inline int arg_path(__u8 type, void *ptr, struct path *p)
{
	struct file *f = 0;

	if (type == VIGIL_ARG_PATH)
		return ptr ? bpf_probe_read_kernel(p, sizeof(*p), ptr) : -1;
	if (type == VIGIL_ARG_DENTRY) {
		__builtin_memset(p, 0, sizeof(*p));
		p->dentry = ptr;
		return ptr ? 0 : -1;
	}
	if (type == VIGIL_ARG_KIOCB && ptr)
		f = BPF_CORE_READ((struct kiocb *)ptr, ki_filp);
	if (type == VIGIL_ARG_FILE)
		f = ptr;
	else if (type == VIGIL_ARG_FD)
		f = fd_file((long)(int)(__u64)ptr);
	if (!f)
		return -1;
	return BPF_CORE_READ_INTO(p, f, f_path);
}

#define VIGIL_AT_FDCWD -100

/*
 * One byte of a file name being normalized (the agent's per-CPU state holds everything: the
 * loop's own frame stays small, as the kernel's 512-byte limit on a call chain asks). A '/' or
 * the end closes a component: '' and '.' vanish, '..' drops the last one kept, any other is
 * appended.
 */
static long norm_step(__u32 i, void *unused)
{
	struct hook_eval *e = hook_eval();

	if (!e)
		return 1;
	__u32 at = e->norm.pos + i;
	if (at > e->norm.end)
		return 1;
	__u8 c = at < e->norm.end ? e->norm.in[at & 511] : '/';
	__u32 o = e->norm.out_len, k = e->norm.comp;
	if (c != '/') {
		if (o + 1 + k < 255)
			e->norm.out[(o + 1 + k) & 255] = c;
		else
			e->norm.trunc = 1;
		e->norm.comp = k + 1;
		return 0;
	}
	e->norm.comp = 0;
	if (k == 0 || (k == 1 && e->norm.out[(o + 1) & 255] == '.'))
		return 0;
	if (k == 2 && e->norm.out[(o + 1) & 255] == '.' && e->norm.out[(o + 2) & 255] == '.') {
		__u32 d = e->norm.depth;
		if (d) {
			e->norm.depth = d - 1;
			e->norm.out_len = e->norm.slash[(d - 1) & 63];
		}
		return 0;
	}
	if (e->norm.depth < 64)
		e->norm.slash[e->norm.depth++ & 63] = o;
	else
		e->norm.trunc = 1; /* deeper than '..' can be followed */
	e->norm.out[o & 255] = '/';
	o += 1 + k;
	if (o > 255) {
		o = 255;
		e->norm.trunc = 1;
	}
	e->norm.out_len = o;
	return 0;
}

/* Joins the name read into norm.in[256, norm.end) to the directory path in e->key[a] (none
 * for an absolute name) and leaves the normalized result in e->key[a]. Symbolic
 * links are not followed (their targets are the kernel's to resolve): this is the name the
 * process used, made absolute. */
static __always_inline void at_path_join(struct hook_eval *e, __u32 a)
{
	__u32 start = 256;

	BOUND_SLOT(a);
	if (e->norm.in[256] != '/') {
		__u32 blen = e->slen[a];
		if (blen > 254) {
			blen = 254; /* its first bytes, which prefixes compare; the name is lost */
			e->norm.trunc = 1;
			e->norm.end = 256;
		}
		start = 255 - blen;
		bpf_probe_read_kernel(&e->norm.in[start & 255], blen & 255, e->key[a].path);
		e->norm.in[255] = '/';
	}
	e->norm.pos = start;
	e->norm.out_len = e->norm.comp = e->norm.depth = 0;
	bpf_loop(512, norm_step, 0, 0);
	__u32 len = e->norm.out_len;
	if (len == 0) {
		e->norm.out[0] = '/';
		len = 1;
	}
	__builtin_memset(e->key[a].path, 0, sizeof(e->key[a].path));
	bpf_probe_read_kernel(e->key[a].path, len & 255, e->norm.out);
	e->slen[a] = len;
	e->ev.args[a].int_value = e->norm.trunc;
	e->ev.args[a].file.mode = 0; /* the directory's, read by decode_path: not the file's */
}

/* Reads kernel-object argument `a` (a credential, a capability set, a packet) into its value
 * slot. A global function, like decode_str: each reader is verified once, not once per
 * argument position in every runner's unrolled loop. */
/* The module loader's struct load_info is internal to it (kernel/module/internal.h) and not in
 * every kernel's BTF: the fields read, relocated by name where it is, never read where not. */
struct load_info___vigil {
	const char *name;
	struct module *mod;
	bool sig_ok;
} __attribute__((preserve_access_index));

/*
 * A kernel object, as Tetragon reports it:
 * - union bpf_attr (a program being loaded): n[0] program type, n[1] instructions, its name;
 * - struct bpf_map: n[0] map type, n[1] key size, n[2] value size, n[3] entries, its name;
 * - struct perf_event: n[0..1] config, n[2..3] probe offset, n[4] type, and the function a
 *   kprobe event names (the opener's string, read from its memory while it opens);
 * - struct module: its name, n[0..1] taints, n[2] 2 (no signature to tell of);
 * - struct load_info (a module being loaded): its name, n[0..1] taints, n[2] whether its
 *   signature verified (2 where the kernel does not check signatures).
 */
static __always_inline void read_kobj(__u8 t, void *raw, struct vigil_kobj_value *v)
{
	__u64 x = 0;

	if (t == VIGIL_ARG_BPF_ATTR) {
		union bpf_attr *a = raw;
		v->n[0] = BPF_CORE_READ(a, prog_type);
		v->n[1] = BPF_CORE_READ(a, insn_cnt);
		bpf_probe_read_kernel(v->name, 16, &a->prog_name);
	} else if (t == VIGIL_ARG_BPF_MAP) {
		struct bpf_map *m = raw;
		v->n[0] = BPF_CORE_READ(m, map_type);
		v->n[1] = BPF_CORE_READ(m, key_size);
		v->n[2] = BPF_CORE_READ(m, value_size);
		v->n[3] = BPF_CORE_READ(m, max_entries);
		bpf_probe_read_kernel(v->name, 16, &m->name);
	} else if (t == VIGIL_ARG_PERF_EVENT) {
		struct perf_event *p = raw;
		x = BPF_CORE_READ(p, attr.config);
		v->n[0] = x;
		v->n[1] = x >> 32;
		x = BPF_CORE_READ(p, attr.probe_offset);
		v->n[2] = x;
		v->n[3] = x >> 32;
		v->n[4] = BPF_CORE_READ(p, attr.type);
		x = BPF_CORE_READ(p, attr.kprobe_func);
		if (x)
			bpf_probe_read_user_str(v->name, sizeof(v->name), (void *)x);
	} else if (t == VIGIL_ARG_MODULE) {
		struct module *m = raw;
		x = BPF_CORE_READ(m, taints);
		v->n[0] = x;
		v->n[1] = x >> 32;
		v->n[2] = 2;
		bpf_probe_read_kernel_str(v->name, sizeof(v->name), &m->name);
	} else if (t == VIGIL_ARG_LOAD_INFO && bpf_core_type_exists(struct load_info___vigil)) {
		struct load_info___vigil *l = raw;
		struct module *m = BPF_CORE_READ(l, mod);
		if (m) {
			x = BPF_CORE_READ(m, taints);
			v->n[0] = x;
			v->n[1] = x >> 32;
		}
		v->n[2] = 2;
		if (bpf_core_field_exists(l->sig_ok))
			v->n[2] = BPF_CORE_READ_BITFIELD_PROBED(l, sig_ok);
		const char *name = BPF_CORE_READ(l, name);
		if (name)
			bpf_probe_read_kernel_str(v->name, sizeof(v->name), name);
	}
}

#ifdef VIGIL_DECODE_STR_ELSEWHERE
extern int decode_object(__u32 a);
#else
__noinline int decode_object(__u32 a)
{
	struct hook_eval *e = hook_eval();

	if (!e || a >= VIGIL_HOOK_ARGS)
		return 0;
	BOUND_SLOT(a);
	if (a >= VIGIL_HOOK_ARGS)
		return 0;
	__u8 t = e->cfg.arg_type[a];
	__u64 raw = e->regs[e->cfg.arg_reg[a] & 7];
	if (!raw)
		return 0;
	if (t == VIGIL_ARG_CRED)
		read_cred((const struct cred *)raw, &e->ev.args[a].cred);
	else if (t == VIGIL_ARG_CAP)
		e->ev.args[a].int_value = read_caps((const void *)raw);
	else if (t == VIGIL_ARG_SKB)
		read_skb((struct sk_buff *)raw, &e->ev.args[a].skb);
	else if (t >= VIGIL_ARG_BPF_ATTR && t <= VIGIL_ARG_LOAD_INFO)
		read_kobj(t, (void *)raw, &e->ev.args[a].kobj);
	return 0;
}
#endif

/* Decodes string-like argument `a` into e->key[a], once per call. A global function: the
 * verifier checks it once, not once per place that calls it. One object defines it (the
 * linker resolves the others' calls to it): see VIGIL_DECODE_STR_ELSEWHERE. */
#ifdef VIGIL_DECODE_STR_ELSEWHERE
extern int decode_str(__u32 a);
#else
__noinline int decode_str(__u32 a)
{
	struct hook_eval *e = hook_eval();
	struct path p;

	if (!e || a >= VIGIL_HOOK_ARGS || (e->decoded & (1u << a)))
		return 0;
	BOUND_SLOT(a);
	e->decoded |= 1u << a;
	__builtin_memset(e->key[a].path, 0, sizeof(e->key[a].path));
	e->slen[a] = 0;
	__u8 type = e->cfg.arg_type[a];
	int user = e->cfg.arg_flags[a] & VIGIL_ARGF_USER;
	void *ptr = (void *)e->regs[e->cfg.arg_reg[a] & 7];
	long n;

	switch (type) {
	case VIGIL_ARG_STRING:
		n = user ? bpf_probe_read_user_str(e->key[a].path, VIGIL_MATCH_MAX + 1, ptr)
			 : bpf_probe_read_kernel_str(e->key[a].path, VIGIL_MATCH_MAX + 1, ptr);
		if (n <= 0)
			return 0;
		e->slen[a] = n - 1;
		e->ev.args[a].int_value = n == VIGIL_MATCH_MAX + 1;
		break;
	case VIGIL_ARG_BUF: {
		__u64 want = e->regs[e->cfg.arg_bits[a] & 7];
		__u32 len = want > VIGIL_MATCH_MAX ? VIGIL_MATCH_MAX : want;
		if (read_mem(e->key[a].path, len & (VIGIL_MATCH_LEN - 1), ptr, user) < 0)
			return 0;
		e->slen[a] = len;
		e->ev.args[a].int_value = want > VIGIL_MATCH_MAX;
		break;
	}
	case VIGIL_ARG_IOV: {
		/* The iterator's next bytes: a user buffer (ITER_UBUF) or its first iovec's. The
		 * pointer shares the union's first slot in every layout (ubuf, iov, __iov). */
		struct iov_iter *it = ptr;
		__u8 kind = BPF_CORE_READ(it, iter_type);
		__u64 count = BPF_CORE_READ(it, count);
		__u64 off = BPF_CORE_READ(it, iov_offset);
		void *at;
		int ubuf = -1;
		if (bpf_core_field_exists(it->ubuf))
			at = BPF_CORE_READ(it, ubuf);
		else
			at = (void *)BPF_CORE_READ((struct iov_iter___pre_ubuf *)it, iov);
		if (bpf_core_enum_value_exists(enum iter_type, ITER_UBUF))
			ubuf = bpf_core_enum_value(enum iter_type, ITER_UBUF);
		if (kind == bpf_core_enum_value(enum iter_type, ITER_IOVEC)) {
			struct iovec v = {};
			bpf_probe_read_kernel(&v, sizeof(v), at);
			at = v.iov_base;
			if (count > v.iov_len - off)
				count = v.iov_len - off;
		} else if (kind != ubuf) {
			return 0; /* kernel memory, pages: not read */
		}
		__u64 want = e->regs[e->cfg.arg_bits[a] & 7];
		if (e->cfg.arg_bits[a] < 6 && want < count)
			count = want;
		__u32 len = count > VIGIL_MATCH_MAX ? VIGIL_MATCH_MAX : count;
		if (bpf_probe_read_user(e->key[a].path, len & (VIGIL_MATCH_LEN - 1), at + off) < 0)
			return 0;
		e->slen[a] = len;
		e->ev.args[a].int_value = count > VIGIL_MATCH_MAX;
		break;
	}
	case VIGIL_ARG_AT_PATH:
	case VIGIL_ARG_BINPRM:
	case VIGIL_ARG_FILE:
	case VIGIL_ARG_PATH:
	case VIGIL_ARG_FD:
	case VIGIL_ARG_DENTRY:
	case VIGIL_ARG_KIOCB:
		/* A system call's file name: relative ones are joined to their directory's path,
		 * walked below like the paths of files (one walk in this function keeps its frame
		 * small). */
		if (type == VIGIL_ARG_AT_PATH) {
			n = bpf_probe_read_user_str(&e->norm.in[256], 256, ptr);
			if (n < 1)
				return 0;
			e->norm.trunc = n == 256;
			e->norm.end = 256 + ((n - 1) & 255);
			if (e->norm.in[256] == '/')
				goto join; /* absolute: no directory to walk */
			/* The directory: the descriptor the call names, or the working directory. */
			__u8 r = e->cfg.arg_bits[a];
			ptr = (void *)(r < 6 ? (long)(int)e->regs[r & 7] : VIGIL_AT_FDCWD);
			type = VIGIL_ARG_FD;
			if ((long)ptr == VIGIL_AT_FDCWD) {
				struct task_struct *task = (struct task_struct *)bpf_get_current_task();
				struct fs_struct *fs = BPF_CORE_READ(task, fs);
				ptr = __builtin_preserve_access_index(&fs->pwd);
				type = VIGIL_ARG_PATH;
			}
		}
		if (type == VIGIL_ARG_BINPRM) {
			ptr = BPF_CORE_READ((struct linux_binprm *)ptr, file);
			type = VIGIL_ARG_FILE;
		}
		if (arg_path(type, ptr, &p) < 0)
			return 0;
		decode_path(e, a, &p);
		if (e->cfg.arg_type[a] != VIGIL_ARG_AT_PATH)
			break;
		e->norm.trunc |= e->ev.args[a].int_value;
join:
		/* One place joins, so the join is inlined once. */
		at_path_join(e, a);
		break;
	}
	return 0;
}
#endif

#endif /* VIGIL_HOOK_ARGS_H */
