/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The per-call state of a generic hook and the maps its selectors' values live in. Reached
 * through hook_run.h (via hook_selectors.h and hook_args.h), which hooks.bpf.c and
 * sock_hooks.bpf.c include after the kernel and libbpf headers.
 */
#ifndef VIGIL_HOOK_STATE_H
#define VIGIL_HOOK_STATE_H

#include "vigil_events.h"
#include "maps.h"
#include "policy_maps.h"

#define AF_INET 2
#define AF_INET6 10
#define SIGKILL 9

/* Integer values of a condition: numbers, ports, protocols, families, namespaces, pids. */
struct vigil_value_key {
	__u32 rule; /* VIGIL_HOOK_RULE_KEY */
	__u32 _pad0;
	__s64 value;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, VIGIL_INT_VALUES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct vigil_value_key);
	__type(value, __u8);
} vigil_hook_values SEC(".maps") __vigil_shared;

/* CIDRs: the rule key big-endian, then the address as IPv6 (IPv4 mapped to ::ffff:a.b.c.d). */
struct vigil_cidr_key {
	__u32 prefixlen;
	__u8 data[20];
};

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, VIGIL_NET_VALUES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct vigil_cidr_key);
	__type(value, __u8);
} vigil_hook_cidrs SEC(".maps") __vigil_shared;

/*
 * Path conditions remembered per file: resolving a path costs a walk of the dentry tree, and a
 * hook on write(2) sees the same few files over and over. The key holds the dentry, its name,
 * its parent and the mount, so a renamed or moved file is looked at afresh; an entry is trusted
 * for VIGIL_PATH_CACHE_NS, which bounds what a rename of a directory above it can hide.
 */
#define VIGIL_PATH_CACHE_NS 1000000000ull

struct path_cache_key {
	__u64 dentry;
	__u64 name;   /* d_name.hash_len: a reused dentry or a rename in place changes it */
	__u64 parent;
	__u64 mnt;
	__u32 rule;       /* VIGIL_HOOK_RULE_KEY of the condition */
	__u32 generation; /* of the selector: a rewritten slot never reads old decisions */
};

struct path_cache_value {
	__u64 ktime;
	__u64 hit;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct path_cache_key);
	__type(value, struct path_cache_value);
} vigil_path_cache SEC(".maps") __vigil_shared;

/* State of one walk over a hook's selectors. */
struct rule_walk {
	__u32 first;
	__u32 slot;      /* the selector being evaluated */
	__u32 proc_ready;
	__u32 bin_ready;
	__u32 matched;   /* slot that matched + 1 */
	__u32 failed;    /* a condition of the current selector failed */
};

/* Per-CPU state of one hook call. `ev` and `strs` are contiguous: they are the record. */
struct hook_eval {
	struct vigil_hook_event ev;
	__u8 strs[8 * VIGIL_MATCH_LEN]; /* room for a masked offset (& 2047) */
	struct vigil_hook_config cfg;
	__u64 regs[8];
	/* connect()'s sockaddr (user memory), for a socket the failed connection left without
	 * its destination; 0 elsewhere. */
	__u64 connect_addr;
	/* A map key kept here rather than on the stack of a program whose frame starts the
	 * chain of run_hook's loops. */
	__u64 lookup_key;
	/* The last caller class this CPU found (scope.h). */
	struct vigil_class_memo class_memo;
	/* Decoded strings, NUL-padded. Eight slots for five arguments: an index masked with 7 is
	 * in bounds without the verifier having to follow a comparison. */
	struct vigil_match_key key[8];
	__u32 slen[8];
	__u32 decoded; /* bit i: key[i] holds argument i */
	struct vigil_lpm_key lpm;
	struct vigil_match_key bin_key;
	struct vigil_lpm_key bin_lpm;
	struct vigil_value_key vkey;
	struct vigil_cidr_key ckey;
	struct path_cache_key pkey;
	/* This CPU's last decision of path_hit, checked before the shared cache: a loop writing
	 * to one file finds it without hashing the key. */
	struct path_cache_key last_pkey;
	struct path_cache_value last_decision;
	struct vigil_process proc;
	/* The walk over the selectors, here rather than on the stack: the frames of the loops
	 * that walk them must fit the kernel's 512 bytes together. */
	struct rule_walk walk;
	/* A system call's file name made absolute: `in` holds the directory's path right-aligned
	 * to 255, a '/', and the name from 256; `out` the normalized path being built. */
	struct {
		__u8 in[512];
		__u8 out[256];
		__u16 slash[64]; /* where each component of `out` starts, for '..' */
		__u32 pos, end;  /* the bytes of `in` to read, [pos, end) */
		__u32 out_len, comp, depth, trunc;
	} norm;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct hook_eval);
} vigil_hook_eval SEC(".maps") __vigil_shared;

/* Masks an argument index into the eight key slots with an AND the compiler cannot drop,
 * whatever it knows of the value: the verifier bounds the access by the mask. */
#define BOUND_SLOT(x) asm volatile("%0 &= 7" : "+r"(x))

static __always_inline struct hook_eval *hook_eval(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&vigil_hook_eval, &zero);
}

#endif /* VIGIL_HOOK_STATE_H */
