/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Socket-level load balancing (cgroup v2 sock_addr hooks): a pod's
 * connect() or sendmsg() to a service frontend is pointed at a backend
 * before any packet exists, so the connection is made to the backend
 * directly and no packet of it is translated on the TC path (lb_translate
 * finds no frontend for the backend's address). The socket keeps
 * answering as the frontend: getpeername() and, for UDP, recvmsg() report
 * the frontend's address, from fp_lb_sock_revnat.
 *
 * Same frontend, selection and backend maps as the TC path (lb.h); the
 * backend is chosen once per socket (Maglev hashes the socket cookie), and
 * ClientIP affinity is kept per network namespace (the pod), since the
 * source address is not known yet at connect().
 */
#pragma once

#include "compiler.h"
#include "maps.h"
#include "lb.h"
#include "metrics.h"

#define SYS_REJECT 0
#define SYS_PROCEED 1

struct lb_sock_revnat_key {
	__u64 cookie;     /* bpf_get_socket_cookie */
	__be32 addr;      /* backend the socket was pointed at */
	__be16 port;
	__u16 pad;
};

struct lb_sock_revnat {
	__be32 vip;       /* frontend the application asked for */
	__be16 port;
	__u16 pad;
	__u32 frontend;   /* frontend id */
	__u32 pad2;
};

struct lb_sock_affinity_key {
	__u64 netns;      /* bpf_get_netns_cookie: the client pod */
	__u32 frontend;
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct lb_sock_revnat_key);
	__type(value, struct lb_sock_revnat);
	__uint(max_entries, LB_SOCK_REVNAT_MAX);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} fp_lb_sock_revnat SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct lb_sock_affinity_key);
	__type(value, struct lb_affinity);
	__uint(max_entries, LB_AFFINITY_MAX);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} fp_lb_sock_affinity SEC(".maps");

static __always_inline __u32 sock_hash32(__u64 v)
{
	v ^= v >> 33;
	v *= 0xff51afd7ed558ccdULL;
	v ^= v >> 33;
	v *= 0xc4ceb9fe1a85ec53ULL;
	v ^= v >> 33;
	return (__u32)v;
}

/*
 * sock4_xlate points the address in ctx (connect or sendmsg) at a backend
 * when it is a service frontend. Returns SYS_PROCEED (translated, or not a
 * service) or SYS_REJECT (a frontend without a backend for a new flow:
 * the call fails with EPERM, as kube-proxy rejects such connections).
 */
static __always_inline int sock4_xlate(struct bpf_sock_addr *ctx)
{
	struct lb_frontend_key fk = {
		.vip = ctx->user_ip4,
		.port = (__be16)ctx->user_port,
		.proto = (__u8)ctx->protocol,
	};
	struct lb_sock_affinity_key ak = {};
	struct lb_sock_revnat_key rk = {};
	struct lb_sock_revnat rv = {};
	struct lb_frontend *fe;
	struct lb_backend *be = NULL;
	__u64 now = bpf_ktime_get_ns(), cookie;
	__u32 backend = 0;

	if (ctx->user_family != AF_INET)
		return SYS_PROCEED;
	if (fk.proto != IPPROTO_TCP && fk.proto != IPPROTO_UDP)
		return SYS_PROCEED;
	fe = bpf_map_lookup_elem(&fp_lb_frontends, &fk);
	if (!fe)
		return SYS_PROCEED;

	cookie = bpf_get_socket_cookie(ctx);
	if (fe->flags & LB_F_AFFINITY) {
		struct lb_affinity *a;

		ak.netns = bpf_get_netns_cookie(ctx);
		ak.frontend = fe->id;
		a = bpf_map_lookup_elem(&fp_lb_sock_affinity, &ak);
		if (a && now - a->last_ns < (__u64)fe->affinity_s * 1000000000ULL) {
			be = bpf_map_lookup_elem(&fp_lb_backends, &a->backend);
			if (be)
				backend = a->backend;
		}
	}
	if (!be) {
		backend = lb_select_hash(fe, (fe->flags & LB_F_MAGLEV) ?
					 sock_hash32(cookie) : bpf_get_prandom_u32());
		if (backend)
			be = bpf_map_lookup_elem(&fp_lb_backends, &backend);
		if (!be) {
			metrics_count(DROP_NO_SERVICE_BACKEND, DIR_EGRESS, 0);
			return SYS_REJECT;
		}
	}
	if (fe->flags & LB_F_AFFINITY) {
		struct lb_affinity a = { .last_ns = now, .backend = backend };

		bpf_map_update_elem(&fp_lb_sock_affinity, &ak, &a, BPF_ANY);
	}

	rk.cookie = cookie;
	rk.addr = be->addr;
	rk.port = be->port;
	rv.vip = fk.vip;
	rv.port = fk.port;
	rv.frontend = fe->id;
	bpf_map_update_elem(&fp_lb_sock_revnat, &rk, &rv, BPF_ANY);

	ctx->user_ip4 = be->addr;
	ctx->user_port = (__u32)be->port;
	metrics_count(REASON_SOCK_LB, DIR_EGRESS, 0);
	return SYS_PROCEED;
}

/*
 * sock4_reverse rewrites the peer address in ctx (recvmsg, getpeername)
 * back to the frontend when the socket was pointed at that backend.
 */
static __always_inline int sock4_reverse(struct bpf_sock_addr *ctx)
{
	struct lb_sock_revnat_key rk = {
		.addr = ctx->user_ip4,
		.port = (__be16)ctx->user_port,
	};
	struct lb_sock_revnat *rv;

	if (ctx->user_family != AF_INET)
		return SYS_PROCEED;
	rk.cookie = bpf_get_socket_cookie(ctx);
	rv = bpf_map_lookup_elem(&fp_lb_sock_revnat, &rk);
	if (!rv)
		return SYS_PROCEED;
	/* The frontend may be gone since; then the backend's address is the
	 * truth the application gets. */
	if (!bpf_map_lookup_elem(&fp_lb_revnat, &rv->frontend))
		return SYS_PROCEED;
	ctx->user_ip4 = rv->vip;
	ctx->user_port = (__u32)rv->port;
	return SYS_PROCEED;
}
