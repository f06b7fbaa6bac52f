// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Encryption awareness: did a flow to a remote range leave the node encrypted?
 *
 * - vigil_flow_xmit (tp_btf/net_dev_start_xmit, every kernel with BTF): a packet handed to a
 *   device of the node's network namespace. A packet on the kernel's WireGuard device leaves
 *   encrypted, one on a tun or tap device leaves to a program vigil cannot see into, one on
 *   loopback stays, one on any other device leaves as it is. On a VXLAN or Geneve device the
 *   packet is only encapsulated, and the outer packet decides: a VXLAN packet is read through
 *   to the flow inside (a datagram to a VXLAN port with no tracked flow inside is judged as
 *   itself). Bonds, VLANs, bridges, IP tunnels and xfrm interfaces hand the packet on: the
 *   device below or the outer packet decides. An ESP packet of an SA the xfrm program saw was
 *   judged where it was transformed; WireGuard's own datagrams (sent by the kernel, not
 *   forwarded, the shape of a WireGuard message) are a tunnel's packets, not a flow.
 * - vigil_flow_xfrm (kprobe/xfrm_output, where kprobes exist): a packet about to be
 *   transformed by an IPsec SA of the node's namespace, still in clear, with the SA on its
 *   route: the SPI, the mode, the reqid and the tunnel's far end. The SPIs it saw let the
 *   device's program skip those SAs' ESP packets and judge any other ESP packet (a raw socket's
 *   plaintext under protocol 50). Not on the host kernel of our CI (no kprobes, and no
 *   ESP to transform with).
 *
 * A flow is its inner 5-tuple, so pod traffic forwarded by the node (no socket on it) is
 * matched to the pod's connect by the agent. Only flows whose destination is in
 * vigil_flow_ranges are tracked; any other packet costs a header read and one LPM lookup. A
 * verdict is written to the ring buffer when a flow is first judged and when it changes, never
 * per packet: vigil_flow_verdicts keeps the last one per flow (an LRU: a flow evicted and seen
 * again is reported again).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_endian.h>

#include "vigil_events.h"
#include "maps.h"
#include "route.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define VIGIL_AF_INET 2
#define VIGIL_AF_INET6 10
#define VIGIL_ETH_P_IP 0x0800
#define VIGIL_ETH_P_IPV6 0x86DD
#define VIGIL_IPPROTO_ESP 50
#define VIGIL_IPPROTO_AH 51
/* VXLAN's IANA port, and Linux's (and Cilium's) default. */
#define VIGIL_VXLAN_PORT 4789
#define VIGIL_VXLAN_LINUX_PORT 8472
#define VIGIL_VXLAN_HLEN 8
#define VIGIL_ETH_HLEN 14

/* The ranges (the other nodes' pod ranges and the configured ones); the value is the range's
 * number in the agent's list. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 4096);
	__type(key, struct vigil_flow_range_key);
	__type(value, __u32);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} vigil_flow_ranges SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 32768);
	__type(key, struct vigil_flow_key);
	__type(value, struct vigil_flow_verdict);
} vigil_flow_verdicts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct vigil_flow_config);
} vigil_flow_config_map SEC(".maps");

/* The SPIs of the SAs vigil_flow_xfrm saw transform a packet (network order): an ESP packet
 * of one of them leaving a device was judged at the transformation. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __u8);
} vigil_flow_spis SEC(".maps");

/* The record being built, per CPU (too large for the stack with the parse state). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct vigil_flow_event);
} vigil_flow_scratch SEC(".maps");

/* The bytes read at once from a packet's network header: an IPv6 header and the ports after
 * it, or an IPv4 header without options and its ports. */
#define VIGIL_HDR_READ 44

/* Reads the IP header at `off` of `head` and the ports after it into `k`, with one read where
 * the header has no IPv4 options. Returns the IP protocol, or -1 when there is no IPv4 or
 * IPv6 header there. A later fragment has no ports: its flow is the one of port 0, which no
 * connect names, so it is left out. */
