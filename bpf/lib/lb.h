/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Service load balancing on the TC path (ClusterIP): a packet a pod sends
 * to a service frontend (VIP, port, protocol) is translated to a backend
 * at the pod's own hook, before policy, so egress policy sees the backend
 * (as in Cilium and kube-proxy). Replies are translated back at the same
 * pod's ingress hook, from the conntrack entry of the translated flow.
 *
 * Maps (layouts owned by datapath/lxc):
 *   fp_lb_frontends  (vip, port, proto) -> frontend id, flags, affinity
 *   fp_lb_select     frontend id -> inner array: [0] = n, [1..n] = backend
 *                    ids (random selection: n backends; Maglev: n = M, the
 *                    lookup table). One map update swaps a frontend's
 *                    whole backend set.
 *   fp_lb_backends   backend id -> address, port
 *   fp_lb_revnat     frontend id -> vip, port (for replies)
 *   fp_lb_affinity   (client, frontend id) -> backend id, last use
 * A flow's backend is kept in fp_ct under the original tuple with
 * direction DIR_SERVICE, so a flow sticks to its backend while the
 * backend exists, whatever the selection table says later.
 */
#pragma once

#include "compiler.h"
#include "maps.h"
#include "parse.h"
#include "conntrack.h"

#define LB_F_MAGLEV 0x1    /* select with the Maglev table by flow hash */
#define LB_F_AFFINITY 0x2  /* sessionAffinity ClientIP */

struct lb_frontend_key {
	__be32 vip;
	__be16 port;
	__u8 proto;
	__u8 pad;
};

struct lb_frontend {
	__u32 id;          /* frontend id: fp_lb_select, fp_lb_revnat */
	__u32 flags;       /* LB_F_* */
	__u32 affinity_s;  /* ClientIP affinity timeout, seconds */
	__u32 pad;
};

struct lb_backend {
	__be32 addr;
	__be16 port;
	__u16 pad;
};

struct lb_revnat {
	__be32 vip;
	__be16 port;
	__u16 pad;
};

struct lb_affinity_key {
	__be32 client;
	__u32 frontend;
};

struct lb_affinity {
	__u64 last_ns;
	__u32 backend;
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct lb_frontend_key);
	__type(value, struct lb_frontend);
	__uint(max_entries, LB_FRONTENDS_MAX);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} fp_lb_frontends SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH_OF_MAPS);
	__type(key, __u32);
	__uint(max_entries, LB_FRONTENDS_MAX);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
	__array(values, struct {
		__uint(type, BPF_MAP_TYPE_ARRAY);
		__type(key, __u32);
		__type(value, __u32);
		__uint(max_entries, LB_SELECT_MAX);
		/* Inner arrays may differ in size: a few entries for random
		 * selection, M + 1 for a Maglev table (Linux 5.10+). */
		__uint(map_flags, BPF_F_INNER_MAP);
	});
} fp_lb_select SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, struct lb_backend);
	__uint(max_entries, LB_BACKENDS_MAX);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} fp_lb_backends SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, struct lb_revnat);
	__uint(max_entries, LB_FRONTENDS_MAX);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} fp_lb_revnat SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct lb_affinity_key);
	__type(value, struct lb_affinity);
	__uint(max_entries, LB_AFFINITY_MAX);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} fp_lb_affinity SEC(".maps");

/* lb_hash mixes the flow's tuple (a murmur3-style finaliser per word). */
static __always_inline __u32 lb_hash(const struct flow4 *f)
{
	__u32 h = 0x9747b28c;
	__u32 w[3] = { f->saddr, f->daddr, ((__u32)f->sport << 16) | f->dport };
	int i;

#pragma unroll
	for (i = 0; i < 3; i++) {
		__u32 k = w[i] * 0xcc9e2d51;

		k = (k << 15) | (k >> 17);
		h ^= k * 0x1b873593;
		h = ((h << 13) | (h >> 19)) * 5 + 0xe6546b64;
	}
	h ^= f->proto;
	h ^= h >> 16;
	h *= 0x85ebca6b;
	h ^= h >> 13;
	h *= 0xc2b2ae35;
	h ^= h >> 16;
	return h;
}

/* lb_select_hash picks the backend id at hash in the frontend's selection
 * array, 0 when there is none. */
static __always_inline __u32 lb_select_hash(const struct lb_frontend *fe, __u32 hash)
{
	__u32 zero = 0, idx, *n, *id;
	void *inner;

	inner = bpf_map_lookup_elem(&fp_lb_select, &fe->id);
	if (!inner)
		return 0;
	n = bpf_map_lookup_elem(inner, &zero);
	if (!n || *n == 0)
		return 0;
	idx = hash % *n + 1;
	id = bpf_map_lookup_elem(inner, &idx);
	return id ? *id : 0;
}

/* lb_select picks a backend id for a new flow, 0 when there is none:
 * Maglev by the flow's tuple, otherwise at random. */
static __always_inline __u32 lb_select(const struct lb_frontend *fe,
				       const struct flow4 *f)
{
	return lb_select_hash(fe, (fe->flags & LB_F_MAGLEV) ? lb_hash(f) : bpf_get_prandom_u32());
}

