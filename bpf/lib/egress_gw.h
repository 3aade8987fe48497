/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Egress gateway (EgressGatewayPolicy, datapath/model/egressgw.go): the
 * packets selected pods send to destination CIDRs outside the clusters
 * leave through a gateway node, in this cluster or another one of the
 * mesh, with the gateway's egress IP as source.
 *
 *   source node, at the pod's egress (after policy): a packet whose
 *   destination no pod or node of the mesh has, and whose (identity,
 *   destination) the gateway trie maps to a gateway node, is sent through
 *   the overlay to that node with the pod's identity as VNI;
 *
 *   gateway node, at the overlay device (fp_from_tunnel), or at the pod's
 *   egress when the pod is on the gateway itself: the packet's identity
 *   and destination must map to this node (EGW_F_LOCAL); the source
 *   becomes egress IP and a port of EGW_NAT_PORT_MIN..MAX, remembered in
 *   fp_egress_nat both ways with the node the packet came from, and the
 *   packet goes out of the device the node routes the destination
 *   through. Any other packet from the overlay to outside the mesh is
 *   dropped: no node relays for the overlay what it does not SNAT;
 *
 *   gateway node, at the uplink (fp_from_netdev): a reply to egress IP and
 *   such a port gets the pod's address and port back and goes through the
 *   overlay to the node it came from (VNI = WORLD: it comes from outside),
 *   or to the local stack for a pod of this node.
 *
 * The NAT is ours, not the kernel's (netfilter would need the return path
 * re-steered into the tunnel after its de-NAT, and cannot tell two pods
 * of different clusters with one address apart): an entry holds the node
 * a flow came from, so overlapping pod addresses stay apart. The ports
 * lie above Linux's default ephemeral range (32768-60999), so the node's
 * own connections from its egress IP do not collide with them.
 *
 * Fail closed: a selected packet whose gateway is not known (gateway 0),
 * or that needs the overlay when there is none, is dropped
 * (DROP_NO_EGRESS_GATEWAY); one that cannot be SNATed (not TCP or UDP, no
 * free port) is dropped (DROP_EGRESS_GW_NAT).
 */
#pragma once

#include "compiler.h"
#include "drop_reasons.h"
#include "maps.h"
#include "parse.h"
#include "identity.h"
#include "conntrack.h"
#include "lb.h"
#include "nodeport.h"
#include "tunnel.h"

enum egw_const {
	EGW_F_EXCLUDED = 0x1,   /* an excluded CIDR: not through the gateway */
	EGW_F_LOCAL = 0x2,      /* this node is the gateway: SNAT here */
	EGW_NAT_PORT_MIN = 61000,
	EGW_NAT_PORT_MAX = 65535,
	EGW_NAT_TRIES = 8,      /* ports tried for a new flow */
	EGW_NAT_OUT = 0,        /* fp_egress_nat: pod -> outside, before SNAT */
	EGW_NAT_IN = 1,         /* outside -> egress IP:port, before de-NAT */
};

/* Trie key: the source pod's identity (all 32 bits), then the
 * destination prefix: prefixlen = 32 + the prefix's length. */
struct egw_key {
	__u32 prefixlen;
	__u32 identity;
	__be32 daddr;
};

struct egw_value {
	__be32 gateway;    /* the gateway node's address; 0: none known */
	__be32 egress_ip;  /* the source the gateway gives the packets */
	__u32 flags;       /* EGW_F_* */
	__u32 pad;
};

/* One slot holding the node's gateway trie, replaced as a whole by the
 * agent (an empty slot: no egress gateway policy). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__type(key, __u32);
	__uint(max_entries, 1);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
	__array(values, struct {
		__uint(type, BPF_MAP_TYPE_LPM_TRIE);
		__type(key, struct egw_key);
		__type(value, struct egw_value);
		__uint(max_entries, EGW_MAX);
		__uint(map_flags, BPF_F_NO_PREALLOC);
	});
} fp_egress_gw SEC(".maps");

struct egw_nat_key {
	__be32 saddr;
	__be32 daddr;
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 dir;     /* EGW_NAT_OUT or EGW_NAT_IN */
	__u16 pad;
	__be32 node;  /* EGW_NAT_OUT: the node the pod's packets come from
		       * (0: this one), so equal pod tuples of two clusters
		       * stay apart; 0 for EGW_NAT_IN */
};