static __always_inline int read_tuple(unsigned char *head, __u32 off, struct vigil_flow_key *k,
				      __u32 *l4p)
{
	__u8 b[VIGIL_HDR_READ] = {};
	__u16 ports[2] = {};
	__u32 l4;

	if (bpf_probe_read_kernel(b, sizeof(b), head + off) < 0)
		return -1;
	if (b[0] >> 4 == 4) {
		struct iphdr *ip = (struct iphdr *)b;
		if (ip->frag_off & bpf_htons(0x1fff))
			return -1;
		k->family = VIGIL_AF_INET;
		k->protocol = ip->protocol;
		__builtin_memset(k->saddr, 0, 16);
		__builtin_memset(k->daddr, 0, 16);
		__builtin_memcpy(k->saddr, &b[12], 4);
		__builtin_memcpy(k->daddr, &b[16], 4);
		__u32 ihl = (b[0] & 0xf) * 4;
		l4 = off + ihl;
		if (ihl == 20)
			__builtin_memcpy(ports, &b[20], 4);
		else if (bpf_probe_read_kernel(ports, sizeof(ports), head + l4) < 0)
			return -1;
	} else if (b[0] >> 4 == 6) {
		k->family = VIGIL_AF_INET6;
		k->protocol = b[6];
		__builtin_memcpy(k->saddr, &b[8], 16);
		__builtin_memcpy(k->daddr, &b[24], 16);
		l4 = off + 40;
		__builtin_memcpy(ports, &b[40], 4);
	} else {
		return -1;
	}
	k->sport = 0;
	k->dport = 0;
	k->_pad0 = 0;
	*l4p = l4;
	if (k->protocol == IPPROTO_TCP || k->protocol == IPPROTO_UDP ||
	    k->protocol == IPPROTO_SCTP) {
		k->sport = bpf_ntohs(ports[0]);
		k->dport = bpf_ntohs(ports[1]);
		/* Where the inner packet of a VXLAN datagram starts, in the caller's `off` terms:
		 * returned through the ports' place for read_flow. */
		if (k->protocol == IPPROTO_UDP &&
		    (k->dport == VIGIL_VXLAN_PORT || k->dport == VIGIL_VXLAN_LINUX_PORT))
			return 0x10000 | (l4 + 8 + VIGIL_VXLAN_HLEN);
	}
	return k->protocol;
}

/* The flow of the packet whose network header is at `nh` of `head`: the one inside when it is
 * VXLAN (flagged), the datagram's own kept in `outer`. Returns the IP protocol, or -1. */
static __always_inline int read_flow(unsigned char *head, __u32 nh, struct vigil_flow_key *k,
				     struct vigil_flow_key *outer, __u8 *flags, __u32 *l4p)
{
	int proto = read_tuple(head, nh, k, l4p);

	if (proto < 0x10000)
		return proto;
	/* From here `k` is a VXLAN datagram's: its own tuple whatever the inside is. */
	*outer = *k;
	__u32 outer_l4 = *l4p;
	__u32 inner = proto & 0xffff;
	__u16 ethertype = 0;
	if (bpf_probe_read_kernel(&ethertype, 2, head + inner + 12) < 0)
		return IPPROTO_UDP;
	ethertype = bpf_ntohs(ethertype);
	if (ethertype != VIGIL_ETH_P_IP && ethertype != VIGIL_ETH_P_IPV6)
		return IPPROTO_UDP;
	proto = read_tuple(head, inner + VIGIL_ETH_HLEN, k, l4p);
	/* No packet inside, or VXLAN in VXLAN: the datagram is the flow. */
	if (proto < 0 || proto >= 0x10000) {
		*k = *outer;
		*l4p = outer_l4;
		return IPPROTO_UDP;
	}
	*flags |= VIGIL_FLOW_VXLAN;
	return proto;
}

