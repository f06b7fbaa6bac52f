// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Generic hooks: one kprobe program attached to every kernel function a policy names, and one
 * tracepoint program attached to the enter tracepoint of every system call a policy names where
 * kprobes are unavailable. Each finds its hook's description in vigil_hooks (by the probed
 * address, from bpf_get_func_ip (5.15+), or by system call number), decodes the arguments it
 * asks for, walks the hook's selectors (first match wins, as in Tetragon) and acts: reports,
 * kills or signals.
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

#include "vigil_events.h"
#include "maps.h"
#include "policy_maps.h"
#include "path.h"
#include "binary.h"
#include "task.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define AF_INET 2
#define AF_INET6 10
#define SIGKILL 9

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u64);
	__type(value, struct vigil_hook_config);
} vigil_hooks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, VIGIL_HOOK_RULES);
	__type(key, __u32);
	__type(value, struct vigil_hook_rule);
} vigil_hook_rules SEC(".maps");

/* Integer values of a condition: numbers, ports, protocols, families, namespaces, pids. */
struct vigil_value_key {
	__u32 rule; /* VIGIL_HOOK_RULE_KEY */
	__u32 _pad0;
	__s64 value;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct vigil_value_key);
	__type(value, __u8);
} vigil_hook_values SEC(".maps");

/* CIDRs: the rule key big-endian, then the address as IPv6 (IPv4 mapped to ::ffff:a.b.c.d). */
struct vigil_cidr_key {
	__u32 prefixlen;
	__u8 data[20];
};

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 16384);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct vigil_cidr_key);
	__type(value, __u8);
} vigil_hook_cidrs SEC(".maps");

/*
 * Path conditions remembered per file: resolving a path costs a walk of the dentry tree, and a
 * hook on write(2) sees the same few files over and over. The key holds the dentry, its name,
 * its parent and the mount, so a renamed or moved file is looked at afresh; an entry is trusted
 * for VIGIL_PATH_CACHE_NS, which bounds what a rename of a directory above it can hide.
 */
#define VIGIL_PATH_CACHE_NS 1000000000ull

struct path_cache_key {
	__u64 dentry;
	__u64 name;   /* d_name.hash_len: a reused dentry or a rename in place changes it */
	__u64 parent;
	__u64 mnt;
	__u32 rule;       /* VIGIL_HOOK_RULE_KEY of the condition */
	__u32 generation; /* of the selector: a rewritten slot never reads old decisions */
};

struct path_cache_value {
	__u64 ktime;
	__u64 hit;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct path_cache_key);
	__type(value, struct path_cache_value);
} vigil_path_cache SEC(".maps");

/* Per-CPU state of one hook call. `ev` and `strs` are contiguous: they are the record. */
struct hook_eval {
	struct vigil_hook_event ev;
	__u8 strs[8 * VIGIL_MATCH_LEN]; /* room for a masked offset (& 2047) */
	struct vigil_hook_config cfg;
	__u64 regs[8];
	/* Decoded strings, NUL-padded. Eight slots for five arguments: an index masked with 7 is
	 * in bounds without the verifier having to follow a comparison. */
	struct vigil_match_key key[8];
	__u32 slen[8];
	__u32 decoded; /* bit i: key[i] holds argument i */
	struct vigil_lpm_key lpm;
	struct vigil_match_key bin_key;
	struct vigil_lpm_key bin_lpm;
	struct vigil_value_key vkey;
	struct vigil_cidr_key ckey;
	struct path_cache_key pkey;
	struct vigil_process proc;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct hook_eval);
} vigil_hook_eval SEC(".maps");

/* Masks an argument index into the eight key slots with an AND the compiler cannot drop,
 * whatever it knows of the value: the verifier bounds the access by the mask. */
#define BOUND_SLOT(x) asm volatile("%0 &= 7" : "+r"(x))

static __always_inline struct hook_eval *hook_eval(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&vigil_hook_eval, &zero);
}

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

