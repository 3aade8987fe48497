package netns

// xdp_pass.o is compiled by clang and committed; `make generate` runs
// this. The harness does not load BPF itself: `ip link set ... xdp obj`
// does.
//go:generate ../../../hack/xdp-pass.sh xdp_pass.o
