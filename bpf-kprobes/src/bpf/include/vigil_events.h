/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The ABI between vigil's in-kernel programs and the agent.
 *
 * Every record written to the ring buffer starts with `struct vigil_event_header`; its `kind`
 * says which struct follows. Kinds are numbered explicitly and a number is never reused: a
 * retired kind moves to the "retired" comment below. The Rust mirrors live in the module
 * `bpf-kprobes/src/abi/` (`mod.rs`, `policy.rs`; `record.rs` decodes records), whose layout
 * test (`layout_tests` in `mod.rs`, fed by `abi_layout.c`) pins every size and offset defined
 * here.
 *
 * This header must stay free of kernel types so that it means the same thing to clang and to
 * the Rust layout tests.
 */
#ifndef VIGIL_EVENTS_H
#define VIGIL_EVENTS_H

#ifndef __VMLINUX_H__
typedef unsigned char __u8;
typedef unsigned short __u16;
typedef unsigned int __u32;
typedef int __s32;
typedef unsigned long long __u64;
typedef long long __s64;
#endif

enum vigil_event_kind {
	VIGIL_EVENT_EXEC = 1,
	VIGIL_EVENT_FORK = 2,
	VIGIL_EVENT_EXIT = 3,
	VIGIL_EVENT_POLICY = 4,
	VIGIL_EVENT_HOOK = 5,
	VIGIL_EVENT_FLOW = 6,
	/* retired kinds: none yet */
};

/* Bounds on the variable-length strings of an exec record. */
#define VIGIL_PATH_MAX 4096    /* binary path and cwd as the kernel resolves them, NUL included */
#define VIGIL_PATH_DEPTH 64    /* path components walked before a path counts as truncated */
#define VIGIL_ARGS_MAX 4096    /* argv bytes kept (less one), NUL-separated, argv[0] included */
#define VIGIL_CGROUP_MAX 512   /* cgroup path below the hierarchy root */
#define VIGIL_CGROUP_DEPTH 16  /* cgroup levels walked */
#define VIGIL_COMM_LEN 16

/* Bits of `vigil_process.flags`. Names follow the Tetragon flag they map to. */
#define VIGIL_FLAG_TRUNC_FILENAME (1u << 0) /* binary path longer than VIGIL_PATH_MAX/DEPTH */
#define VIGIL_FLAG_TRUNC_ARGS (1u << 1)     /* argv longer than VIGIL_ARGS_MAX */
#define VIGIL_FLAG_ERROR_CWD (1u << 2)      /* cwd could not be read */
#define VIGIL_FLAG_TRUNC_CWD (1u << 3)      /* cwd longer than VIGIL_PATH_MAX/DEPTH */
#define VIGIL_FLAG_ERROR_ARGS (1u << 4)     /* argv could not be read from the new mm */
#define VIGIL_FLAG_TRUNC_CGROUP (1u << 5)   /* cgroup path longer than VIGIL_CGROUP_MAX */

/* Indexes into `vigil_process.ns`. */
enum vigil_ns_index {
	VIGIL_NS_UTS = 0,
	VIGIL_NS_IPC = 1,
	VIGIL_NS_MNT = 2,
	VIGIL_NS_PID = 3,
	VIGIL_NS_PID_FOR_CHILDREN = 4,
	VIGIL_NS_NET = 5,
	VIGIL_NS_TIME = 6,
	VIGIL_NS_CGROUP = 7,
	VIGIL_NS_USER = 8,
	VIGIL_NS_TIME_FOR_CHILDREN = 9,
	VIGIL_NS_COUNT = 10,
};

/* Indexes into the per-CPU drop counter map, one per kind (index 0 unused). */
#define VIGIL_DROP_SLOTS 8

struct vigil_event_header {
	__u32 kind;     /* enum vigil_event_kind */
	__u32 size;     /* bytes of the whole record, header included */
	__u64 ktime;    /* bpf_ktime_get_boot_ns() when the event happened */
};

/* Identity of a task as the kernel sees it at the moment of the event. */
struct vigil_process {
	__u32 pid;      /* thread-group id in the host pid namespace */
	__u32 tid;
	__u32 ppid;     /* real parent's thread-group id */
	__u32 nspid;    /* pid inside the task's own pid namespace */
	__u32 uid, gid, euid, egid;
	__u32 suid, sgid, fsuid, fsgid;
	__u32 auid;     /* loginuid, 4294967295 when unset */
	__u32 flags;    /* VIGIL_FLAG_* */
	__u64 cap_effective;
	__u64 cap_permitted;
	__u64 cap_inheritable;
	__u32 ns[VIGIL_NS_COUNT]; /* namespace inode numbers, by enum vigil_ns_index */
	__u64 cgroup_id;          /* kernfs id of the tracked hierarchy's cgroup */
	__u64 start_ktime;        /* task->start_boottime: when the process was forked */
	char comm[VIGIL_COMM_LEN];
};

