// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * A pass-through XDP program for the bridge side of a node's veth in the
 * netns test bed: a veth hands frames another veth sends with XDP_TX only
 * to a peer that runs an XDP program (drivers/net/veth.c, veth_xdp_flush).
 * A NIC needs no such thing; this stands in for the wire.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("xdp")
int fp_wire_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

char __license[] SEC("license") = "Dual BSD/GPL";
