/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Where a packet or a socket's route leads: the device's kind as its driver registered it
 * (rtnl_link_ops->kind: a device's name is the administrator's to choose, so a tun device
 * named like WireGuard's is still a tun device), or the IPsec transformation on the route.
 * Shared by the socket decoder (hook_args.h) and the flow programs (flow.bpf.c).
 */
#ifndef VIGIL_ROUTE_H
#define VIGIL_ROUTE_H

#include <bpf/bpf_endian.h>
#include "vigil_events.h"

#define VIGIL_IFF_LOOPBACK 0x8
#define VIGIL_XFRM_MODE_TRANSPORT 0
#define VIGIL_XFRM_MODE_TUNNEL 1

/* Whether the NUL-terminated `kind` is `name` (NUL included: "wireguardx" is not "wireguard"). */
#define VIGIL_KIND_IS(kind, name) (!__builtin_memcmp(kind, name, sizeof(name)))

/* The kind of `dev` (enum vigil_route). */
static __always_inline __u8 vigil_dev_route(struct net_device *dev)
{
	char kind[16] = {};

	if (BPF_CORE_READ(dev, flags) & VIGIL_IFF_LOOPBACK)
		return VIGIL_ROUTE_LOOPBACK;
	const struct rtnl_link_ops *ops = BPF_CORE_READ(dev, rtnl_link_ops);
	if (!ops)
		return VIGIL_ROUTE_DEVICE;
	const char *name = BPF_CORE_READ(ops, kind);
	if (!name || bpf_probe_read_kernel_str(kind, sizeof(kind), name) < 0)
		return VIGIL_ROUTE_DEVICE;
	if (VIGIL_KIND_IS(kind, "wireguard"))
		return VIGIL_ROUTE_WIREGUARD;
	if (VIGIL_KIND_IS(kind, "tun"))
		return VIGIL_ROUTE_USER;
	if (VIGIL_KIND_IS(kind, "vxlan") || VIGIL_KIND_IS(kind, "geneve"))
		return VIGIL_ROUTE_ENCAP;
	/* Devices that hand the packet to another device (a bond's slave, a VLAN's or a bridge's
	 * lower device) or wrap it into an outer packet (IP tunnels, xfrm interfaces): the packet
	 * is judged where it really leaves, so a stacked uplink does not judge each packet twice
	 * on two devices. */
	if (VIGIL_KIND_IS(kind, "bond") || VIGIL_KIND_IS(kind, "team") ||
	    VIGIL_KIND_IS(kind, "vlan") || VIGIL_KIND_IS(kind, "macvlan") ||
	    VIGIL_KIND_IS(kind, "macvtap") || VIGIL_KIND_IS(kind, "ipvlan") ||
	    VIGIL_KIND_IS(kind, "bridge") || VIGIL_KIND_IS(kind, "vrf") ||
	    VIGIL_KIND_IS(kind, "xfrm") || VIGIL_KIND_IS(kind, "vti") ||
	    VIGIL_KIND_IS(kind, "vti6") || VIGIL_KIND_IS(kind, "gre") ||
	    VIGIL_KIND_IS(kind, "gretap") || VIGIL_KIND_IS(kind, "ip6gre") ||
	    VIGIL_KIND_IS(kind, "ip6gretap") || VIGIL_KIND_IS(kind, "ipip") ||
	    VIGIL_KIND_IS(kind, "ip6tnl") || VIGIL_KIND_IS(kind, "sit") ||
	    VIGIL_KIND_IS(kind, "erspan"))
		return VIGIL_ROUTE_UPPER;
	return VIGIL_ROUTE_DEVICE;
}

/* The route an xfrm state gives (enum vigil_route). */
static __always_inline __u8 vigil_xfrm_route(struct xfrm_state *x)
{
	__u8 mode = BPF_CORE_READ(x, props.mode);

	if (mode == VIGIL_XFRM_MODE_TRANSPORT)
		return VIGIL_ROUTE_XFRM_TRANSPORT;
	if (mode == VIGIL_XFRM_MODE_TUNNEL)
		return VIGIL_ROUTE_XFRM_TUNNEL;
	return VIGIL_ROUTE_XFRM_OTHER;
}

/* Where the socket's cached route leads (set once it connected): its first transformation, or
 * its device. Nothing for a socket without one (unconnected UDP, a closed socket). */
static __always_inline void vigil_sock_route(struct sock *sk, struct vigil_sock_value *v)
{
	struct dst_entry *dst = BPF_CORE_READ(sk, sk_dst_cache);

	if (!dst)
		return;
	if (bpf_core_field_exists(dst->xfrm)) {
		struct xfrm_state *x = BPF_CORE_READ(dst, xfrm);
		if (x) {
			v->route = vigil_xfrm_route(x);
			v->route_spi = bpf_ntohl(BPF_CORE_READ(x, id.spi));
			return;
		}
	}
	struct net_device *dev = BPF_CORE_READ(dst, dev);
	if (!dev)
		return;
	v->route = vigil_dev_route(dev);
	v->route_ifindex = BPF_CORE_READ(dev, ifindex);
}

#endif /* VIGIL_ROUTE_H */
