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

static __always_inline int verdict(__u32 reason, __u8 dir, __u32 len)
{
	metrics_count(reason, dir, len);
	return reason >= DROP_POLICY ? CTX_ACT_DROP : CTX_ACT_OK;
}

/*
 * handle_endpoint runs for a packet leaving the pod (dir == DIR_EGRESS, at
 * tc ingress of the node-side veth) or entering it (DIR_INGRESS, at tc
 * egress of the node-side veth).
 */
static __always_inline int handle_endpoint(struct __sk_buff *skb, __u8 dir)
{
	struct endpoint_info *ep;
	struct flow4 f;
	__u32 len = skb->len;
	struct peer_identity peer;
	__u32 enforced, has_policy;
	__be32 peer_addr;
	int ret;

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

	if (dir == DIR_EGRESS) {
		if (f.saddr != ep->ipv4) {
			emit_event(EVENT_DROP, dir, DROP_INVALID_SOURCE, &f, ep->ep_id, ep->identity, 0, skb->ifindex);
			return verdict(DROP_INVALID_SOURCE, dir, len);
		}
		peer_addr = f.daddr;
		enforced = ep->flags & EP_F_EGRESS_ENFORCED;
		has_policy = ep->flags & EP_F_EGRESS_POLICY;
	} else {
		peer_addr = f.saddr;
		enforced = ep->flags & EP_F_INGRESS_ENFORCED;
		has_policy = ep->flags & EP_F_INGRESS_POLICY;
	}

	switch (ct_lookup(&f, dir, len)) {
	case CT_ESTABLISHED:
		return verdict(REASON_CT_ESTABLISHED, dir, len);
	case CT_REPLY:
		return verdict(REASON_CT_REPLY, dir, len);
	default:
		break;
	}

	identity_of(peer_addr, &peer);
	if (enforced || has_policy) {
		ret = policy_check(ep->ep_id, peer.identity, peer.cidr_identity,
				   dir, f.proto, f.dport, enforced);
		emit_event(ret ? EVENT_DROP : EVENT_VERDICT, dir, ret ? ret : REASON_FORWARDED,
			   &f, ep->ep_id, ep->identity, peer.identity, skb->ifindex);
		if (ret)
			return verdict(ret, dir, len);
	}
	/* The mesh layer: TCP into the pod must also pass its authorization
	 * policies. */
	if (dir == DIR_INGRESS && f.proto == IPPROTO_TCP &&
	    (ep->flags & (EP_F_MESH_ENFORCED | EP_F_MESH_POLICY))) {
		ret = policy_check(ep->ep_id | POLICY_MESH_BIT, peer.identity,
				   peer.cidr_identity, dir, f.proto, f.dport,
				   ep->flags & EP_F_MESH_ENFORCED);
		if (ret == DROP_POLICY)
			ret = DROP_MESH_POLICY;
		else if (ret == DROP_POLICY_DENY)
			ret = DROP_MESH_DENY;
		emit_event(ret ? EVENT_DROP : EVENT_VERDICT, dir, ret ? ret : REASON_FORWARDED,
			   &f, ep->ep_id, ep->identity, peer.identity, skb->ifindex);
		if (ret)
			return verdict(ret, dir, len);
	}
	ct_create(&f, dir, len, peer.identity);
	return verdict(REASON_FORWARDED, dir, len);
}
