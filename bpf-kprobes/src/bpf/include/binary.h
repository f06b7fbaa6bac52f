/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The calling process's binary as the keys binary filters look up (`matchBinaries`): from the
 * path its exec resolved (vigil_exe) or, for a process older than the agent, from a walk of
 * mm->exe_file.
 */
#ifndef VIGIL_BINARY_H
#define VIGIL_BINARY_H

#include "path.h"
#include "policy_maps.h"

/* Fills the path of `exact` and the data (after the rule id) and prefix length of `lpm`. */
static __always_inline void vigil_binary_keys(struct vigil_match_key *exact, struct vigil_lpm_key *lpm)
{
	struct vigil_scratch *s = vigil_scratch();
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct path exe;
	__u32 pos;

	if (!s)
		return;
	__builtin_memset(exact->path, 0, sizeof(exact->path));
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct vigil_exe_path *cached = bpf_map_lookup_elem(&vigil_exe, &tgid);
	if (cached) {
		__u32 n = cached->len & (VIGIL_MATCH_LEN - 1);
		bpf_probe_read_kernel(exact->path, n, cached->path);
		bpf_probe_read_kernel(&lpm->data[4], n, cached->path);
		lpm->prefixlen = 32 + n * 8;
		return;
	}
	if (BPF_CORE_READ_INTO(&exe, task, mm, exe_file, f_path) < 0)
		return;
	vigil_resolve_path(&exe, s, &pos);
	__u32 len = (VIGIL_PATH_MAX - pos) & (VIGIL_PATH_MAX - 1);
	if (len > VIGIL_MATCH_MAX)
		len = VIGIL_MATCH_MAX;
	bpf_probe_read_kernel(exact->path, len & (VIGIL_MATCH_LEN - 1), &s->path[pos & (VIGIL_PATH_MAX - 1)]);
	bpf_probe_read_kernel(&lpm->data[4], len & (VIGIL_MATCH_LEN - 1), &s->path[pos & (VIGIL_PATH_MAX - 1)]);
	lpm->prefixlen = 32 + len * 8;
}

/* The rule slots whose exact matchBinaries values name the calling process's executable itself
 * (vigil_bin_inodes), whatever path it was run by: a binary bind-mounted over a named path has
 * that path but not that file. */
static __always_inline __u64 vigil_binary_inode_rules(void)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct inode *inode = BPF_CORE_READ(task, mm, exe_file, f_inode);
	if (!inode)
		return 0;
	struct vigil_inode_key k = {
		.ino = BPF_CORE_READ(inode, i_ino),
		.dev = BPF_CORE_READ(inode, i_sb, s_dev),
	};
	__u64 *rules = bpf_map_lookup_elem(&vigil_bin_inodes, &k);
	return rules ? *rules : 0;
}

#endif /* VIGIL_BINARY_H */
