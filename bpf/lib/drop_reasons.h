/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Verdict reasons: the single definition shared with Go. bpf2go emits this
 * enum into datapath/lxc (type lxcReason), and the Go side reads the names
 * from the object's BTF, so adding a reason here is all it takes.
 */
#pragma once

enum reason {
	REASON_FORWARDED = 0,       /* passed: policy allowed or not enforced */
	REASON_CT_ESTABLISHED = 1,  /* passed: part of a tracked connection */
	REASON_CT_REPLY = 2,        /* passed: reply of a tracked connection */
	REASON_TO_PROXY = 3,        /* passed: steered to the node's L7 proxy */
	REASON_FROM_PROXY = 4,      /* passed: sent by the L7 proxy after its check */
	DROP_POLICY = 5,            /* no rule allows the new connection */
	DROP_POLICY_DENY = 6,       /* an explicit deny rule matched */
	DROP_INVALID_SOURCE = 7,    /* a pod sent with an address not its own */
	DROP_UNKNOWN_ENDPOINT = 8,  /* program attached to an unknown interface */
	DROP_TRUNCATED = 9,         /* header shorter than its protocol needs */
	DROP_MALFORMED = 10,        /* header fields that cannot be right */
	DROP_UNSUPPORTED_L3 = 11,   /* neither IPv4 nor ARP */
	DROP_FRAGMENT = 12,         /* non-first IPv4 fragment: no ports to check */
	DROP_NO_POLICY_MAP = 13,    /* enforced endpoint without a policy map */
	DROP_MESH_POLICY = 14,      /* no AuthorizationPolicy allows it */
	DROP_MESH_DENY = 15,        /* a DENY AuthorizationPolicy matched */
	DROP_PROXY_REQUIRED = 16,   /* an L7 rule applies, but the packet did not
				     * come through the proxy */
	DROP_PROXY_UNAVAILABLE = 17, /* an L7 rule applies, but no proxy listens */
	DROP_NO_SERVICE_BACKEND = 18, /* a service frontend with no backend to
				       * take a new flow */
	REASON_MAX = 19,
};

/* Direction of traffic as the endpoint sees it. */
enum direction {
	DIR_INGRESS = 0,  /* towards the pod */
	DIR_EGRESS = 1,   /* from the pod */
	DIR_MAX = 2,
};
