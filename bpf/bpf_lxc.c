// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Programs for the node side of a pod's veth pair (lxc*):
 *   fp_from_container at tc ingress: packets the pod sends (its egress);
 *   fp_to_container at tc egress: packets delivered to the pod (its ingress);
 * and for the node's uplink device:
 *   fp_from_netdev at tc ingress: packets from other nodes, for the L7
 *   proxy redirect, NodePort, and the egress gateway's replies;
 * and for the node's VXLAN or Geneve device (the overlay, lib/tunnel.h):
 *   fp_from_tunnel at tc ingress: the sender's identity from the VNI or the
 *   Geneve option, and
 *   the egress gateway's SNAT (lib/egress_gw.h).
 */
#include "compiler.h"
#include "lib/lxc.h"

/*
 * BTF carries only the types of globals and of non-inlined functions: the
 * inner policy map's key and value (reached only through pointers) and the
 * enums shared with Go would otherwise be missing or forward declarations.
 * This read-only global puts their full layouts in BTF for the loader and
 * for bpf2go; nothing reads it.
 */
struct btf_layouts {
	struct policy_key policy_key;
	struct policy_value policy_value;
	enum reason reason;
	enum direction direction;
	enum policy_action policy_action;
	enum endpoint_flags endpoint_flags;
	enum event_type event_type;
	struct flow_event flow_event;
	struct rule_metrics_key rule_metrics_key;
	enum proxy_mark proxy_mark;
	enum proxy_route proxy_route;
	enum lb_hairpin lb_hairpin;
	enum tunnel_const tunnel_const;
	enum tunnel_type tunnel_type;
	struct tunnel_config tunnel_config;
	struct tunnel_opt tunnel_opt;
	struct proxy_config proxy_config;
	struct egw_key egw_key;
	struct egw_value egw_value;
	enum egw_const egw_const;
};
const volatile struct btf_layouts btf_layouts;

SEC("tc")
int fp_from_container(struct __sk_buff *skb)
{
	return handle_endpoint(skb, DIR_EGRESS);
}

SEC("tc")
int fp_to_container(struct __sk_buff *skb)
{
	return handle_endpoint(skb, DIR_INGRESS);
}

SEC("tc")
int fp_from_tunnel(struct __sk_buff *skb)
{
	return handle_tunnel(skb);
}

SEC("tc")
int fp_from_netdev(struct __sk_buff *skb)
{
	return handle_netdev(skb);
}

char __license[] SEC("license") = "Dual BSD/GPL";
