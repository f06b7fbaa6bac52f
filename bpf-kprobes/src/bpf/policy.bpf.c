// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Policy enforcement on file opens.
 *
 * One evaluator, three ways in, chosen per kernel by the attach plan:
 * - `lsm/file_open` (BPF LSM, 5.7+): runs before the open completes and denies it by returning
 *   an errno, so the operation never happens.
 * - `fentry/security_file_open` with an fmod_ret program beside it (trampolines, where BPF LSM
 *   is not an active LSM): the same verdict, returned in security_file_open's place.
 * - `tracepoint/syscalls/sys_exit_open{,at,at2}`, `sys_exit_creat` and
 *   `sys_exit_open_by_handle_at`, with the raw `sys_exit` for 32-bit calls (every kernel): runs when
 *   the open has succeeded, resolves the new fd to the file the kernel really opened (after
 *   relative paths, `..` and symlinks), and kills the process with SIGKILL before it returns to
 *   userspace, so it never reads a byte. Matching on the resolved file, not on the string the
 *   process passed, is what makes `cd /etc && cat passwd` and symlinks match too.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_endian.h>

#include "vigil_events.h"
#include "maps.h"
#include "policy_maps.h"
#include "path.h"
#include "binary.h"
#include "scope.h"
#include "task.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define EPERM 1
#define SIGKILL 9

/* Per-CPU state of one evaluation: keys built once, reused for every rule. */
struct vigil_eval {
	struct vigil_name_key name_key;
	struct vigil_match_key path_key;
	struct vigil_lpm_key path_lpm;
	struct vigil_lpm_key path_rev;
	struct vigil_match_key bin_key;
	struct vigil_lpm_key bin_lpm;
	struct vigil_policy_event ev;
	char ev_path[VIGIL_PATH_MAX];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct vigil_eval);
} vigil_eval_map SEC(".maps");

static __always_inline struct vigil_eval *vigil_eval_state(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&vigil_eval_map, &zero);
}

_Static_assert(VIGIL_FILE_OPEN_HOOKS == 32, "first-match groups are the bits of a __u32");

/* Loop state of the rule walk. */
struct rule_walk {
	__u32 path_len;    /* bytes of the resolved path, capped at VIGIL_MATCH_LEN */
	__u32 bin_ready;   /* the binary's keys are built */
	__u32 rev_ready;   /* the reversed path key is built */
	__u32 matched;     /* hooks that already matched (first selector per hook wins) */
	__u32 mechanism;   /* VIGIL_POLICY_VIA_LSM or 0 */
	__s32 verdict;     /* errno to return (LSM) */
	__u32 kill;        /* send SIGKILL */
	__u32 trunc;
	__u64 inode_rules; /* rule slots whose exact values name this very file (vigil_path_inodes) */
	__u64 bin_inode_rules; /* rule slots whose exact binaries name this executable (vigil_bin_inodes) */
};

static __always_inline void set_rule(struct vigil_eval *e, __u32 rule)
{
	e->path_key.rule = rule;
	e->bin_key.rule = rule;
	__u32 be = bpf_htonl(rule);
	__builtin_memcpy(e->path_lpm.data, &be, 4);
	__builtin_memcpy(e->path_rev.data, &be, 4);
	__builtin_memcpy(e->bin_lpm.data, &be, 4);
}

/* Builds the reversed path key postfix filters look up, once per evaluation and only when a
 * rule has one: from the end of the whole path (the event's copy), not of the forward key,
 * which holds only its first VIGIL_MATCH_MAX bytes, so that a long directory in front of a
 * file cannot push the file's name out of the comparison. */
static __always_inline void build_reversed(struct vigil_eval *e)
{
	__u32 len = e->ev.path_len & (VIGIL_PATH_MAX - 1);
	__u32 n = len < VIGIL_MATCH_MAX ? len : VIGIL_MATCH_MAX;
	for (__u32 i = 0; i < VIGIL_MATCH_MAX; i++) {
		if (i >= n)
			break;
		e->path_rev.data[4 + (i & (VIGIL_MATCH_LEN - 1))] =
			e->ev_path[(len - 1 - i) & (VIGIL_PATH_MAX - 1)];
	}
	e->path_rev.prefixlen = 32 + n * 8;
}

