/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The NodePort translation of nodeport.h in XDP, before the stack builds an
 * skb: a packet to a NodePort is translated in place; one for a backend on
 * another node is sent straight back out of the uplink towards that node
 * (XDP_TX, next hop from the kernel's FIB) as direct server return, its
 * flow's first packet carrying the DSR option; one for a backend here goes
 * up the stack (XDP_PASS), which delivers it to the pod. Anything else, and
 * anything XDP cannot handle (IP options, fragments, no neighbour entry
 * yet), is passed to the stack untouched or as translated so far, where
 * the TC programs take over.
 */
#pragma once

#include "compiler.h"
#include "parse.h"
#include "lb.h"
#include "nodeport.h"
#include "metrics.h"

/* csum_replace4 updates a ones' complement checksum for a 4-byte field
 * changing from "from" to "to" (RFC 1624, eqn. 3), on raw network-order
 * words. */
static __always_inline void csum_replace4(__u16 *sum, __be32 from, __be32 to)
{
	__u32 s = (__u16)~*sum;

	s += (__u16)~(from & 0xffff);
	s += (__u16)~(from >> 16);
	s += to & 0xffff;
	s += to >> 16;
	*sum = csum_fold32(s);
}

static __always_inline void csum_replace2(__u16 *sum, __u16 from, __u16 to)
{
	__u32 s = (__u16)~*sum;

	s += (__u16)~from;
	s += to;
	*sum = csum_fold32(s);
}

/* dsr_insert_xdp moves the Ethernet and IPv4 headers 8 bytes to the front
 * and puts the DSR option behind them. */
static __always_inline int dsr_insert_xdp(struct xdp_md *ctx, __be32 addr, __be16 port)
{
	void *data, *end;
	struct iphdr *ip;
	struct dsr_opt *opt;
	__u8 *dst, *src;
	int i;

	if (bpf_xdp_adjust_head(ctx, -(int)sizeof(struct dsr_opt)))
		return -1;
	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	if (data + ETH_HLEN + sizeof(struct iphdr) + sizeof(struct dsr_opt) > end)
		return -1;
	dst = data;
	src = data + sizeof(struct dsr_opt);
	/* Forward copy: the destination is below the source. */
#pragma unroll
	for (i = 0; i < ETH_HLEN + (int)sizeof(struct iphdr); i++)
		dst[i] = src[i];
	ip = data + ETH_HLEN;
	opt = (void *)(ip + 1);
	opt->type = DSR_OPT_TYPE;
	opt->len = DSR_OPT_LEN;
	opt->port = port;
	opt->addr = addr;
	ip->ihl = 5 + DSR_OPT_LEN / 4;
	ip->tot_len = bpf_htons(bpf_ntohs(ip->tot_len) + DSR_OPT_LEN);
	ip->check = 0;
	ip->check = ipv4_csum_dsr(ip, opt);
	return 0;
}

/* nodeport_xdp_forward sends a translated packet to the backend's node:
 * XDP_TX when the FIB says the next hop is out of the device it came in
 * on, else the stack forwards it. */
static __always_inline int nodeport_xdp_forward(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct bpf_fib_lookup fib = {};
	struct ethhdr *eth = data;
	struct iphdr *ip;
	__u16 old;
	int i;

	if (data + ETH_HLEN + sizeof(struct iphdr) > end)
		return XDP_PASS;
	ip = data + ETH_HLEN;
	if (ip->ttl <= 1)
		return XDP_PASS;
	fib.family = AF_INET;
	fib.tos = ip->tos;
	fib.l4_protocol = ip->protocol;
	fib.tot_len = bpf_ntohs(ip->tot_len);
	fib.ipv4_src = ip->saddr;
	fib.ipv4_dst = ip->daddr;
	fib.ifindex = ctx->ingress_ifindex;
	if (bpf_fib_lookup(ctx, &fib, sizeof(fib), 0) != BPF_FIB_LKUP_RET_SUCCESS ||
	    fib.ifindex != ctx->ingress_ifindex)
		return XDP_PASS;
	/* TTL and protocol share a 16-bit word of the checksum. */
	old = bpf_htons(((__u16)ip->ttl << 8) | ip->protocol);
	ip->ttl--;
	csum_replace2(&ip->check, old, bpf_htons(((__u16)ip->ttl << 8) | ip->protocol));
#pragma unroll
	for (i = 0; i < ETH_ALEN; i++) {
		eth->h_dest[i] = fib.dmac[i];
		eth->h_source[i] = fib.smac[i];
	}
	return XDP_TX;
}

static __always_inline int nodeport_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u32 len = (__u32)(end - data), backend;
	struct ethhdr *eth = data;
	struct lb_frontend *fe;
	struct lb_backend *be;
	struct flow4 f = {};
	struct iphdr *ip;
	__u16 *l4sum = NULL;
	__be16 *dport;
	__be32 fe_addr;
	__be16 fe_port;
	int created = 0;

	if ((void *)(eth + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > end || ip->ihl != 5 || (ip->frag_off & bpf_htons(0x3fff)))
		return XDP_PASS;
	f.saddr = ip->saddr;
	f.daddr = ip->daddr;
	f.proto = ip->protocol;
	if (ip->protocol == IPPROTO_TCP) {
		struct tcphdr *tcp = (void *)(ip + 1);

		if ((void *)(tcp + 1) > end)
			return XDP_PASS;
		f.sport = tcp->source;
		f.dport = tcp->dest;
		f.tcp_flags = ((__u8 *)tcp)[13];
		l4sum = &tcp->check;
		dport = &tcp->dest;
	} else if (ip->protocol == IPPROTO_UDP) {
		struct udphdr *udp = (void *)(ip + 1);

		if ((void *)(udp + 1) > end)
			return XDP_PASS;
		f.sport = udp->source;
		f.dport = udp->dest;
		if (udp->check)
			l4sum = &udp->check;
		dport = &udp->dest;
	} else {
		return XDP_PASS;
	}

	fe = lb_frontend_of(&f);
	if (!fe)
		return XDP_PASS;
	be = lb_pick(fe, &f, len, &backend, &created);
	if (!be) {
		metrics_count(DROP_NO_SERVICE_BACKEND, DIR_INGRESS, len);
		return XDP_DROP;
	}
	fe_addr = f.daddr;
	fe_port = f.dport;

	/* DNAT in place. */
	csum_replace4(&ip->check, ip->daddr, be->addr);
	if (l4sum) {
		csum_replace4(l4sum, ip->daddr, be->addr);
		csum_replace2(l4sum, *dport, be->port);
		if (ip->protocol == IPPROTO_UDP && *l4sum == 0)
			*l4sum = 0xffff;
	}
	ip->daddr = be->addr;
	*dport = be->port;
	f.daddr = be->addr;
	f.dport = be->port;

	if (endpoint_by_ip(be->addr)) {
		nodeport_remember(&f, fe_addr, fe_port);
		metrics_count(REASON_NODEPORT_XDP, DIR_INGRESS, len);
		return XDP_PASS;
	}
	if (nodeport_first_packet(&f, created) && dsr_insert_xdp(ctx, fe_addr, fe_port) < 0) {
		metrics_count(DROP_NODEPORT_DSR, DIR_INGRESS, len);
		return XDP_DROP;
	}
	metrics_count(REASON_NODEPORT_XDP, DIR_INGRESS, len);
	return nodeport_xdp_forward(ctx);
}
