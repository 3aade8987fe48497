/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* ipcache: longest-prefix match from an address to its security identity. */
#pragma once

#include "compiler.h"
#include "maps.h"

#define IDENTITY_WORLD 2
/* Identities of policy CIDRs start here (node-local, never a pod's). */
#define IDENTITY_CIDR_BASE (1U << 24)

struct ipcache_key {
	__u32 prefixlen;
	__be32 addr;
};

struct ipcache_value {
	__u32 identity;       /* pod, node, or CIDR identity of the prefix */
	__u32 cidr_identity;  /* for pod and node /32s: the identity of the
			       * longest policy CIDR containing the address,
			       * so ipBlock rules match it; 0 when none */
	__be32 tunnel_endpoint; /* for pods of other nodes: their node's
				 * address, where the overlay sends their
				 * packets (tunnel.h); 0 otherwise */
};

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct ipcache_key);
	__type(value, struct ipcache_value);
	__uint(max_entries, IPCACHE_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} fp_ipcache SEC(".maps");

struct peer_identity {
	__u32 identity;
	__u32 cidr_identity;
};

static __always_inline void identity_of(__be32 addr, struct peer_identity *out)
{
	struct ipcache_key key = { .prefixlen = 32, .addr = addr };
	struct ipcache_value *v = bpf_map_lookup_elem(&fp_ipcache, &key);

	if (v) {
		out->identity = v->identity;
		out->cidr_identity = v->cidr_identity;
	} else {
		out->identity = IDENTITY_WORLD;
		out->cidr_identity = 0;
	}
}
