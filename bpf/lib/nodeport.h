/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * NodePort traffic from outside the pods (north-south), at the node's
 * uplink: TC ingress (fp_from_netdev) here, or earlier in XDP
 * (nodeport_xdp.h) when XDP acceleration is on. A packet to a node
 * address and NodePort picks a backend as the pod hooks do (lb_pick: the
 * flow sticks to its backend) and is sent to it with the client's address
 * kept, so the backend's policy sees the real client:
 *
 *   backend on this node: DNAT, then the stack delivers it to the pod;
 *   fp_lb_nodeport remembers the frontend, and the pod's egress hook
 *   turns the replies' source back into the node address and NodePort.
 *
 *   backend on another node: direct server return (DSR). DNAT, and the
 *   first packet of the flow (a TCP SYN, a new UDP flow) carries the
 *   frontend in an IPv4 option; the backend's node records it
 *   (nodeport_learn at its uplink) and its pod's egress hook rewrites the
 *   replies, which go to the client straight from there.
 *
 * The option is the one Cilium uses for DSR: type 0x9a (copied, number
 * 26), length 8, port then address. Receivers ignore unknown options.
 */
#pragma once

#include "compiler.h"
#include "maps.h"
#include "parse.h"
#include "conntrack.h"
#include "endpoint.h"
#include "lb.h"

#define DSR_OPT_TYPE 0x9a
#define DSR_OPT_LEN 8

/* Marks a pod ingress conntrack entry whose replies take the NodePort
 * reverse translation (ct_entry.rev_nat; frontend ids stay below it). */
#define REV_NAT_NODEPORT 0xffffffff

struct dsr_opt {
	__u8 type;
	__u8 len;
	__be16 port;
	__be32 addr;
};

struct nodeport_key {
	__be32 client;
	__be32 backend;
	__be16 cport;
	__be16 bport;
	__u8 proto;
	__u8 pad[3];
};

struct nodeport_rev {
	__be32 addr;        /* the node address the client connected to */
	__be16 port;        /* and its NodePort */
	__u16 pad;
	__u64 expires_ns;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct nodeport_key);
	__type(value, struct nodeport_rev);
	__uint(max_entries, CT_MAX);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} fp_lb_nodeport SEC(".maps");

/* nodeport_key_of is the key of flow f, client to backend (reply: f is
 * backend to client). */
static __always_inline struct nodeport_key nodeport_key_of(const struct flow4 *f, int reply)
{
	struct nodeport_key k = {
		.client = reply ? f->daddr : f->saddr,
		.backend = reply ? f->saddr : f->daddr,
		.cport = reply ? f->dport : f->sport,
		.bport = reply ? f->sport : f->dport,
		.proto = f->proto,
	};

	return k;
}

/* nodeport_remember records that the flow f (client to backend, already
 * translated) came in as fe_addr:fe_port. */
static __always_inline void nodeport_remember(const struct flow4 *f, __be32 fe_addr,
					      __be16 fe_port)
{
	struct nodeport_key k = nodeport_key_of(f, 0);
	struct nodeport_rev v = {
		.addr = fe_addr,
		.port = fe_port,
		.expires_ns = bpf_ktime_get_ns() + ct_lifetime(f, 0),
	};

	bpf_map_update_elem(&fp_lb_nodeport, &k, &v, BPF_ANY);
}

/* nodeport_known tells whether a new connection into a pod (f as the pod's
 * ingress hook sees it) came through a NodePort. */
static __always_inline int nodeport_known(const struct flow4 *f)
{
	struct nodeport_key k = nodeport_key_of(f, 0);
	struct nodeport_rev *v = bpf_map_lookup_elem(&fp_lb_nodeport, &k);

	return v && v->expires_ns > bpf_ktime_get_ns();
}

/*
 * nodeport_reverse runs at a pod's egress hook for a reply of a NodePort
 * connection (its conntrack entry carries REV_NAT_NODEPORT): the source
 * becomes the node address and NodePort the client connected to.
 */
static __always_inline int nodeport_reverse(struct __sk_buff *skb, struct flow4 *f)
{
	struct nodeport_key k = nodeport_key_of(f, 1);
	struct nodeport_rev *v = bpf_map_lookup_elem(&fp_lb_nodeport, &k);
	int ret;

	if (!v)
		return 0;
	/* The lifetime depends on the protocol and the flags only. */
	v->expires_ns = bpf_ktime_get_ns() + ct_lifetime(f, CT_F_SEEN_REPLY);
	ret = lb_rewrite(skb, f->proto, 0, f->saddr, v->addr, f->sport, v->port);
	if (ret < 0)
		return ret;
	f->saddr = v->addr;
	f->sport = v->port;
	return 0;
}

/*
 * nodeport_redirect sends a reply that nodeport_reverse translated
 * straight to the device the node routes its destination through
 * (bpf_redirect_neigh resolves the next hop): the stack would drop it as
 * a martian, its source being now this node's own address. Falls back to
 * the stack when the FIB has no answer.
 */
