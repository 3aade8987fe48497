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
	REASON_SOCK_LB = 5,         /* a socket's connect/sendmsg to a service
				     * frontend pointed at a backend */
	REASON_SOCKMAP = 6,         /* payload moved socket to socket (sk_msg) */
	REASON_NODEPORT_XDP = 7,    /* a NodePort packet translated in XDP */
	DROP_POLICY = 8,            /* no rule allows the new connection */
	DROP_POLICY_DENY = 9,       /* an explicit deny rule matched */
	DROP_INVALID_SOURCE = 10,    /* a pod sent with an address not its own */
	DROP_UNKNOWN_ENDPOINT = 11,  /* program attached to an unknown interface */
	DROP_TRUNCATED = 12,         /* header shorter than its protocol needs */
	DROP_MALFORMED = 13,        /* header fields that cannot be right */
	DROP_UNSUPPORTED_L3 = 14,   /* neither IPv4 nor ARP */
	DROP_FRAGMENT = 15,         /* non-first IPv4 fragment: no ports to check */
	DROP_NO_POLICY_MAP = 16,    /* enforced endpoint without a policy map */
	DROP_MESH_POLICY = 17,      /* no AuthorizationPolicy allows it */
	DROP_MESH_DENY = 18,        /* a DENY AuthorizationPolicy matched */
	DROP_PROXY_REQUIRED = 19,   /* an L7 rule applies, but the packet did not
				     * come through the proxy */
	DROP_PROXY_UNAVAILABLE = 20, /* an L7 rule applies, but no proxy listens */
	DROP_NO_SERVICE_BACKEND = 21, /* a service frontend with no backend to
				       * take a new flow */
	DROP_NODEPORT_DSR = 22,     /* a NodePort packet for another node's backend
				     * could not carry the DSR option */
	DROP_NO_TUNNEL_KEY = 23,    /* a packet on the overlay device without
				     * tunnel metadata */
	DROP_NO_EGRESS_GATEWAY = 24, /* an egress gateway policy applies but its
				      * gateway is not known or not reachable, or
				      * a packet from the overlay to outside the
				      * mesh that this node does not SNAT */
	DROP_EGRESS_GW_NAT = 25,    /* the egress gateway cannot SNAT it (not TCP
				     * or UDP, no free port) */
	DROP_NO_TUNNEL_OPT = 26,    /* a packet on the Geneve overlay device
				     * without exactly the identity option
				     * (tunnel.h), or with a malformed one */
	REASON_MAX = 27,
};

/* Direction of traffic as the endpoint sees it. */
enum direction {
	DIR_INGRESS = 0,  /* towards the pod */
	DIR_EGRESS = 1,   /* from the pod */
	DIR_MAX = 2,
};