/*
 * An execve that succeeded. Followed by `binary_len` bytes of path, `args_len` bytes of argv
 * (NUL-separated), `cwd_len` bytes of cwd and `cgroup_len` bytes of cgroup path, in that order,
 * none NUL-terminated.
 */
struct vigil_exec_event {
	struct vigil_event_header hdr;
	struct vigil_process proc;
	__u16 binary_len;
	__u16 args_len;
	__u16 cwd_len;
	__u16 cgroup_len;
	__u32 args_total;  /* argv bytes the process really has, for the truncation report */
	__u32 _pad0;
};

/* A new process (not a thread): the child inherits the parent's image until it execs. */
struct vigil_fork_event {
	struct vigil_event_header hdr;
	struct vigil_process proc; /* the child */
};

/* The last thread of a process has exited. */
struct vigil_exit_event {
	struct vigil_event_header hdr;
	__u32 pid;
	__u32 tid;          /* the thread that exited last */
	__u32 exit_code;    /* as in wait(2): (status << 8) | signal */
	__u32 _pad0;
};

/* Upper bound of the bytes after a `vigil_exec_event`. */
#define VIGIL_EXEC_DATA_MAX (VIGIL_PATH_MAX * 2 + VIGIL_ARGS_MAX + VIGIL_CGROUP_MAX)

/*
 * Policy rules: one per selector of a loaded policy, compiled by the agent. A rule matches when
 * its path filter and its binary filter (each optional) match; values live in the maps of
 * policy_maps.h keyed by rule id.
 */
#define VIGIL_MAX_RULES 64
#define VIGIL_MATCH_LEN 256 /* bytes of an exact filter's key path (NUL-padded) */
#define VIGIL_LPM_DATA 256  /* bytes of an LPM key's data (the kernel's limit): rule id + path */
#define VIGIL_MATCH_MAX 251 /* longest path prefix compared by any filter */
/* Entries of the value maps, over every loaded selector (bpf-kprobes/src/abi/limits.rs). */
#define VIGIL_INT_VALUES 65536 /* vigil_hook_values */
#define VIGIL_NET_VALUES 16384 /* vigil_hook_cidrs */
#define VIGIL_STR_VALUES 16384 /* each of the exact, prefix and postfix maps */
#define VIGIL_FILE_OPEN_HOOKS 32 /* first-match groups: bits of the rule walk's mask */
#define VIGIL_NAMES 4096        /* file names in the open prefilter (vigil_names) */

#define VIGIL_RULE_ACTIVE (1u << 0)
#define VIGIL_RULE_MONITOR (1u << 1)     /* report what the action would have done */
#define VIGIL_RULE_PATH_EQ (1u << 2)     /* path is one of vigil_path_exact */
#define VIGIL_RULE_PATH_PREFIX (1u << 3) /* path starts with one of vigil_path_prefix */
#define VIGIL_RULE_PATH_POSTFIX (1u << 4) /* path ends with one of vigil_path_postfix */
#define VIGIL_RULE_PATH_NOT (1u << 5)    /* negate the path filter */
#define VIGIL_RULE_BIN_EQ (1u << 6)      /* binary is one of vigil_bin_exact */
#define VIGIL_RULE_BIN_PREFIX (1u << 7)  /* binary starts with one of vigil_bin_prefix */
#define VIGIL_RULE_BIN_NOT (1u << 8)     /* negate the binary filter */
#define VIGIL_RULE_NOPOST (1u << 9)      /* act without reporting (NoPost beside the action) */
#define VIGIL_RULE_KILL (1u << 11)      /* Override, and kill the process too */
#define VIGIL_RULE_BIN_INODE (1u << 10)  /* BIN_EQ also needs the executable to be the file a value
					  * names (vigil_bin_inodes): every value has its key */

enum vigil_action {
	VIGIL_ACTION_POST = 0,
	VIGIL_ACTION_NOPOST = 1,
	VIGIL_ACTION_SIGKILL = 2,
	VIGIL_ACTION_OVERRIDE = 3,
	VIGIL_ACTION_SIGNAL = 4,
};

/* The hooks policy rules run on. */
enum vigil_hook {
	VIGIL_HOOK_FILE_OPEN = 1,
};

struct vigil_rule {
	__u32 flags;     /* VIGIL_RULE_* */
	__u32 policy_id; /* the rule's first-match group: its file-open hook (< VIGIL_FILE_OPEN_HOOKS) */
	__u32 hook;      /* enum vigil_hook */
	__u32 action;    /* enum vigil_action */
	__s32 arg;       /* errno (negative) for OVERRIDE, signal for SIGNAL */
	__u32 scope;     /* 0: every process; else only those in the scope's cgroups (vigil_scopes) */
};

/*
 * The pods a scoped policy applies to (a TracingPolicyNamespaced, a podSelector): the agent
 * writes one entry per scope and pod (or container) cgroup; a process is in a scope when its
 * cgroup or one of its ancestors at levels 1 to VIGIL_SCOPE_LEVELS below the root has an entry.
 */
