package iptables

import (
	"fmt"
	"strings"

	"github.com/fastpath-bench/fastpath/datapath/model"
)

// Service chains, as kube-proxy's iptables mode builds them, in the nat
// table: PREROUTING jumps to FP-SERVICES, which matches each frontend
// (ClusterIP, port, protocol) and jumps to its FP-SVC-* chain; that picks
// one FP-SEP-* chain per backend with `-m statistic --mode random` (the
// i-th of n with probability 1/(n-i)), and the FP-SEP chain DNATs to the
// backend. ClientIP affinity uses `-m recent` per backend, as kube-proxy
// does. Conntrack keeps a connection on its backend and un-DNATs replies.
// The NAT happens before the filter table's FORWARD chain, so policy sees
// the backend, as with the eBPF datapath. A frontend without backends is
// REJECTed in FP-FORWARD (kube-proxy rejects them too).
//
// NodePorts: FP-SERVICES ends with a jump, for packets to one of the
// node's own addresses, to FP-NODEPORTS, which marks the connection and
// jumps to the port's FP-SVC chain; FP-POSTROUTING (nat POSTROUTING)
// masquerades marked connections that leave towards another node, so the
// backend's reply comes back through this node to be un-NATed, as
// kube-proxy does with externalTrafficPolicy: Cluster. The backend then
// sees this node's address as the source.
const (
	servicesChain    = "FP-SERVICES"
	nodePortsChain   = "FP-NODEPORTS"
	postroutingChain = "FP-POSTROUTING"
	svcPrefix        = "FP-SVC-"
	sepPrefix        = "FP-SEP-"
	// masqMark marks NodePort connections for masquerading (kube-proxy's
	// bit; the L7 proxy's marks use 0xf00).
	masqMark = 0x4000
	// hairpinMark marks a pod's connection through a Service to itself:
	// FP-FORWARD accepts it whatever the pod's policy (a pod always
	// reaches itself), and FP-POSTROUTING sources it from HairpinAddr, so
	// that the pod accepts the packet (its own address as source would be
	// a martian) and its reply leaves the pod to be un-NATed. kube-proxy
	// masquerades these to the node's address instead; the eBPF datapath
	// uses HairpinAddr too.
	hairpinMark = 0x2000
)

// HairpinAddr is the source of a pod's connections to itself through a
// Service (the eBPF datapath's LB_HAIRPIN_ADDR, bpf/lib/lb.h).
const HairpinAddr = "169.254.42.1"

func protoName(p model.Protocol) string {
	if p == model.ProtoUDP {
		return "udp"
	}
	return "tcp"
}

// serviceRules returns the nat table's restore input, the filter rules
// (REJECT for frontends without backends) to put first in FP-FORWARD, and
// how many rules they are.
func serviceRules(r *model.Resolved) (nat string, reject []string, rules int) {
	var chains, body, nodePorts []string
	for _, s := range r.Services {
		if !s.ClusterIP.Is4() {
			continue
		}
		for _, p := range s.Ports {
			proto := protoName(p.Protocol)
			front := fmt.Sprintf("%s:%d/%s", s.ClusterIP, p.Port, proto)
			comment := fmt.Sprintf("-m comment --comment \"%s %s\"", s.Key(), front)
			// The model admits IPv4 endpoints only.
			bs := p.Selectable()
			if len(bs) == 0 {
				reject = append(reject, fmt.Sprintf("-A %s -d %s/32 -p %s --dport %d %s -j REJECT", forwardChain, s.ClusterIP, proto, p.Port, comment))
				continue
			}
			svc := svcPrefix + short(s.Key()+" "+front)
			chains = append(chains, svc)
			body = append(body, fmt.Sprintf("-A %s -d %s/32 -p %s --dport %d %s -j %s", servicesChain, s.ClusterIP, proto, p.Port, comment, svc))
			if s.NodePortType && p.NodePort != 0 {
				nodePorts = append(nodePorts,
					fmt.Sprintf("-A %s -p %s --dport %d %s -j MARK --set-xmark %#x/%#x", nodePortsChain, proto, p.NodePort, comment, masqMark, masqMark),
					fmt.Sprintf("-A %s -p %s --dport %d %s -j %s", nodePortsChain, proto, p.NodePort, comment, svc))
			}
			affinity := int(s.AffinityTimeout.Seconds())
			seps := make([]string, len(bs))
			for i, b := range bs {
				seps[i] = sepPrefix + short(s.Key()+" "+front+" "+b.Addr.String()+fmt.Sprintf(":%d", b.Port))
				chains = append(chains, seps[i])
			}
			if affinity > 0 {
				for _, sep := range seps {
					body = append(body, fmt.Sprintf("-A %s -m recent --name %s --mask 255.255.255.255 --rsource --rcheck --seconds %d --reap -j %s", svc, sep, affinity, sep))
				}
			}
			for i, b := range bs {
				sel := ""
				if n := len(bs) - i; n > 1 {
					sel = fmt.Sprintf("-m statistic --mode random --probability %.10f ", 1/float64(n))
				}
				body = append(body, fmt.Sprintf("-A %s %s-j %s", svc, sel, seps[i]))
				set := ""
				if affinity > 0 {
					set = fmt.Sprintf("-m recent --name %s --mask 255.255.255.255 --rsource --set ", seps[i])
				}
				body = append(body, fmt.Sprintf("-A %s -s %s/32 -j MARK --set-xmark %#x/%#x", seps[i], b.Addr, hairpinMark, hairpinMark))
				body = append(body, fmt.Sprintf("-A %s -p %s %s-j DNAT --to-destination %s:%d", seps[i], proto, set, b.Addr, b.Port))
			}
		}
	}
	body = append(body, fmt.Sprintf("-A %s -m addrtype --dst-type LOCAL -j %s", servicesChain, nodePortsChain))
	body = append(body, nodePorts...)
	body = append(body, fmt.Sprintf("-A %s -m mark --mark %#x/%#x -j SNAT --to-source %s", postroutingChain, hairpinMark, hairpinMark, HairpinAddr))
	body = append(body, fmt.Sprintf("-A %s -m mark --mark %#x/%#x ! -o lxc+ -j MASQUERADE", postroutingChain, masqMark, masqMark))
	var sb strings.Builder
	sb.WriteString("*nat\n")
	fmt.Fprintf(&sb, ":%s - [0:0]\n:%s - [0:0]\n:%s - [0:0]\n", servicesChain, nodePortsChain, postroutingChain)
	for _, c := range chains {
		fmt.Fprintf(&sb, ":%s - [0:0]\n", c)
	}
	for _, l := range body {
		sb.WriteString(l + "\n")
	}
	sb.WriteString("COMMIT\n")
	return sb.String(), reject, len(body) + len(reject)
}

// staleNatChains lists FP-SVC-/FP-SEP- chains of the nat table (from
// `iptables -t nat -S`) that the new plan does not declare.
func staleNatChains(listing, plan string) []string {
	var out []string
	for _, line := range strings.Split(listing, "\n") {
		name, ok := strings.CutPrefix(line, "-N ")
		if !ok || !(strings.HasPrefix(name, svcPrefix) || strings.HasPrefix(name, sepPrefix)) {
			continue
		}
		if !strings.Contains(plan, "\n:"+name+" ") {
			out = append(out, name)
		}
	}
	return out
}
