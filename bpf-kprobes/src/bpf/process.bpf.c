// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Process lifecycle: exec, fork and exit.
 *
 * Raw tracepoints on sched_process_{exec,fork,exit}: they exist on every kernel since 4.17,
 * need neither kprobes nor BTF-typed attach (both refused on some of our kernels), are not on
 * the syscall path (so they tax no unrelated syscall), and hand us the task_struct and, for
 * exec, the linux_binprm whose file is the binary the kernel really opened.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>

#include "vigil_events.h"
#include "maps.h"
#include "compat.h"
#include "path.h"
#include "task.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Raw tracepoint arguments, read as plain u64s: bpf_raw_tracepoint_args.args is a flexible
 * array, which CO-RE would try (and fail) to relocate. */
#define RAW_ARG(ctx, n) (((__u64 *)(ctx))[n])

#define DATA_OFF_MASK 0x3fff /* offsets into scratch data stay below 16 KiB */
#define PART_MASK (VIGIL_PATH_MAX - 1)

/* Copies buf[pos..VIGIL_PATH_MAX) to data[off..]; returns the bytes copied. */
static __always_inline __u32 vigil_copy_path(struct vigil_scratch *s, __u32 off, __u32 pos)
{
	__u32 len = (VIGIL_PATH_MAX - pos) & PART_MASK;
	bpf_probe_read_kernel(&s->data[off & DATA_OFF_MASK], len, &s->path[pos & PART_MASK]);
	return len;
}

/* Caches the resolved binary for policy binary filters (vigil_exe in maps.h). */
static __always_inline void remember_exe(__u32 tgid, struct vigil_scratch *s, __u32 pos, __u32 len)
{
	struct vigil_exe_path *exe = (struct vigil_exe_path *)&s->data[VIGIL_SCRATCH_DATA - sizeof(*exe)];

	__builtin_memset(exe, 0, sizeof(*exe));
	if (len > VIGIL_MATCH_MAX)
		len = VIGIL_MATCH_MAX;
	exe->len = len;
	bpf_probe_read_kernel(exe->path, len & (VIGIL_MATCH_LEN - 1), &s->path[pos & PART_MASK]);
	bpf_map_update_elem(&vigil_exe, &tgid, exe, BPF_ANY);
}

/* sched_process_exec(struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm):
 * fires once the new image is installed, so mm holds the new argv and creds are final. */
SEC("raw_tp/sched_process_exec")
int vigil_exec(void *ctx)
{
	struct task_struct *task = (struct task_struct *)RAW_ARG(ctx, 0);
	struct linux_binprm *bprm = (struct linux_binprm *)RAW_ARG(ctx, 2);
	struct vigil_scratch *s = vigil_scratch();
	struct vigil_exec_event *ev;
	struct path fpath;
	__u32 pos, off = 0, len;

	if (!s)
		return 0;
	ev = &s->exec;
	__builtin_memset(ev, 0, sizeof(*ev));
	ev->hdr.kind = VIGIL_EVENT_EXEC;
	ev->hdr.ktime = bpf_ktime_get_boot_ns();
	vigil_fill_process(task, &ev->proc);

	/* The binary: the path of the file the kernel opened, not the string passed to execve. */
	BPF_CORE_READ_INTO(&fpath, bprm, file, f_path);
	if (vigil_resolve_path(&fpath, s, &pos) < 0)
		ev->proc.flags |= VIGIL_FLAG_TRUNC_FILENAME;
	len = vigil_copy_path(s, off, pos);
	ev->binary_len = len;
	off += len;
	remember_exe(ev->proc.pid, s, pos, len);

	/* argv, straight from the new stack. */
	struct mm_struct *mm = BPF_CORE_READ(task, mm);
	unsigned long arg_start = BPF_CORE_READ(mm, arg_start);
	unsigned long arg_end = BPF_CORE_READ(mm, arg_end);
	__u64 total = arg_end > arg_start ? arg_end - arg_start : 0;
	ev->args_total = total;
	len = total;
	if (len > VIGIL_ARGS_MAX - 1) {
		len = VIGIL_ARGS_MAX - 1;
		ev->proc.flags |= VIGIL_FLAG_TRUNC_ARGS;
	}
	len &= PART_MASK;
	if (len && bpf_probe_read_user(&s->data[off & DATA_OFF_MASK], len, (void *)arg_start) < 0) {
		ev->proc.flags |= VIGIL_FLAG_ERROR_ARGS;
		len = 0;
	}
	ev->args_len = len;
	off += len;

	/* cwd */
	struct path pwd;
	if (BPF_CORE_READ_INTO(&pwd, task, fs, pwd) < 0) {
		ev->proc.flags |= VIGIL_FLAG_ERROR_CWD;
		len = 0;
	} else {
		if (vigil_resolve_path(&pwd, s, &pos) < 0)
			ev->proc.flags |= VIGIL_FLAG_TRUNC_CWD;
		len = vigil_copy_path(s, off, pos);
	}
	ev->cwd_len = len;
	off += len;

	/* cgroup path, for the container id once pods are resolved. */
	struct cgroup *cgrp = vigil_task_cgroup(task);
	len = 0;
	if (cgrp) {
		if (vigil_resolve_cgroup(cgrp, s, &pos) < 0)
			ev->proc.flags |= VIGIL_FLAG_TRUNC_CGROUP;
		len = vigil_copy_path(s, off, pos);
	}
	ev->cgroup_len = len;
	off += len;

	__u32 size = sizeof(*ev) + (off & DATA_OFF_MASK);
	ev->hdr.size = size;
	vigil_emit(ev, size & 0x7fff, VIGIL_EVENT_EXEC);
	return 0;
}

