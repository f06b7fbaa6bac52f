/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The identity of a task, read from its task_struct: ids, credentials, capabilities,
 * namespaces and cgroup. Shared by every program that reports a process.
 */
#ifndef VIGIL_TASK_H
#define VIGIL_TASK_H

#include "compat.h"
#include "maps.h"

/* The cgroup whose id and path are reported: the v2 hierarchy, or the v1 subsystem the agent
 * chose because v2 is not in use on this host. */
static __always_inline struct cgroup *vigil_task_cgroup(struct task_struct *task)
{
	struct vigil_config *cfg = vigil_config();
	__u32 subsys = cfg ? cfg->cgroup_subsys : VIGIL_CGROUP_V2;

	if (subsys == VIGIL_CGROUP_V2)
		return BPF_CORE_READ(task, cgroups, dfl_cgrp);
	if (subsys >= 16)
		return 0;
	struct cgroup_subsys_state *css = 0;
	struct css_set *cset = BPF_CORE_READ(task, cgroups);
	bpf_core_read(&css, sizeof(css),
		      (void *)cset + bpf_core_field_offset(struct css_set, subsys) +
			      (subsys & 15) * sizeof(void *));
	return css ? BPF_CORE_READ(css, cgroup) : 0;
}

static __always_inline void vigil_fill_process(struct task_struct *task, struct vigil_process *p)
{
	struct task_struct *leader = BPF_CORE_READ(task, group_leader);
	const struct cred *cred = BPF_CORE_READ(task, cred);
	struct nsproxy *nsp = BPF_CORE_READ(task, nsproxy);
	struct pid *tpid = BPF_CORE_READ(leader, thread_pid);
	unsigned int level = BPF_CORE_READ(tpid, level);
	struct upid upid = {};
	struct cgroup *cgrp;

	p->pid = BPF_CORE_READ(task, tgid);
	p->tid = BPF_CORE_READ(task, pid);
	p->ppid = BPF_CORE_READ(task, real_parent, tgid);
	/* numbers[] is a flexible array: index it by hand, CO-RE only relocates the base. */
	bpf_core_read(&upid, sizeof(upid),
		      (void *)tpid + bpf_core_field_offset(struct pid, numbers) +
			      (level & 31) * bpf_core_type_size(struct upid));
	p->nspid = upid.nr;

	p->uid = BPF_CORE_READ(cred, uid.val);
	p->gid = BPF_CORE_READ(cred, gid.val);
	p->euid = BPF_CORE_READ(cred, euid.val);
	p->egid = BPF_CORE_READ(cred, egid.val);
	p->suid = BPF_CORE_READ(cred, suid.val);
	p->sgid = BPF_CORE_READ(cred, sgid.val);
	p->fsuid = BPF_CORE_READ(cred, fsuid.val);
	p->fsgid = BPF_CORE_READ(cred, fsgid.val);
	if (bpf_core_field_exists(task->loginuid))
		p->auid = BPF_CORE_READ(task, loginuid.val);
	else
		p->auid = (__u32)-1;
	VIGIL_READ_CAPS(p->cap_effective, cred, cap_effective);
	VIGIL_READ_CAPS(p->cap_permitted, cred, cap_permitted);
	VIGIL_READ_CAPS(p->cap_inheritable, cred, cap_inheritable);

	/* A NULL namespace pointer (a task past exit_task_namespaces) reads as inode 0. */
	if (nsp) {
		p->ns[VIGIL_NS_UTS] = BPF_CORE_READ(nsp, uts_ns, ns.inum);
		p->ns[VIGIL_NS_IPC] = BPF_CORE_READ(nsp, ipc_ns, ns.inum);
		p->ns[VIGIL_NS_MNT] = BPF_CORE_READ(nsp, mnt_ns, ns.inum);
		p->ns[VIGIL_NS_PID_FOR_CHILDREN] = BPF_CORE_READ(nsp, pid_ns_for_children, ns.inum);
		p->ns[VIGIL_NS_NET] = BPF_CORE_READ(nsp, net_ns, ns.inum);
		p->ns[VIGIL_NS_CGROUP] = BPF_CORE_READ(nsp, cgroup_ns, ns.inum);
		if (bpf_core_field_exists(nsp->time_ns)) {
			p->ns[VIGIL_NS_TIME] = BPF_CORE_READ(nsp, time_ns, ns.inum);
			p->ns[VIGIL_NS_TIME_FOR_CHILDREN] =
				BPF_CORE_READ(nsp, time_ns_for_children, ns.inum);
		}
	}
	p->ns[VIGIL_NS_PID] = BPF_CORE_READ(upid.ns, ns.inum);
	p->ns[VIGIL_NS_USER] = BPF_CORE_READ(cred, user_ns, ns.inum);

	cgrp = vigil_task_cgroup(task);
	p->cgroup_id = cgrp ? BPF_CORE_READ(cgrp, kn, id) : 0;
	p->start_ktime = vigil_task_start_boottime(leader);
	BPF_CORE_READ_STR_INTO(&p->comm, leader, comm);
}

/* The file behind descriptor `fd` of the current task. Every open's return, and every read(),
 * write() and socket call a policy watches, starts here, so the task's table is read in place
 * through BTF pointers (a faulting load reads 0); only the slot, at a computed offset the
 * verifier cannot follow, is copied by a helper. The descriptor is an int, as the kernel reads
 * it: a register's higher bits name the same descriptor to the call. */
static __always_inline struct file *fd_file(int fd)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct file *file = 0;

	if (fd < 0)
		return 0;
	struct files_struct *files = task->files;
	if (!files)
		return 0;
	struct fdtable *fdt = files->fdt;
	if (!fdt || fd >= fdt->max_fds)
		return 0;
	struct file **fds = fdt->fd;
	/* The slot itself, unmasked: max_fds bounds it, and a mask would read another
	 * descriptor's file for one past 2^20 (fs.nr_open allows more). */
	if (!fds || bpf_probe_read_kernel(&file, sizeof(file), &fds[fd]) < 0)
		return 0;
	return file;
}

#endif /* VIGIL_TASK_H */