static __always_inline struct file *fd_file(long fd)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct file **fds, *file = 0;

	if (fd < 0)
		return 0;
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	if (fd >= BPF_CORE_READ(fdt, max_fds))
		return 0;
	fds = BPF_CORE_READ(fdt, fd);
	if (!fds || bpf_core_read(&file, sizeof(file), &fds[fd & 0xfffff]) < 0)
		return 0;
	return file;
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
}

/* The `struct path` a file, path or descriptor argument names. */
static __always_inline int arg_path(__u8 type, void *ptr, struct path *p)
{
	struct file *f = 0;

	if (type == VIGIL_ARG_PATH)
		return ptr ? bpf_probe_read_kernel(p, sizeof(*p), ptr) : -1;
	if (type == VIGIL_ARG_FILE)
		f = ptr;
	else if (type == VIGIL_ARG_FD)
		f = fd_file((long)(int)(__u64)ptr);
	if (!f)
		return -1;
	return BPF_CORE_READ_INTO(p, f, f_path);
}

/* Decodes string-like argument `a` into e->key[a], once per call. A global function: the
 * verifier checks it once, not once per place that calls it. */
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
	case VIGIL_ARG_FILE:
	case VIGIL_ARG_PATH:
	case VIGIL_ARG_FD:
		if (arg_path(type, ptr, &p) < 0)
			return 0;
		decode_path(e, a, &p);
		break;
	}
	return 0;
}

/* State of one walk over a hook's selectors. */
struct rule_walk {
	__u32 first;
	__u32 slot;      /* the selector being evaluated */
	__u32 proc_ready;
	__u32 bin_ready;
	__u32 matched;   /* slot that matched + 1 */
	__u32 failed;    /* a condition of the current selector failed */
};

static __always_inline void lpm_rule(struct vigil_lpm_key *k, __u32 rule_key)
{
	__u32 be = bpf_htonl(rule_key);
	__builtin_memcpy(k->data, &be, 4);
}

static __always_inline int lookup_value(struct hook_eval *e, __u32 rule_key, __s64 v)
{
	e->vkey.rule = rule_key;
	e->vkey._pad0 = 0;
	e->vkey.value = v;
	return bpf_map_lookup_elem(&vigil_hook_values, &e->vkey) != 0;
}

static __always_inline int lookup_cidr(struct hook_eval *e, __u32 rule_key, __u16 family, const __u8 *addr)
{
	__u32 be = bpf_htonl(rule_key);

	__builtin_memcpy(e->ckey.data, &be, 4);
	__builtin_memset(&e->ckey.data[4], 0, 16);
	if (family == AF_INET) {
		e->ckey.data[14] = 0xff;
		e->ckey.data[15] = 0xff;
		__builtin_memcpy(&e->ckey.data[16], addr, 4);
	} else if (family == AF_INET6) {
		__builtin_memcpy(&e->ckey.data[4], addr, 16);
	} else {
		return 0;
	}
	e->ckey.prefixlen = 32 + 128;
	return bpf_map_lookup_elem(&vigil_hook_cidrs, &e->ckey) != 0;
}

static __always_inline int string_hit(struct hook_eval *e, __u32 a, __u8 op, __u32 rule_key)
{
	decode_str(a);
	BOUND_SLOT(a);
	__u32 len = e->slen[a];
	if (len > VIGIL_MATCH_MAX)
		len = VIGIL_MATCH_MAX;
	if (op == VIGIL_OP_STR_EQ) {
		e->key[a].rule = rule_key;
		return bpf_map_lookup_elem(&vigil_path_exact, &e->key[a]) != 0;
	}
	lpm_rule(&e->lpm, rule_key);
	if (op == VIGIL_OP_STR_PREFIX) {
		bpf_probe_read_kernel(&e->lpm.data[4], VIGIL_MATCH_MAX, e->key[a].path);
		e->lpm.prefixlen = 32 + len * 8;
		return bpf_map_lookup_elem(&vigil_path_prefix, &e->lpm) != 0;
	}
	for (__u32 i = 0; i < VIGIL_MATCH_MAX; i++) {
		if (i >= len)
			break;
		e->lpm.data[4 + (i & (VIGIL_MATCH_LEN - 1))] =
			e->key[a].path[(len - 1 - i) & (VIGIL_MATCH_LEN - 1)];
	}
	e->lpm.prefixlen = 32 + len * 8;
	return bpf_map_lookup_elem(&vigil_path_postfix, &e->lpm) != 0;
}