#define VIGIL_SCOPE_ENTRIES 65536
#define VIGIL_SCOPES 4096 /* scope ids: 1 .. VIGIL_SCOPES - 1 */
#define VIGIL_SCOPE_LEVELS 8 /* cgroup levels below the root where scoped pods' cgroups may be */
struct vigil_scope_key {
	__u64 cgroup; /* kernfs id of the cgroup in the tracked hierarchy */
	__u32 scope;
	__u32 _pad0;
};

/*
 * Caller classes: each set of scopes some cgroup is in is a class (1, 2, ...; 0 is "in no
 * scope"), and the agent writes each scoped pod's (or container's) cgroup with its class. A
 * process's class is the class of its cgroup or of the nearest ancestor that has one; it is
 * kept per cgroup (vigil_class_cache) until the agent changes a class (the generation).
 */
#define VIGIL_CLASS_CGROUPS 65536
#define VIGIL_CLASS_CACHE 8192

/* A class found for a cgroup: in vigil_class_cache, and the last one a CPU found (in the
 * generic hooks' per-CPU scratch, scope.h), so a process making calls in a row finds its class
 * without a hash lookup. `cgroup` is cleared first, written last and read on both sides of
 * `value` (the generation, then the class), so a write interrupted or raced leaves a cgroup
 * that no longer matches, never the class of another cgroup. */
struct vigil_class_memo {
	__u64 cgroup;
	__u64 value;
};

/* File names (last path components) kept by the open prefilter. */
#define VIGIL_NAME_LEN 64

/* Written by the agent; read on every open. */
struct vigil_policy_state {
	__u32 prefilter; /* 1: dismiss opens whose name is not in vigil_names */
	__u32 rule_end;  /* rules are walked from slot 0 to this one (exclusive) */
	/* Rule slots that hold only for the executables their exact matchBinaries values name:
	 * an open by any other binary cannot match them. */
	__u64 bin_scoped;
};

/* Bits of vigil_policy_event.flags. */
#define VIGIL_POLICY_ENFORCED (1u << 0)   /* the action was carried out */
#define VIGIL_POLICY_MONITOR (1u << 1)    /* monitor mode: the action was only reported */
#define VIGIL_POLICY_VIA_LSM (1u << 2)    /* denied at an LSM check (a BPF LSM program, or a
					   * generic hook's Override by fmod_ret): before the effect */
#define VIGIL_POLICY_TRUNC_PATH (1u << 3) /* the path was longer than VIGIL_PATH_MAX */

/* A rule matched. Followed by `path_len` bytes of the subject path. */
struct vigil_policy_event {
	struct vigil_event_header hdr;
	__u32 pid;
	__u32 tid;
	__u32 rule;
	__u32 hook;
	__u32 action;
	__s32 arg;
	__u32 flags;
	__u16 path_len;
	__u16 mode; /* the opened file's inode mode */
};

/*
 * Generic hooks: kprobes and kretprobes on any kernel function (and, where kprobes are
 * unavailable, the enter tracepoints of system calls), and what stands for the socket functions
 * (sock_hooks.bpf.c), that decode their arguments, evaluate the policy's selectors and act. The
 * agent describes each hook in vigil_hook_configs, lists the hooks on each attach point in
 * vigil_hooks, keyed by the probed address (kprobes; ^ VIGIL_HOOK_KEY_RETURN for kretprobes),
 * VIGIL_HOOK_KEY_SYSCALL | the system call's number, or VIGIL_HOOK_KEY_SOCK_STATE | the
 * stand-in's code, and keeps its selectors in vigil_hook_rules.
 */
#define VIGIL_HOOK_ARGS 5
#define VIGIL_HOOK_KEY_SYSCALL (1ull << 63)
/* Keys of the hooks on what stands for the socket functions (see sock_hooks.bpf.c): the TCP
 * functions' on kernels without kprobes, the UDP functions' on every kernel. */
#define VIGIL_HOOK_KEY_SOCK_STATE (1ull << 62)
enum vigil_sock_state_hook {
	VIGIL_SOCK_STATE_CONNECT = 1, /* tcp_connect: the return from connect() that sent a SYN */
	VIGIL_SOCK_STATE_CLOSE = 2,   /* tcp_close: ESTABLISHED -> FIN_WAIT1, CLOSE_WAIT -> LAST_ACK */
	VIGIL_SOCK_STATE_LISTEN = 3,  /* inet_csk_listen_start: -> LISTEN */
	VIGIL_SOCK_STATE_ACCEPT = 4,  /* inet_csk_accept's return: the return from accept() */
	VIGIL_SOCK_STATE_UDP_SEND = 5, /* udp_sendmsg: the return from sendto/sendmsg/sendmmsg */
	VIGIL_SOCK_STATE_UDP_RECV = 6, /* udp_recvmsg: the return from recvfrom/recvmsg/recvmmsg */
};
/* Flipped in a function's address: the key of a hook on its return (a kretprobe). A kernel
 * address has its top bits set, so this clears one: OR-ing it in would leave the address, and
 * the hooks on a function's entry and on its return would share a list. */
