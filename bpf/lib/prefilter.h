/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * XDP prefilter: packets arriving on the node's uplink whose IPv4 source
 * is inside a denied prefix are dropped before the stack sees them (no
 * skb, no conntrack). The prefixes live in an LPM trie that user space
 * updates live (datapath/prefilter owns its layout). Non-IPv4 frames and
 * frames too short to hold an IPv4 header pass: the stack judges them.
 */
#pragma once

#include "compiler.h"
#include "parse.h"

#define PREFILTER_MAX 65536

struct prefilter_key {
	__u32 prefixlen;
	__be32 addr;
};

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct prefilter_key);
	__type(value, __u8);
	__uint(max_entries, PREFILTER_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} fp_prefilter SEC(".maps");

enum prefilter_stat {
	PREFILTER_PASSED = 0,
	PREFILTER_DROPPED = 1,
	PREFILTER_STAT_MAX = 2,
};

struct prefilter_count {
	__u64 packets;
	__u64 bytes;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct prefilter_count);
	__uint(max_entries, PREFILTER_STAT_MAX);
} fp_prefilter_stats SEC(".maps");

static __always_inline int prefilter_count(__u32 stat, __u64 len, int verdict)
{
	struct prefilter_count *c = bpf_map_lookup_elem(&fp_prefilter_stats, &stat);

	if (c) {
		c->packets++;
		c->bytes += len;
	}
	return verdict;
}

static __always_inline int prefilter(struct xdp_md *ctx)
{
	struct cursor c = {
		.pos = (void *)(long)ctx->data,
		.end = (void *)(long)ctx->data_end,
	};
	__u64 len = (__u64)(c.end - c.pos);
	struct prefilter_key key = { .prefixlen = 32 };
	struct ethhdr *eth;
	struct iphdr *ip;

	eth = cursor_pull(&c, sizeof(*eth));
	if (!eth || eth->h_proto != bpf_htons(ETH_P_IP))
		return prefilter_count(PREFILTER_PASSED, len, XDP_PASS);
	ip = cursor_pull(&c, sizeof(*ip));
	if (!ip)
		return prefilter_count(PREFILTER_PASSED, len, XDP_PASS);
	key.addr = ip->saddr;
	if (bpf_map_lookup_elem(&fp_prefilter, &key))
		return prefilter_count(PREFILTER_DROPPED, len, XDP_DROP);
	return prefilter_count(PREFILTER_PASSED, len, XDP_PASS);
}
