// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * One trivial program per program kind and per helper that vigil's attach plan depends on.
 * `vigil probe` loads (and, where a kind needs it, attaches) each one: a kind is available only
 * when the running kernel accepts a real program of that kind, not when a config says so.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

SEC("tracepoint/syscalls/sys_enter_getppid")
int probe_tracepoint(void *ctx)
{
	return 0;
}

SEC("raw_tp/sched_process_exec")
int probe_raw_tracepoint(void *ctx)
{
	return 0;
}

SEC("tp_btf/sched_process_exec")
int probe_btf_tracepoint(void *ctx)
{
	return 0;
}

SEC("kprobe/do_unlinkat")
int probe_kprobe(void *ctx)
{
	return 0;
}

SEC("fentry/do_unlinkat")
int probe_fentry(void *ctx)
{
	return 0;
}

SEC("lsm/file_open")
int probe_lsm(void *ctx)
{
	return 0;
}

/* Loaded, never attached: the verifier rejects an unknown helper at load time. */
SEC("tracepoint/syscalls/sys_enter_getppid")
int probe_send_signal(void *ctx)
{
	bpf_send_signal(0);
	return 0;
}

SEC("kprobe/do_unlinkat")
int probe_override_return(struct pt_regs *ctx)
{
	bpf_override_return(ctx, 0);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_getppid")
int probe_ktime_boot(void *ctx)
{
	return bpf_ktime_get_boot_ns() == 0;
}

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} probe_ringbuf SEC(".maps");

SEC("tracepoint/syscalls/sys_enter_getppid")
int probe_ringbuf_output(void *ctx)
{
	__u64 v = 0;
	bpf_ringbuf_output(&probe_ringbuf, &v, sizeof(v), 0);
	return 0;
}
