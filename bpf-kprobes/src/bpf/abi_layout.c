// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Built for the host by build.rs and run once: prints the size of every ABI struct, the
 * offset of every field and the value of the constants listed at the end as Rust source
 * (`abi_layout.rs`), which the layout test in the module `src/abi/` (`layout_tests` in
 * `mod.rs`) compares with the `#[repr(C)]` mirrors and constants there. This is what keeps the
 * C header and the Rust types from drifting.
 */
#include <stddef.h>
#include <stdio.h>
#include "vigil_events.h"

#define SIZE(s) printf("(\"%s\", \"\", %zu),\n", #s, sizeof(struct s))
#define FIELD(s, f) printf("(\"%s\", \"%s\", %zu),\n", #s, #f, offsetof(struct s, f))

int main(void)
{
	printf("/// (struct, field, offset or size) as clang lays out vigil_events.h.\n");
	printf("pub const C_LAYOUT: &[(&str, &str, usize)] = &[\n");
	SIZE(vigil_event_header);
	FIELD(vigil_event_header, kind);
	FIELD(vigil_event_header, size);
	FIELD(vigil_event_header, ktime);

	SIZE(vigil_process);
	FIELD(vigil_process, pid);
	FIELD(vigil_process, tid);
	FIELD(vigil_process, ppid);
	FIELD(vigil_process, nspid);
	FIELD(vigil_process, uid);
	FIELD(vigil_process, gid);
	FIELD(vigil_process, euid);
	FIELD(vigil_process, egid);
	FIELD(vigil_process, suid);
	FIELD(vigil_process, sgid);
	FIELD(vigil_process, fsuid);
	FIELD(vigil_process, fsgid);
	FIELD(vigil_process, auid);
	FIELD(vigil_process, flags);
	FIELD(vigil_process, cap_effective);
	FIELD(vigil_process, cap_permitted);
	FIELD(vigil_process, cap_inheritable);
	FIELD(vigil_process, ns);
	FIELD(vigil_process, cgroup_id);
	FIELD(vigil_process, start_ktime);
	FIELD(vigil_process, comm);

	SIZE(vigil_exec_event);
	FIELD(vigil_exec_event, hdr);
	FIELD(vigil_exec_event, proc);
	FIELD(vigil_exec_event, binary_len);
	FIELD(vigil_exec_event, args_len);
	FIELD(vigil_exec_event, cwd_len);
	FIELD(vigil_exec_event, cgroup_len);
	FIELD(vigil_exec_event, args_total);

	SIZE(vigil_fork_event);
	FIELD(vigil_fork_event, hdr);
	FIELD(vigil_fork_event, proc);

	SIZE(vigil_exit_event);
	FIELD(vigil_exit_event, hdr);
	FIELD(vigil_exit_event, pid);
	FIELD(vigil_exit_event, tid);
	FIELD(vigil_exit_event, exit_code);

	SIZE(vigil_scope_key);
	FIELD(vigil_scope_key, cgroup);
	FIELD(vigil_scope_key, scope);
	SIZE(vigil_class_list_key);
	FIELD(vigil_class_list_key, key);
	FIELD(vigil_class_list_key, cls);
	SIZE(vigil_class_memo);
	FIELD(vigil_class_memo, cgroup);
	FIELD(vigil_class_memo, value);
	SIZE(vigil_rule);
	FIELD(vigil_rule, flags);
	FIELD(vigil_rule, policy_id);
	FIELD(vigil_rule, hook);
	FIELD(vigil_rule, action);
	FIELD(vigil_rule, arg);
	FIELD(vigil_rule, scope);

	SIZE(vigil_policy_event);
	FIELD(vigil_policy_event, hdr);
	FIELD(vigil_policy_event, pid);
	FIELD(vigil_policy_event, tid);
	FIELD(vigil_policy_event, rule);
	FIELD(vigil_policy_event, hook);
	FIELD(vigil_policy_event, action);
	FIELD(vigil_policy_event, arg);
	FIELD(vigil_policy_event, flags);
	FIELD(vigil_policy_event, path_len);
	FIELD(vigil_policy_event, mode);

	SIZE(vigil_policy_state);
	FIELD(vigil_policy_state, prefilter);
	FIELD(vigil_policy_state, rule_end);

	SIZE(vigil_hook_list);
	FIELD(vigil_hook_list, n);
	FIELD(vigil_hook_list, slot);
	FIELD(vigil_hook_list, gate_reg);
	FIELD(vigil_hook_list, gate_type);
	FIELD(vigil_hook_list, gate_ops);
	FIELD(vigil_hook_list, gate_key);
	FIELD(vigil_hook_list, gate_generation);
	FIELD(vigil_hook_list, gate_mask_reg);
	FIELD(vigil_hook_list, gate_mask);

	SIZE(vigil_hook_config);
	FIELD(vigil_hook_config, hook_id);
	FIELD(vigil_hook_config, flags);
	FIELD(vigil_hook_config, scope);
	FIELD(vigil_hook_config, arg_reg);
	FIELD(vigil_hook_config, arg_type);
	FIELD(vigil_hook_config, arg_flags);
	FIELD(vigil_hook_config, arg_bits);
	FIELD(vigil_hook_config, nargs);
	FIELD(vigil_hook_config, rule_first);
	FIELD(vigil_hook_config, rule_count);
	FIELD(vigil_hook_config, konst);

	SIZE(vigil_hook_cond);
	FIELD(vigil_hook_cond, arg);
	FIELD(vigil_hook_cond, op);
	FIELD(vigil_hook_cond, negate);
	FIELD(vigil_hook_cond, value);

	SIZE(vigil_hook_rule);
	FIELD(vigil_hook_rule, flags);
	FIELD(vigil_hook_rule, policy_id);
	FIELD(vigil_hook_rule, action);
	FIELD(vigil_hook_rule, arg);
	FIELD(vigil_hook_rule, nconds);
	FIELD(vigil_hook_rule, pid_flags);
	FIELD(vigil_hook_rule, ns_in);
	FIELD(vigil_hook_rule, ns_not_in);
	FIELD(vigil_hook_rule, cap_set);
	FIELD(vigil_hook_rule, cap_not);
	FIELD(vigil_hook_rule, sock_action);
	FIELD(vigil_hook_rule, sock_arg);
	FIELD(vigil_hook_rule, generation);
	FIELD(vigil_hook_rule, cap_mask);
	FIELD(vigil_hook_rule, conds);

	SIZE(vigil_sock_value);
	FIELD(vigil_sock_value, family);
	FIELD(vigil_sock_value, type);
	FIELD(vigil_sock_value, protocol);
	FIELD(vigil_sock_value, sport);
	FIELD(vigil_sock_value, dport);
	FIELD(vigil_sock_value, state);
	FIELD(vigil_sock_value, route);
	FIELD(vigil_sock_value, netns);
	FIELD(vigil_sock_value, saddr);
	FIELD(vigil_sock_value, daddr);
	FIELD(vigil_sock_value, route_ifindex);
	FIELD(vigil_sock_value, route_spi);
	FIELD(vigil_sock_value, bytes_sent);
	FIELD(vigil_sock_value, bytes_received);
	FIELD(vigil_sock_value, cookie);

	SIZE(vigil_kobj_value);
	FIELD(vigil_kobj_value, n);
	FIELD(vigil_kobj_value, name);
	SIZE(vigil_tp_field);
	FIELD(vigil_tp_field, off);
	FIELD(vigil_tp_field, kind);
	FIELD(vigil_tp_field, size);
	SIZE(vigil_tp_fields);
	FIELD(vigil_tp_fields, f);
	SIZE(vigil_file_value);
	FIELD(vigil_file_value, cut);
	FIELD(vigil_file_value, mode);

	SIZE(vigil_cred_value);
	FIELD(vigil_cred_value, uid);
	FIELD(vigil_cred_value, gid);
	FIELD(vigil_cred_value, euid);
	FIELD(vigil_cred_value, egid);
	FIELD(vigil_cred_value, suid);
	FIELD(vigil_cred_value, sgid);
	FIELD(vigil_cred_value, fsuid);
	FIELD(vigil_cred_value, fsgid);
	FIELD(vigil_cred_value, securebits);
	FIELD(vigil_cred_value, ns_level);
	FIELD(vigil_cred_value, ns_uid);
	FIELD(vigil_cred_value, ns_gid);
	FIELD(vigil_cred_value, ns_inum);
	FIELD(vigil_cred_value, cap_permitted);
	FIELD(vigil_cred_value, cap_effective);
	FIELD(vigil_cred_value, cap_inheritable);

	SIZE(vigil_skb_value);
	FIELD(vigil_skb_value, family);
	FIELD(vigil_skb_value, protocol);
	FIELD(vigil_skb_value, sport);
	FIELD(vigil_skb_value, dport);
	FIELD(vigil_skb_value, saddr);
	FIELD(vigil_skb_value, daddr);
	FIELD(vigil_skb_value, hash);
	FIELD(vigil_skb_value, len);
	FIELD(vigil_skb_value, priority);
	FIELD(vigil_skb_value, mark);

	SIZE(vigil_arg_value);
	FIELD(vigil_arg_value, type);
	FIELD(vigil_arg_value, int_value);

	SIZE(vigil_hook_event);
	FIELD(vigil_hook_event, hdr);
	FIELD(vigil_hook_event, pid);
	FIELD(vigil_hook_event, tid);
	FIELD(vigil_hook_event, hook_id);
	FIELD(vigil_hook_event, nargs);
	FIELD(vigil_hook_event, rule);
	FIELD(vigil_hook_event, action);
	FIELD(vigil_hook_event, action_arg);
	FIELD(vigil_hook_event, flags);
	FIELD(vigil_hook_event, args);
	FIELD(vigil_hook_event, str_len);
	FIELD(vigil_hook_event, key);

	SIZE(vigil_inode_key);
	FIELD(vigil_inode_key, ino);
	FIELD(vigil_inode_key, dev);
	SIZE(vigil_fmod_verdict);
	FIELD(vigil_fmod_verdict, file);
	FIELD(vigil_fmod_verdict, verdict);

	SIZE(vigil_flow_key);
	FIELD(vigil_flow_key, saddr);
	FIELD(vigil_flow_key, daddr);
	FIELD(vigil_flow_key, sport);
	FIELD(vigil_flow_key, dport);
	FIELD(vigil_flow_key, family);
	FIELD(vigil_flow_key, protocol);
	SIZE(vigil_flow_verdict);
	FIELD(vigil_flow_verdict, mode);
	FIELD(vigil_flow_verdict, evidence);
	FIELD(vigil_flow_verdict, route);
	FIELD(vigil_flow_verdict, flags);
	FIELD(vigil_flow_verdict, ifindex);
	FIELD(vigil_flow_verdict, spi);
	FIELD(vigil_flow_verdict, reqid);
	FIELD(vigil_flow_verdict, range);
	FIELD(vigil_flow_verdict, outer_family);
	FIELD(vigil_flow_verdict, outer_daddr);
	FIELD(vigil_flow_verdict, ifname);
	SIZE(vigil_flow_event);
	FIELD(vigil_flow_event, hdr);
	FIELD(vigil_flow_event, key);
	FIELD(vigil_flow_event, verdict);
	FIELD(vigil_flow_event, sock);
	FIELD(vigil_flow_event, dev_netns);
	SIZE(vigil_flow_range_key);
	FIELD(vigil_flow_range_key, prefixlen);
	FIELD(vigil_flow_range_key, addr);
	SIZE(vigil_flow_config);
	FIELD(vigil_flow_config, node_netns);
	FIELD(vigil_flow_config, flags);
	FIELD(vigil_flow_config, first_v4);
	FIELD(vigil_flow_config, first_v6);

	SIZE(vigil_config);
	FIELD(vigil_config, cgroup_subsys);
	FIELD(vigil_config, agent_tgid);
	FIELD(vigil_config, stopping);
	FIELD(vigil_config, agent_start_ticks);
	FIELD(vigil_config, tick_ns);
	FIELD(vigil_config, drops_seen);
	FIELD(vigil_config, successor_tgid);
	FIELD(vigil_config, successor_start_ticks);

	printf("(\"VIGIL_PATH_MAX\", \"#define\", %d),\n", VIGIL_PATH_MAX);
	printf("(\"VIGIL_ARGS_MAX\", \"#define\", %d),\n", VIGIL_ARGS_MAX);
	printf("(\"VIGIL_CGROUP_MAX\", \"#define\", %d),\n", VIGIL_CGROUP_MAX);
	printf("(\"VIGIL_NS_COUNT\", \"#define\", %d),\n", VIGIL_NS_COUNT);
	printf("(\"VIGIL_DROP_SLOTS\", \"#define\", %d),\n", VIGIL_DROP_SLOTS);
	printf("(\"VIGIL_EVENT_EXEC\", \"#define\", %d),\n", VIGIL_EVENT_EXEC);
	printf("(\"VIGIL_EVENT_FORK\", \"#define\", %d),\n", VIGIL_EVENT_FORK);
	printf("(\"VIGIL_EVENT_EXIT\", \"#define\", %d),\n", VIGIL_EVENT_EXIT);
	printf("(\"VIGIL_EVENT_POLICY\", \"#define\", %d),\n", VIGIL_EVENT_POLICY);
	printf("(\"VIGIL_MAX_RULES\", \"#define\", %d),\n", VIGIL_MAX_RULES);
	printf("(\"VIGIL_MATCH_LEN\", \"#define\", %d),\n", VIGIL_MATCH_LEN);
	printf("(\"VIGIL_LPM_DATA\", \"#define\", %d),\n", VIGIL_LPM_DATA);
	printf("(\"VIGIL_MATCH_MAX\", \"#define\", %d),\n", VIGIL_MATCH_MAX);
	printf("(\"VIGIL_INT_VALUES\", \"#define\", %d),\n", VIGIL_INT_VALUES);
	printf("(\"VIGIL_NET_VALUES\", \"#define\", %d),\n", VIGIL_NET_VALUES);
	printf("(\"VIGIL_STR_VALUES\", \"#define\", %d),\n", VIGIL_STR_VALUES);
	printf("(\"VIGIL_FILE_OPEN_HOOKS\", \"#define\", %d),\n", VIGIL_FILE_OPEN_HOOKS);
	printf("(\"VIGIL_NAMES\", \"#define\", %d),\n", VIGIL_NAMES);
	printf("(\"VIGIL_SCOPE_ENTRIES\", \"#define\", %d),\n", VIGIL_SCOPE_ENTRIES);
	printf("(\"VIGIL_SCOPES\", \"#define\", %d),\n", VIGIL_SCOPES);
	printf("(\"VIGIL_HOOK_CONDS\", \"#define\", %d),\n", VIGIL_HOOK_CONDS);
	printf("(\"VIGIL_SOCK_STATE\", \"tcp_connect\", %d),\n", VIGIL_SOCK_STATE_CONNECT);
	printf("(\"VIGIL_SOCK_STATE\", \"tcp_close\", %d),\n", VIGIL_SOCK_STATE_CLOSE);
	printf("(\"VIGIL_SOCK_STATE\", \"inet_csk_listen_start\", %d),\n", VIGIL_SOCK_STATE_LISTEN);
	printf("(\"VIGIL_SOCK_STATE\", \"inet_csk_accept\", %d),\n", VIGIL_SOCK_STATE_ACCEPT);
	printf("(\"VIGIL_SOCK_STATE\", \"udp_sendmsg\", %d),\n", VIGIL_SOCK_STATE_UDP_SEND);
	printf("(\"VIGIL_SOCK_STATE\", \"udp_recvmsg\", %d),\n", VIGIL_SOCK_STATE_UDP_RECV);
	printf("(\"VIGIL_NAME_LEN\", \"#define\", %d),\n", VIGIL_NAME_LEN);
	printf("(\"VIGIL_EVENT_HOOK\", \"#define\", %d),\n", VIGIL_EVENT_HOOK);
	printf("(\"VIGIL_EVENT_FLOW\", \"#define\", %d),\n", VIGIL_EVENT_FLOW);
	printf("(\"VIGIL_ROUTE_DEVICE\", \"#define\", %d),\n", VIGIL_ROUTE_DEVICE);
	printf("(\"VIGIL_ROUTE_USER\", \"#define\", %d),\n", VIGIL_ROUTE_USER);
	printf("(\"VIGIL_ROUTE_UPPER\", \"#define\", %d),\n", VIGIL_ROUTE_UPPER);
	printf("(\"VIGIL_FLOW_CFG_XFRM\", \"#define\", %d),\n", VIGIL_FLOW_CFG_XFRM);
	printf("(\"VIGIL_ENC_LOCAL\", \"#define\", %d),\n", VIGIL_ENC_LOCAL);
	printf("(\"VIGIL_EVIDENCE_XFRM\", \"#define\", %d),\n", VIGIL_EVIDENCE_XFRM);
	printf("(\"VIGIL_HOOK_ARGS\", \"#define\", %d),\n", VIGIL_HOOK_ARGS);
	printf("(\"VIGIL_HOOKS_PER_KEY\", \"#define\", %d),\n", VIGIL_HOOKS_PER_KEY);
	printf("(\"VIGIL_HOOK_SLOTS\", \"#define\", %d),\n", VIGIL_HOOK_SLOTS);
	printf("(\"VIGIL_HOOK_KEYS\", \"#define\", %d),\n", VIGIL_HOOK_KEYS);
	printf("(\"VIGIL_CLASS_LISTS\", \"#define\", %d),\n", VIGIL_CLASS_LISTS);
	printf("(\"VIGIL_CLASS_CGROUPS\", \"#define\", %d),\n", VIGIL_CLASS_CGROUPS);
	printf("(\"VIGIL_LIST_SCOPED\", \"#define\", %d),\n", VIGIL_LIST_SCOPED);
	printf("(\"VIGIL_LIST_SYSCALL_REGS\", \"#define\", %d),\n", VIGIL_LIST_SYSCALL_REGS);
	printf("(\"VIGIL_HOOK_RULES\", \"#define\", %d),\n", VIGIL_HOOK_RULES);
	printf("(\"VIGIL_HOOK_NO_RULE\", \"#define\", %u),\n", VIGIL_HOOK_NO_RULE);
	printf("(\"VIGIL_PART_NS\", \"#define\", %d),\n", VIGIL_PART_NS);
	printf("(\"VIGIL_PART_PIDS\", \"#define\", %d),\n", VIGIL_PART_PIDS);
	printf("(\"VIGIL_PART_BINARY\", \"#define\", %d),\n", VIGIL_PART_BINARY);
	printf("(\"VIGIL_OP_FAMILY\", \"#define\", %d),\n", VIGIL_OP_FAMILY);
	printf("(\"VIGIL_ARG_CONST\", \"#define\", %d),\n", VIGIL_ARG_CONST);
	printf("(\"VIGIL_ARG_AT_PATH\", \"#define\", %d),\n", VIGIL_ARG_AT_PATH);
	printf("(\"VIGIL_AT_CWD\", \"#define\", %d),\n", VIGIL_AT_CWD);
	printf("(\"VIGIL_OP_STATE\", \"#define\", %d),\n", VIGIL_OP_STATE);
	printf("(\"VIGIL_ARG_CRED\", \"#define\", %d),\n", VIGIL_ARG_CRED);
	printf("(\"VIGIL_ARG_CAP\", \"#define\", %d),\n", VIGIL_ARG_CAP);
	printf("(\"VIGIL_ARG_SKB\", \"#define\", %d),\n", VIGIL_ARG_SKB);
	printf("(\"VIGIL_ARG_DENTRY\", \"#define\", %d),\n", VIGIL_ARG_DENTRY);
	printf("(\"VIGIL_ARG_KIOCB\", \"#define\", %d),\n", VIGIL_ARG_KIOCB);
	printf("(\"VIGIL_ARG_IOV\", \"#define\", %d),\n", VIGIL_ARG_IOV);
	printf("(\"VIGIL_ARG_BPF_ATTR\", \"#define\", %d),\n", VIGIL_ARG_BPF_ATTR);
	printf("(\"VIGIL_ARG_BPF_MAP\", \"#define\", %d),\n", VIGIL_ARG_BPF_MAP);
	printf("(\"VIGIL_ARG_PERF_EVENT\", \"#define\", %d),\n", VIGIL_ARG_PERF_EVENT);
	printf("(\"VIGIL_ARG_MODULE\", \"#define\", %d),\n", VIGIL_ARG_MODULE);
	printf("(\"VIGIL_ARG_LOAD_INFO\", \"#define\", %d),\n", VIGIL_ARG_LOAD_INFO);
	printf("(\"VIGIL_ARG_BINPRM\", \"#define\", %d),\n", VIGIL_ARG_BINPRM);
	printf("(\"VIGIL_TP_SLOTS\", \"#define\", %d),\n", VIGIL_TP_SLOTS);
	printf("(\"VIGIL_SOCK_TRACK\", \"#define\", %d),\n", VIGIL_SOCK_TRACK);
	printf("(\"VIGIL_SOCK_UNTRACK\", \"#define\", %d),\n", VIGIL_SOCK_UNTRACK);
	printf("(\"VIGIL_HOOK_TRACK_RETURN\", \"#define\", %d),\n", VIGIL_HOOK_TRACK_RETURN);
	printf("(\"VIGIL_HOOK_UNTRACK_RETURN\", \"#define\", %d),\n", VIGIL_HOOK_UNTRACK_RETURN);
	printf("];\n");
	return 0;
}
