/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Same-node acceleration with sockmap: a TCP connection between two pods of
 * this node, once established, has both its sockets in fp_sock_hash (added
 * by the sock_ops program), and the sk_msg program moves every sendmsg()
 * payload straight to the peer socket's receive queue, skipping TCP/IP,
 * both veths and the TC programs.
 *
 * Only connections the policy admits without an L7 rule are added (the
 * handshake already passed the TC hooks; proxied ones end at the proxy's
 * socket). Because the payload no longer meets the TC hooks, the sk_msg
 * program checks the policy again whenever the agent has programmed a new
 * state (fp_policy_rev changed since the connection was last checked): a
 * connection the new policy denies gets every later send refused (EACCES)
 * and counted as a drop.
 */
#pragma once

#include "compiler.h"
#include "maps.h"
#include "drop_reasons.h"
#include "endpoint.h"
#include "identity.h"
#include "policy.h"
#include "metrics.h"
#include "events.h"

/* A socket's connection as the socket sees it. */
struct sock_key {
	__be32 local_ip;
	__be32 remote_ip;
	__be16 local_port;
	__be16 remote_port;
};

struct sock_flow {
	__u64 policy_rev;  /* fp_policy_rev when the policy was last checked */
	__u8 client;       /* this socket opened the connection */
	__u8 denied;       /* the policy at policy_rev denies the connection */
	__u16 pad;
	__u32 reason;      /* the reason of the last check */
};

struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__type(key, struct sock_key);
	__type(value, __u64);
	__uint(max_entries, SOCKMAP_MAX);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} fp_sock_hash SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct sock_key);
	__type(value, struct sock_flow);
	__uint(max_entries, SOCKMAP_MAX);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} fp_sock_flows SEC(".maps");

static __always_inline __u64 policy_revision(void)
{
	__u32 zero = 0;
	__u64 *rev = bpf_map_lookup_elem(&fp_policy_rev, &zero);

	return rev ? *rev : 0;
}

/*
 * sock_flow_verdict decides the connection between two local pods from
 * client to server port dport, as the TC hooks decide its first packet: the
 * client's egress policy, then the server's ingress policy (both layers).
 * The flow f is (client, server) for events.
 */
static __always_inline int sock_flow_verdict(const struct endpoint_info *client,
					     const struct endpoint_info *server,
					     const struct flow4 *f)
{
	struct peer_identity peer;
	int ret;

	if (client->flags & (EP_F_EGRESS_ENFORCED | EP_F_EGRESS_POLICY)) {
		identity_of(server->ipv4, &peer);
		ret = policy_check(client->ep_id, peer.identity, peer.cidr_identity,
				   DIR_EGRESS, IPPROTO_TCP, f->dport,
				   client->flags & EP_F_EGRESS_ENFORCED, 0);
		if (ret >= DROP_POLICY)
			return ret;
	}
	identity_of(client->ipv4, &peer);
	return ingress_policy(server, f, &peer, 0);
}

/* sock_key_of fills the key of the connection as a sock_ops or sk_msg
 * context sees it: remote_port holds the port in network order in its upper
 * half, local_port in host order. */
#define sock_key_of(ctx, key)                                           \
	do {                                                            \
		(key)->local_ip = (ctx)->local_ip4;                     \
		(key)->remote_ip = (ctx)->remote_ip4;                   \
		(key)->local_port = bpf_htons((__u16)(ctx)->local_port); \
		(key)->remote_port = (__be16)(READ_ONCE((ctx)->remote_port) >> 16); \
	} while (0)

/*
 * sockmap_established runs when a TCP connection of a pod on this node is
 * established (client: active, server: passive side); a connection between
 * two pods of this node that the policy admits goes into the sockhash.
 */
