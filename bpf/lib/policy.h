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
#include "endpoint.h"
#include "identity.h"
#include "parse.h"

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

/* Bits of a policy value. User space ORs into every key the bits of all
 * the rules whose keys contain it, so one longest-prefix match carries
 * everything that applies to that identity. */
enum policy_action {
	POLICY_ALLOW = 1,  /* admits the connection */
	POLICY_DENY = 2,   /* drops it, whatever allows it */
	POLICY_PROXY = 4,  /* an L7 rule applies: if admitted, the connection
			    * goes through the node's L7 proxy */
};

struct policy_value {
	__u8 action;     /* enum policy_action bits */
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

/* fp_policy_rev[0] counts the states the agent has programmed; hooks that
 * cache a verdict (sockmap) check again when it changed. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 1);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} fp_policy_rev SEC(".maps");

struct rule_metrics_key {
	__u32 ep_id;    /* with POLICY_MESH_BIT for the mesh layer */
	__u32 rule_id;  /* as user space numbered the endpoint's rules */
};

/* Connections each rule decided, per CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__type(key, struct rule_metrics_key);
	__type(value, __u64);
	__uint(max_entries, RULE_METRICS_MAX);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} fp_rule_metrics SEC(".maps");

static __always_inline void rule_count(__u32 ep_id, __u32 rule_id)
{
	struct rule_metrics_key k = { .ep_id = ep_id, .rule_id = rule_id };
	__u64 one = 1, *n;

	n = bpf_map_lookup_elem(&fp_rule_metrics, &k);
	if (n)
		(*n)++;
	else
		bpf_map_update_elem(&fp_rule_metrics, &k, &one, BPF_NOEXIST);
}

static __always_inline struct policy_value *
policy_lookup(void *inner, struct policy_key *key, __u32 identity)
{
	key->identity = identity;
	return bpf_map_lookup_elem(inner, key);
}

/*
 * policy_check decides a new connection with the peer: REASON_FORWARDED
 * when the endpoint's policy admits it, REASON_TO_PROXY when it admits it
 * subject to an L7 rule, or a drop reason. It looks up the peer's own
 * identity, the identity of the policy CIDR containing its address, and the
 * wildcard, and combines the bits: a deny from any of them wins, then an
 * allow from any of them admits, then the default (drop when default_deny).
 * Within one identity, user space has already merged the bits of broader
 * keys into narrower ones, so the longest-prefix match never lets a narrow
 * allow hide a deny.
 */
static __always_inline int policy_check(__u32 ep_id, __u32 peer, __u32 peer_cidr,
					 __u8 dir, __u8 proto, __be16 dport,
					 int default_deny, int count)
{
	struct policy_key key = {
		.prefixlen = POLICY_KEY_BITS,
		.direction = dir,
		.protocol = proto,
		.dport = dport,
	};
	struct policy_value *v, *decided = NULL;
	__u8 bits = 0;
	void *inner;

	inner = bpf_map_lookup_elem(&fp_policy, &ep_id);
	if (!inner)
		return DROP_NO_POLICY_MAP;

	v = policy_lookup(inner, &key, peer);
	if (v) {
		bits |= v->action;
		decided = v;
	}
	if (peer_cidr && peer_cidr != peer) {
		v = policy_lookup(inner, &key, peer_cidr);
		if (v) {
			bits |= v->action;
			if (!decided || (v->action & POLICY_DENY))
				decided = v;
		}
	}
	v = policy_lookup(inner, &key, 0);
	if (v) {
		bits |= v->action;
		if (!decided || ((v->action & POLICY_DENY) && !(decided->action & POLICY_DENY)))
			decided = v;
	}

	if (decided && count)
		rule_count(ep_id, decided->rule_id);
	if (bits & POLICY_DENY)
		return DROP_POLICY_DENY;
	if (!(bits & POLICY_ALLOW) && default_deny)
		return DROP_POLICY;
	return (bits & POLICY_PROXY) ? REASON_TO_PROXY : REASON_FORWARDED;
}

/*
 * ingress_policy decides a new connection into endpoint ep from peer:
 * the network layer, then for TCP the mesh layer; both must admit it.
 * Returns REASON_FORWARDED, REASON_TO_PROXY (admitted, subject to an L7
 * rule of either layer) or a drop reason. count says whether the rules
 * that decide are counted (not when the redirect hook only peeks).
 */
static __always_inline int ingress_policy(const struct endpoint_info *ep,
					  const struct flow4 *f,
					  const struct peer_identity *peer,
					  int count)
{
	int net = REASON_FORWARDED, mesh = REASON_FORWARDED;

	if (ep->flags & (EP_F_INGRESS_ENFORCED | EP_F_INGRESS_POLICY)) {
		net = policy_check(ep->ep_id, peer->identity, peer->cidr_identity,
				   DIR_INGRESS, f->proto, f->dport,
				   ep->flags & EP_F_INGRESS_ENFORCED, count);
		if (net >= DROP_POLICY)
			return net;
	}
	if (f->proto == IPPROTO_TCP &&
	    (ep->flags & (EP_F_MESH_ENFORCED | EP_F_MESH_POLICY))) {
		mesh = policy_check(ep->ep_id | POLICY_MESH_BIT, peer->identity,
				    peer->cidr_identity, DIR_INGRESS, f->proto,
				    f->dport, ep->flags & EP_F_MESH_ENFORCED, count);
		if (mesh == DROP_POLICY)
			return DROP_MESH_POLICY;
		if (mesh == DROP_POLICY_DENY)
			return DROP_MESH_DENY;
		if (mesh >= DROP_POLICY)
			return mesh;
	}
	if (net == REASON_TO_PROXY || mesh == REASON_TO_PROXY)
		return REASON_TO_PROXY;
	return REASON_FORWARDED;
}
