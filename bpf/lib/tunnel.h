/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The overlay: pods' packets to pods of other nodes travel in VXLAN, and
 * the VNI carries the sender's security identity, so the receiving node
 * takes the identity from the tunnel, never from the packet's source
 * address (which a pod, or a node of another cluster, could forge or
 * share).
 *
 * Each node has one VXLAN device in external (collect_metadata) mode,
 * its MAC fixed to TUNNEL_MAC on every node. At a pod's egress hook a
 * packet allowed to a pod whose ipcache entry names another node's
 * address (tunnel_endpoint) gets the tunnel key (that node, VNI = the
 * pod's identity) and the device's MAC as inner destination, and is
 * redirected to the device. At the device's tc ingress on the other node
 * (fp_from_tunnel) the VNI is turned into an skb mark (tunnel_mark) and
 * the packet goes up the stack, which routes it to the pod; the pod's
 * ingress hook takes the peer identity from that mark.
 *
 * The VNI has 24 bits: the identity's. The mark holds them with the
 * fastpath mark bits set to MARK_FROM_TUNNEL (proxy.h).
 */
#pragma once

#include "compiler.h"
#include "drop_reasons.h"
#include "maps.h"
#include "parse.h"
#include "identity.h"
#include "proxy.h"

enum tunnel_const {
	TUNNEL_PORT = 8472,        /* VXLAN UDP port (Linux's and Cilium's) */
	TUNNEL_VNI_MASK = 0xffffff,
};

/* TUNNEL_MAC is the MAC of every node's VXLAN device: a decapsulated
 * frame is addressed to the device, so the stack takes it. */
#define TUNNEL_MAC { 0x02, 0xfa, 0x57, 0x00, 0x00, 0x01 }

struct tunnel_config {
	__u32 ifindex;  /* the node's VXLAN device; 0: no overlay */
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct tunnel_config);
	__uint(max_entries, 1);
} fp_tunnel SEC(".maps");

/*
 * tunnel_encap sends a packet of a pod with identity through the overlay
 * when its destination is a pod of another node: returns the redirect
 * verdict, or -1 when the packet is not for the overlay (no overlay, or a
 * destination that is no remote pod), or a negative drop reason.
 */
static __always_inline int tunnel_encap(struct __sk_buff *skb, const struct flow4 *f, __u32 identity)
{
	struct ipcache_key ck = { .prefixlen = 32, .addr = f->daddr };
	struct bpf_tunnel_key key = {};
	struct tunnel_config *cfg;
	struct ipcache_value *v;
	__u8 mac[ETH_ALEN] = TUNNEL_MAC;
	__u32 zero = 0;

	cfg = bpf_map_lookup_elem(&fp_tunnel, &zero);
	if (!cfg || !cfg->ifindex)
		return -1;
	v = bpf_map_lookup_elem(&fp_ipcache, &ck);
	if (!v || !v->tunnel_endpoint)
		return -1;
	if (identity & ~TUNNEL_VNI_MASK)
		return -DROP_MALFORMED;
	key.remote_ipv4 = bpf_ntohl(v->tunnel_endpoint);
	key.tunnel_id = identity;
	key.tunnel_ttl = 64;
	if (bpf_skb_set_tunnel_key(skb, &key, sizeof(key), BPF_F_ZERO_CSUM_TX) < 0 ||
	    bpf_skb_store_bytes(skb, 0, mac, ETH_ALEN, 0) < 0)
		return -DROP_MALFORMED;
	return bpf_redirect(cfg->ifindex, 0);
}