#define VIGIL_HOOK_KEY_RETURN (1ull << 61)
/* Keys of uprobe hooks: a hash of the place (file, symbol, offset) with these bits, which no
 * kernel address, system call or stand-in key has; the uprobe program reads it as its attach
 * cookie (see abi::uprobe_key). */
#define VIGIL_HOOK_KEY_UPROBE (1ull << 60)
#define VIGIL_HOOK_KEY_UPROBE_RETURN (1ull << 59)
/* Keys of a policy's tracepoints and raw tracepoints: the slot of the program attached there
 * (one program per slot of each kind). */
#define VIGIL_HOOK_KEY_TP (1ull << 58)
#define VIGIL_HOOK_KEY_RAW_TP (1ull << 57)
#define VIGIL_TP_SLOTS 4

/* How a policy tracepoint's program reads field i of the record into register i. */
enum vigil_tp_field_kind {
	VIGIL_TP_NONE = 0,
	VIGIL_TP_INT = 1,      /* `size` bytes at `off` */
	VIGIL_TP_DATA_LOC = 2, /* __data_loc: the address of the bytes the u32 at `off` places */
	VIGIL_TP_ARRAY = 3,    /* an array in the record (char comm[16]): its address */
};

struct vigil_tp_field {
	__u16 off;
	__u8 kind; /* enum vigil_tp_field_kind */
	__u8 size;
};

struct vigil_tp_fields {
	struct vigil_tp_field f[VIGIL_HOOK_ARGS];
};
#define VIGIL_HOOK_STR 256 /* bytes kept of a string, path or buffer argument, NUL included */

enum vigil_arg_type {
	VIGIL_ARG_NONE = 0,
	VIGIL_ARG_INT = 1,      /* the register, cut to arg_bits and sign-extended when signed */
	VIGIL_ARG_SOCK = 2,     /* struct sock *: addresses, ports, family, type, protocol */
	VIGIL_ARG_STRING = 3,   /* char *, NUL-terminated */
	VIGIL_ARG_FILE = 4,     /* struct file *: its path */
	VIGIL_ARG_PATH = 5,     /* struct path *: its path */
	VIGIL_ARG_FD = 6,       /* a descriptor of the calling process: its file's path */
	VIGIL_ARG_SOCKADDR = 7, /* struct sockaddr *: family, address and port */
	VIGIL_ARG_BUF = 8,      /* bytes whose count is the argument at position arg_bits */
	VIGIL_ARG_CONST = 9,    /* the config's `konst`: a value the attach point implies */
	VIGIL_ARG_AT_PATH = 10, /* a system call's file name (user memory), made absolute from the
				 * descriptor at position arg_bits (VIGIL_AT_CWD: the working
				 * directory) and normalized ('.', '..', '//' resolved by name) */
	VIGIL_ARG_CRED = 11,    /* struct cred *: ids, securebits, capabilities, user namespace */
	VIGIL_ARG_CAP = 12,     /* kernel_cap_t *: the 64-bit set it points at, compared as an
				 * integer */
	VIGIL_ARG_SKB = 13,     /* struct sk_buff *: its IP and transport headers, length, hash,
				 * priority and mark (struct vigil_skb_value) */
	VIGIL_ARG_DENTRY = 14,  /* struct dentry *: its path within its filesystem */
	VIGIL_ARG_KIOCB = 15,   /* struct kiocb *: the path of its file */
	VIGIL_ARG_IOV = 16,     /* struct iov_iter *: the bytes it holds next (its first segment),
				 * at most the count at position arg_bits */
	/* Kernel objects, each read into struct vigil_kobj_value: */
	VIGIL_ARG_BPF_ATTR = 17,   /* union bpf_attr * (BPF_PROG_LOAD): type, insns, name */
	VIGIL_ARG_BPF_MAP = 18,    /* struct bpf_map *: type, key, value, entries, name */
	VIGIL_ARG_PERF_EVENT = 19, /* struct perf_event *: type, config, probe offset, the
				    * kprobe function its opener named (user memory) */
	VIGIL_ARG_MODULE = 20,     /* struct module *: name, taints */
	VIGIL_ARG_LOAD_INFO = 21,  /* struct load_info *: the module's name, whether its signature
				    * verified, taints */
	VIGIL_ARG_BINPRM = 22,     /* struct linux_binprm *: the path of the file it executes */
};

#define VIGIL_HOOK_SYSCALL (1u << 0) /* a syscall wrapper: arguments sit in the inner pt_regs */
/* A hook on a function's return reads the return value from this register slot, the arguments
 * the entry kept for the thread (vigil_entry_regs) from the others. */
#define VIGIL_HOOK_RETURN_REG 6
#define VIGIL_AT_CWD 0xff /* arg_bits of a VIGIL_ARG_AT_PATH relative to the working directory */

