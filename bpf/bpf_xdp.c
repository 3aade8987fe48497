// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * XDP programs for the node's uplink device (one is attached):
 *   fp_xdp_prefilter: drops packets from denied source prefixes;
 *   fp_xdp_lb: the same, then the NodePort load balancer (nodeport_xdp.h),
 *   which shares the node's pinned load balancer maps with bpf_lxc.c.
 */
#include "compiler.h"
#include "lib/prefilter.h"
#include "lib/nodeport_xdp.h"

const volatile enum prefilter_stat prefilter_stat_layout;

SEC("xdp")
int fp_xdp_prefilter(struct xdp_md *ctx)
{
	return prefilter(ctx);
}

SEC("xdp")
int fp_xdp_lb(struct xdp_md *ctx)
{
	if (prefilter(ctx) == XDP_DROP)
		return XDP_DROP;
	return nodeport_xdp(ctx);
}

char __license[] SEC("license") = "Dual BSD/GPL";