/* A string condition on a file, path or descriptor argument, through the decision cache. */
static __always_inline int path_hit(struct hook_eval *e, __u32 a, __u8 op, __u32 rule_key, __u32 generation)
{
	struct path p;

	BOUND_SLOT(a);
	if (a >= VIGIL_HOOK_ARGS)
		return 0;
	void *ptr = (void *)e->regs[e->cfg.arg_reg[a] & 7];
	if (arg_path(e->cfg.arg_type[a], ptr, &p) < 0)
		return string_hit(e, a, op, rule_key);
	e->pkey.dentry = (__u64)p.dentry;
	e->pkey.name = BPF_CORE_READ(p.dentry, d_name.hash_len);
	e->pkey.parent = (__u64)BPF_CORE_READ(p.dentry, d_parent);
	e->pkey.mnt = (__u64)p.mnt;
	e->pkey.rule = rule_key;
	e->pkey.generation = generation;
	__u64 now = bpf_ktime_get_ns();
	struct path_cache_value *v = bpf_map_lookup_elem(&vigil_path_cache, &e->pkey);
	if (v && now - v->ktime < VIGIL_PATH_CACHE_NS)
		return v->hit;
	struct path_cache_value fresh = { .ktime = now, .hit = string_hit(e, a, op, rule_key) };
	bpf_map_update_elem(&vigil_path_cache, &e->pkey, &fresh, BPF_ANY);
	return fresh.hit;
}

/* One argument condition of the selector in w->slot. */
static long cond_step(__u32 c, void *vctx)
{
	struct rule_walk *w = vctx;
	struct hook_eval *e = hook_eval();
	__u32 slot = w->slot;
	struct vigil_hook_rule *r = bpf_map_lookup_elem(&vigil_hook_rules, &slot);
	int hit = 0;

	if (!e || !r) {
		w->failed = 1;
		return 1;
	}
	BOUND_SLOT(c); /* VIGIL_HOOK_CONDS is 8 */
	struct vigil_hook_cond *cond = &r->conds[c];
	__u32 a = cond->arg;
	BOUND_SLOT(a);
	if (a >= VIGIL_HOOK_ARGS) {
		w->failed = 1;
		return 1;
	}
	__u32 key = VIGIL_HOOK_RULE_KEY(slot, c);
	__s64 v = e->ev.args[a].int_value;
	struct vigil_sock_value *sk = &e->ev.args[a].sock;

	switch (cond->op) {
	case VIGIL_OP_INT_IN:
		hit = lookup_value(e, key, v);
		break;
	case VIGIL_OP_GT:
		hit = v > cond->value;
		break;
	case VIGIL_OP_LT:
		hit = v < cond->value;
		break;
	case VIGIL_OP_MASK:
		hit = (v & cond->value) != 0;
		break;
	case VIGIL_OP_STR_EQ:
	case VIGIL_OP_STR_PREFIX:
	case VIGIL_OP_STR_POSTFIX: {
		__u8 t = e->cfg.arg_type[a];
		if (t == VIGIL_ARG_FILE || t == VIGIL_ARG_PATH || t == VIGIL_ARG_FD)
			hit = path_hit(e, a, cond->op, key, r->generation);
		else
			hit = string_hit(e, a, cond->op, key);
		break;
	}
	case VIGIL_OP_SADDR:
		hit = lookup_cidr(e, key, sk->family, sk->saddr);
		break;
	case VIGIL_OP_DADDR:
		hit = lookup_cidr(e, key, sk->family, sk->daddr);
		break;
	case VIGIL_OP_SPORT:
		hit = lookup_value(e, key, sk->sport);
		break;
	case VIGIL_OP_DPORT:
		hit = lookup_value(e, key, sk->dport);
		break;
	case VIGIL_OP_PROTOCOL:
		hit = lookup_value(e, key, sk->protocol);
		break;
	case VIGIL_OP_FAMILY:
		hit = lookup_value(e, key, sk->family);
		break;
	}
	if (hit == !!cond->negate) {
		w->failed = 1;
		return 1;
	}
	return 0;
}

