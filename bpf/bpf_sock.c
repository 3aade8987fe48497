// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Programs attached to the cgroup v2 directory that holds a node's pods:
 *   fp_sock_connect4, fp_sock_sendmsg4: socket-level load balancing;
 *   fp_sock_recvmsg4, fp_sock_getpeername4: the frontend's address back;
 *   fp_sockops: same-node TCP connections into the sockhash;
 * and to the sockhash:
 *   fp_sk_msg: payload straight to the peer socket.
 * They share the node's pinned maps with bpf_lxc.c (one layout, owned by
 * datapath/lxc).
 */
#include "compiler.h"
#include "lib/sock_lb.h"
#include "lib/sockmap.h"

/* Full layouts in BTF for types reached only through pointers (see
 * bpf_lxc.c). */
struct btf_sock_layouts {
	struct policy_key policy_key;
	struct policy_value policy_value;
	struct lb_sock_revnat_key lb_sock_revnat_key;
	struct lb_sock_revnat lb_sock_revnat;
	struct lb_sock_affinity_key lb_sock_affinity_key;
	struct sock_key sock_key;
	struct sock_flow sock_flow;
};
const volatile struct btf_sock_layouts btf_sock_layouts;

SEC("cgroup/connect4")
int fp_sock_connect4(struct bpf_sock_addr *ctx)
{
	return sock4_xlate(ctx);
}

SEC("cgroup/sendmsg4")
int fp_sock_sendmsg4(struct bpf_sock_addr *ctx)
{
	return sock4_xlate(ctx);
}

SEC("cgroup/recvmsg4")
int fp_sock_recvmsg4(struct bpf_sock_addr *ctx)
{
	return sock4_reverse(ctx);
}

SEC("cgroup/getpeername4")
int fp_sock_getpeername4(struct bpf_sock_addr *ctx)
{
	return sock4_reverse(ctx);
}

SEC("sockops")
int fp_sockops(struct bpf_sock_ops *ops)
{
	switch (ops->op) {
	case BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB:
		sockmap_established(ops, 1);
		break;
	case BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB:
		sockmap_established(ops, 0);
		break;
	default:
		break;
	}
	return 1;
}

SEC("sk_msg")
int fp_sk_msg(struct sk_msg_md *msg)
{
	return sockmap_msg(msg);
}

char __license[] SEC("license") = "Dual BSD/GPL";
