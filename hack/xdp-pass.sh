#!/usr/bin/env bash
# Compiles bpf/xdp_pass.c for the netns test bed (go generate in
# harness/cluster/netns). No debug info: the object must not depend on the
# checkout's path.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
"${BPF_CLANG:-clang-14}" -O2 -target bpf -Wall -Werror \
  -I"/usr/include/$(gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)" \
  -c "$root/bpf/xdp_pass.c" -o "$1"