static __always_inline void emit(struct vigil_eval *e, struct rule_walk *w, __u32 rule, struct vigil_rule *r, __u32 flags)
{
	struct vigil_policy_event *ev = &e->ev;
	__u64 pid_tgid = bpf_get_current_pid_tgid();

	ev->hdr.kind = VIGIL_EVENT_POLICY;
	ev->hdr.ktime = bpf_ktime_get_boot_ns();
	ev->pid = pid_tgid >> 32;
	ev->tid = (__u32)pid_tgid;
	ev->rule = rule;
	ev->hook = r->hook;
	ev->action = r->action;
	ev->arg = r->arg;
	ev->flags = flags | w->mechanism | (w->trunc ? VIGIL_POLICY_TRUNC_PATH : 0);
	__u32 size = sizeof(*ev) + (ev->path_len & (VIGIL_PATH_MAX - 1));
	ev->hdr.size = size;
	vigil_emit(ev, size, VIGIL_EVENT_POLICY);
}

static long rule_step(__u32 rule, void *vctx)
{
	struct rule_walk *w = vctx;
	struct vigil_eval *e = vigil_eval_state();
	struct vigil_rule *r = bpf_map_lookup_elem(&vigil_rules, &rule);
	int hit;

	if (!e || !r)
		return 1;
	if (!(r->flags & VIGIL_RULE_ACTIVE) || r->hook != VIGIL_HOOK_FILE_OPEN)
		return 0;
	if (w->matched & (1u << (r->policy_id & (VIGIL_FILE_OPEN_HOOKS - 1))))
		return 0;
	if ((r->flags & VIGIL_RULE_PATH_POSTFIX) && !w->rev_ready) {
		build_reversed(e);
		w->rev_ready = 1;
	}
	set_rule(e, rule);

	if (r->flags & (VIGIL_RULE_PATH_EQ | VIGIL_RULE_PATH_PREFIX | VIGIL_RULE_PATH_POSTFIX)) {
		hit = 0;
		if ((r->flags & VIGIL_RULE_PATH_EQ) &&
		    (bpf_map_lookup_elem(&vigil_path_exact, &e->path_key) || (w->inode_rules >> (rule & 63)) & 1))
			hit = 1;
		if ((r->flags & VIGIL_RULE_PATH_PREFIX) && bpf_map_lookup_elem(&vigil_path_prefix, &e->path_lpm))
			hit = 1;
		if ((r->flags & VIGIL_RULE_PATH_POSTFIX) && bpf_map_lookup_elem(&vigil_path_postfix, &e->path_rev))
			hit = 1;
		/* A path cut at VIGIL_PATH_DEPTH components or VIGIL_PATH_MAX bytes keeps its end, not
		 * its start: no prefix can be compared, so a prefix condition, Prefix or NotPrefix,
		 * holds for it (a file buried deep is never let through unseen). */
		if (!!(r->flags & VIGIL_RULE_PATH_NOT) == hit && !(w->trunc && (r->flags & VIGIL_RULE_PATH_PREFIX)))
			return 0;
	}
	if (r->flags & (VIGIL_RULE_BIN_EQ | VIGIL_RULE_BIN_PREFIX)) {
		if (!w->bin_ready) {
			vigil_binary_keys(&e->bin_key, &e->bin_lpm);
			w->bin_inode_rules = vigil_binary_inode_rules();
			w->bin_ready = 1;
		}
		hit = 0;
		/* The path names a value and, where every value's file is known, the executable is
		 * one of those files: a path alone can be given to another binary by a mount. */
		if ((r->flags & VIGIL_RULE_BIN_EQ) && bpf_map_lookup_elem(&vigil_bin_exact, &e->bin_key) &&
		    (!(r->flags & VIGIL_RULE_BIN_INODE) || ((w->bin_inode_rules >> (rule & 63)) & 1)))
			hit = 1;
		if ((r->flags & VIGIL_RULE_BIN_PREFIX) && bpf_map_lookup_elem(&vigil_bin_prefix, &e->bin_lpm))
			hit = 1;
		if (!!(r->flags & VIGIL_RULE_BIN_NOT) == hit)
			return 0;
	}

	/* A scoped policy's rule holds only in its pods' cgroups. */
	if (r->scope && !vigil_in_scope(r->scope))
		return 0;
	w->matched |= 1u << (r->policy_id & (VIGIL_FILE_OPEN_HOOKS - 1));
	__u32 flags = 0;
	if (r->flags & VIGIL_RULE_MONITOR) {
		flags |= VIGIL_POLICY_MONITOR;
	} else if (r->action == VIGIL_ACTION_OVERRIDE || r->action == VIGIL_ACTION_SIGKILL) {
		flags |= VIGIL_POLICY_ENFORCED;
		if (w->mechanism == VIGIL_POLICY_VIA_LSM) {
			w->verdict = r->action == VIGIL_ACTION_OVERRIDE ? r->arg : -EPERM;
			if (r->action == VIGIL_ACTION_SIGKILL)
				w->kill = 1;
		} else {
			w->kill = 1; /* no way to deny after the fact: the process dies before it returns */
		}
	} else if (r->action == VIGIL_ACTION_SIGNAL) {
		flags |= VIGIL_POLICY_ENFORCED;
		bpf_send_signal(r->arg);
	}
	if (r->action != VIGIL_ACTION_NOPOST && !(r->flags & VIGIL_RULE_NOPOST))
		emit(e, w, rule, r, flags);
	return 0;
}

