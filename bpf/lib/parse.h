/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Packet parsing with a moving cursor: every pull is bounds-checked. */
#pragma once

#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/in.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include "compiler.h"
#include "drop_reasons.h"

/* The first 8 bytes of ICMP: enough for echo's identifier. (linux/icmp.h
 * pulls in libc headers, so the few fields we need are declared here.) */
struct icmp_echo_hdr {
	__u8 type;
	__u8 code;
	__sum16 checksum;
	__be16 id;
	__be16 sequence;
};

#define ICMP_ECHOREPLY 0
#define ICMP_ECHO 8

struct cursor {
	void *pos;
	void *end;
};

/* Returns a pointer to len bytes at the cursor and advances it, or NULL when
 * the packet is shorter. */
static __always_inline void *cursor_pull(struct cursor *c, __u32 len)
{
	void *p = c->pos;

	if (p + len > c->end)
		return NULL;
	c->pos = p + len;
	return p;
}

/* The fields policy and conntrack need, in network byte order. */
struct flow4 {
	__be32 saddr;
	__be32 daddr;
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 tcp_flags;
	__u16 pad;
};

#define TCP_FLAG_FIN 0x01
#define TCP_FLAG_SYN 0x02
#define TCP_FLAG_RST 0x04
#define TCP_FLAG_ACK 0x10

enum l3 {
	L3_IPV4 = 0,
	L3_ARP = 1,
};

/*
 * parse_ipv4 parses Ethernet, IPv4 and the first L4 header into f. It
 * returns L3_IPV4, L3_ARP, or a negative drop reason.
 */
static __always_inline int parse_ipv4(struct __sk_buff *skb, struct flow4 *f)
{
	struct cursor c = {
		.pos = (void *)(long)skb->data,
		.end = (void *)(long)skb->data_end,
	};
	struct ethhdr *eth;
	struct iphdr *ip;
	__u32 ihl_len;

	eth = cursor_pull(&c, sizeof(*eth));
	if (!eth)
		return -DROP_TRUNCATED;
	if (eth->h_proto == bpf_htons(ETH_P_ARP))
		return L3_ARP;
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return -DROP_UNSUPPORTED_L3;

	ip = cursor_pull(&c, sizeof(*ip));
	if (!ip)
		return -DROP_TRUNCATED;
	if (ip->version != 4 || ip->ihl < 5)
		return -DROP_MALFORMED;
	ihl_len = (__u32)ip->ihl * 4;
	/* Skip IP options: the part of the header past the fixed 20 bytes. */
	if (ihl_len > sizeof(*ip) && !cursor_pull(&c, ihl_len - sizeof(*ip)))
		return -DROP_TRUNCATED;

	f->saddr = ip->saddr;
	f->daddr = ip->daddr;
	f->proto = ip->protocol;
	f->sport = 0;
	f->dport = 0;
	f->tcp_flags = 0;
	f->pad = 0;

	if (ip->frag_off & bpf_htons(0x1fff))
		return -DROP_FRAGMENT;

	switch (ip->protocol) {
	case IPPROTO_TCP: {
		struct tcphdr *tcp = cursor_pull(&c, sizeof(*tcp));

		if (!tcp)
			return -DROP_TRUNCATED;
		if (tcp->doff < 5)
			return -DROP_MALFORMED;
		f->sport = tcp->source;
		f->dport = tcp->dest;
		f->tcp_flags = ((__u8 *)tcp)[13];
		break;
	}
	case IPPROTO_UDP: {
		struct udphdr *udp = cursor_pull(&c, sizeof(*udp));

		if (!udp)
			return -DROP_TRUNCATED;
		f->sport = udp->source;
		f->dport = udp->dest;
		break;
	}
	case IPPROTO_SCTP: {
		/* SCTP common header starts with the two ports. */
		__be16 *ports = cursor_pull(&c, 12);

		if (!ports)
			return -DROP_TRUNCATED;
		f->sport = ports[0];
		f->dport = ports[1];
		break;
	}
	case IPPROTO_ICMP: {
		struct icmp_echo_hdr *icmp = cursor_pull(&c, sizeof(*icmp));

		if (!icmp)
			return -DROP_TRUNCATED;
		/* Echo request and reply share the id: use it as both ports so
		 * that the reply matches the reversed tuple. */
		if (icmp->type == ICMP_ECHO || icmp->type == ICMP_ECHOREPLY) {
			f->sport = icmp->id;
			f->dport = icmp->id;
		}
		break;
	}
	default:
		break;
	}
	return L3_IPV4;
}