static __always_inline int nodeport_redirect(struct __sk_buff *skb, const struct flow4 *f)
{
	struct bpf_fib_lookup fib = {
		.family = AF_INET,
		.l4_protocol = f->proto,
		.sport = f->sport,
		.dport = f->dport,
		.tot_len = (__u16)skb->len,
		.ipv4_src = f->saddr,
		.ipv4_dst = f->daddr,
		.ifindex = skb->ifindex,
	};
	/* An input lookup, as if the reply arrived from the pod. */
	long rc = bpf_fib_lookup(skb, &fib, sizeof(fib), 0);

	if (rc != BPF_FIB_LKUP_RET_SUCCESS && rc != BPF_FIB_LKUP_RET_NO_NEIGH)
		return CTX_ACT_OK;
	return (int)bpf_redirect_neigh(fib.ifindex, NULL, 0, 0);
}

static __always_inline __u16 csum_fold32(__u32 s)
{
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return (__u16)~s;
}

/* ipv4_csum_dsr computes the checksum of an IPv4 header of 20 bytes
 * followed by the DSR option (copied into 16-bit words: reading the
 * structs through another type would let the compiler use stale values). */
static __always_inline __u16 ipv4_csum_dsr(const struct iphdr *ip, const struct dsr_opt *opt)
{
	__u16 w[14];
	__u32 s = 0;
	int i;

	__builtin_memcpy(w, ip, sizeof(*ip));
	__builtin_memcpy(&w[10], opt, sizeof(*opt));
#pragma unroll
	for (i = 0; i < 14; i++)
		s += w[i];
	return csum_fold32(s);
}

/* dsr_insert_tc puts the DSR option after skb's 20-byte IPv4 header. */
static __always_inline int dsr_insert_tc(struct __sk_buff *skb, __be32 addr, __be16 port)
{
	struct dsr_opt opt = { .type = DSR_OPT_TYPE, .len = DSR_OPT_LEN, .port = port, .addr = addr };
	struct iphdr ip;

	if (bpf_skb_load_bytes(skb, ETH_HLEN, &ip, sizeof(ip)) < 0)
		return -DROP_TRUNCATED;
	/* A header with options of its own leaves no room we could use. */
	if (ip.ihl != 5)
		return -DROP_NODEPORT_DSR;
	if (bpf_skb_adjust_room(skb, DSR_OPT_LEN, BPF_ADJ_ROOM_NET, 0) < 0)
		return -DROP_NODEPORT_DSR;
	ip.ihl = 5 + DSR_OPT_LEN / 4;
	ip.tot_len = bpf_htons(bpf_ntohs(ip.tot_len) + DSR_OPT_LEN);
	ip.check = 0;
	ip.check = ipv4_csum_dsr(&ip, &opt);
	if (bpf_skb_store_bytes(skb, ETH_HLEN, &ip, sizeof(ip), 0) < 0 ||
	    bpf_skb_store_bytes(skb, ETH_HLEN + sizeof(ip), &opt, sizeof(opt), 0) < 0)
		return -DROP_NODEPORT_DSR;
	return 0;
}

/* nodeport_first_packet: the packet that must carry the DSR option. */
static __always_inline int nodeport_first_packet(const struct flow4 *f, int created)
{
	if (f->proto == IPPROTO_TCP)
		return (f->tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_ACK)) == TCP_FLAG_SYN;
	return created;
}

/*
 * nodeport_learn runs at the uplink for packets from other nodes: one that
 * carries the DSR option is the first packet of a NodePort flow another
 * node sent to a backend here; the frontend is recorded for the replies.
 */
static __always_inline void nodeport_learn(struct __sk_buff *skb, const struct flow4 *f)
{
	struct dsr_opt opt;
	__u8 vihl;

	if (f->proto != IPPROTO_TCP && f->proto != IPPROTO_UDP)
		return;
	if (bpf_skb_load_bytes(skb, ETH_HLEN, &vihl, 1) < 0 || (vihl & 0xf) != 5 + DSR_OPT_LEN / 4)
		return;
	if (bpf_skb_load_bytes(skb, ETH_HLEN + sizeof(struct iphdr), &opt, sizeof(opt)) < 0)
		return;
	if (opt.type != DSR_OPT_TYPE || opt.len != DSR_OPT_LEN)
		return;
	if (!endpoint_by_ip(f->daddr))
		return;
	nodeport_remember(f, opt.addr, opt.port);
}

/*
 * nodeport_tc translates a packet from outside to a NodePort (or any
 * frontend) at the uplink. Returns 0 when it is not one, 1 when it was
 * translated (f updated), or a negative drop reason.
 */
static __always_inline int nodeport_tc(struct __sk_buff *skb, struct flow4 *f)
{
	struct lb_frontend *fe;
	struct lb_backend *be;
	__be32 fe_addr = f->daddr;
	__be16 fe_port = f->dport;
	__u32 backend;
	int ret, created = 0;

	fe = lb_frontend_of(f);
	if (!fe)
		return 0;
	be = lb_pick(fe, f, skb->len, &backend, &created);
	if (!be)
		return -DROP_NO_SERVICE_BACKEND;
	ret = lb_rewrite(skb, f->proto, 1, f->daddr, be->addr, f->dport, be->port);
	if (ret < 0)
		return ret;
	f->daddr = be->addr;
	f->dport = be->port;
	if (endpoint_by_ip(be->addr)) {
		nodeport_remember(f, fe_addr, fe_port);
		return 1;
	}
	if (nodeport_first_packet(f, created)) {
		ret = dsr_insert_tc(skb, fe_addr, fe_port);
		if (ret < 0)
			return ret;
	}
	return 1;
}
