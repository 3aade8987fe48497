/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The endpoint pipeline shared by both directions of a pod's interface:
 * parse, conntrack, identity, policy, count.
 */
#pragma once

#include "compiler.h"
#include "drop_reasons.h"
#include "parse.h"
#include "endpoint.h"
#include "identity.h"
#include "policy.h"
#include "conntrack.h"
#include "metrics.h"
#include "events.h"
#include "proxy.h"
#include "lb.h"
#include "nodeport.h"
#include "tunnel.h"
#include "egress_gw.h"

static __always_inline int verdict(__u32 reason, __u8 dir, __u32 len)
{
	metrics_count(reason, dir, len);
	return reason >= DROP_POLICY ? CTX_ACT_DROP : CTX_ACT_OK;
}

/*
 * endpoint_verdict classifies a parsed packet of endpoint ep: conntrack
 * first, then, for a new connection, the policy of the direction. It
 * returns the reason the packet is counted under. back_identity, on the
 * egress of a flow that goes back through the overlay (tunnel_flow_of),
 * is the peer's identity, whatever pod the ipcache has at its address (0:
 * none, the address's).
 */
static __always_inline int endpoint_verdict(struct __sk_buff *skb,
					    const struct endpoint_info *ep,
					    const struct flow4 *f, __u8 dir, __u32 len,
					    __u32 *rev_nat, __u32 back_identity)
{
	struct peer_identity peer;
	int ret, consulted = 1;

	switch (ct_lookup(f, dir, len, rev_nat)) {
	case CT_ESTABLISHED:
		return REASON_CT_ESTABLISHED;
	case CT_REPLY:
		return REASON_CT_REPLY;
	default:
		break;
	}

	if (dir == DIR_EGRESS) {
		identity_of(f->daddr, &peer);
		if (back_identity)
			peer.identity = back_identity;
	} else
		ingress_peer(skb, f->saddr, &peer);
	if (dir == DIR_INGRESS && from_proxy(skb)) {
		/* The node's L7 proxy has already checked this connection's
		 * requests against the pod's policy. */
		ret = REASON_FROM_PROXY;
	} else if (dir == DIR_INGRESS) {
		ret = ingress_policy(ep, f, &peer, 1);
		/* The proxy takes such connections where they enter the node;
		 * one that reaches the pod directly has bypassed it. */
		if (ret == REASON_TO_PROXY)
			ret = DROP_PROXY_REQUIRED;
	} else if (ep->flags & (EP_F_EGRESS_ENFORCED | EP_F_EGRESS_POLICY)) {
		ret = policy_check(ep->ep_id, peer.identity, peer.cidr_identity,
				   dir, f->proto, f->dport,
				   ep->flags & EP_F_EGRESS_ENFORCED, 1);
	} else {
		ret = REASON_FORWARDED;
		consulted = 0;
	}
	if (!(ep->flags & (EP_F_INGRESS_ENFORCED | EP_F_INGRESS_POLICY |
			   EP_F_MESH_ENFORCED | EP_F_MESH_POLICY)) &&
	    dir == DIR_INGRESS && ret == REASON_FORWARDED)
		consulted = 0;
	if (consulted)
		emit_event(ret >= DROP_POLICY ? EVENT_DROP : EVENT_VERDICT, dir, ret,
		   f, ep->ep_id, ep->identity, peer.identity, skb->ifindex);
	if (ret >= DROP_POLICY)
		return ret;
	/* A load-balanced connection's entry remembers its frontend, so that
	 * replies get the frontend's address back; one that came in through
	 * a NodePort from outside is marked for the reverse translation at
	 * the pod's egress. */
	if (dir == DIR_INGRESS && nodeport_known(f))
		*rev_nat = REV_NAT_NODEPORT;
	ct_create(f, dir, len, peer.identity, *rev_nat);
	return ret;
}

/*
 * endpoint_hairpin passes a packet of ep's connection through a service to
 * ep itself (lb.h, hairpin step 1): the flow is tracked under the
 * translated tuple with its frontend, no policy is consulted (a pod may
 * always reach itself), and the source becomes the hairpin address.
 */
static __always_inline int endpoint_hairpin(struct __sk_buff *skb,
					    const struct endpoint_info *ep,
					    struct flow4 *f, __u32 len, __u32 rev_nat)
{
	__u32 reply_nat = 0;
	int reason = REASON_CT_ESTABLISHED, ret;

	if (ct_lookup(f, DIR_EGRESS, len, &reply_nat) != CT_ESTABLISHED) {
		ct_create(f, DIR_EGRESS, len, ep->identity, rev_nat);
		reason = REASON_FORWARDED;
	}
	ret = lb_hairpin_snat(skb, f);
	return verdict(ret < 0 ? -ret : reason, DIR_EGRESS, len);
}

/*
 * handle_endpoint runs for a packet leaving the pod (dir == DIR_EGRESS, at
 * tc ingress of the node-side veth) or entering it (DIR_INGRESS, at tc
 * egress of the node-side veth). A packet the pod sends that passes is then
 * offered to the L7 proxy redirect, in case its destination is a pod of
 * this node with L7 rules.
 */