/*
 * lb_rewrite replaces the destination (dst != 0) or source address and port
 * of the IPv4 packet in skb, fixing the IP and L4 checksums.
 */
static __always_inline int lb_rewrite(struct __sk_buff *skb, __u8 proto, int dst,
				      __be32 old_addr, __be32 new_addr,
				      __be16 old_port, __be16 new_port)
{
	__u32 ip_off = ETH_HLEN;
	__u32 addr_off = ip_off + (dst ? offsetof(struct iphdr, daddr) : offsetof(struct iphdr, saddr));
	__u32 l4_off, csum_off, port_off;
	__u8 vihl;
	__u64 flags = BPF_F_PSEUDO_HDR | sizeof(new_addr);

	if (bpf_skb_load_bytes(skb, ip_off, &vihl, 1) < 0)
		return -DROP_TRUNCATED;
	l4_off = ip_off + (__u32)(vihl & 0xf) * 4;
	switch (proto) {
	case IPPROTO_TCP:
		csum_off = l4_off + offsetof(struct tcphdr, check);
		port_off = l4_off + (dst ? offsetof(struct tcphdr, dest) : offsetof(struct tcphdr, source));
		break;
	case IPPROTO_UDP:
		csum_off = l4_off + offsetof(struct udphdr, check);
		port_off = l4_off + (dst ? offsetof(struct udphdr, dest) : offsetof(struct udphdr, source));
		/* A zero UDP checksum means none: keep it so. */
		flags |= BPF_F_MARK_MANGLED_0;
		break;
	default:
		return -DROP_MALFORMED;
	}
	if (bpf_l4_csum_replace(skb, csum_off, old_addr, new_addr, flags) < 0 ||
	    bpf_l3_csum_replace(skb, ip_off + offsetof(struct iphdr, check), old_addr, new_addr, sizeof(new_addr)) < 0 ||
	    bpf_skb_store_bytes(skb, addr_off, &new_addr, sizeof(new_addr), 0) < 0)
		return -DROP_MALFORMED;
	if (old_port != new_port &&
	    (bpf_l4_csum_replace(skb, csum_off, old_port, new_port,
				 (flags & BPF_F_MARK_MANGLED_0) | sizeof(new_port)) < 0 ||
	     bpf_skb_store_bytes(skb, port_off, &new_port, sizeof(new_port), 0) < 0))
		return -DROP_MALFORMED;
	return 0;
}

/*
 * lb_pick returns the backend of a packet (flow f, len bytes) to frontend
 * fe: the flow's backend kept in conntrack, else the client's affinity
 * backend, else a new choice; it records the flow under its original
 * tuple (DIR_SERVICE). *id is the backend id; *created says whether the
 * flow had no entry yet. NULL when the frontend has no backend for a new
 * flow.
 */
static __always_inline struct lb_backend *lb_pick(const struct lb_frontend *fe,
						  const struct flow4 *f, __u32 len,
						  __u32 *id, int *created)
{
	struct ct_key ck = {
		.saddr = f->saddr,
		.daddr = f->daddr,
		.sport = f->sport,
		.dport = f->dport,
		.proto = f->proto,
		.direction = DIR_SERVICE,
	};
	struct lb_backend *be = NULL;
	struct ct_entry *ce;
	__u64 now = bpf_ktime_get_ns();
	__u32 backend = 0;

	ce = bpf_map_lookup_elem(&fp_ct, &ck);
	if (ce && ce->expires_ns > now && ce->backend) {
		be = bpf_map_lookup_elem(&fp_lb_backends, &ce->backend);
		if (be) {
			backend = ce->backend;
			ct_touch(ce, f, len, now, 0);
		}
	}
	if (!be && (fe->flags & LB_F_AFFINITY)) {
		struct lb_affinity_key ak = { .client = f->saddr, .frontend = fe->id };
		struct lb_affinity *a = bpf_map_lookup_elem(&fp_lb_affinity, &ak);

		if (a && now - a->last_ns < (__u64)fe->affinity_s * 1000000000ULL) {
			be = bpf_map_lookup_elem(&fp_lb_backends, &a->backend);
			if (be)
				backend = a->backend;
		}
	}
	if (!be) {
		backend = lb_select(fe, f);
		if (backend)
			be = bpf_map_lookup_elem(&fp_lb_backends, &backend);
		if (!be)
			return NULL;
	}
	*created = !ce || ce->expires_ns <= now;
	if (!ce || ce->backend != backend) {
		struct ct_entry e = {
			.backend = backend,
			.rev_nat = fe->id,
		};

		ct_touch(&e, f, len, now, 0);
		bpf_map_update_elem(&fp_ct, &ck, &e, BPF_ANY);
	}
	if (fe->flags & LB_F_AFFINITY) {
		struct lb_affinity_key ak = { .client = f->saddr, .frontend = fe->id };
		struct lb_affinity a = { .last_ns = now, .backend = backend };

		bpf_map_update_elem(&fp_lb_affinity, &ak, &a, BPF_ANY);
	}
	*id = backend;
	return be;
}

