/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Path resolution from kernel objects, for hooks where bpf_d_path() is not allowed (tracepoints
 * and raw tracepoints). Both walkers write the path backwards into the scratch `path` buffer and
 * return where it starts; the buffer is twice the largest path so that every masked write stays
 * in bounds without the verifier having to follow the arithmetic.
 */
#ifndef VIGIL_PATH_H
#define VIGIL_PATH_H

#include "compat.h"
#include "maps.h"

#define VIGIL_PATH_MASK (VIGIL_PATH_MAX - 1)

/*
 * Prepends "/<name>" in front of buf[*pos..]. Returns 0, or -1 when it would not fit.
 *
 * The position is read through a helper, so the verifier knows it only as a number: every
 * index into the buffer is masked anyway, and a position it tracked exactly would make each
 * step of a walk a state of its own, which it must explore again (Linux 6.18's verifier, which
 * checks a bpf_loop callback until its states repeat, passed a million instructions so).
 */
static __always_inline int vigil_prepend(char *buf, __u32 *pos, const unsigned char *name, __u32 len)
{
	__u32 at = 0;

	bpf_probe_read_kernel(&at, sizeof(at), pos);
	len &= VIGIL_PATH_MASK;
	if (len + 1 >= at)
		return -1;
	at -= len + 1;
	*pos = at;
	buf[at & VIGIL_PATH_MASK] = '/';
	bpf_probe_read_kernel(&buf[(at + 1) & VIGIL_PATH_MASK], len, name);
	return 0;
}

/*
 * The walkers run one path component per bpf_loop() iteration (kernel 5.17+): the verifier
 * checks the step once instead of once per unrolled iteration, which kept a 64-deep walk of
 * binary and cwd under the verifier's complexity limit. The step re-finds the scratch buffer
 * itself rather than carrying a map pointer through the callback context.
 */
struct vigil_walk {
	struct dentry *dentry;
	struct vfsmount *vfsmnt;
	struct mount *mnt;
	struct kernfs_node *kn;
	__u32 pos;
	int truncated;
};

static long vigil_path_step(__u32 i, void *vctx)
{
	/* Kernel pointers are copied out of the walk state first: BPF_CORE_READ on `w->field` would
	 * emit a CO-RE relocation against struct vigil_walk, which no kernel BTF has. */
	struct vigil_walk *w = vctx;
	struct vigil_scratch *s = vigil_scratch();
	struct dentry *dentry = w->dentry, *mnt_root, *parent;
	struct vfsmount *vfsmnt = w->vfsmnt;
	struct mount *mnt = w->mnt;

	if (!s)
		return 1;
	mnt_root = BPF_CORE_READ(vfsmnt, mnt_root);
	parent = BPF_CORE_READ(dentry, d_parent);
	if (dentry == mnt_root) {
		struct mount *mnt_parent = BPF_CORE_READ(mnt, mnt_parent);
		if (mnt_parent == mnt) {
			w->truncated = 0; /* the root of the mount tree */
			return 1;
		}
		w->dentry = BPF_CORE_READ(mnt, mnt_mountpoint);
		w->mnt = mnt_parent;
		w->vfsmnt = __builtin_preserve_access_index(&mnt_parent->mnt);
		return 0;
	}
	if (dentry == parent) {
		w->truncated = 0; /* the root of a filesystem that is not mounted in our tree */
		return 1;
	}
	const unsigned char *name = BPF_CORE_READ(dentry, d_name.name);
	__u32 len = BPF_CORE_READ(dentry, d_name.len);
	if (vigil_prepend(s->path, &w->pos, name, len) < 0)
		return 1;
	w->dentry = parent;
	return 0;
}

/* An empty result is the root itself. */
static __always_inline void vigil_path_finish(char *buf, __u32 *pos)
{
	if (*pos == VIGIL_PATH_MAX) {
		*pos -= 1;
		buf[*pos & VIGIL_PATH_MASK] = '/';
	}
}

/*
 * Resolves a `struct path` to the absolute path from the task's mount tree, crossing mount
 * points, as d_path() does. On return buf[*pos..VIGIL_PATH_MAX) holds the path. Returns 0, or -1
 * when it was longer than VIGIL_PATH_MAX or VIGIL_PATH_DEPTH components (the tail is kept).
 */
static __always_inline int vigil_resolve_path(const struct path *p, struct vigil_scratch *s, __u32 *pos)
{
	struct vigil_walk w = { .pos = VIGIL_PATH_MAX, .truncated = -1 };

	w.dentry = BPF_CORE_READ(p, dentry);
	w.vfsmnt = BPF_CORE_READ(p, mnt);
	w.mnt = container_of(w.vfsmnt, struct mount, mnt);
	bpf_loop(VIGIL_PATH_DEPTH, vigil_path_step, &w, 0);
	*pos = w.pos;
	vigil_path_finish(s->path, pos);
	return w.truncated;
}

static long vigil_cgroup_step(__u32 i, void *vctx)
{
	struct vigil_walk *w = vctx;
	struct vigil_scratch *s = vigil_scratch();
	struct kernfs_node *kn = w->kn, *parent;

	if (!s || !kn)
		return 1;
	parent = vigil_kn_parent(kn);
	if (!parent) {
		w->truncated = 0; /* the hierarchy root, which has no name of its own */
		return 1;
	}
	/* Measure the name in the head of the buffer, which the backward cgroup path (at most
	 * VIGIL_CGROUP_MAX bytes at the tail) never reaches, then prepend it from there. */
	long n = bpf_probe_read_kernel_str(s->path, VIGIL_CGROUP_MAX, BPF_CORE_READ(kn, name));
	if (n <= 1)
		return 1;
	__u32 len = n - 1;
	if (VIGIL_PATH_MAX - w->pos + len + 1 > VIGIL_CGROUP_MAX)
		return 1;
	if (vigil_prepend(s->path, &w->pos, (const unsigned char *)s->path, len) < 0)
		return 1;
	w->kn = parent;
	return 0;
}

/* Resolves a cgroup's path below its hierarchy root ("/" for the root itself). */
static __always_inline int vigil_resolve_cgroup(struct cgroup *cgrp, struct vigil_scratch *s, __u32 *pos)
{
	struct vigil_walk w = { .pos = VIGIL_PATH_MAX, .truncated = -1 };

	w.kn = BPF_CORE_READ(cgrp, kn);
	bpf_loop(VIGIL_CGROUP_DEPTH, vigil_cgroup_step, &w, 0);
	*pos = w.pos;
	vigil_path_finish(s->path, pos);
	return w.truncated;
}

#endif /* VIGIL_PATH_H */