/* Whether the UDP datagram at `l4` is a WireGuard message: a type of 1 to 4, three zero bytes,
 * and the length of that type (a handshake initiation 148 bytes, a response 92, a cookie reply
 * 64, data 32 and more by 16s). WireGuard's own packets are sent by the kernel without a user
 * socket; they carry flows already judged on the WireGuard device, and are no flow of their
 * own. */
static __always_inline int wireguard_message(unsigned char *head, __u32 l4)
{
	__u16 udp_len = 0;
	__u8 m[4] = {};

	if (bpf_probe_read_kernel(&udp_len, 2, head + l4 + 4) < 0 ||
	    bpf_probe_read_kernel(m, 4, head + l4 + 8) < 0)
		return 0;
	if (m[1] || m[2] || m[3])
		return 0;
	__u32 len = bpf_ntohs(udp_len);
	if (len < 8)
		return 0;
	len -= 8;
	switch (m[0]) {
	case 1:
		return len == 148;
	case 2:
		return len == 92;
	case 3:
		return len == 64;
	case 4:
		return len >= 32 && (len - 32) % 16 == 0;
	}
	return 0;
}

/* The range `k`'s destination is in, or NULL: its first byte tested first, so that most
 * packets cost no LPM lookup. */
static __always_inline __u32 *tracked(struct vigil_flow_config *cfg, const struct vigil_flow_key *k)
{
	struct vigil_flow_range_key rk = {.prefixlen = 128};
	__u8 first = k->daddr[0];
	__u64 word = k->family == VIGIL_AF_INET ? cfg->first_v4[(first >> 6) & 3]
						: cfg->first_v6[(first >> 6) & 3];

	if (!(word & (1ULL << (first & 63))))
		return 0;
	if (k->family == VIGIL_AF_INET) {
		rk.addr[10] = 0xff;
		rk.addr[11] = 0xff;
		__builtin_memcpy(&rk.addr[12], k->daddr, 4);
	} else {
		__builtin_memcpy(rk.addr, k->daddr, 16);
	}
	return bpf_map_lookup_elem(&vigil_flow_ranges, &rk);
}

/* Writes the record of `ev`'s verdict and keeps it for its flow, unless the flow's last verdict
 * was the same (the first 16 bytes). */
static __always_inline void report(struct vigil_flow_event *ev)
{
	struct vigil_flow_verdict *last = bpf_map_lookup_elem(&vigil_flow_verdicts, &ev->key);

	if (last && !__builtin_memcmp(last, &ev->verdict, 16))
		return;
	ev->hdr.kind = VIGIL_EVENT_FLOW;
	ev->hdr.size = sizeof(*ev);
	ev->hdr.ktime = bpf_ktime_get_boot_ns();
	/* Kept only once written: a verdict the full ring buffer dropped (counted) is judged
	 * again on the flow's next packet, not lost for the flow's life. */
	if (vigil_emit(ev, sizeof(*ev), VIGIL_EVENT_FLOW) == 0)
		bpf_map_update_elem(&vigil_flow_verdicts, &ev->key, &ev->verdict, BPF_ANY);
}

static __always_inline struct vigil_flow_event *scratch(void)
{
	__u32 zero = 0;
	struct vigil_flow_event *ev = bpf_map_lookup_elem(&vigil_flow_scratch, &zero);

	if (ev)
		__builtin_memset(&ev->verdict, 0, sizeof(ev->verdict));
	return ev;
}

