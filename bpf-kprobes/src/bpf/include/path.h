/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Path resolution from kernel objects, for hooks where bpf_d_path() is not allowed (tracepoints
 * and raw tracepoints). Both walkers write the path backwards into the scratch `path` buffer and
 * return where it starts; the buffer is twice the largest path so that every masked write stays
 * in bounds without the verifier having to follow the arithmetic.
 */
#ifndef VIGIL_PATH_H
#define VIGIL_PATH_H

#include "maps.h"

#define VIGIL_PATH_MASK (VIGIL_PATH_MAX - 1)

/* Prepends "/<name>" in front of buf[*pos..]. Returns 0, or -1 when it would not fit. */
static __always_inline int vigil_prepend(char *buf, __u32 *pos, const unsigned char *name, __u32 len)
{
	len &= VIGIL_PATH_MASK;
	if (len + 1 >= *pos)
		return -1;
	*pos -= len + 1;
	buf[*pos & VIGIL_PATH_MASK] = '/';
	bpf_probe_read_kernel(&buf[(*pos + 1) & VIGIL_PATH_MASK], len, name);
	return 0;
}

/*
 * Resolves a `struct path` to the absolute path from the task's mount tree, crossing mount
 * points, as d_path() does. On return buf[*pos..VIGIL_PATH_MAX) holds the path. Returns 0, or -1
 * when it was longer than VIGIL_PATH_MAX or VIGIL_PATH_DEPTH components (the tail is kept).
 */
static __always_inline int vigil_resolve_path(const struct path *p, char *buf, __u32 *pos)
{
	struct dentry *dentry = BPF_CORE_READ(p, dentry);
	struct vfsmount *vfsmnt = BPF_CORE_READ(p, mnt);
	struct mount *mnt = container_of(vfsmnt, struct mount, mnt);
	int truncated = -1;

	*pos = VIGIL_PATH_MAX;
	for (int i = 0; i < VIGIL_PATH_DEPTH; i++) {
		struct dentry *mnt_root = BPF_CORE_READ(vfsmnt, mnt_root);
		struct dentry *parent = BPF_CORE_READ(dentry, d_parent);

		if (dentry == mnt_root) {
			struct mount *mnt_parent = BPF_CORE_READ(mnt, mnt_parent);
			if (mnt_parent == mnt) {
				truncated = 0;
				break;
			}
			dentry = BPF_CORE_READ(mnt, mnt_mountpoint);
			mnt = mnt_parent;
			vfsmnt = __builtin_preserve_access_index(&mnt->mnt);
			continue;
		}
		if (dentry == parent) {
			truncated = 0;
			break;
		}
		const unsigned char *name = BPF_CORE_READ(dentry, d_name.name);
		__u32 len = BPF_CORE_READ(dentry, d_name.len);
		if (vigil_prepend(buf, pos, name, len) < 0)
			break;
		dentry = parent;
	}
	if (*pos == VIGIL_PATH_MAX) {
		*pos -= 1;
		buf[*pos & VIGIL_PATH_MASK] = '/';
	}
	return truncated;
}

/* Resolves a cgroup's path below its hierarchy root ("/" for the root itself). */
static __always_inline int vigil_resolve_cgroup(struct cgroup *cgrp, char *buf, __u32 *pos)
{
	struct kernfs_node *kn = BPF_CORE_READ(cgrp, kn);
	int truncated = -1;

	*pos = VIGIL_PATH_MAX;
	for (int i = 0; i < VIGIL_CGROUP_DEPTH; i++) {
		struct kernfs_node *parent;

		if (!kn)
			break;
		parent = vigil_kn_parent(kn);
		if (!parent) {
			truncated = 0;
			break;
		}
		const char *name = BPF_CORE_READ(kn, name);
		__u32 len = 0;
		/* kernfs names are NUL-terminated; read up to the bound and measure. */
		char *dst = &buf[0];
		long n = bpf_probe_read_kernel_str(dst, VIGIL_CGROUP_MAX, name);
		if (n <= 1)
			break;
		len = n - 1;
		if (len + 1 >= *pos || VIGIL_PATH_MAX - *pos + len + 1 > VIGIL_CGROUP_MAX)
			break;
		if (vigil_prepend(buf, pos, (const unsigned char *)name, len) < 0)
			break;
		kn = parent;
	}
	if (*pos == VIGIL_PATH_MAX) {
		*pos -= 1;
		buf[*pos & VIGIL_PATH_MASK] = '/';
	}
	return truncated;
}

#endif /* VIGIL_PATH_H */
