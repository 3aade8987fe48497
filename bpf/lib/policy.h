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

/*
 * policy_check returns 0 when the endpoint's policy allows a new connection
 * with the peer, or a positive drop reason.
 */
static __always_inline int policy_check(__u32 ep_id, __u32 peer, __u32 peer_cidr,
					 __u8 dir, __u8 proto, __be16 dport)
{
	struct policy_key key = {
		.prefixlen = POLICY_KEY_BITS,
		.identity = peer,
		.direction = dir,
		.protocol = proto,
		.dport = dport,
	};
	struct policy_value *v;
	void *inner;

	inner = bpf_map_lookup_elem(&fp_policy, &ep_id);
	if (!inner)
		return DROP_NO_POLICY_MAP;

	v = bpf_map_lookup_elem(inner, &key);
	if (!v && peer_cidr && peer_cidr != peer) {
		key.identity = peer_cidr;
		v = bpf_map_lookup_elem(inner, &key);
	}
	if (!v) {
		key.identity = 0;
		v = bpf_map_lookup_elem(inner, &key);
	}
	if (!v)
		return DROP_POLICY;
	if (v->action == POLICY_ALLOW)
		return 0;
	return DROP_POLICY_DENY;
}
