/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Local endpoints: the pod behind each lxc interface. */
#pragma once

#include "compiler.h"
#include "maps.h"

enum endpoint_flags {
	/* Default deny per direction: what no rule allows is dropped. */
	EP_F_INGRESS_ENFORCED = 0x1,
	EP_F_EGRESS_ENFORCED = 0x2,
	/* The policy map has rules for the direction (allow or deny): look
	 * them up even when the direction is not in default deny. */
	EP_F_INGRESS_POLICY = 0x4,
	EP_F_EGRESS_POLICY = 0x8,
	/* The mesh layer (AuthorizationPolicy, TCP to the pod): default deny,
	 * and rules present. */
	EP_F_MESH_ENFORCED = 0x10,
	EP_F_MESH_POLICY = 0x20,
	/* Some ingress rule (either layer) is an L7 rule: new TCP connections
	 * to the pod may have to go through the node's L7 proxy. */
	EP_F_INGRESS_L7 = 0x40,
};

struct endpoint_info {
	__u32 ep_id;     /* key of the endpoint's policy map in fp_policy */
	__u32 identity;  /* the pod's security identity */
	__be32 ipv4;     /* the pod's address: the only source it may use */
	__u32 flags;     /* EP_F_* */
};

/* Keyed by the ifindex of the node-side veth. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, struct endpoint_info);
	__uint(max_entries, ENDPOINTS_MAX);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} fp_endpoints SEC(".maps");

/* The same records keyed by the pod's address, for hooks that see packets
 * before the node routes them to a pod (the L7 proxy redirect). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __be32);
	__type(value, struct endpoint_info);
	__uint(max_entries, ENDPOINTS_MAX);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} fp_endpoints_by_ip SEC(".maps");

static __always_inline struct endpoint_info *endpoint_lookup(__u32 ifindex)
{
	return bpf_map_lookup_elem(&fp_endpoints, &ifindex);
}

static __always_inline struct endpoint_info *endpoint_by_ip(__be32 addr)
{
	return bpf_map_lookup_elem(&fp_endpoints_by_ip, &addr);
}
