// Package iptables is the iptables baseline: it programs the resolved model
// the way iptables-based NetworkPolicy implementations (Calico, kube-router)
// do, so that the eBPF datapath can be measured against it and checked for
// the same verdicts.
//
// Layout, in each node's network namespace:
//   - ipsets "fp-id-<identity>" (hash:net) hold the addresses behind each
//     peer identity a rule names: pod /32s, node addresses, and policy
//     prefixes with the nested prefixes (and, for the world, pods and
//     nodes) added as "nomatch", so the longest entry decides as in the
//     eBPF ipcache. Sets are rebuilt under a temporary name and swapped in.
//   - FORWARD jumps to FP-FORWARD: established and related traffic is
//     accepted by conntrack; a pod's packets go through its egress chain
//     FP-EG-<pod> (after an anti-spoofing check), packets to a pod through
//     FP-IN-<pod> and, for TCP, FP-MESH-<pod> (AuthorizationPolicy layer).
//   - A chain lists deny rules first (DROP), then allow rules (RETURN), then
//     DROP when the direction is default-deny.
//
// The filter rules are applied in one iptables-restore --noflush of the
// whole fastpath part of the table, as kube-proxy does, and timed.
package iptables
