package lxc

// The BPF object is compiled by clang through bpf2go; the generated .go and
// .o files are committed so that building needs no clang. `make generate`
// runs this with BPF_CLANG and BPF_CFLAGS set (see the Makefile).
//go:generate go tool bpf2go -cc $BPF_CLANG -cflags "$BPF_CFLAGS" -target bpfel -type endpoint_info -type ipcache_key -type ipcache_value -type policy_key -type policy_value -type ct_key -type ct_entry -type metrics_value -type reason -type direction -type policy_action -type endpoint_flags -type event_type -type flow_event -type rule_metrics_key -type proxy_mark -type proxy_route -type lb_hairpin -type tunnel_const -type tunnel_type -type tunnel_config -type tunnel_opt -type tunnel_flow_key -type tunnel_flow -type egw_key -type egw_value -type egw_const -type egw_nat_key -type egw_nat -type proxy_config -type lb_frontend_key -type lb_frontend -type lb_backend -type lb_revnat -type lb_affinity_key -type lb_affinity lxc ../../bpf/bpf_lxc.c -- -I../../bpf/include -I../../bpf

// The socket programs (cgroup sock_addr, sock_ops, sk_msg) share the
// endpoint programs' pinned maps; their own layouts are generated here too.
//go:generate go tool bpf2go -cc $BPF_CLANG -cflags "$BPF_CFLAGS" -target bpfel -type lb_sock_revnat_key -type lb_sock_revnat -type lb_sock_affinity_key -type sock_key -type sock_flow sock ../../bpf/bpf_sock.c -- -I../../bpf/include -I../../bpf
