#!/usr/bin/env bash
# Regenerates the bpf2go output and fails when it differs from what is in
# the working tree: then `make generate` and commit.
set -euo pipefail
cd "$(dirname "$0")/.."
# The same defaults as the Makefile's, for running this script alone.
export BPF_CLANG="${BPF_CLANG:-clang-14}"
export BPF_CFLAGS="${BPF_CFLAGS:--O2 -g -Wall -Wextra -Werror -Wno-unused-parameter -I/usr/include/$(gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)}"
files=$(ls datapath/*/*_bpfel.go datapath/*/*_bpfel.o harness/cluster/netns/*.o)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for f in $files; do mkdir -p "$tmp/$(dirname "$f")"; cp "$f" "$tmp/$f"; done
go generate ./datapath/... ./harness/cluster/netns >/dev/null
stale=()
for f in $(ls datapath/*/*_bpfel.go datapath/*/*_bpfel.o harness/cluster/netns/*.o); do
  if [[ ! -e "$tmp/$f" ]] || ! cmp -s "$f" "$tmp/$f"; then stale+=("$f"); fi
done
if ((${#stale[@]})); then
  echo "check-generated: bpf2go output was stale: ${stale[*]}" >&2
  echo "check-generated: it has been regenerated now; review and commit it" >&2
  exit 1
fi
echo "check-generated: bpf2go output is current"
