/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Kernel differences, hidden behind helpers so that program sources read the same on every
 * kernel. Each helper names the kernel version where the layout changed.
 */
#ifndef VIGIL_COMPAT_H
#define VIGIL_COMPAT_H

#include <bpf/bpf_core_read.h>

/* 6.15 renamed kernfs_node.parent to __parent when it became RCU-protected. */
struct kernfs_node___new {
	struct kernfs_node *__parent;
} __attribute__((preserve_access_index));

struct kernfs_node___old {
	struct kernfs_node *parent;
} __attribute__((preserve_access_index));

static __always_inline struct kernfs_node *vigil_kn_parent(struct kernfs_node *kn)
{
	struct kernfs_node___new *kn_new = (void *)kn;
	if (bpf_core_field_exists(kn_new->__parent))
		return BPF_CORE_READ(kn_new, __parent);
	return BPF_CORE_READ((struct kernfs_node___old *)kn, parent);
}

/* kernel_cap_t was `struct { u32 cap[2]; }` before 6.3 and `struct { u64 val; }` since; both are
 * eight bytes with bit N meaning capability N on little-endian machines, so read it whole. */
#define VIGIL_READ_CAPS(dst, cred, field)                                                          \
	bpf_core_read(&(dst), sizeof(__u64), &(cred)->field)

/* 5.5 renamed task_struct.real_start_time to start_boottime. */
struct task_struct___old {
	__u64 real_start_time;
} __attribute__((preserve_access_index));

static __always_inline __u64 vigil_task_start_boottime(struct task_struct *task)
{
	if (bpf_core_field_exists(task->start_boottime))
		return BPF_CORE_READ(task, start_boottime);
	return BPF_CORE_READ((struct task_struct___old *)task, real_start_time);
}

#endif /* VIGIL_COMPAT_H */
