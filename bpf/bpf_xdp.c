// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * XDP program for the node's uplink device:
 *   fp_xdp_prefilter: drops packets from denied source prefixes.
 */
#include "compiler.h"
#include "lib/prefilter.h"

const volatile enum prefilter_stat prefilter_stat_layout;

SEC("xdp")
int fp_xdp_prefilter(struct xdp_md *ctx)
{
	return prefilter(ctx);
}

char __license[] SEC("license") = "Dual BSD/GPL";