SEC("tp_btf/net_dev_start_xmit")
int BPF_PROG(vigil_flow_xmit, struct sk_buff *skb, struct net_device *dev)
{
	__u32 zero = 0;
	struct vigil_flow_config *cfg = bpf_map_lookup_elem(&vigil_flow_config_map, &zero);
	struct vigil_flow_key key, outer;
	__u8 flags = 0;
	__u32 l4 = 0;

	if (!cfg)
		return 0;
	/* Every packet of the node pays for what comes before the range lookup: the arguments'
	 * fields are read directly (BTF pointers), the packet's headers with one read, and the
	 * destination's first byte tested against the ranges' before the LPM lookup. */
	__u32 netns = dev->nd_net.net->ns.inum;
	if (netns != cfg->node_netns)
		return 0;
	unsigned char *head = skb->head;
	__u16 nh = skb->network_header;
	if (nh == (__u16)~0U)
		return 0;
	int proto = read_flow(head, nh, &key, &outer, &flags, &l4);
	if (proto < 0)
		return 0;
	__u32 *range = tracked(cfg, &key);
	/* A datagram to a VXLAN port whose inside is no tracked flow (or no packet at all) is
	 * judged as the datagram it is: a port number alone hides nothing. */
	if (!range && (flags & VIGIL_FLOW_VXLAN)) {
		key = outer;
		flags = 0;
		proto = key.protocol;
		range = tracked(cfg, &key);
	}
	if (!range)
		return 0;
	struct sock *sk = skb->sk;
	/* Sent by the kernel itself: no socket (or a kernel one) and not forwarded. */
	int kernel_sent = sk ? BPF_CORE_READ_BITFIELD_PROBED(sk, sk_kern_sock) : skb->skb_iif == 0;
	if (proto == VIGIL_IPPROTO_ESP) {
		/* An SA's packet, judged where it was transformed; without that program, no ESP
		 * packet can be told from another. */
		if (!(cfg->flags & VIGIL_FLOW_CFG_XFRM))
			return 0;
		__u32 spi = 0;
		bpf_probe_read_kernel(&spi, sizeof(spi), head + l4);
		if (bpf_map_lookup_elem(&vigil_flow_spis, &spi))
			return 0;
	}
	/* WireGuard's own datagrams: see wireguard_message. A user program's datagrams, and a
	 * forwarded one, are judged whatever they hold. */
	if (proto == IPPROTO_UDP && kernel_sent && wireguard_message(head, l4))
		return 0;
	/* A tracked flow's packets after its first: judged on this device already. */
	__u32 ifindex = dev->ifindex;
	struct vigil_flow_verdict *last = bpf_map_lookup_elem(&vigil_flow_verdicts, &key);
	if (last && last->evidence == VIGIL_EVIDENCE_DEVICE && last->ifindex == ifindex &&
	    last->flags == flags)
		return 0;
	struct vigil_flow_event *ev = scratch();
	if (!ev)
		return 0;
	ev->key = key;
	ev->verdict.flags = flags;

	__u8 route = vigil_dev_route(dev);
	switch (route) {
	case VIGIL_ROUTE_ENCAP:
	case VIGIL_ROUTE_UPPER:
		return 0;
	case VIGIL_ROUTE_WIREGUARD:
		ev->verdict.mode = VIGIL_ENC_WIREGUARD;
		break;
	case VIGIL_ROUTE_LOOPBACK:
		ev->verdict.mode = VIGIL_ENC_LOCAL;
		break;
	case VIGIL_ROUTE_USER:
		ev->verdict.mode = VIGIL_ENC_UNKNOWN;
		break;
	default:
		ev->verdict.mode = VIGIL_ENC_NONE;
	}
	ev->verdict.evidence = VIGIL_EVIDENCE_DEVICE;
	ev->verdict.route = route;
	ev->verdict.ifindex = ifindex;
	ev->verdict.range = *range;
	BPF_CORE_READ_STR_INTO(&ev->verdict.ifname, dev, name);
	ev->sock = (__u64)sk;
	ev->dev_netns = netns;
	ev->_pad0 = 0;
	report(ev);
	return 0;
}

/* Whether an ESP SA encrypts nothing: cipher_null, or GMAC (rfc4543: an AEAD that only
 * authenticates). */
