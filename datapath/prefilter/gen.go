package prefilter

// The BPF object is compiled by clang through bpf2go; the generated .go and
// .o files are committed so that building needs no clang. `make generate`
// runs this with BPF_CLANG and BPF_CFLAGS set (see the Makefile).
//go:generate go tool bpf2go -cc $BPF_CLANG -cflags "$BPF_CFLAGS" -target bpfel -type prefilter_key -type prefilter_count xdp ../../bpf/bpf_xdp.c -- -I../../bpf/include -I../../bpf