/* Whether an exact matchBinaries value of one of the rules in `rules` (a bit per slot) is
 * the calling binary's path: the walk's own binary test, less the file check it adds, so a
 * binary this says no to fails that test too. */
static __always_inline int binary_named_by(struct vigil_eval *e, __u64 rules)
{
	vigil_binary_keys(&e->bin_key, &e->bin_lpm);
	for (__u32 i = 0; i < VIGIL_MAX_RULES; i++) {
		if (!(rules >> i))
			break;
		if (!((rules >> i) & 1))
			continue;
		e->bin_key.rule = i;
		if (bpf_map_lookup_elem(&vigil_bin_exact, &e->bin_key))
			return 1;
	}
	return 0;
}

/* Resolves `p`, builds the keys and walks the rules. Returns the LSM verdict. */
static __always_inline int evaluate(const struct path *p, __u32 mechanism)
{
	struct vigil_scratch *s = vigil_scratch();
	struct vigil_eval *e = vigil_eval_state();
	struct rule_walk w = { .mechanism = mechanism };
	__u32 pos, len;

	struct vigil_config *cfg = vigil_config();

	if (!s || !e || !cfg || cfg->stopping)
		return 0;
	__u32 zero = 0;
	struct vigil_policy_state *state = bpf_map_lookup_elem(&vigil_policy_state_map, &zero);
	/* The file itself, whatever its name here: another link to it, or a bind mount of it, is
	 * still the file an exact value names. */
	struct inode *inode = BPF_CORE_READ(p, dentry, d_inode);
	struct vigil_inode_key ik = {
		.ino = BPF_CORE_READ(inode, i_ino),
		.dev = BPF_CORE_READ(inode, i_sb, s_dev),
	};
	__u64 *inode_rules = bpf_map_lookup_elem(&vigil_path_inodes, &ik);
	if (inode_rules)
		w.inode_rules = *inode_rules;
	/* A file mounted on its own (a bind mount of one file, a container's secret) is its
	 * mount's root: its path ends with the mountpoint's name, not with its own, so the
	 * prefilter, which reads its own, cannot refuse it. */
	int mount_root = (void *)p->dentry == (void *)BPF_CORE_READ(p, mnt, mnt_root);
	if (state && state->prefilter && !mount_root) {
		/* The rules that can match: those with a value of this name, and those whose exact
		 * value is this very file under any name (a hard link, a bind mount). */
		__builtin_memset(&e->name_key, 0, sizeof(e->name_key));
		const unsigned char *name = BPF_CORE_READ(p, dentry, d_name.name);
		bpf_probe_read_kernel_str(e->name_key.name, sizeof(e->name_key.name), name);
		__u64 *named = bpf_map_lookup_elem(&vigil_names, &e->name_key);
		__u64 maybe = w.inode_rules | (named ? *named : 0);
		if (!maybe)
			return 0;
		/* All of them hold only for binaries they name (glibc opening /etc/passwd for `id`,
		 * against a deny scoped to cat and cp): another binary's open is dismissed before
		 * the path walk. */
		if (!(maybe & ~state->bin_scoped) && !binary_named_by(e, maybe))
			return 0;
	}
	w.trunc = vigil_resolve_path(p, s, &pos) < 0;
	len = (VIGIL_PATH_MAX - pos) & (VIGIL_PATH_MAX - 1);

	/* The event carries the whole path; keys carry its first VIGIL_MATCH_MAX bytes. */
	bpf_probe_read_kernel(e->ev_path, len, &s->path[pos & (VIGIL_PATH_MAX - 1)]);
	e->ev.path_len = len;
	e->ev.mode = BPF_CORE_READ(inode, i_mode);
	w.path_len = len < VIGIL_MATCH_MAX ? len : VIGIL_MATCH_MAX;
	__builtin_memset(e->path_key.path, 0, sizeof(e->path_key.path));
	bpf_probe_read_kernel(e->path_key.path, w.path_len & (VIGIL_MATCH_LEN - 1), &s->path[pos & (VIGIL_PATH_MAX - 1)]);
	bpf_probe_read_kernel(&e->path_lpm.data[4], w.path_len & (VIGIL_MATCH_LEN - 1), &s->path[pos & (VIGIL_PATH_MAX - 1)]);
	e->path_lpm.prefixlen = 32 + w.path_len * 8;
	/* Only up to the last slot in use: most hosts run a handful of rules, not 64. */
	__u32 end = state ? state->rule_end : VIGIL_MAX_RULES;
	bpf_loop(end < VIGIL_MAX_RULES ? end : VIGIL_MAX_RULES, rule_step, &w, 0);
	if (w.kill)
		bpf_send_signal(SIGKILL);
	return w.verdict;
}

