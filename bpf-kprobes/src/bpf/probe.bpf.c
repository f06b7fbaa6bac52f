// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * One small program per program kind and per helper that vigil's attach plan depends on.
 * `vigil probe` loads each one, attaches it, then makes it fire from its own process (a
 * getppid(), an unlink(), an open()): a kind is available only when the running kernel accepts,
 * attaches *and runs* a real program of that kind, not when a config option says so.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Slots of probe_hits, one per kind; mirrored in sensor/src/probe.rs. */
enum probe_slot {
	SLOT_TRACEPOINT = 0,
	SLOT_RAW_TRACEPOINT = 1,
	SLOT_TP_BTF = 2,
	SLOT_KPROBE = 3,
	SLOT_FENTRY = 4,
	SLOT_LSM = 5,
	SLOT_COUNT = 8,
};

/* The probing process; only its own activity counts as a hit. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} probe_target SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SLOT_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} probe_hits SEC(".maps");

static __always_inline int hit(__u32 slot)
{
	__u32 zero = 0;
	__u32 *target = bpf_map_lookup_elem(&probe_target, &zero);
	if (!target || (bpf_get_current_pid_tgid() >> 32) != *target)
		return 0;
	__u64 *n = bpf_map_lookup_elem(&probe_hits, &slot);
	if (n)
		__sync_fetch_and_add(n, 1);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_getppid")
int probe_tracepoint(void *ctx)
{
	return hit(SLOT_TRACEPOINT);
}

SEC("raw_tp/sys_enter")
int probe_raw_tracepoint(void *ctx)
{
	return hit(SLOT_RAW_TRACEPOINT);
}

SEC("tp_btf/sys_enter")
int probe_btf_tracepoint(void *ctx)
{
	return hit(SLOT_TP_BTF);
}

SEC("kprobe/do_unlinkat")
int probe_kprobe(void *ctx)
{
	return hit(SLOT_KPROBE);
}

SEC("fentry/do_unlinkat")
int probe_fentry(void *ctx)
{
	return hit(SLOT_FENTRY);
}

SEC("lsm/file_open")
int probe_lsm(void *ctx)
{
	hit(SLOT_LSM);
	return 0; /* allow: the probe observes, it never denies */
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

static long probe_loop_step(__u32 i, void *ctx)
{
	return 1;
}

SEC("tracepoint/syscalls/sys_enter_getppid")
int probe_loop(void *ctx)
{
	return bpf_loop(1, probe_loop_step, 0, 0);
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