/*
 * The hooks on one key (each loaded policy may hook the same function): their slots in
 * vigil_hook_configs, run in order. vigil_hooks holds, by key, the hooks of policies that apply
 * to every process; vigil_class_hooks, by key and caller class (scope.h), those of scoped
 * policies that apply to the processes of that class. A list has room for VIGIL_HOOKS_PER_KEY
 * hooks; both maps allocate an entry only for a key (and class) that has hooks.
 */
#define VIGIL_HOOKS_PER_KEY 256
/* Generic hooks over every loaded policy: the slots of vigil_hook_configs. */
#define VIGIL_HOOK_SLOTS 4096
/* Keys with hooks of policies for every process (vigil_hooks), and key and class pairs with
 * hooks of scoped policies (vigil_class_hooks). */
#define VIGIL_HOOK_KEYS 4096
#define VIGIL_CLASS_LISTS 16384
struct vigil_hook_list {
	__u32 n;
	__u32 slot[VIGIL_HOOKS_PER_KEY];
	__u32 flags; /* VIGIL_LIST_* */
	/*
	 * The gate: where every selector of every hook here compares the file of one argument
	 * (register gate_reg, of type gate_type) with values, the agent writes the union of those
	 * values under gate_key, and a call whose file none of them matches skips the hooks at
	 * the door (one cached decision per file, see gate_admits in hooks.bpf.c). gate_ops 0: no
	 * gate, every call runs the hooks.
	 */
	__u8 gate_reg;
	__u8 gate_type;
	__u8 gate_ops; /* VIGIL_GATE_* */
	__u8 _pad0;
	__u32 gate_key;
	__u32 gate_generation; /* changes with the values: decisions cached before never apply */
	/* The same for a flags argument: where every selector tests register gate_mask_reg with
	 * Mask, a call sharing no bit with the union of their masks skips the hooks (0: no gate). */
	__u32 gate_mask_reg;
	__u64 gate_mask;
};

/* Bits of vigil_hook_list.gate_ops: the comparisons the gate's values are written for. */
#define VIGIL_GATE_EQ (1u << 0)
#define VIGIL_GATE_PREFIX (1u << 1)
#define VIGIL_GATE_POSTFIX (1u << 2)
/* The value key of a gate's values for one comparison (gate_key | the VIGIL_GATE_* bit << 16). */
#define VIGIL_GATE_KEY(gate, op) ((gate) | ((__u32)(op) << 16))

/* Bits of vigil_hook_list.flags. */
#define VIGIL_LIST_CLEARS_VERDICT (1u << 0) /* a hook here overrides at a later LSM check: a
					     * call it lets through clears the thread's verdict */
#define VIGIL_LIST_SCOPED (1u << 1) /* scoped policies have hooks on this key too: the caller's
				     * class list (vigil_class_hooks) runs after this one */
#define VIGIL_LIST_SYSCALL_REGS (1u << 2) /* a system call's wrapper: the arguments sit in the
					   * inner pt_regs (every hook here has VIGIL_HOOK_SYSCALL) */

/* A list of vigil_class_hooks: the hooks of scoped policies on `key` that apply to class
 * `class`. */
struct vigil_class_list_key {
	__u64 key;
	__u32 cls;
	__u32 _pad0;
};

/* Bits of vigil_hook_config.arg_flags. */
#define VIGIL_ARGF_USER (1u << 0)   /* the pointer is a user address (system call arguments) */
#define VIGIL_ARGF_SIGNED (1u << 1) /* sign-extend the integer from arg_bits */

struct vigil_hook_config {
	__u32 hook_id;
	__u32 flags;
	__u8 arg_reg[VIGIL_HOOK_ARGS];   /* argument position of each value */
	__u8 arg_type[VIGIL_HOOK_ARGS];  /* enum vigil_arg_type */
	__u8 arg_flags[VIGIL_HOOK_ARGS]; /* VIGIL_ARGF_* */
	__u8 arg_bits[VIGIL_HOOK_ARGS];  /* integer width; for VIGIL_ARG_BUF the length's position */
	__u8 nargs;
	__u8 _pad0;
	__u16 scope;      /* its policy's scope, 0: every process (what it applies to is the list it is on:
			   vigil_hooks, or the class lists of vigil_class_hooks) */
	__u16 rule_first; /* the hook's selectors are vigil_hook_rules[rule_first, +rule_count) */
	__u16 rule_count; /* 0: report every call */
	__s64 konst;
};

/*
 * One selector of a generic hook. It matches when every condition holds: its argument
 * conditions, then the binary, pid, namespace and capability filters that are set. Value sets
 * live in vigil_hook_values (integers, ports, namespaces, pids), vigil_hook_cidrs (addresses)
 * and the string maps of policy_maps.h, keyed by VIGIL_HOOK_RULE_KEY(rule, part).
 */
#define VIGIL_HOOK_RULES 16384
#define VIGIL_HOOK_CONDS 8
#define VIGIL_HOOK_RULE_KEY(rule, part) (0x80000000u | ((rule) << 8) | (part))
#define VIGIL_PART_NS 16      /* + enum vigil_ns_index */
#define VIGIL_PART_PIDS 32
#define VIGIL_PART_BINARY 48

