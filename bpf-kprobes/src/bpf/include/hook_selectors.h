/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * A generic hook's selectors, walked in order until one matches: argument conditions (a nested
 * bpf_loop), then the binary, pid, namespace and capability filters.
 */
#ifndef VIGIL_HOOK_SELECTORS_H
#define VIGIL_HOOK_SELECTORS_H

#include "hook_args.h"
#include "binary.h"
#include "task.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, VIGIL_HOOK_RULES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u32);
	__type(value, struct vigil_hook_rule);
} vigil_hook_rules SEC(".maps") __vigil_shared;


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

/* A condition's answer for an argument it cannot judge: it holds, negated or not. */
#define VIGIL_HIT_EITHER 2

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
	/* Of a longer string or path only the first VIGIL_MATCH_MAX bytes are kept, so its end is
	 * not known: a Postfix condition, negated or not, holds for it (a file behind a long
	 * directory name is never let through unseen), as a Prefix holds for a file-open path cut
	 * at its start. */
	if (len >= VIGIL_MATCH_MAX && e->ev.args[a].int_value)
		return VIGIL_HIT_EITHER;
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
	struct path_cache_key *k = &e->pkey, *last = &e->last_pkey;
	if (k->dentry == last->dentry && k->name == last->name && k->parent == last->parent &&
	    k->mnt == last->mnt && k->rule == last->rule && k->generation == last->generation &&
	    now - e->last_decision.ktime < VIGIL_PATH_CACHE_NS)
		return e->last_decision.hit;
	struct path_cache_value *v = bpf_map_lookup_elem(&vigil_path_cache, &e->pkey);
	struct path_cache_value fresh = { .ktime = now };
	if (v && now - v->ktime < VIGIL_PATH_CACHE_NS) {
		fresh = *v;
	} else {
		fresh.hit = string_hit(e, a, op, rule_key);
		bpf_map_update_elem(&vigil_path_cache, &e->pkey, &fresh, BPF_ANY);
	}
	/* `e` again: string_hit's calls may leave the verifier unsure of it. */
	e = hook_eval();
	if (!e)
		return fresh.hit;
	__builtin_memcpy(&e->last_pkey, &e->pkey, sizeof(e->pkey));
	e->last_decision = fresh;
	return fresh.hit;
}

/* One argument condition of the selector in w->slot. */
static long cond_step(__u32 c, void *unused)
{
	struct hook_eval *e = hook_eval();
	if (!e)
		return 1;
	struct rule_walk *w = &e->walk;
	__u32 slot = w->slot;
	struct vigil_hook_rule *r = bpf_map_lookup_elem(&vigil_hook_rules, &slot);
	int hit = 0;

	if (!r) {
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
		if (t == VIGIL_ARG_FILE || t == VIGIL_ARG_PATH || t == VIGIL_ARG_FD ||
		    t == VIGIL_ARG_DENTRY || t == VIGIL_ARG_KIOCB)
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
	case VIGIL_OP_STATE:
		hit = lookup_value(e, key, sk->state);
		break;
	}
	if (hit != VIGIL_HIT_EITHER && hit == !!cond->negate) {
		w->failed = 1;
		return 1;
	}
	return 0;
}

/* The filters on the calling process of the selector in `slot`: binary, pids, namespaces,
 * capabilities. A global function, like decode_str: the verifier checks it (and the binary's
 * path walk in it) once on its own, instead of in every state the selector walk reaches it in.
 * One object defines it (see VIGIL_DECODE_STR_ELSEWHERE). */
#ifdef VIGIL_DECODE_STR_ELSEWHERE
extern int process_filters_hold(__u32 slot);
#else
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

__noinline int process_filters_hold(__u32 slot)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct hook_eval *e = hook_eval();

	if (!e || slot >= VIGIL_HOOK_RULES)
		return 0;
	struct rule_walk *w = &e->walk;
	struct vigil_hook_rule *r = bpf_map_lookup_elem(&vigil_hook_rules, &slot);
	if (!r)
		return 0;

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
#endif

static long rule_step(__u32 i, void *unused)
{
	struct hook_eval *e = hook_eval();
	if (!e)
		return 1;
	struct rule_walk *w = &e->walk;
	__u32 slot = w->first + i;
	struct vigil_hook_rule *r = bpf_map_lookup_elem(&vigil_hook_rules, &slot);

	if (!r)
		return 1;
	if (!(r->flags & VIGIL_RULE_ACTIVE))
		return 0;
	w->slot = slot;
	w->failed = 0;
	__u32 n = r->nconds < VIGIL_HOOK_CONDS ? r->nconds : VIGIL_HOOK_CONDS;
	bpf_loop(n, cond_step, 0, 0);
	if (w->failed)
		return 0;
	if (!process_filters_hold(slot))
		return 0;
	w->matched = slot + 1;
	return 1;
}

#endif /* VIGIL_HOOK_SELECTORS_H */