SEC("lsm/file_open")
int BPF_PROG(vigil_lsm_file_open, struct file *file, int ret)
{
	if (ret)
		return ret; /* an earlier LSM already refused */
	struct path p;
	BPF_CORE_READ_INTO(&p, file, f_path);
	return evaluate(&p, VIGIL_POLICY_VIA_LSM);
}

/*
 * Where BPF LSM is not active but trampolines work: this fentry program judges the open as the
 * LSM program does, and leaves a denial's errno in vigil_fmod_verdicts (maps.h), by thread, for
 * the fmod_ret program on the same function (sensor/src/loader/fmod_ret.rs), which runs right
 * after it, before security_file_open itself, and returns the errno instead of calling it. The
 * file pointer makes sure the verdict is this open's.
 */
SEC("fentry/security_file_open")
int BPF_PROG(vigil_fentry_file_open, struct file *file)
{
	struct path p;
	BPF_CORE_READ_INTO(&p, file, f_path);
	int verdict = evaluate(&p, VIGIL_POLICY_VIA_LSM);
	if (verdict) {
		__u64 thread = bpf_get_current_pid_tgid();
		struct vigil_fmod_verdict v = { .file = (__u64)file, .verdict = verdict };
		/* A denial that cannot be handed over still stops the process. */
		if (bpf_map_update_elem(&vigil_fmod_verdicts, &thread, &v, BPF_ANY))
			bpf_send_signal(SIGKILL);
	}
	return 0;
}

/* sys_exit_* tracepoints: `long ret` at offset 16 after the common fields and __syscall_nr. */
struct syscall_exit_ctx {
	__u64 common;
	__u64 nr;
	long ret;
};

/* Judges the file an open system call returned as descriptor `fd` (a failed open: nothing). */
static __always_inline int on_open_exit(long fd)
{
	struct file *file = fd_file(fd);
	struct path p;

	if (!file)
		return 0;
	BPF_CORE_READ_INTO(&p, file, f_path);
	evaluate(&p, 0);
	return 0;
}

/* One program for the returns of openat(), openat2(), open() and creat(), attached to each
 * exit tracepoint: their records agree, and one program is one verification. */
SEC("tracepoint/syscalls/sys_exit_open")
int vigil_exit_open(struct syscall_exit_ctx *ctx)
{
	return on_open_exit(ctx->ret);
}

/*
 * The same for 32-bit system calls (int 0x80, or a 32-bit program), which the syscalls:*
 * tracepoints leave out: the raw sys_exit tracepoint sees every system call's return, so this
 * program returns at once unless the call is an ia32 one of the i386 table's opens.
 */
#define VIGIL_TS_COMPAT 0x0002 /* thread_info.status: in an ia32 system call */
#define IA32_OPEN 5
#define IA32_CREAT 8
#define IA32_OPENAT 295
#define IA32_OPEN_BY_HANDLE_AT 342
#define IA32_OPENAT2 437

SEC("raw_tracepoint/sys_exit")
int vigil_exit_compat_open(void *ctx)
{
	/* (struct pt_regs *regs, long ret), read as plain words: not through the CO-RE type of
	 * bpf_raw_tracepoint_args, whose flexible array the loader cannot relocate. */
	__u64 *args = ctx;
	/* Every system call's return passes here: the task's status is read in place (a BTF
	 * pointer, no helper call to copy it), the cheapest test that a 64-bit call fails. */
	struct task_struct *task = bpf_get_current_task_btf();
	if (!(task->thread_info.status & VIGIL_TS_COMPAT))
		return 0;
	struct pt_regs *regs = (struct pt_regs *)args[0];
	long nr = BPF_CORE_READ(regs, orig_ax);
	if (nr != IA32_OPEN && nr != IA32_CREAT && nr != IA32_OPENAT && nr != IA32_OPEN_BY_HANDLE_AT &&
	    nr != IA32_OPENAT2)
		return 0;
	/* The 32-bit return value, sign-extended. */
	return on_open_exit((long)(int)args[1]);
}