enum vigil_cond_op {
	VIGIL_OP_INT_IN = 1, /* one of the values */
	VIGIL_OP_GT = 2,
	VIGIL_OP_LT = 3,
	VIGIL_OP_MASK = 4, /* shares a bit with `value` */
	VIGIL_OP_STR_EQ = 5,
	VIGIL_OP_STR_PREFIX = 6,
	VIGIL_OP_STR_POSTFIX = 7,
	VIGIL_OP_SADDR = 8, /* in one of the CIDRs */
	VIGIL_OP_DADDR = 9,
	VIGIL_OP_SPORT = 10,
	VIGIL_OP_DPORT = 11,
	VIGIL_OP_PROTOCOL = 12,
	VIGIL_OP_FAMILY = 13,
	VIGIL_OP_STATE = 14, /* a socket's TCP state is one of the values */
};

struct vigil_hook_cond {
	__u8 arg;    /* index into the hook's arguments */
	__u8 op;     /* enum vigil_cond_op */
	__u8 negate; /* the Not- form */
	__u8 _pad0[5];
	__s64 value; /* operand of GT, LT and MASK */
};

/* vigil_hook_rule.sock_action: TrackSock and UntrackSock (the agent's table of which process
 * a socket belongs to, for events in no process's context). */
#define VIGIL_SOCK_TRACK 1
#define VIGIL_SOCK_UNTRACK 2
/* vigil_hook_config.flags: on the hook's match, track the socket its function returned
 * (`returnArgAction: TrackSock`) or untrack it. */
#define VIGIL_HOOK_TRACK_RETURN (1u << 1)
#define VIGIL_HOOK_UNTRACK_RETURN (1u << 2)

/* Bits of vigil_hook_rule.pid_flags. */
#define VIGIL_PIDS_IN (1u << 0)
#define VIGIL_PIDS_NOT_IN (1u << 1)
#define VIGIL_PIDS_NS (1u << 2)     /* compare the pid in the task's own pid namespace */
#define VIGIL_PIDS_FOLLOW (1u << 3) /* a fork that has not exec'd counts as its parent */

/* vigil_hook_rule.cap_set values. */
#define VIGIL_CAPS_EFFECTIVE 1
#define VIGIL_CAPS_PERMITTED 2
#define VIGIL_CAPS_INHERITABLE 3

struct vigil_hook_rule {
	__u32 flags;     /* VIGIL_RULE_ACTIVE, MONITOR, NOPOST, BIN_EQ, BIN_PREFIX, BIN_NOT */
	__u32 policy_id;
	__u32 action;    /* enum vigil_action */
	__s32 arg;       /* signal for SIGNAL */
	__u32 nconds;
	__u32 pid_flags; /* VIGIL_PIDS_* */
	__u32 ns_in;     /* bit i: namespace i must be one of the values */
	__u32 ns_not_in; /* bit i: namespace i must be none of them */
	__u8 cap_set[3]; /* VIGIL_CAPS_* or 0 */
	__u8 cap_not[3]; /* NotIn: none of the mask's capabilities */
	__u8 sock_action; /* VIGIL_SOCK_TRACK or VIGIL_SOCK_UNTRACK the socket argument sock_arg */
	__u8 sock_arg;
	__u32 generation; /* new for every selector written: keys the in-kernel decision cache */
	__u32 _pad1;
	__u64 cap_mask[3];
	struct vigil_hook_cond conds[VIGIL_HOOK_CONDS];
};

struct vigil_sock_value {
	__u16 family;
	__u16 type;
	__u16 protocol;
	__u16 sport; /* host order */
	__u16 dport; /* host order; a sockaddr's port */
	__u8 state;
	__u8 route;     /* enum vigil_route: where the socket's cached route leads, 0 if none */
	__u32 netns;    /* inode number of the socket's network namespace */
	__u8 saddr[16]; /* IPv4 in the first 4 bytes */
	__u8 daddr[16]; /* a sockaddr's address */
	__u64 bytes_sent;     /* TCP: bytes the peer acknowledged */
	__u64 bytes_received; /* TCP: bytes received */
	__u64 cookie;         /* the socket's address: never written out, the agent keys a hash */
	__u32 route_ifindex;  /* the route's device, in the socket's namespace (not for xfrm) */
	__u32 route_spi;      /* the route's transformation's SPI, host order (xfrm routes) */
};

/* A file, path or descriptor argument: whether its path was cut short, and its inode's mode. */
struct vigil_file_value {
	__s64 cut;
	__u16 mode; /* 0 where no inode was read (a name joined to its directory) */
	__u16 _pad0[3];
};

