/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Policy: one LPM trie per endpoint, held in a hash of maps keyed by the
 * endpoint id. User space builds a complete new trie and swaps it in with
 * one update of the outer map, so a packet sees either the old policy or the
 * new one, never a mix.
 *
 * The trie key is (identity, direction, protocol, port) and the prefix
 * length says how much of it a rule fixes: 64 bits for one port, fewer for a
 * port range (aligned blocks), 48 for every port of a protocol, 40 for every
 * protocol. The peer's own identity is looked up first, then the identity
 * of the policy CIDR containing its address (ipBlock rules), then identity 0,
 * the wildcard peer. The cost of a
 * lookup depends on the key width, not on the number of rules.
 */
#pragma once

#include "compiler.h"
#include "maps.h"
#include "drop_reasons.h"

#define POLICY_KEY_BITS 64

/* fp_policy holds two tries per endpoint: the network layer under ep_id,
 * the mesh layer (AuthorizationPolicy) under ep_id | POLICY_MESH_BIT. */
#define POLICY_MESH_BIT 0x80000000

struct policy_key {
	__u32 prefixlen;
	__u32 identity;
	__u8 direction;
	__u8 protocol;
	__be16 dport;
};

enum policy_action {
	POLICY_ALLOW = 1,
	POLICY_DENY = 2,
};

struct policy_value {
	__u8 action;     /* enum policy_action */
	__u8 pad;
	__u16 pad2;
	__u32 rule_id;   /* index into the endpoint's rule list (for counters) */
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH_OF_MAPS);
	__type(key, __u32);
	__uint(max_entries, POLICY_OUTER_MAX);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
	__array(values, struct {
		__uint(type, BPF_MAP_TYPE_LPM_TRIE);
		__type(key, struct policy_key);
		__type(value, struct policy_value);
		__uint(max_entries, POLICY_INNER_MAX);
		__uint(map_flags, BPF_F_NO_PREALLOC);
	});
} fp_policy SEC(".maps");

static __always_inline __u8 policy_lookup(void *inner, struct policy_key *key,
					    __u32 identity)
{
	struct policy_value *v;

	key->identity = identity;
	v = bpf_map_lookup_elem(inner, key);
	return v ? v->action : 0;
}

/*
 * policy_check returns 0 when the endpoint's policy allows a new connection
 * with the peer, or a positive drop reason. It looks up the peer's own
 * identity, the identity of the policy CIDR containing its address, and the
 * wildcard: a deny from any of them wins, then an allow from any of them,
 * then the default (deny when default_deny). Within one identity, user space
 * has already turned every allow that a broader deny covers into a deny, so
 * the longest-prefix match never lets a narrow allow hide a deny.
 */
static __always_inline int policy_check(__u32 ep_id, __u32 peer, __u32 peer_cidr,
					 __u8 dir, __u8 proto, __be16 dport,
					 int default_deny)
{
	struct policy_key key = {
		.prefixlen = POLICY_KEY_BITS,
		.direction = dir,
		.protocol = proto,
		.dport = dport,
	};
	__u8 a, b = 0, c;
	void *inner;

	inner = bpf_map_lookup_elem(&fp_policy, &ep_id);
	if (!inner)
		return DROP_NO_POLICY_MAP;

	a = policy_lookup(inner, &key, peer);
	if (peer_cidr && peer_cidr != peer)
		b = policy_lookup(inner, &key, peer_cidr);
	c = policy_lookup(inner, &key, 0);

	if (a == POLICY_DENY || b == POLICY_DENY || c == POLICY_DENY)
		return DROP_POLICY_DENY;
	if (a == POLICY_ALLOW || b == POLICY_ALLOW || c == POLICY_ALLOW)
		return 0;
	return default_deny ? DROP_POLICY : 0;
}