static __always_inline __u32 task_nspid(struct task_struct *task)
{
	struct pid *tpid = BPF_CORE_READ(task, thread_pid);
	unsigned int level = BPF_CORE_READ(tpid, level);
	struct upid upid = {};

	bpf_core_read(&upid, sizeof(upid),
		      (void *)tpid + bpf_core_field_offset(struct pid, numbers) +
			      (level & 31) * bpf_core_type_size(struct upid));
	return upid.nr;
}

struct pid_walk {
	struct task_struct *task;
	__u32 rule_key;
	__u32 flags;
	__u32 found;
};

/* Is this task's pid in the set? With followForks, a fork that has not exec'd yet (its
 * self_exec_id still equals parent_exec_id) is looked up as its parent, as Tetragon does. */
static long pid_step(__u32 i, void *vctx)
{
	struct pid_walk *p = vctx;
	struct hook_eval *e = hook_eval();
	struct task_struct *t = p->task;

	if (!e || !t)
		return 1;
	__u32 pid = (p->flags & VIGIL_PIDS_NS) ? task_nspid(t) : BPF_CORE_READ(t, tgid);
	if (lookup_value(e, p->rule_key, pid)) {
		p->found = 1;
		return 1;
	}
	if (!(p->flags & VIGIL_PIDS_FOLLOW))
		return 1;
	if (BPF_CORE_READ(t, self_exec_id) != BPF_CORE_READ(t, parent_exec_id))
		return 1;
	p->task = BPF_CORE_READ(t, real_parent, group_leader);
	return 0;
}

/* The selector's filters on the calling process: binary, pids, namespaces, capabilities. */
static __always_inline int process_filters_hold(struct hook_eval *e, struct rule_walk *w, struct vigil_hook_rule *r, __u32 slot)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();

	if (r->flags & (VIGIL_RULE_BIN_EQ | VIGIL_RULE_BIN_PREFIX)) {
		if (!w->bin_ready) {
			vigil_binary_keys(&e->bin_key, &e->bin_lpm);
			w->bin_ready = 1;
		}
		__u32 key = VIGIL_HOOK_RULE_KEY(slot, VIGIL_PART_BINARY);
		int hit = 0;
		e->bin_key.rule = key;
		lpm_rule(&e->bin_lpm, key);
		if ((r->flags & VIGIL_RULE_BIN_EQ) && bpf_map_lookup_elem(&vigil_bin_exact, &e->bin_key))
			hit = 1;
		if ((r->flags & VIGIL_RULE_BIN_PREFIX) && bpf_map_lookup_elem(&vigil_bin_prefix, &e->bin_lpm))
			hit = 1;
		if (!!(r->flags & VIGIL_RULE_BIN_NOT) == hit)
			return 0;
	}
	if (r->pid_flags & (VIGIL_PIDS_IN | VIGIL_PIDS_NOT_IN)) {
		struct pid_walk p = {
			.task = BPF_CORE_READ(task, group_leader),
			.rule_key = VIGIL_HOOK_RULE_KEY(slot, VIGIL_PART_PIDS),
			.flags = r->pid_flags,
		};
		bpf_loop(16, pid_step, &p, 0);
		if (p.found != !!(r->pid_flags & VIGIL_PIDS_IN))
			return 0;
	}
	if (!(r->ns_in | r->ns_not_in) && !(r->cap_set[0] | r->cap_set[1] | r->cap_set[2]))
		return 1;
	if (!w->proc_ready) {
		vigil_fill_process(task, &e->proc);
		w->proc_ready = 1;
	}
	for (__u32 i = 0; i < VIGIL_NS_COUNT; i++) {
		__u32 bit = 1u << i;
		if (!((r->ns_in | r->ns_not_in) & bit))
			continue;
		int hit = lookup_value(e, VIGIL_HOOK_RULE_KEY(slot, VIGIL_PART_NS + i), e->proc.ns[i]);
		if ((r->ns_in & bit) && !hit)
			return 0;
		if ((r->ns_not_in & bit) && hit)
			return 0;
	}
	for (__u32 j = 0; j < 3; j++) {
		__u64 caps;
		if (r->cap_set[j] == VIGIL_CAPS_EFFECTIVE)
			caps = e->proc.cap_effective;
		else if (r->cap_set[j] == VIGIL_CAPS_PERMITTED)
			caps = e->proc.cap_permitted;
		else if (r->cap_set[j] == VIGIL_CAPS_INHERITABLE)
			caps = e->proc.cap_inheritable;
		else
			continue;
		int hit = (caps & r->cap_mask[j]) != 0;
		if (hit == !!r->cap_not[j])
			return 0;
	}
	return 1;
}

