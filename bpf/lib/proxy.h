/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The L7 proxy redirect. A connection into a pod that an L7 rule applies to
 * is handed to the node's proxy where the packet enters the node (the
 * source pod's veth, or the node's uplink): before routing, while
 * bpf_sk_assign still works. The packet keeps its addresses; the proxy's
 * transparent listener accepts it as if it were the pod, checks each
 * request, and opens its own connection to the pod, marked so that the
 * pod's ingress hook knows the proxy has already decided.
 *
 * Assigning a socket is not enough on its own: the node would forward the
 * packet (the pod's address is not local) and forwarding drops packets
 * that carry a socket. The mark routes it locally instead: the agent adds
 * "ip rule fwmark MARK_TO_PROXY/MARK_MASK lookup PROXY_ROUTE_TABLE" and a
 * "local 0.0.0.0/0 dev lo" route in that table.
 */
#pragma once

#include "compiler.h"
#include "drop_reasons.h"
#include "parse.h"
#include "endpoint.h"
#include "identity.h"
#include "policy.h"

/* skb marks: bits 8-11 are fastpath's. */
enum proxy_mark {
	MARK_MASK = 0x0f00,
	MARK_TO_PROXY = 0x0c00,    /* set here: deliver to the proxy's socket */
	MARK_FROM_PROXY = 0x0d00,  /* set by the proxy on its upstream socket */
	MARK_FROM_TUNNEL = 0x0e00, /* came through the overlay (tunnel.h): the
				    * rest of the mark is the sender's identity,
				    * bits 0-15 in mark bits 16-31, bits 16-23
				    * in mark bits 0-7 */
};

static __always_inline __u32 tunnel_mark(__u32 identity)
{
	return ((identity & 0xffff) << 16) | ((identity >> 16) & 0xff) | MARK_FROM_TUNNEL;
}

/* tunnel_identity returns the identity a packet's mark carries from the
 * overlay, 0 when it did not come through it. */
static __always_inline __u32 tunnel_identity(const struct __sk_buff *skb)
{
	__u32 mark = skb->mark;

	if ((mark & MARK_MASK) != MARK_FROM_TUNNEL)
		return 0;
	return (mark >> 16) | ((mark & 0xff) << 16);
}

/* ingress_peer is the peer of a packet entering a pod from saddr: the
 * identity the overlay carried when it came through it (whatever the
 * address says), else the address's; the CIDR identity is always the
 * address's (ipBlock rules are about addresses). */
static __always_inline void ingress_peer(const struct __sk_buff *skb, __be32 saddr,
					 struct peer_identity *peer)
{
	__u32 id = tunnel_identity(skb);

	identity_of(saddr, peer);
	if (id)
		peer->identity = id;
}

/* The policy routing table that delivers MARK_TO_PROXY packets locally. */
enum proxy_route {
	PROXY_ROUTE_TABLE = 3510,
};

/* Where the proxy listens: its port on the wildcard address of the node's
 * namespace, written by the agent (0: no proxy). The listener is found
 * with a socket lookup on that port. (A socket map would be the other way,
 * but kernels refuse listening sockets in sockmaps on some versions.) */
struct proxy_config {
	__be16 port;
	__u16 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct proxy_config);
	__uint(max_entries, 1);
} fp_proxy SEC(".maps");

static __always_inline int from_proxy(const struct __sk_buff *skb)
{
	return (skb->mark & MARK_MASK) == MARK_FROM_PROXY;
}

/*
 * proxy_steer runs where a packet enters the node. For TCP to a local pod
 * with L7 rules it hands the packet to the proxy: to the socket that
 * already owns its connection, or, for a connection's first packet that
 * the pod's policy sends to the proxy, to the listener. Returns 1 when the
 * packet now belongs to the proxy, 0 when it goes on as usual, or a
 * negative drop reason (an L7 rule applies but no proxy can take it: the
 * connection fails closed).
 */
static __always_inline int proxy_steer(struct __sk_buff *skb, const struct flow4 *f)
{
	struct bpf_sock_tuple tuple = {};
	struct proxy_config *proxy;
	struct peer_identity peer;
	struct endpoint_info *dst;
	struct bpf_sock *sk;
	__u32 zero = 0;
	long err;

	if (f->proto != IPPROTO_TCP)
		return 0;
	dst = endpoint_by_ip(f->daddr);
	if (!dst || !(dst->flags & EP_F_INGRESS_L7))
		return 0;

	tuple.ipv4.saddr = f->saddr;
	tuple.ipv4.daddr = f->daddr;
	tuple.ipv4.sport = f->sport;
	tuple.ipv4.dport = f->dport;
	sk = bpf_skc_lookup_tcp(skb, &tuple, sizeof(tuple.ipv4), BPF_F_CURRENT_NETNS, 0);
	if (sk) {
		if (sk->state != BPF_TCP_LISTEN)
			goto assign;
		bpf_sk_release(sk);
	}

	/* Only a connection's first packet may start one at the proxy. */
	if (!(f->tcp_flags & TCP_FLAG_SYN) || (f->tcp_flags & TCP_FLAG_ACK))
		return 0;
	ingress_peer(skb, f->saddr, &peer);
	if (ingress_policy(dst, f, &peer, 0) != REASON_TO_PROXY)
		return 0;
	proxy = bpf_map_lookup_elem(&fp_proxy, &zero);
	if (!proxy || !proxy->port)
		return -DROP_PROXY_UNAVAILABLE;
	tuple.ipv4.dport = proxy->port;
	sk = bpf_skc_lookup_tcp(skb, &tuple, sizeof(tuple.ipv4), BPF_F_CURRENT_NETNS, 0);
	if (!sk)
		return -DROP_PROXY_UNAVAILABLE;
	if (sk->state != BPF_TCP_LISTEN) {
		bpf_sk_release(sk);
		return -DROP_PROXY_UNAVAILABLE;
	}
assign:
	err = bpf_sk_assign(skb, sk, 0);
	bpf_sk_release(sk);
	if (err)
		return -DROP_PROXY_UNAVAILABLE;
	skb->mark = MARK_TO_PROXY;
	return 1;
}
