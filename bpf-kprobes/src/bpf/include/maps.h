/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The maps every program family of the agent's object includes: the ring buffer of events, its
 * drop counters, the agent's configuration, the binary of each live process and the per-CPU
 * scratch area. An object that includes this header gets all of them; the agent sizes
 * `vigil_events` at load time (`--ringbuf-size`). They are not the only shared maps: the policy
 * maps are in policy_maps.h, the generic hooks' in hook_run.h, hook_selectors.h and
 * hook_state.h.
 */
#ifndef VIGIL_MAPS_H
#define VIGIL_MAPS_H

#include "vigil_events.h"

/* Maps marked __vigil_shared (here and in the headers named above) are weak: each program
 * family that includes a header defines its maps, and the link of the agent's object
 * (vigil.bpf.o, `bpftool gen object` in build.rs) keeps one definition of each, so the families
 * share one map. Every family of that object (process, policy, hooks, sock_hooks) includes this
 * header; probe.bpf.c, an object of its own, does not. */
#define __vigil_shared __attribute__((weak))

/* The one ring buffer of events: a single MPSC buffer keeps events from all CPUs in the order
 * they were reserved, so a fork is always read before the exec of its child. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 23);
} vigil_events SEC(".maps") __vigil_shared;

/* Records that did not fit in the ring buffer, per CPU and per event kind. The agent sums and
 * reports them; an event is never lost without being counted here. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, VIGIL_DROP_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} vigil_drops SEC(".maps") __vigil_shared;

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct vigil_config);
} vigil_config_map SEC(".maps") __vigil_shared;

/*
 * The binary of each live process as its exec resolved it (first VIGIL_MATCH_MAX bytes), so
 * binary filters need no second path walk. Written at exec, dropped at fork (a reused pid must
 * not inherit it) and exit; a process older than the agent has no entry and is walked.
 */
struct vigil_exe_path {
	__u32 len;
	char path[VIGIL_MATCH_LEN];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 32768);
	__type(key, __u32);
	__type(value, struct vigil_exe_path);
} vigil_exe SEC(".maps") __vigil_shared;

/* Room to build one record (and the path walker's backward buffer) off the 512-byte stack. The
 * data area is larger than any record needs so that masked offsets stay provably in bounds. */
#define VIGIL_SCRATCH_DATA 20480
#define VIGIL_SCRATCH_PATH (VIGIL_PATH_MAX * 2)
struct vigil_scratch {
	struct vigil_exec_event exec;
	__u8 data[VIGIL_SCRATCH_DATA];
	char path[VIGIL_SCRATCH_PATH];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct vigil_scratch);
} vigil_scratch_map SEC(".maps") __vigil_shared;

static __always_inline struct vigil_scratch *vigil_scratch(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&vigil_scratch_map, &zero);
}

static __always_inline struct vigil_config *vigil_config(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&vigil_config_map, &zero);
}

/*
 * Wake the agent only once this much is waiting. Waking it per record costs a context switch
 * per event on a busy node; the agent also drains on a short timer, which bounds the latency
 * of a quiet stream.
 */
#define VIGIL_WAKEUP_BYTES (64 * 1024)

/* Writes a record to the ring buffer, counting it as dropped when the buffer is full; returns
 * bpf_ringbuf_output's result (0 when written). */
static __always_inline long vigil_emit(void *rec, __u64 size, __u32 kind)
{
	__u64 flags = bpf_ringbuf_query(&vigil_events, BPF_RB_AVAIL_DATA) >= VIGIL_WAKEUP_BYTES
			      ? BPF_RB_FORCE_WAKEUP
			      : BPF_RB_NO_WAKEUP;

	long err = bpf_ringbuf_output(&vigil_events, rec, size, flags);
	if (err < 0) {
		__u32 slot = kind < VIGIL_DROP_SLOTS ? kind : 0;
		__u64 *drops = bpf_map_lookup_elem(&vigil_drops, &slot);
		if (drops)
			__sync_fetch_and_add(drops, 1);
	}
	return err;
}

/*
 * The file-open judge's denials (policy.bpf.c), by thread (pid_tgid), for the fmod_ret program
 * on security_file_open (sensor/src/loader/fmod_ret.rs); `file` is the struct file judged.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct vigil_fmod_verdict);
} vigil_fmod_verdicts SEC(".maps") __vigil_shared;

/*
 * Generic hooks' Overrides, by thread (pid_tgid), for the fmod_ret programs that carry them out;
 * `file` is the key of the attach point that judged. A map of their own: the file-open
 * program consumes whatever it finds in its map. An fmod_ret program takes only a verdict that
 * names its keys (another program on the same function may be the one it is for); what a call
 * leaves unused is cleared by the next call judged at that point (VIGIL_LIST_CLEARS_VERDICT)
 * and when the thread exits (process.bpf.c), so a reused thread id never inherits one.
 * Not an LRU: a flood of other threads' verdicts must not evict one whose call is still on its
 * way to the LSM check (stalled in a path lookup); when the map is full, the process is killed
 * instead.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct vigil_fmod_verdict);
} vigil_override_verdicts SEC(".maps") __vigil_shared;

#endif /* VIGIL_MAPS_H */