static __always_inline int handle_endpoint(struct __sk_buff *skb, __u8 dir)
{
	struct tunnel_return back = {};
	struct endpoint_info *ep;
	struct flow4 f;
	__u32 len = skb->len, rev_nat = 0;
	int ret, tunneled = 0;

	ret = parse_ipv4(skb, &f);
	if (ret < 0) {
		emit_event(EVENT_DROP, dir, -ret, NULL, 0, 0, 0, skb->ifindex);
		return verdict(-ret, dir, len);
	}
	if (ret == L3_ARP)
		return verdict(REASON_FORWARDED, dir, len);

	ep = endpoint_lookup(skb->ifindex);
	if (!ep) {
		emit_event(EVENT_DROP, dir, DROP_UNKNOWN_ENDPOINT, &f, 0, 0, 0, skb->ifindex);
		return verdict(DROP_UNKNOWN_ENDPOINT, dir, len);
	}
	if (dir == DIR_EGRESS && f.saddr != ep->ipv4) {
		emit_event(EVENT_DROP, dir, DROP_INVALID_SOURCE, &f, ep->ep_id, ep->identity, 0, skb->ifindex);
		return verdict(DROP_INVALID_SOURCE, dir, len);
	}

	if (dir == DIR_EGRESS) {
		/* A reply to the pod's own connection through a service
		 * (lb.h, hairpin step 3). */
		if (lb_is_hairpin(f.daddr) && lb_hairpin_flow(&f, ep->ipv4, 1)) {
			ret = lb_hairpin_reply(skb, &f, ep->ipv4);
			return verdict(ret < 0 ? -ret : REASON_CT_REPLY, dir, len);
		}
		/* Service translation first: policy applies to the backend. */
		ret = lb_translate(skb, &f);
		if (ret < 0) {
			emit_event(EVENT_DROP, dir, -ret, &f, ep->ep_id, ep->identity, 0, skb->ifindex);
			return verdict(-ret, dir, len);
		}
		rev_nat = ret;
		if (rev_nat && f.daddr == ep->ipv4)
			return endpoint_hairpin(skb, ep, &f, len, rev_nat);
		/* A flow that came through the overlay from an address the
		 * ipcache gives elsewhere (a local pod of another cluster's
		 * address) goes back where it came from (tunnel.h). */
		tunneled = tunnel_flow_of(&f, &back);
	} else if (lb_is_hairpin(f.saddr) && f.daddr == ep->ipv4 &&
		   lb_hairpin_flow(&f, ep->ipv4, 0)) {
		/* The pod's own connection through a service, back at the
		 * pod (hairpin step 2). */
		return verdict(REASON_CT_ESTABLISHED, dir, len);
	}
	ret = endpoint_verdict(skb, ep, &f, dir, len, &rev_nat, tunneled ? back.identity : 0);
	if (dir == DIR_INGRESS && ret == REASON_CT_REPLY && rev_nat && rev_nat != REV_NAT_NODEPORT) {
		int err = lb_reverse(skb, &f, rev_nat);

		if (err < 0)
			return verdict(-err, dir, len);
	}
	if (dir == DIR_EGRESS && ret == REASON_CT_REPLY && rev_nat == REV_NAT_NODEPORT) {
		int err = nodeport_reverse(skb, &f);

		if (err < 0)
			return verdict(-err, dir, len);
		verdict(ret, dir, len);
		return nodeport_redirect(skb, &f);
	}
	if (dir == DIR_EGRESS && ret < DROP_POLICY && tunneled) {
		/* Before the L7 redirect and the ipcache: both would take the
		 * address for the local pod that has it. */
		int redirect = tunnel_send(skb, back.remote, ep->identity);

		if (redirect < 0) {
			emit_event(EVENT_DROP, dir, -redirect, &f, ep->ep_id, ep->identity, 0, skb->ifindex);
			return verdict(-redirect, dir, len);
		}
		verdict(ret, dir, len);
		return redirect;
	}
	if (dir == DIR_EGRESS && ret < DROP_POLICY) {
		int steer = proxy_steer(skb, &f);

		if (steer < 0) {
			emit_event(EVENT_DROP, dir, -steer, &f, ep->ep_id, ep->identity, 0, skb->ifindex);
			return verdict(-steer, dir, len);
		}
		if (steer > 0)
			ret = REASON_TO_PROXY;
		else {
			/* Outside the mesh through an egress gateway, or to a pod
			 * of another node through the overlay, with this pod's
			 * identity. */
			int redirect = egw_from_pod(skb, &f, ep->identity);

			if (redirect == -1)
				redirect = tunnel_encap(skb, &f, ep->identity);

			if (redirect < -1) {
				emit_event(EVENT_DROP, dir, -redirect, &f, ep->ep_id, ep->identity, 0, skb->ifindex);
				return verdict(-redirect, dir, len);
			}
			if (redirect >= 0) {
				verdict(ret, dir, len);
				return redirect;
			}
		}
	}
	return verdict(ret, dir, len);
}