struct egw_nat {
	__u64 expires_ns;
	__be32 addr;   /* OUT: the egress IP; IN: the pod's address */
	__be16 port;   /* OUT: the NAT port; IN: the pod's port */
	__u16 pad;
	__be32 node;   /* IN: the pod's node (0: this one) */
	__u32 flags;   /* CT_F_CLOSING once a FIN or RST went through */
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct egw_nat_key);
	__type(value, struct egw_nat);
	__uint(max_entries, EGW_NAT_MAX);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} fp_egress_nat SEC(".maps");

/* egw_trie is the node's gateway trie, NULL when no policy applies. */
static __always_inline void *egw_trie(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&fp_egress_gw, &zero);
}

/* egw_outside tells whether no pod or node of the mesh has daddr: the
 * ipcache knows it as the world or by a policy CIDR only. */
static __always_inline int egw_outside(__be32 daddr)
{
	struct ipcache_key k = { .prefixlen = 32, .addr = daddr };
	struct ipcache_value *v = bpf_map_lookup_elem(&fp_ipcache, &k);

	return !v || v->identity == IDENTITY_WORLD || v->identity >= IDENTITY_CIDR_BASE;
}

/* egw_lookup returns the trie's entry for identity's packets to daddr,
 * NULL when there is none or it is an excluded CIDR. */
static __always_inline struct egw_value *egw_lookup(void *trie, __u32 identity, __be32 daddr)
{
	struct egw_key k = { .prefixlen = 64, .identity = identity, .daddr = daddr };
	struct egw_value *v = bpf_map_lookup_elem(trie, &k);

	if (!v || (v->flags & EGW_F_EXCLUDED))
		return NULL;
	return v;
}

static __always_inline void egw_touch(struct egw_nat *e, const struct flow4 *f, __u64 now)
{
	ct_follow(&e->flags, &e->expires_ns, f, now);
}

/*
 * egw_snat gives packet f, of a pod whose packets come from node (0: this
 * node), the source egress_ip and the flow's NAT port, allocating one for
 * a new flow; f is updated. Returns 0 or a negative drop reason.
 */
static __always_inline int egw_snat(struct __sk_buff *skb, struct flow4 *f, __be32 node, __be32 egress_ip)
{
	struct egw_nat_key out = {
		.saddr = f->saddr,
		.daddr = f->daddr,
		.sport = f->sport,
		.dport = f->dport,
		.proto = f->proto,
		.dir = EGW_NAT_OUT,
		.node = node,
	};
	struct egw_nat_key in = {
		.saddr = f->daddr,
		.daddr = egress_ip,
		.sport = f->dport,
		.proto = f->proto,
		.dir = EGW_NAT_IN,
	};
	__u64 now = bpf_ktime_get_ns();
	struct egw_nat *e, *r;
	__be16 port = 0;
	__u32 h, i;
	int ret;

	if (f->proto != IPPROTO_TCP && f->proto != IPPROTO_UDP)
		return -DROP_EGRESS_GW_NAT;
	e = bpf_map_lookup_elem(&fp_egress_nat, &out);
	if (e && e->expires_ns > now && e->addr == egress_ip) {
		port = e->port;
		egw_touch(e, f, now);
		in.dport = port;
		r = bpf_map_lookup_elem(&fp_egress_nat, &in);
		if (r && r->addr == f->saddr && r->port == f->sport && r->node == node)
			egw_touch(r, f, now);
		else
			port = 0; /* its reverse entry is gone: a new mapping */
	}
	if (!port) {
		struct egw_nat rv = { .addr = f->saddr, .port = f->sport, .node = node };
		struct egw_nat ov = { .addr = egress_ip };

		h = lb_hash(f) ^ node;
		egw_touch(&rv, f, now);
#pragma unroll
		for (i = 0; i < EGW_NAT_TRIES; i++) {
			__be16 p = bpf_htons(EGW_NAT_PORT_MIN +
					     (h + i * 7919) % (EGW_NAT_PORT_MAX - EGW_NAT_PORT_MIN + 1));

			in.dport = p;
			r = bpf_map_lookup_elem(&fp_egress_nat, &in);
			if (r && r->expires_ns > now)
				continue;
			if (bpf_map_update_elem(&fp_egress_nat, &in, &rv, r ? BPF_ANY : BPF_NOEXIST) == 0) {
				port = p;
				break;
			}
		}
		if (!port)
			return -DROP_EGRESS_GW_NAT;
		ov.port = port;
		egw_touch(&ov, f, now);
		if (bpf_map_update_elem(&fp_egress_nat, &out, &ov, BPF_ANY) < 0)
			return -DROP_EGRESS_GW_NAT;
	}
	ret = lb_rewrite(skb, f->proto, 0, f->saddr, egress_ip, f->sport, port);
	if (ret < 0)
		return ret;
	f->saddr = egress_ip;
	f->sport = port;
	return 0;
}

