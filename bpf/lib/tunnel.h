/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The overlay: pods' packets to pods of other nodes travel in VXLAN or
 * Geneve, and the tunnel carries the sender's security identity (VXLAN:
 * in the VNI; Geneve: in an option, TUNNEL_OPT_*), so the receiving node
 * takes the identity from the tunnel, never from the packet's source
 * address (which a pod, or a node of another cluster, could forge or
 * share).
 *
 * Each node has one overlay device in external (collect_metadata) mode,
 * its MAC fixed to TUNNEL_MAC on every node; fp_tunnel says which device
 * and which type (one code path for both: only tunnel_send and
 * tunnel_identity_of differ). At a pod's egress hook a packet allowed to
 * a pod whose ipcache entry names another node's address
 * (tunnel_endpoint) gets the tunnel key (that node; VXLAN: VNI = the
 * pod's identity; Geneve: VNI 0 and the identity option) and the
 * device's MAC as inner destination, and is redirected to the device. At
 * the device's tc ingress on the other node (fp_from_tunnel) the identity
 * is turned into an skb mark (tunnel_mark) and the packet goes up the
 * stack, which routes it to the pod; the pod's ingress hook takes the
 * peer identity from that mark.
 *
 * Identities have 24 bits on the overlay (the VNI's; the option's upper
 * byte must be 0). The mark holds them with the fastpath mark bits set
 * to MARK_FROM_TUNNEL (proxy.h).
 *
 * The Geneve option: class TUNNEL_OPT_CLASS 0xfff0, the first of RFC
 * 8926's Experimental Use classes (0xfff0-0xffff): fastpath has no class
 * registered with IANA, and taking a registered vendor's class (Cilium's
 * is 0x014b, where type 0x01 is its DSR option) would give its tools and
 * nodes our bytes to misread. Type TUNNEL_OPT_TYPE 0x81: the critical bit
 * (0x80: a receiver that does not know the option must drop the packet,
 * RFC 8926 3.5; an identity is not optional) and type 1. Length 1 (four
 * bytes): the identity, big-endian. The sender puts exactly this option
 * and no other; the receiver drops (DROP_NO_TUNNEL_OPT) a packet whose
 * options are not exactly it, whose identity has more than 24 bits, and
 * ignores the VNI.
 *
 * Return tunnels. Clusters may share pod addresses: an address a local
 * pod also has is the local pod's in the ipcache, so a reply to a remote
 * pod with that address would be delivered to the local one. Where the
 * ipcache would not lead a flow's replies back to the node it came from
 * (the source is a local pod's address, another node's pod, or unknown),
 * fp_from_tunnel remembers that node in fp_tunnel_flows, keyed by the
 * tuple of the replies; at a pod's egress a packet of such a flow goes
 * back through the tunnel to it before the ipcache is consulted, and its
 * peer is the identity the flow came with.
 */
#pragma once

#include "compiler.h"
#include "drop_reasons.h"
#include "maps.h"
#include "parse.h"
#include "identity.h"
#include "conntrack.h"
#include "proxy.h"

enum tunnel_const {
	TUNNEL_PORT = 8472,        /* VXLAN UDP port (Linux's and Cilium's) */
	TUNNEL_GENEVE_PORT = 6081, /* Geneve UDP port (IANA's) */
	TUNNEL_VNI_MASK = 0xffffff,
	TUNNEL_OPT_CLASS = 0xfff0, /* Geneve option class: experimental use */
	TUNNEL_OPT_TYPE = 0x81,    /* critical bit | type 1: the identity */
	TUNNEL_OPT_LEN = 1,        /* option data in 4-byte words */
};

/* The overlay's encapsulation (tunnel_config.type). */
enum tunnel_type {
	TUNNEL_TYPE_VXLAN = 0,
	TUNNEL_TYPE_GENEVE = 1,
};

/* The identity option of Geneve, as bpf_skb_{get,set}_tunnel_opt see it
 * (the option's wire format: class, type, reserved bits and length in
 * 4-byte words, data). */
struct tunnel_opt {
	__be16 opt_class;
	__u8 type;
	__u8 length;       /* bits 0-4; bits 5-7 reserved */
	__be32 identity;
};

/* TUNNEL_KEY_SIZE is the size of struct bpf_tunnel_key passed to the
 * tunnel key helpers: up to local_ipv4 (added in Linux 6.0; unused here),
 * the layout kernels before 6.0 know as the whole struct and later ones
 * accept as a compat size. sizeof() with this header fails (-EINVAL) on
 * 5.x kernels. */