/* sched_process_fork(struct task_struct *parent, struct task_struct *child): a clone that makes
 * a new thread group is a new process; new threads are not reported. */
SEC("raw_tp/sched_process_fork")
int vigil_fork(void *ctx)
{
	struct task_struct *child = (struct task_struct *)RAW_ARG(ctx, 1);
	struct vigil_scratch *s;
	struct vigil_fork_event *ev;

	if (BPF_CORE_READ(child, tgid) != BPF_CORE_READ(child, pid))
		return 0;
	s = vigil_scratch();
	if (!s)
		return 0;
	ev = (struct vigil_fork_event *)&s->exec;
	__builtin_memset(ev, 0, sizeof(*ev));
	__u32 child_tgid = BPF_CORE_READ(child, tgid);
	bpf_map_delete_elem(&vigil_exe, &child_tgid);
	ev->hdr.kind = VIGIL_EVENT_FORK;
	ev->hdr.size = sizeof(*ev);
	ev->hdr.ktime = bpf_ktime_get_boot_ns();
	vigil_fill_process(child, &ev->proc);
	vigil_emit(ev, sizeof(*ev), VIGIL_EVENT_FORK);
	return 0;
}

/* sched_process_exit(struct task_struct *p[, bool group_dead]): fires for every thread; the
 * process has ended when the last live thread goes, which do_exit() has already counted. */
SEC("raw_tp/sched_process_exit")
int vigil_exit(void *ctx)
{
	struct task_struct *task = (struct task_struct *)RAW_ARG(ctx, 0);
	struct vigil_exit_event ev = {};
	__u64 thread = (__u64)BPF_CORE_READ(task, tgid) << 32 | (__u32)BPF_CORE_READ(task, pid);

	/* An Override this thread never reached the check of goes with it. */
	bpf_map_delete_elem(&vigil_override_verdicts, &thread);
	if (BPF_CORE_READ(task, signal, live.counter) != 0)
		return 0;
	ev.hdr.kind = VIGIL_EVENT_EXIT;
	ev.hdr.size = sizeof(ev);
	ev.hdr.ktime = bpf_ktime_get_boot_ns();
	ev.pid = BPF_CORE_READ(task, tgid);
	ev.tid = BPF_CORE_READ(task, pid);
	ev.exit_code = BPF_CORE_READ(task, exit_code);
	bpf_map_delete_elem(&vigil_exe, &ev.pid);
	vigil_emit(&ev, sizeof(ev), VIGIL_EVENT_EXIT);
	return 0;
}
