/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The compiled policy rules and their values, written by the agent (sensor/src/policies/: the
 * PolicyTable in mod.rs holds the maps and writes vigil_policy_state_map, file_rules.rs writes
 * the file-open rules, their values and the prefilter names, hook_rules.rs the string and
 * binary values of generic hooks' selectors) and read by policy.bpf.c and, through binary.h and
 * hook_state.h, by the generic hook programs (hooks.bpf.c, sock_hooks.bpf.c). Values are keyed
 * by rule id so that many policies share one set of maps and a rule is replaced by rewriting
 * its own keys. The string maps serve the file-open rules and the string conditions of generic
 * hooks (whose keys have the top bit set).
 */
#ifndef VIGIL_POLICY_MAPS_H
#define VIGIL_POLICY_MAPS_H

#include "vigil_events.h"
#include "maps.h"

struct vigil_match_key {
	__u32 rule;
	char path[VIGIL_MATCH_LEN];
};

/* LPM keys: the rule id (big-endian, so it is the first 32 bits of the prefix) then the path. */
struct vigil_lpm_key {
	__u32 prefixlen;
	__u8 data[VIGIL_LPM_DATA];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, VIGIL_MAX_RULES);
	__type(key, __u32);
	__type(value, struct vigil_rule);
} vigil_rules SEC(".maps") __vigil_shared;

#define VIGIL_MATCH_MAP(name, maptype, keytype)                                                    \
	struct {                                                                                   \
		__uint(type, maptype);                                                             \
		__uint(max_entries, VIGIL_STR_VALUES);                                             \
		__uint(map_flags, maptype == BPF_MAP_TYPE_LPM_TRIE ? BPF_F_NO_PREALLOC : 0);       \
		__type(key, keytype);                                                              \
		__type(value, __u8);                                                               \
	} name SEC(".maps") __vigil_shared

VIGIL_MATCH_MAP(vigil_path_exact, BPF_MAP_TYPE_HASH, struct vigil_match_key);
VIGIL_MATCH_MAP(vigil_path_prefix, BPF_MAP_TYPE_LPM_TRIE, struct vigil_lpm_key);
VIGIL_MATCH_MAP(vigil_path_postfix, BPF_MAP_TYPE_LPM_TRIE, struct vigil_lpm_key);
VIGIL_MATCH_MAP(vigil_bin_exact, BPF_MAP_TYPE_HASH, struct vigil_match_key);
VIGIL_MATCH_MAP(vigil_bin_prefix, BPF_MAP_TYPE_LPM_TRIE, struct vigil_lpm_key);

/* The files exact path values name, by device and inode (written by file_rules.rs, refreshed
 * when a name comes to point at another file): the value is the mask of rule slots naming it.
 * VIGIL_MAX_RULES is 64, one bit each. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, VIGIL_STR_VALUES);
	__type(key, struct vigil_inode_key);
	__type(value, __u64);
} vigil_path_inodes SEC(".maps") __vigil_shared;

/* The same for the executables exact matchBinaries values name. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, VIGIL_STR_VALUES);
	__type(key, struct vigil_inode_key);
	__type(value, __u64);
} vigil_bin_inodes SEC(".maps") __vigil_shared;

_Static_assert(VIGIL_MAX_RULES == 64, "the inode maps' values have one bit per rule slot");

/*
 * The cheap first look at every open. While every active file rule compares the path for
 * equality, an open whose file name (the last component) is not the last component of some
 * value cannot match, and is dismissed after one hash lookup instead of a path walk. The
 * value is the rule slots (one bit each) with a value of that name, so that an open of a
 * named file by a binary none of those rules covers is dismissed as cheaply.
 */
struct vigil_name_key {
	char name[VIGIL_NAME_LEN];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, VIGIL_NAMES);
	__type(key, struct vigil_name_key);
	__type(value, __u64);
} vigil_names SEC(".maps") __vigil_shared;

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct vigil_policy_state);
} vigil_policy_state_map SEC(".maps") __vigil_shared;

#endif /* VIGIL_POLICY_MAPS_H */