#define TUNNEL_KEY_SIZE __builtin_offsetof(struct bpf_tunnel_key, local_ipv4)

/* TUNNEL_MAC is the MAC of every node's VXLAN device: a decapsulated
 * frame is addressed to the device, so the stack takes it. */
#define TUNNEL_MAC { 0x02, 0xfa, 0x57, 0x00, 0x00, 0x01 }

struct tunnel_config {
	__u32 ifindex;  /* the node's overlay device; 0: no overlay */
	__u32 type;     /* enum tunnel_type */
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct tunnel_config);
	__uint(max_entries, 1);
} fp_tunnel SEC(".maps");

/*
 * A flow that came through the overlay from an address the ipcache does
 * not lead back to the sending node, keyed by the tuple of its replies
 * (the local side as source). Layout owned by datapath/lxc.
 */
struct tunnel_flow_key {
	__be32 saddr;
	__be32 daddr;
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 pad[3];
};

struct tunnel_flow {
	__u64 expires_ns;  /* bpf_ktime_get_ns() after which it is gone */
	__be32 remote;     /* the sending node: the outer source */
	__u32 identity;    /* the sender's identity (VNI or option) */
	__u32 flags;       /* CT_F_CLOSING once a FIN or RST came through */
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct tunnel_flow_key);
	__type(value, struct tunnel_flow);
	__uint(max_entries, TUNNEL_FLOWS_MAX);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} fp_tunnel_flows SEC(".maps");

static __always_inline struct tunnel_config *tunnel_cfg(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&fp_tunnel, &zero);
}

/* tunnel_ifindex is the node's overlay device, 0 without an overlay. */
static __always_inline __u32 tunnel_ifindex(void)
{
	struct tunnel_config *cfg = tunnel_cfg();

	return cfg ? cfg->ifindex : 0;
}

/*
 * tunnel_identity_of returns the sender's identity of a packet that came
 * through the overlay with tunnel key *key (VXLAN: the VNI; Geneve: the
 * identity option, TUNNEL_OPT_*), or a negative drop reason.
 */
static __always_inline int tunnel_identity_of(struct __sk_buff *skb, const struct bpf_tunnel_key *key)
{
	struct tunnel_config *cfg = tunnel_cfg();
	struct tunnel_opt opt = {};
	__u32 identity;

	if (!cfg || cfg->type != TUNNEL_TYPE_GENEVE)
		return key->tunnel_id & TUNNEL_VNI_MASK;
	/* The helper copies all of the packet's options or fails (-ENOMEM
	 * when they do not fit, -ENOENT when there are none): a buffer of
	 * exactly one option takes only a packet with exactly one. */
	if (bpf_skb_get_tunnel_opt(skb, &opt, sizeof(opt)) != sizeof(opt))
		return -DROP_NO_TUNNEL_OPT;
	if (opt.opt_class != bpf_htons(TUNNEL_OPT_CLASS) || opt.type != TUNNEL_OPT_TYPE ||
	    (opt.length & 0x1f) != TUNNEL_OPT_LEN)
		return -DROP_NO_TUNNEL_OPT;
	identity = bpf_ntohl(opt.identity);
	if (identity & ~TUNNEL_VNI_MASK)
		return -DROP_NO_TUNNEL_OPT;
	return identity;
}

/* tunnel_flow_touch keeps an entry as long as the connection's conntrack
 * entry lives: closing after a FIN or RST, again open on a new SYN. */
static __always_inline void tunnel_flow_touch(struct tunnel_flow *e, const struct flow4 *f, __u64 now)
{
	ct_follow(&e->flags, &e->expires_ns, f, now);
}

/*
 * tunnel_flow_learn runs for a packet f that came through the overlay
 * from node remote (network order) with identity: when the ipcache does
 * not name remote as where its source address lives, the flow's replies
 * are to go back to remote; when it does, a leftover entry of the tuple
 * is forgotten.
 */
