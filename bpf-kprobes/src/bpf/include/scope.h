/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Policy scopes: whether the current task is in one of the pods a scoped policy applies to.
 * The agent (sensor/src/policies/scopes.rs) writes, for each scope, the cgroup of each pod (or
 * container) the scope selects; the task's cgroup in the tracked hierarchy and its ancestors are
 * looked up, so the containers of a pod, and any cgroup made below them, are in its scope. Checked
 * only for the hooks and rules of scoped policies, after their selectors matched.
 */
#ifndef VIGIL_SCOPE_H
#define VIGIL_SCOPE_H

#include "vigil_events.h"
#include "maps.h"
#include "task.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, VIGIL_SCOPE_ENTRIES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct vigil_scope_key);
	__type(value, __u8);
} vigil_scopes SEC(".maps") __vigil_shared;

/* 1 when the current task's cgroup, or one of its ancestors, is in `scope`. The ancestors are
 * read from the root down (`cgroup->ancestors[]`), levels 1 to VIGIL_SCOPE_LEVELS, where the
 * kubelet's pod and container cgroups always are: a process that nests cgroups of its own below
 * its container, however deep, is still found in its pod. A bounded loop rather than bpf_loop:
 * the callers run inside bpf_loop callbacks already. */
static __always_inline int vigil_in_scope(__u32 scope)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct cgroup *cgrp = vigil_task_cgroup(task);
	struct vigil_scope_key key = { .scope = scope };

	if (!cgrp)
		return 0;
	int level = BPF_CORE_READ(cgrp, level);
	__u64 ancestors = bpf_core_field_offset(struct cgroup, ancestors);
	for (int i = 1; i <= VIGIL_SCOPE_LEVELS; i++) {
		struct cgroup *anc = 0;

		if (i > level)
			return 0;
		bpf_core_read(&anc, sizeof(anc), (void *)cgrp + ancestors + i * sizeof(void *));
		if (!anc)
			return 0;
		key.cgroup = BPF_CORE_READ(anc, kn, id);
		if (bpf_map_lookup_elem(&vigil_scopes, &key))
			return 1;
	}
	return 0;
}

/* The class of each scoped pod's (or container's) cgroup, by kernfs id. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, VIGIL_CLASS_CGROUPS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u64);
	__type(value, __u32);
} vigil_cgroup_classes SEC(".maps") __vigil_shared;

/* Changed by the agent after every change of vigil_cgroup_classes: a class kept before is
 * looked up again. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} vigil_class_generation SEC(".maps") __vigil_shared;

/* The class found for each cgroup processes ran in, with the generation it was found in. An
 * LRU: a cgroup pushed out is looked up again, never given another's class. The value names
 * its cgroup too, checked on both sides of the read, as the per-CPU memo is: an LRU reuses a
 * pushed-out entry at once, possibly while another CPU reads it. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, VIGIL_CLASS_CACHE);
	__type(key, __u64);
	__type(value, struct vigil_class_memo);
} vigil_class_cache SEC(".maps") __vigil_shared;

/*
 * The current task's class: which scoped policies can apply to it. A process no scoped policy
 * covers costs the generation (an array, inlined) and one lookup of its cgroup here; the walk
 * of its ancestors, deepest first, runs once per cgroup and generation. Written from the root
 * down by the agent as a scope's pods are, the nearest ancestor's class is the union of every
 * scope the process is in (a container's entry names its pod's scopes too).
 */
#ifndef READ_ONCE
#define READ_ONCE(x) (*(volatile typeof(x) *)&(x))
#define WRITE_ONCE(x, v) (*(volatile typeof(x) *)&(x) = (v))
#endif

/* The class `m` holds for cgroup `id` in `generation`, or -1. */
static __always_inline long memo_class(const struct vigil_class_memo *m, __u64 id, __u32 generation)
{
	__u64 seen = READ_ONCE(m->cgroup);
	__u64 value = READ_ONCE(m->value);

	if (seen != id || READ_ONCE(m->cgroup) != id || (__u32)(value >> 32) != generation)
		return -1;
	return (__u32)value;
}

static __always_inline void memo_keep(struct vigil_class_memo *m, __u64 id, __u32 generation, __u32 cls)
{
	WRITE_ONCE(m->cgroup, 0);
	WRITE_ONCE(m->value, (__u64)generation << 32 | cls);
	WRITE_ONCE(m->cgroup, id);
}

static __always_inline __u32 vigil_caller_class(struct vigil_class_memo *memo)
{
	__u32 zero = 0;
	__u32 *generation = bpf_map_lookup_elem(&vigil_class_generation, &zero);
	struct vigil_config *cfg = vigil_config();
	struct cgroup *cgrp = 0;
	__u64 id;

	if (!generation || !cfg)
		return 0;
	/* The cgroup's id is read in place through BTF pointers (a faulting load reads 0), where
	 * the hierarchy is v2's or v1's memory one numbered as in the header this was built with:
	 * a few loads, where the helper or copies cost several times the rest of the check. The
	 * structure is read for its ancestors only when neither memo nor cache has the answer. */
	struct task_struct *task = bpf_get_current_task_btf();
	if (cfg->cgroup_subsys == VIGIL_CGROUP_V2)
		id = task->cgroups->dfl_cgrp->kn->id;
	else if (cfg->cgroup_subsys == memory_cgrp_id &&
		 bpf_core_enum_value(enum cgroup_subsys_id, memory_cgrp_id) == memory_cgrp_id)
		id = task->cgroups->subsys[memory_cgrp_id]->cgroup->kn->id;
	else
		id = 0;
	if (!id) {
		cgrp = vigil_task_cgroup((struct task_struct *)bpf_get_current_task());
		if (!cgrp)
			return 0;
		id = BPF_CORE_READ(cgrp, kn, id);
	}
	__u32 gen = *generation;
	long known = memo_class(memo, id, gen);
	if (known >= 0)
		return known;
	struct vigil_class_memo *cached = bpf_map_lookup_elem(&vigil_class_cache, &id);
	known = cached ? memo_class(cached, id, gen) : -1;
	if (known >= 0) {
		memo_keep(memo, id, gen, known);
		return known;
	}
	__u32 cls = 0;
	if (!cgrp)
		cgrp = vigil_task_cgroup((struct task_struct *)bpf_get_current_task());
	if (!cgrp)
		return 0;
	/* Moved to another cgroup since the id was read (a runtime placing a new process in its
	 * container): the walk is of the cgroup it is in now, and its answer is kept for no one. */
	int moved = BPF_CORE_READ(cgrp, kn, id) != id;
	int level = BPF_CORE_READ(cgrp, level);
	__u64 ancestors = bpf_core_field_offset(struct cgroup, ancestors);
	for (int i = VIGIL_SCOPE_LEVELS; i >= 1; i--) {
		struct cgroup *anc = 0;

		if (i > level)
			continue;
		bpf_core_read(&anc, sizeof(anc), (void *)cgrp + ancestors + i * sizeof(void *));
		if (!anc)
			continue;
		__u64 anc_id = BPF_CORE_READ(anc, kn, id);
		__u32 *found = bpf_map_lookup_elem(&vigil_cgroup_classes, &anc_id);
		if (found) {
			cls = *found;
			break;
		}
	}
	if (moved)
		return cls;
	struct vigil_class_memo entry = { .cgroup = id, .value = (__u64)gen << 32 | cls };
	bpf_map_update_elem(&vigil_class_cache, &id, &entry, BPF_ANY);
	memo_keep(memo, id, gen, cls);
	return cls;
}

#endif /* VIGIL_SCOPE_H */
