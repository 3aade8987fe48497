#!/usr/bin/env bash
# Fails when a run or test left fastpath objects behind.
set -euo pipefail
left=()
while read -r ns _; do [[ "$ns" == fp-* ]] && left+=("netns $ns"); done < <(ip netns list 2>/dev/null || true)
cg2=$(awk '{for (i = 7; i < NF; i++) if ($i == "-") { if ($(i+1) == "cgroup2" && $4 == "/") { print $5; exit } break }}' /proc/self/mountinfo)
for d in /sys/fs/bpf/fp-* /run/fastpath/fp-* ${cg2:+$cg2/fastpath/fp-*}; do [[ -e "$d" ]] && left+=("$d"); done
if command -v docker >/dev/null && docker info >/dev/null 2>&1; then
  while read -r cl name; do
    [[ "$cl" == fp-* ]] && left+=("kind node container $name")
  done < <(docker ps -a --filter label=io.x-k8s.kind.cluster --format '{{.Label "io.x-k8s.kind.cluster"}} {{.Names}}')
  if [[ -n "$(docker network ls -q --filter name=^fastpath-kind$)" ]] && [[ "$(docker network inspect --format '{{len .Containers}}' fastpath-kind)" == 0 ]]; then
    left+=("docker network fastpath-kind (no container on it)")
  fi
fi
if ((${#left[@]})); then
  printf 'check-leftovers: left behind: %s\n' "${left[@]}" >&2
  echo "check-leftovers: remove with: bin/fastpath clean" >&2
  exit 1
fi
echo "check-leftovers: nothing left behind"