static __always_inline void tunnel_flow_learn(const struct flow4 *f, __be32 remote, __u32 identity)
{
	struct ipcache_key ck = { .prefixlen = 32, .addr = f->saddr };
	struct tunnel_flow_key k = {
		.saddr = f->daddr,
		.daddr = f->saddr,
		.sport = f->dport,
		.dport = f->sport,
		.proto = f->proto,
	};
	struct ipcache_value *v;
	struct tunnel_flow *e;
	__u64 now;

	e = bpf_map_lookup_elem(&fp_tunnel_flows, &k);
	v = bpf_map_lookup_elem(&fp_ipcache, &ck);
	if (v && v->tunnel_endpoint == remote) {
		if (e)
			bpf_map_delete_elem(&fp_tunnel_flows, &k);
		return;
	}
	now = bpf_ktime_get_ns();
	if (e && e->remote == remote && e->identity == identity) {
		tunnel_flow_touch(e, f, now);
		return;
	}
	{
		struct tunnel_flow n = { .remote = remote, .identity = identity };

		tunnel_flow_touch(&n, f, now);
		bpf_map_update_elem(&fp_tunnel_flows, &k, &n, BPF_ANY);
	}
}

/* The node and identity a flow's packets go back to (tunnel_flow_of). */
struct tunnel_return {
	__be32 remote;
	__u32 identity;
};

/*
 * tunnel_flow_of tells whether the packet f a pod sends belongs to a flow
 * that came through the overlay from an address the ipcache does not lead
 * back (tunnel_flow_learn): then it fills *back and returns 1.
 */
static __always_inline int tunnel_flow_of(const struct flow4 *f, struct tunnel_return *back)
{
	struct tunnel_flow_key k = {
		.saddr = f->saddr,
		.daddr = f->daddr,
		.sport = f->sport,
		.dport = f->dport,
		.proto = f->proto,
	};
	struct tunnel_flow *e;
	__u64 now;

	if (!tunnel_ifindex())
		return 0;
	e = bpf_map_lookup_elem(&fp_tunnel_flows, &k);
	if (!e)
		return 0;
	now = bpf_ktime_get_ns();
	if (e->expires_ns <= now)
		return 0;
	tunnel_flow_touch(e, f, now);
	back->remote = e->remote;
	back->identity = e->identity;
	return 1;
}

/*
 * tunnel_send puts the tunnel key (remote: a node address in network
 * order; VXLAN: VNI = identity; Geneve: VNI 0 and the identity option)
 * and the device's MAC on a packet and redirects it to the overlay
 * device: returns the redirect verdict or a negative drop reason.
 */
static __always_inline int tunnel_send(struct __sk_buff *skb, __be32 remote, __u32 identity)
{
	struct tunnel_config *cfg = tunnel_cfg();
	struct bpf_tunnel_key key = {};
	__u8 mac[ETH_ALEN] = TUNNEL_MAC;
	__u32 ifindex;
	int geneve;

	if (!cfg || !cfg->ifindex || (identity & ~TUNNEL_VNI_MASK))
		return -DROP_MALFORMED;
	ifindex = cfg->ifindex;
	geneve = cfg->type == TUNNEL_TYPE_GENEVE;
	key.remote_ipv4 = bpf_ntohl(remote);
	key.tunnel_id = geneve ? 0 : identity;
	key.tunnel_ttl = 64;
	if (bpf_skb_set_tunnel_key(skb, &key, TUNNEL_KEY_SIZE, BPF_F_ZERO_CSUM_TX) < 0)
		return -DROP_MALFORMED;
	if (geneve) {
		struct tunnel_opt opt = {
			.opt_class = bpf_htons(TUNNEL_OPT_CLASS),
			.type = TUNNEL_OPT_TYPE,
			.length = TUNNEL_OPT_LEN,
			.identity = bpf_htonl(identity),
		};

		if (bpf_skb_set_tunnel_opt(skb, &opt, sizeof(opt)) < 0)
			return -DROP_MALFORMED;
	}
	if (bpf_skb_store_bytes(skb, 0, mac, ETH_ALEN, 0) < 0)
		return -DROP_MALFORMED;
	return bpf_redirect(ifindex, 0);
}

/*
 * tunnel_encap sends a packet of a pod with identity through the overlay
 * when its destination is a pod of another node: returns the redirect
 * verdict, or -1 when the packet is not for the overlay (no overlay, or a
 * destination that is no remote pod), or a negative drop reason.
 */
static __always_inline int tunnel_encap(struct __sk_buff *skb, const struct flow4 *f, __u32 identity)
{
	struct ipcache_key ck = { .prefixlen = 32, .addr = f->daddr };
	struct ipcache_value *v;

	if (!tunnel_ifindex())
		return -1;
	v = bpf_map_lookup_elem(&fp_ipcache, &ck);
	if (!v || !v->tunnel_endpoint)
		return -1;
	return tunnel_send(skb, v->tunnel_endpoint, identity);
}