static __always_inline void sockmap_established(struct bpf_sock_ops *ops, int active)
{
	struct endpoint_info *local, *remote;
	struct sock_flow fl = {};
	struct sock_key key;
	struct flow4 f = { .proto = IPPROTO_TCP };
	int ret;

	if (ops->family != AF_INET)
		return;
	sock_key_of(ops, &key);
	local = endpoint_by_ip(key.local_ip);
	remote = endpoint_by_ip(key.remote_ip);
	if (!local || !remote)
		return;
	if (active) {
		f.saddr = key.local_ip;
		f.daddr = key.remote_ip;
		f.sport = key.local_port;
		f.dport = key.remote_port;
		ret = sock_flow_verdict(local, remote, &f);
	} else {
		f.saddr = key.remote_ip;
		f.daddr = key.local_ip;
		f.sport = key.remote_port;
		f.dport = key.local_port;
		ret = sock_flow_verdict(remote, local, &f);
	}
	if (ret != REASON_FORWARDED)
		return;
	fl.policy_rev = policy_revision();
	fl.client = active;
	if (bpf_map_update_elem(&fp_sock_flows, &key, &fl, BPF_ANY) < 0)
		return;
	bpf_sock_hash_update(ops, &fp_sock_hash, &key, BPF_NOEXIST);
}

/*
 * sockmap_msg decides a sendmsg() on a socket in the sockhash: redirect it
 * to the peer socket (SK_PASS after bpf_msg_redirect_hash; when the peer is
 * not in the map, the data takes the normal path), or SK_DROP when the
 * policy now denies the connection.
 */
static __always_inline int sockmap_msg(struct sk_msg_md *msg)
{
	struct endpoint_info *local, *remote;
	struct sock_key key, peer;
	struct sock_flow *fl;
	struct flow4 f = { .proto = IPPROTO_TCP };
	__u64 rev;
	__u32 len = msg->size;

	if (msg->family != AF_INET)
		return SK_PASS;
	sock_key_of(msg, &key);
	fl = bpf_map_lookup_elem(&fp_sock_flows, &key);
	if (!fl)
		return SK_PASS;
	if (fl->client) {
		f.saddr = key.local_ip;
		f.daddr = key.remote_ip;
		f.sport = key.local_port;
		f.dport = key.remote_port;
	} else {
		f.saddr = key.remote_ip;
		f.daddr = key.local_ip;
		f.sport = key.remote_port;
		f.dport = key.local_port;
	}
	rev = policy_revision();
	if (fl->policy_rev != rev) {
		int ret = DROP_UNKNOWN_ENDPOINT;

		local = endpoint_by_ip(key.local_ip);
		remote = endpoint_by_ip(key.remote_ip);
		if (local && remote)
			ret = fl->client ? sock_flow_verdict(local, remote, &f)
					 : sock_flow_verdict(remote, local, &f);
		/* Admitted subject to an L7 rule now: the proxy cannot see
		 * this connection, so it is refused (fails closed). */
		if (ret == REASON_TO_PROXY)
			ret = DROP_PROXY_REQUIRED;
		fl->denied = ret >= DROP_POLICY;
		fl->reason = ret;
		fl->policy_rev = rev;
		if (fl->denied) {
			local = endpoint_by_ip(f.saddr);
			emit_event(EVENT_DROP, DIR_EGRESS, ret, &f,
				   local ? local->ep_id : 0, local ? local->identity : 0, 0, 0);
		}
	}
	if (fl->denied) {
		metrics_count(fl->reason, DIR_EGRESS, len);
		return SK_DROP;
	}
	peer.local_ip = key.remote_ip;
	peer.remote_ip = key.local_ip;
	peer.local_port = key.remote_port;
	peer.remote_port = key.local_port;
	/* Without the peer in the map (not accelerated on its side) the data
	 * takes the normal path. */
	if (bpf_msg_redirect_hash(msg, &fp_sock_hash, &peer, BPF_F_INGRESS) == SK_PASS)
		metrics_count(REASON_SOCKMAP, DIR_EGRESS, len);
	return SK_PASS;
}
