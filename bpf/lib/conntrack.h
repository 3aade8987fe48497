/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Connection tracking. Each endpoint hook records the connections it let
 * through, keyed by the tuple in the direction of the first packet plus the
 * direction (as the endpoint sees it) of that first packet. A later packet
 * is either the same direction (established) or the reversed tuple of an
 * entry made in the other direction (reply). Entries expire by time; the
 * map is an LRU, and the agent also deletes expired entries.
 */
#pragma once

#include "compiler.h"
#include "maps.h"
#include "parse.h"

#define CT_LIFETIME_TCP_NS (21600ULL * 1000000000ULL)   /* 6 h established */
#define CT_LIFETIME_SYN_NS (60ULL * 1000000000ULL)
#define CT_LIFETIME_CLOSE_NS (10ULL * 1000000000ULL)
#define CT_LIFETIME_OTHER_NS (60ULL * 1000000000ULL)

/* Service entries: the original tuple (client to frontend) of a
 * load-balanced flow, holding its backend. */
#define DIR_SERVICE 2

#define CT_F_SEEN_REPLY 0x1
#define CT_F_CLOSING 0x2

struct ct_key {
	__be32 saddr;
	__be32 daddr;
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 direction;  /* enum direction of the first packet */
	__u16 pad;
};

struct ct_entry {
	__u64 expires_ns;  /* bpf_ktime_get_ns() after which it is gone */
	__u64 packets;
	__u64 bytes;
	__u32 flags;       /* CT_F_* */
	__u32 peer_identity;
	__u32 backend;     /* DIR_SERVICE entries: the flow's backend id */
	__u32 rev_nat;     /* frontend id whose address replies get back */
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct ct_key);
	__type(value, struct ct_entry);
	__uint(max_entries, CT_MAX);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} fp_ct SEC(".maps");

enum ct_result {
	CT_NEW = 0,
	CT_ESTABLISHED = 1,
	CT_REPLY = 2,
};

static __always_inline __u64 ct_lifetime(const struct flow4 *f, __u32 flags)
{
	if (f->proto != IPPROTO_TCP)
		return CT_LIFETIME_OTHER_NS;
	if (flags & CT_F_CLOSING)
		return CT_LIFETIME_CLOSE_NS;
	if (!(flags & CT_F_SEEN_REPLY))
		return CT_LIFETIME_SYN_NS;
	return CT_LIFETIME_TCP_NS;
}

static __always_inline void ct_touch(struct ct_entry *e, const struct flow4 *f,
				     __u32 len, __u64 now, __u32 add_flags)
{
	__u32 flags = e->flags | add_flags;

	if (f->tcp_flags & (TCP_FLAG_FIN | TCP_FLAG_RST))
		flags |= CT_F_CLOSING;
	e->flags = flags;
	e->packets++;
	e->bytes += len;
	e->expires_ns = now + ct_lifetime(f, flags);
}

/* ct_follow keeps the lifetime of an entry that shadows a connection
 * (return tunnels, egress gateway NAT) as conntrack keeps the
 * connection's: closing after a FIN or RST, open again on a new SYN. */
static __always_inline void ct_follow(__u32 *flags, __u64 *expires_ns,
				      const struct flow4 *f, __u64 now)
{
	__u32 fl = *flags;

	if ((f->tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_ACK)) == TCP_FLAG_SYN)
		fl = 0;
	if (f->tcp_flags & (TCP_FLAG_FIN | TCP_FLAG_RST))
		fl |= CT_F_CLOSING;
	*flags = fl;
	*expires_ns = now + ct_lifetime(f, fl | CT_F_SEEN_REPLY);
}

/* ct_lookup classifies a packet seen in direction dir; for a reply it
 * sets *rev_nat to the frontend id of a load-balanced connection (0 for
 * others). */
static __always_inline int ct_lookup(const struct flow4 *f, __u8 dir, __u32 len,
				     __u32 *rev_nat)
{
	struct ct_key key = {
		.saddr = f->saddr,
		.daddr = f->daddr,
		.sport = f->sport,
		.dport = f->dport,
		.proto = f->proto,
		.direction = dir,
	};
	__u64 now = bpf_ktime_get_ns();
	struct ct_entry *e;

	e = bpf_map_lookup_elem(&fp_ct, &key);
	if (e && e->expires_ns > now) {
		/* A SYN on an entry that is closing starts a new connection. */
		if ((e->flags & CT_F_CLOSING) && (f->tcp_flags & TCP_FLAG_SYN) &&
		    !(f->tcp_flags & TCP_FLAG_ACK))
			return CT_NEW;
		ct_touch(e, f, len, now, 0);
		return CT_ESTABLISHED;
	}

	key.saddr = f->daddr;
	key.daddr = f->saddr;
	key.sport = f->dport;
	key.dport = f->sport;
	key.direction = dir ^ 1;
	e = bpf_map_lookup_elem(&fp_ct, &key);
	if (e && e->expires_ns > now) {
		ct_touch(e, f, len, now, CT_F_SEEN_REPLY);
		*rev_nat = e->rev_nat;
		return CT_REPLY;
	}
	return CT_NEW;
}

static __always_inline void ct_create(const struct flow4 *f, __u8 dir,
				      __u32 len, __u32 peer, __u32 rev_nat)
{
	struct ct_key key = {
		.saddr = f->saddr,
		.daddr = f->daddr,
		.sport = f->sport,
		.dport = f->dport,
		.proto = f->proto,
		.direction = dir,
	};
	struct ct_entry e = {
		.peer_identity = peer,
		.rev_nat = rev_nat,
	};

	ct_touch(&e, f, len, bpf_ktime_get_ns(), 0);
	bpf_map_update_elem(&fp_ct, &key, &e, BPF_ANY);
}