static long rule_step(__u32 i, void *vctx)
{
	struct rule_walk *w = vctx;
	struct hook_eval *e = hook_eval();
	__u32 slot = w->first + i;
	struct vigil_hook_rule *r = bpf_map_lookup_elem(&vigil_hook_rules, &slot);

	if (!e || !r)
		return 1;
	if (!(r->flags & VIGIL_RULE_ACTIVE))
		return 0;
	w->slot = slot;
	w->failed = 0;
	__u32 n = r->nconds < VIGIL_HOOK_CONDS ? r->nconds : VIGIL_HOOK_CONDS;
	bpf_loop(n, cond_step, w, 0);
	if (w->failed)
		return 0;
	/* The condition walk may have looked the rule up again; refresh the pointer. */
	r = bpf_map_lookup_elem(&vigil_hook_rules, &slot);
	if (!r || !process_filters_hold(e, w, r, slot))
		return 0;
	w->matched = slot + 1;
	return 1;
}

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
	    t != VIGIL_ARG_FD)
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
		else if (t == VIGIL_ARG_SOCK && raw)
			read_sock((struct sock *)raw, &e->ev.args[i].sock);
		else if (t == VIGIL_ARG_SOCKADDR && raw)
			read_sockaddr((void *)raw, user, &e->ev.args[i].sock);
	}

	if (cfg->rule_count) {
		struct rule_walk w = { .first = cfg->rule_first };
		__u32 n = cfg->rule_count;
		bpf_loop(n < VIGIL_HOOK_RULES ? n : VIGIL_HOOK_RULES, rule_step, &w, 0);
		if (!w.matched)
			return;
		__u32 slot = w.matched - 1;
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

SEC("kprobe/vigil_generic")
int vigil_kprobe(struct pt_regs *ctx)
{
	__u64 ip = bpf_get_func_ip(ctx);
	struct vigil_hook_config *cfg = bpf_map_lookup_elem(&vigil_hooks, &ip);
	struct hook_eval *e = hook_eval();

	if (!cfg || !e)
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
	run_hook(e, cfg);
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
		struct vigil_hook_config *cfg = bpf_map_lookup_elem(&vigil_hooks, &key);           \
		struct hook_eval *e = hook_eval();                                                 \
		if (!cfg || !e)                                                                    \
			return 0;                                                                  \
		for (int i = 0; i < n; i++)                                                        \
			e->regs[i] = ctx->args[i];                                                 \
		for (int i = n; i < 6; i++)                                                        \
			e->regs[i] = 0;                                                            \
		run_hook(e, cfg);                                                                  \
		return 0;                                                                          \
	}

SYSCALL_ENTER(1)
SYSCALL_ENTER(2)
SYSCALL_ENTER(3)
SYSCALL_ENTER(4)
SYSCALL_ENTER(5)
SYSCALL_ENTER(6)