static __always_inline struct lb_frontend *lb_frontend_of(const struct flow4 *f)
{
	struct lb_frontend_key fk = {
		.vip = f->daddr,
		.port = f->dport,
		.proto = f->proto,
	};

	if (f->proto != IPPROTO_TCP && f->proto != IPPROTO_UDP)
		return NULL;
	return bpf_map_lookup_elem(&fp_lb_frontends, &fk);
}

/*
 * lb_translate runs at a pod's egress hook before conntrack and policy. A
 * packet to a service frontend is sent to the flow's backend (kept in
 * conntrack), or, for a new flow, to one chosen now. f is updated to the
 * translated tuple. Returns 0 (not a service), the frontend id
 * (translated), or a negative drop reason (DROP_NO_SERVICE_BACKEND when
 * the service has no backend to take the flow).
 */
static __always_inline int lb_translate(struct __sk_buff *skb, struct flow4 *f)
{
	struct lb_frontend *fe;
	struct lb_backend *be;
	__u32 backend;
	int ret, created;

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
	return fe->id;
}

/*
 * Hairpin: a pod whose connection through a service lands on the pod
 * itself. Translated alone, the packet would come back to the pod with the
 * pod's own address as source (its kernel drops such a martian) and the
 * reply would stay inside the pod, never translated back. So, as
 * kube-proxy and Cilium do, the source is rewritten too:
 *   1. egress, pod:sport -> pod:port (translated): the flow is recorded as
 *      the pod's egress entry of that tuple, holding the frontend, and the
 *      source becomes LB_HAIRPIN_ADDR, a link-local address no pod has;
 *   2. ingress, LB_HAIRPIN_ADDR:sport -> pod:port: delivered as part of
 *      that flow;
 *   3. egress, the reply pod:port -> LB_HAIRPIN_ADDR:sport: the
 *      destination becomes the pod again;
 *   4. ingress, the reply pod:port -> pod:sport: an ordinary reply of the
 *      entry of step 1, which gives the frontend back as source.
 * A pod may always reach itself: no policy is consulted (kube-proxy's
 * masquerade to the node has the same effect for NetworkPolicy).
 */
enum lb_hairpin {
	LB_HAIRPIN_ADDR = 0xa9fe2a01, /* 169.254.42.1, host byte order */
};

static __always_inline int lb_is_hairpin(__be32 addr)
{
	return addr == bpf_htonl(LB_HAIRPIN_ADDR);
}

/* lb_hairpin_flow returns the live entry of step 1 for the flow of a
 * packet between pod and LB_HAIRPIN_ADDR (request: reply == 0, the pod's
 * port is the destination; reply: the pod's port is the source), without
 * counting the packet in it: each packet is counted once, at steps 1 and 4.
 */
static __always_inline struct ct_entry *lb_hairpin_flow(const struct flow4 *f, __be32 pod, int reply)
{
	struct ct_key key = {
		.saddr = pod,
		.daddr = pod,
		.sport = reply ? f->dport : f->sport,
		.dport = reply ? f->sport : f->dport,
		.proto = f->proto,
		.direction = DIR_EGRESS,
	};
	struct ct_entry *e = bpf_map_lookup_elem(&fp_ct, &key);

	if (!e || e->expires_ns <= bpf_ktime_get_ns())
		return NULL;
	return e;
}

/* lb_hairpin_snat is step 1's rewrite: the source becomes
 * LB_HAIRPIN_ADDR, the port stays. */
static __always_inline int lb_hairpin_snat(struct __sk_buff *skb, struct flow4 *f)
{
	__be32 addr = bpf_htonl(LB_HAIRPIN_ADDR);
	int ret = lb_rewrite(skb, f->proto, 0, f->saddr, addr, f->sport, f->sport);

	if (ret < 0)
		return ret;
	f->saddr = addr;
	return 0;
}

/* lb_hairpin_reply is step 3's rewrite: the destination becomes the pod. */
static __always_inline int lb_hairpin_reply(struct __sk_buff *skb, struct flow4 *f, __be32 pod)
{
	int ret = lb_rewrite(skb, f->proto, 1, f->daddr, pod, f->dport, f->dport);

	if (ret < 0)
		return ret;
	f->daddr = pod;
	return 0;
}

/*
 * lb_reverse runs at a pod's ingress hook for a reply of a tracked
 * connection the pod opened through a service: the source is set back to
 * the frontend the pod connected to.
 */
static __always_inline int lb_reverse(struct __sk_buff *skb, struct flow4 *f, __u32 rev_nat)
{
	struct lb_revnat *rn;
	int ret;

	rn = bpf_map_lookup_elem(&fp_lb_revnat, &rev_nat);
	if (!rn)
		return 0;
	ret = lb_rewrite(skb, f->proto, 0, f->saddr, rn->vip, f->sport, rn->port);
	if (ret < 0)
		return ret;
	f->saddr = rn->vip;
	f->sport = rn->port;
	return 0;
}
