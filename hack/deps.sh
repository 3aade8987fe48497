#!/usr/bin/env bash
# Installs the Debian packages fastpath needs, only when something is
# missing. "run": what benchmarks and tests need; "bpf": the BPF toolchain;
# "vm": what the kernel matrix needs (qemu, module decompressors).
set -euo pipefail

need=()
want() { # want <command-or-file> <package>
  if [[ "$1" == /* ]]; then [[ -e "$1" ]] || need+=("$2")
  else command -v "$1" >/dev/null 2>&1 || need+=("$2"); fi
}

case "${1:-run}" in
  run)
    want ip iproute2
    want iptables iptables
    want ipset ipset
    want mount mount
    want /usr/sbin/haproxy haproxy
    ;;
  vm)
    want qemu-system-x86_64 qemu-system-x86
    want xz xz-utils
    want zstd zstd
    want dpkg-deb dpkg
    want apt-get apt
    want ldd libc-bin
    want cpio cpio
    ;;
  bpf)
    want clang-14 clang-14
    want llvm-strip llvm
    want /usr/include/bpf/bpf_helpers.h libbpf-dev
    want /usr/include/linux/bpf.h linux-libc-dev
    ;;
  *) echo "usage: $0 run|bpf|vm" >&2; exit 2 ;;
esac

if ! command -v go >/dev/null 2>&1; then
  echo "deps: Go is not installed: install Go 1.26 or later (go.mod names the exact version; with Go >= 1.21 on PATH the toolchain is fetched from the Go module proxy)" >&2
  exit 1
fi

if ((${#need[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "deps: missing packages ${need[*]}: run as root, or: apt-get install ${need[*]}" >&2
    exit 1
  fi
  echo "deps: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
