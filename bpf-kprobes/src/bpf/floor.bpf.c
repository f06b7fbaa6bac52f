// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Programs that do nothing, one per attach kind the agent uses on the host: the benchmark
 * attaches them where the agent's programs attach (vigil-bench's floor rows), so that what the
 * kernel charges for running any program there (the system call slow path, the tracepoint's
 * dispatch) is measured apart from what vigil's own programs add.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

SEC("tracepoint/vigil_floor")
int vigil_floor_tracepoint(void *ctx)
{
	return 0;
}

SEC("raw_tracepoint/vigil_floor")
int vigil_floor_raw_tracepoint(void *ctx)
{
	return 0;
}