/*
 * steer_entering offers a packet entering the node (uplink, overlay) to
 * the L7 proxy: counted as steered when the proxy takes it, dropped when
 * an L7 rule applies and no proxy can, passed on otherwise.
 */
static __always_inline int steer_entering(struct __sk_buff *skb, const struct flow4 *f)
{
	int ret = proxy_steer(skb, f);

	if (ret < 0) {
		emit_event(EVENT_DROP, DIR_INGRESS, -ret, f, 0, 0, 0, skb->ifindex);
		return verdict(-ret, DIR_INGRESS, skb->len);
	}
	if (ret > 0)
		return verdict(REASON_TO_PROXY, DIR_INGRESS, skb->len);
	return CTX_ACT_OK;
}

/*
 * handle_tunnel runs at tc ingress of the node's overlay device (tunnel.h):
 * the sender's identity (the VNI, or Geneve's option) becomes its mark for the pod's
 * ingress hook, and a flow whose source address would not lead its
 * replies back to the sending node is remembered. A packet to outside the
 * mesh is SNATed by this node's egress gateway (egress_gw.h) or dropped.
 * A packet without tunnel metadata, or on Geneve without exactly the
 * identity option, is dropped.
 */
static __always_inline int handle_tunnel(struct __sk_buff *skb)
{
	struct bpf_tunnel_key key = {};
	struct flow4 f;
	__u32 identity;
	__be32 node;
	int ret;

	if (bpf_skb_get_tunnel_key(skb, &key, TUNNEL_KEY_SIZE, 0) < 0) {
		emit_event(EVENT_DROP, DIR_INGRESS, DROP_NO_TUNNEL_KEY, NULL, 0, 0, 0, skb->ifindex);
		return verdict(DROP_NO_TUNNEL_KEY, DIR_INGRESS, skb->len);
	}
	ret = tunnel_identity_of(skb, &key);
	if (ret < 0) {
		emit_event(EVENT_DROP, DIR_INGRESS, -ret, NULL, 0, 0, 0, skb->ifindex);
		return verdict(-ret, DIR_INGRESS, skb->len);
	}
	identity = ret;
	node = bpf_htonl(key.remote_ipv4);
	skb->mark = tunnel_mark(identity);
	if (parse_ipv4(skb, &f) != L3_IPV4)
		return CTX_ACT_OK;
	/* Outside the mesh only through this node's egress gateway. */
	ret = egw_from_tunnel(skb, &f, node, identity);
	if (ret < -1) {
		emit_event(EVENT_DROP, DIR_INGRESS, -ret, &f, 0, identity, 0, skb->ifindex);
		return verdict(-ret, DIR_INGRESS, skb->len);
	}
	if (ret >= 0) {
		verdict(REASON_FORWARDED, DIR_INGRESS, skb->len);
		return ret;
	}
	/* Where replies go when the source address does not say. */
	tunnel_flow_learn(&f, node, identity);
	/* Connections that L7 rules apply to go to the proxy here, as they
	 * do at the uplink (the proxy's own check is by address). */
	return steer_entering(skb, &f);
}

/*
 * handle_netdev runs at tc ingress of the node's uplink: packets from
 * outside the node. Policy is enforced at the pods' own hooks; here
 * NodePort connections from outside are translated (nodeport.h: the
 * backend's policy then sees the real client), the DSR option of flows
 * other nodes send to backends here is learned, and connections for the L7
 * proxy are taken.
 */
static __always_inline int handle_netdev(struct __sk_buff *skb)
{
	struct flow4 f;
	int ret;

	ret = parse_ipv4(skb, &f);
	if (ret != L3_IPV4)
		return CTX_ACT_OK; /* not ours to judge: the pods' hooks are */
	/* A reply to a flow this node's egress gateway SNATed. */
	ret = egw_reply(skb, &f);
	if (ret < -1) {
		emit_event(EVENT_DROP, DIR_INGRESS, -ret, &f, 0, 0, 0, skb->ifindex);
		return verdict(-ret, DIR_INGRESS, skb->len);
	}
	if (ret >= 0) {
		verdict(REASON_CT_REPLY, DIR_INGRESS, skb->len);
		return ret;
	}
	nodeport_learn(skb, &f);
	ret = nodeport_tc(skb, &f);
	if (ret < 0) {
		emit_event(EVENT_DROP, DIR_INGRESS, -ret, &f, 0, 0, 0, skb->ifindex);
		return verdict(-ret, DIR_INGRESS, skb->len);
	}
	/* A NodePort connection to a pod whose L7 rules apply is not handed
	 * to the proxy (its replies must come from the node address): the
	 * pod's hook drops it (DROP_PROXY_REQUIRED), failing closed. */
	if (ret > 0)
		return CTX_ACT_OK;
	return steer_entering(skb, &f);
}