/*
 * egw_from_pod runs at the egress of a pod with identity for a packet
 * policy let through: returns -1 when no egress gateway policy applies,
 * else the verdict (a redirect to the overlay or the uplink) or a
 * negative drop reason.
 */
static __always_inline int egw_from_pod(struct __sk_buff *skb, struct flow4 *f, __u32 identity)
{
	struct egw_value *v;
	__be32 gateway, egress_ip;
	__u32 flags, ifindex;
	void *trie = egw_trie();
	int ret;

	if (!trie || !egw_outside(f->daddr))
		return -1;
	v = egw_lookup(trie, identity, f->daddr);
	if (!v)
		return -1;
	gateway = v->gateway;
	egress_ip = v->egress_ip;
	flags = v->flags;
	if (!gateway)
		return -DROP_NO_EGRESS_GATEWAY;
	if (flags & EGW_F_LOCAL) {
		ret = egw_snat(skb, f, 0, egress_ip);
		if (ret < 0)
			return ret;
		return nodeport_redirect(skb, f);
	}
	ifindex = tunnel_ifindex();
	if (!ifindex)
		return -DROP_NO_EGRESS_GATEWAY;
	return tunnel_send(skb, gateway, identity);
}

/*
 * egw_from_tunnel runs at the overlay device for a packet from node
 * (network order) with identity: returns -1 when its destination is in
 * the mesh, else the verdict of its SNAT and redirect to the uplink, or a
 * negative drop reason (this node is not its gateway).
 */
static __always_inline int egw_from_tunnel(struct __sk_buff *skb, struct flow4 *f, __be32 node, __u32 identity)
{
	struct egw_value *v;
	__be32 egress_ip;
	void *trie;
	int ret;

	if (!egw_outside(f->daddr))
		return -1;
	trie = egw_trie();
	if (!trie)
		return -DROP_NO_EGRESS_GATEWAY;
	v = egw_lookup(trie, identity, f->daddr);
	if (!v || !(v->flags & EGW_F_LOCAL) || !v->gateway)
		return -DROP_NO_EGRESS_GATEWAY;
	egress_ip = v->egress_ip;
	ret = egw_snat(skb, f, node, egress_ip);
	if (ret < 0)
		return ret;
	skb->mark = 0;
	return nodeport_redirect(skb, f);
}

/*
 * egw_reply runs at the uplink: a reply to a flow the gateway SNATed gets
 * the pod's address and port back and goes to the pod's node through the
 * overlay, or up the stack for a pod of this node. Returns -1 when the
 * packet is no such reply, else the verdict or a negative drop reason.
 */
static __always_inline int egw_reply(struct __sk_buff *skb, struct flow4 *f)
{
	struct egw_nat_key k = {
		.saddr = f->saddr,
		.daddr = f->daddr,
		.sport = f->sport,
		.dport = f->dport,
		.proto = f->proto,
		.dir = EGW_NAT_IN,
	};
	struct egw_nat *e;
	__be32 addr, node;
	__be16 port;
	__u32 ifindex;
	__u64 now;
	int ret;

	if (f->proto != IPPROTO_TCP && f->proto != IPPROTO_UDP)
		return -1;
	if (bpf_ntohs(f->dport) < EGW_NAT_PORT_MIN || !egw_trie())
		return -1;
	e = bpf_map_lookup_elem(&fp_egress_nat, &k);
	if (!e)
		return -1;
	now = bpf_ktime_get_ns();
	if (e->expires_ns <= now)
		return -1;
	egw_touch(e, f, now);
	addr = e->addr;
	port = e->port;
	node = e->node;
	ret = lb_rewrite(skb, f->proto, 1, f->daddr, addr, f->dport, port);
	if (ret < 0)
		return ret;
	f->daddr = addr;
	f->dport = port;
	if (!node)
		return CTX_ACT_OK;
	ifindex = tunnel_ifindex();
	if (!ifindex)
		return -DROP_NO_EGRESS_GATEWAY;
	return tunnel_send(skb, node, IDENTITY_WORLD);
}