/* A `struct cred *` argument: what Tetragon's process_credentials_arg reports. */
struct vigil_cred_value {
	__u32 uid, gid, euid, egid, suid, sgid, fsuid, fsgid;
	__u32 securebits;
	__s32 ns_level; /* the user namespace's depth: 0 is the host's */
	__u32 ns_uid;   /* its owner */
	__u32 ns_gid;
	__u32 ns_inum;
	__u32 _pad0;
	__u64 cap_permitted;
	__u64 cap_effective;
	__u64 cap_inheritable;
};

/* A `struct sk_buff *` argument: the socket value's addresses, ports, protocol and family at
 * the same places (the socket conditions read them alike), then the buffer's own fields. */
struct vigil_skb_value {
	__u16 family;
	__u16 _type;
	__u16 protocol; /* the IP protocol (IPPROTO_UDP, ...) */
	__u16 sport;    /* host order */
	__u16 dport;
	__u8 _state;
	__u8 _pad0;
	__u32 _netns;
	__u8 saddr[16];
	__u8 daddr[16];
	__u32 hash;
	__u32 len;
	__u32 priority;
	__u32 mark;
};

/* A kernel object argument (VIGIL_ARG_BPF_ATTR to VIGIL_ARG_LOAD_INFO): numbers by type (see
 * hook_args.h read_kobj), then a name. */
struct vigil_kobj_value {
	__u32 n[6];
	char name[56];
};

struct vigil_arg_value {
	__u32 type; /* enum vigil_arg_type */
	__u32 _pad0;
	union {
		__s64 int_value; /* integers; for strings, paths and buffers 1 when cut short */
		struct vigil_sock_value sock;
		struct vigil_file_value file;
		struct vigil_cred_value cred;
		struct vigil_skb_value skb;
		struct vigil_kobj_value kobj;
	};
};

#define VIGIL_HOOK_NO_RULE 0xffffffffu

/*
 * A generic hook fired (and, when it has selectors, one matched). Followed by the bytes of its
 * string, path and buffer arguments, `str_len[i]` each, in argument order.
 */
struct vigil_hook_event {
	struct vigil_event_header hdr;
	__u32 pid;
	__u32 tid;
	__u32 hook_id;
	__u32 nargs;
	__u32 rule;       /* the vigil_hook_rules slot that matched, or VIGIL_HOOK_NO_RULE */
	__u32 action;     /* enum vigil_action */
	__s32 action_arg;
	__u32 flags;      /* VIGIL_POLICY_ENFORCED, VIGIL_POLICY_MONITOR */
	struct vigil_arg_value args[VIGIL_HOOK_ARGS];
	__u16 str_len[VIGIL_HOOK_ARGS];
	__u16 _pad0[3];
	__u64 key; /* the attach point's vigil_hooks key: which member of a list hook fired */
};

/* A file-open denial fentry on security_file_open leaves for the fmod_ret program there,
 * keyed by the thread (pid_tgid). The fmod_ret program reads `file` at offset 0 and `verdict`
 * at offset 8 (sensor/src/loader/fmod_ret.rs). */
struct vigil_fmod_verdict {
	__u64 file;    /* the struct file * judged */
	__s64 verdict; /* the errno to return, negative */
};

/* A file as the kernel knows it, whatever name a mount tree gives it: the superblock's device
 * (the kernel's dev_t, major << 20 | minor) and the inode number. Exact path values of file-open
 * rules are also written by this key (vigil_path_inodes), so a hard link or a bind mount does
 * not rename a protected file. */
struct vigil_inode_key {
	__u64 ino;
	__u32 dev;
	__u32 _pad0;
};

/* Knobs the agent writes before attaching, read by every program. */
struct vigil_config {
	__u32 cgroup_subsys; /* cgroup v1 subsystem whose path is reported, or VIGIL_CGROUP_V2 */
	__u32 agent_tgid;    /* generic hooks ignore the agent's own calls (its writes, connects) */
	__u32 stopping;      /* the agent is stopping: no policy acts any more (see handover.rs) */
	__u32 _pad0;
	/* The agent's start, in clock ticks since boot (/proc/<pid>/stat's field 22): with the tgid
	 * it names the agent, so a process that reuses the pid of an agent that died while its
	 * programs stay pinned is not taken for it. */
	__u64 agent_start_ticks;
	__u64 tick_ns;       /* nanoseconds per clock tick (10^9 / USER_HZ) */
	/* Ring-buffer drops the agent had read and reported: a next agent reports the rest as
	 * lost while no agent read (see sensor/src/loader/pins.rs). */
	__u64 drops_seen;
	/* A next agent, written by it into this generation's pinned config when it starts: until
	 * it retires this generation, these programs leave its calls alone too (its connects to
	 * the API server and the exporters, its reads of its own files), as its own programs do. */
	__u32 successor_tgid;
	__u32 _pad1;
	__u64 successor_start_ticks;
};

#define VIGIL_CGROUP_V2 0xffffffffu

/*
 * Encryption awareness (flow.bpf.c): where a flow's packets leave through, and whether that
 * encrypts them.
 */

/* What a route or a device does with a packet: the device's kind (its rtnl_link_ops->kind, set
 * by the driver, never its name) or the transformation on the route. */
