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

#endif /* VIGIL_SCOPE_H */