static __always_inline int null_cipher(struct xfrm_state *x)
{
	char name[16] = {};
	struct xfrm_algo_aead *aead = BPF_CORE_READ(x, aead);

	if (aead) {
		bpf_probe_read_kernel_str(name, sizeof(name), aead->alg_name);
		return !__builtin_memcmp(name, "rfc4543", 7);
	}
	struct xfrm_algo *ealg = BPF_CORE_READ(x, ealg);
	if (!ealg)
		return 1;
	bpf_probe_read_kernel_str(name, sizeof(name), ealg->alg_name);
	return !__builtin_memcmp(name, "ecb(cipher_null", 15) ||
	       !__builtin_memcmp(name, "cipher_null", 12);
}

SEC("kprobe/xfrm_output")
int BPF_KPROBE(vigil_flow_xfrm, struct sock *sk, struct sk_buff *skb)
{
	__u32 zero = 0;
	struct vigil_flow_config *cfg = bpf_map_lookup_elem(&vigil_flow_config_map, &zero);
	struct vigil_flow_key outer;
	struct vigil_flow_event *ev = scratch();

	if (!cfg || !ev)
		return 0;
	unsigned long refdst = BPF_CORE_READ(skb, _skb_refdst);
	struct dst_entry *dst = (struct dst_entry *)(refdst & ~1UL);
	if (!dst)
		return 0;
	struct xfrm_state *x = BPF_CORE_READ(dst, xfrm);
	if (!x)
		return 0;
	/* The node's own SAs: one a user makes in a namespace of their own transforms nothing
	 * that leaves the node, and must not vouch for a flow. */
	__u32 netns = BPF_CORE_READ(x, xs_net.net, ns.inum);
	if (netns != cfg->node_netns)
		return 0;
	__u32 spi_net = BPF_CORE_READ(x, id.spi);
	__u8 yes = 1;
	if (!bpf_map_lookup_elem(&vigil_flow_spis, &spi_net))
		bpf_map_update_elem(&vigil_flow_spis, &spi_net, &yes, BPF_ANY);
	unsigned char *head = BPF_CORE_READ(skb, head);
	__u16 nh = BPF_CORE_READ(skb, network_header);
	if (nh == (__u16)~0U)
		return 0;
	__u32 l4 = 0;
	if (read_flow(head, nh, &ev->key, &outer, &ev->verdict.flags, &l4) < 0)
		return 0;
	__u32 *range = tracked(cfg, &ev->key);
	if (!range && (ev->verdict.flags & VIGIL_FLOW_VXLAN)) {
		ev->key = outer;
		ev->verdict.flags = 0;
		range = tracked(cfg, &ev->key);
	}
	if (!range)
		return 0;

	__u8 xproto = BPF_CORE_READ(x, id.proto);
	ev->verdict.mode = VIGIL_ENC_IPSEC;
	if (xproto == VIGIL_IPPROTO_AH) {
		ev->verdict.flags |= VIGIL_FLOW_AH;
		ev->verdict.mode = VIGIL_ENC_NONE;
	} else if (xproto != VIGIL_IPPROTO_ESP || null_cipher(x)) {
		/* IPComp compresses; cipher_null and GMAC authenticate at most. */
		ev->verdict.flags |= VIGIL_FLOW_NULL_ENC;
		ev->verdict.mode = VIGIL_ENC_NONE;
	}
	ev->verdict.evidence = VIGIL_EVIDENCE_XFRM;
	ev->verdict.route = vigil_xfrm_route(x);
	ev->verdict.spi = bpf_ntohl(spi_net);
	ev->verdict.reqid = BPF_CORE_READ(x, props.reqid);
	ev->verdict.range = *range;
	ev->verdict.outer_family = BPF_CORE_READ(x, props.family);
	BPF_CORE_READ_INTO(&ev->verdict.outer_daddr, x, id.daddr.a6);
	struct net_device *dev = BPF_CORE_READ(dst, dev);
	if (dev) {
		ev->verdict.ifindex = BPF_CORE_READ(dev, ifindex);
		BPF_CORE_READ_STR_INTO(&ev->verdict.ifname, dev, name);
	}
	ev->sock = (__u64)sk;
	ev->dev_netns = netns;
	ev->_pad0 = 0;
	report(ev);
	return 0;
}