enum vigil_route {
	VIGIL_ROUTE_UNREAD = 0,
	VIGIL_ROUTE_LOOPBACK = 1,       /* stays on this machine */
	VIGIL_ROUTE_WIREGUARD = 2,      /* the kernel's WireGuard device */
	VIGIL_ROUTE_XFRM_TRANSPORT = 3, /* an IPsec SA in transport mode */
	VIGIL_ROUTE_XFRM_TUNNEL = 4,    /* an IPsec SA in tunnel mode */
	VIGIL_ROUTE_XFRM_OTHER = 5,     /* another xfrm mode (BEET, ...) */
	VIGIL_ROUTE_USER = 6,           /* tun or tap: a user-space program reads the packets */
	VIGIL_ROUTE_ENCAP = 7,          /* VXLAN or Geneve: the encapsulated packet decides */
	VIGIL_ROUTE_DEVICE = 8,         /* any other device: the packet leaves as it is */
	VIGIL_ROUTE_UPPER = 9,          /* a bond, VLAN, bridge, tunnel, xfrm interface ...: the
					 * device below or the outer packet decides */
};

/* A flow's verdict (the agent names them: wireguard, ipsec, none, local, unknown). */
enum vigil_enc_mode {
	VIGIL_ENC_UNKNOWN = 0,
	VIGIL_ENC_NONE = 1,
	VIGIL_ENC_WIREGUARD = 2,
	VIGIL_ENC_IPSEC = 3,
	VIGIL_ENC_LOCAL = 4,
};

/* What a verdict rests on. */
enum vigil_enc_evidence {
	VIGIL_EVIDENCE_DEVICE = 1, /* the device the packet left through (net_dev_start_xmit) */
	VIGIL_EVIDENCE_XFRM = 2,   /* the transformation applied on output (xfrm_output) */
};

/* Bits of vigil_flow_verdict.flags. */
#define VIGIL_FLOW_VXLAN (1u << 0)    /* the tuple was read inside a VXLAN packet */
#define VIGIL_FLOW_AH (1u << 1)       /* the SA is AH: authenticated, not encrypted */
#define VIGIL_FLOW_NULL_ENC (1u << 2) /* the SA encrypts nothing: cipher_null, GMAC or IPComp */

/* A flow by its inner 5-tuple, as its packets carry it (IPv4 in the first 4 bytes). */
struct vigil_flow_key {
	__u8 saddr[16];
	__u8 daddr[16];
	__u16 sport; /* host order */
	__u16 dport; /* host order */
	__u8 family; /* AF_INET or AF_INET6 */
	__u8 protocol;
	__u16 _pad0;
};

/* How a flow leaves the node. The first 16 bytes are its identity: a packet whose verdict
 * differs there is reported again. */
struct vigil_flow_verdict {
	__u8 mode;     /* enum vigil_enc_mode */
	__u8 evidence; /* enum vigil_enc_evidence */
	__u8 route;    /* enum vigil_route: the device's kind, or the SA's mode */
	__u8 flags;    /* VIGIL_FLOW_* */
	__u32 ifindex; /* the device (evidence DEVICE) */
	__u32 spi;     /* the SA's SPI, host order (evidence XFRM) */
	__u32 reqid;   /* the SA's reqid */
	__u32 range;   /* the vigil_flow_ranges value that made the flow tracked */
	__u16 outer_family; /* the SA's family (AF_INET, AF_INET6), 0 for none */
	__u16 _pad0;
	__u8 outer_daddr[16]; /* the SA's destination: the far end of the tunnel */
	char ifname[16];      /* the device's name */
};

/* A flow's verdict, new or changed. */
struct vigil_flow_event {
	struct vigil_event_header hdr;
	struct vigil_flow_key key;
	struct vigil_flow_verdict verdict;
	__u64 sock;      /* the sending socket's address (as vigil_sock_value.cookie), 0 for none */
	__u32 dev_netns; /* the network namespace the packet left from */
	__u32 _pad0;
};

/* The remote ranges whose flows are tracked: an LPM key over IPv6 addresses, IPv4 mapped
 * (::ffff:a.b.c.d, prefix length + 96). */
struct vigil_flow_range_key {
	__u32 prefixlen;
	__u8 addr[16];
};

/* vigil_flow_config.flags: the xfrm_output program is attached, so an ESP packet whose SPI it
 * did not see is no SA's. */
#define VIGIL_FLOW_CFG_XFRM (1u << 0)

/* The flow programs' knobs, written by the agent. */
struct vigil_flow_config {
	__u32 node_netns; /* packets count once they leave a device of this network namespace */
	__u32 flags;      /* VIGIL_FLOW_CFG_* */
	/* Bit b of word b / 64: some range holds addresses whose first byte is b (IPv4, IPv6):
	 * a packet to any other address costs no range lookup. */
	__u64 first_v4[4];
	__u64 first_v6[4];
};

#endif /* VIGIL_EVENTS_H */
