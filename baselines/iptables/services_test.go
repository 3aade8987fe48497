package iptables

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/fastpath-bench/fastpath/datapath/model"
)

func TestServiceRules(t *testing.T) {
	b := func(ip string, st model.BackendState) model.Backend {
		return model.Backend{Addr: netip.MustParseAddr(ip), Port: 8080, State: st, Weight: 1}
	}
	r := &model.Resolved{Services: []*model.Service{
		{Namespace: "a", Name: "web", ClusterIP: netip.MustParseAddr("10.96.0.10"), NodePortType: true, Ports: []model.ServicePort{{
			Protocol: model.ProtoTCP, Port: 80, NodePort: 30080,
			Backends: []model.Backend{b("10.0.0.1", model.BackendActive), b("10.0.0.2", model.BackendActive), b("10.0.0.3", model.BackendActive), b("10.0.0.4", model.BackendTerminating)},
		}}},
		{Namespace: "a", Name: "sticky", ClusterIP: netip.MustParseAddr("10.96.0.11"), AffinityTimeout: 30 * time.Second, Ports: []model.ServicePort{{
			Protocol: model.ProtoUDP, Port: 53, Backends: []model.Backend{b("10.0.0.5", model.BackendActive)},
		}}},
		{Namespace: "a", Name: "empty", ClusterIP: netip.MustParseAddr("10.96.0.12"), Ports: []model.ServicePort{{
			Protocol: model.ProtoTCP, Port: 80, Backends: []model.Backend{b("10.0.0.6", model.BackendQuarantined)},
		}}},
	}}
	nat, reject, n := serviceRules(r)
	for _, want := range []string{
		"-A FP-SERVICES -d 10.96.0.10/32 -p tcp --dport 80",
		"--probability 0.3333333333 -j FP-SEP-",
		"--probability 0.5000000000 -j FP-SEP-",
		"-j DNAT --to-destination 10.0.0.3:8080",
		"-A FP-SERVICES -d 10.96.0.11/32 -p udp --dport 53",
		"--rcheck --seconds 30 --reap",
		"--set -j DNAT --to-destination 10.0.0.5:8080",
		"-A FP-SERVICES -m addrtype --dst-type LOCAL -j FP-NODEPORTS",
		"-A FP-NODEPORTS -p tcp --dport 30080 -m comment --comment \"a/web 10.96.0.10:80/tcp\" -j MARK --set-xmark 0x4000/0x4000",
		"-A FP-NODEPORTS -p tcp --dport 30080 -m comment --comment \"a/web 10.96.0.10:80/tcp\" -j FP-SVC-",
		"-A FP-POSTROUTING -m mark --mark 0x4000/0x4000 ! -o lxc+ -j MASQUERADE",
		"-s 10.0.0.3/32 -j MARK --set-xmark 0x2000/0x2000",
		"-A FP-POSTROUTING -m mark --mark 0x2000/0x2000 -j SNAT --to-source 169.254.42.1",
	} {
		if !strings.Contains(nat, want) {
			t.Errorf("nat rules lack %q:\n%s", want, nat)
		}
	}
	if strings.Contains(nat, "10.0.0.4") || strings.Contains(nat, "10.0.0.6") {
		t.Errorf("a terminating (with active ones present) or quarantined backend got rules:\n%s", nat)
	}
	if len(reject) != 1 || !strings.Contains(reject[0], "-d 10.96.0.12/32 -p tcp --dport 80") || !strings.HasSuffix(reject[0], "-j REJECT") {
		t.Errorf("reject rules: %q", reject)
	}
	// 2 FP-SERVICES jumps, 3+3 web, 1+1+1 sticky, 4 hairpin marks, 1
	// reject, the node-port jump, 2 node-port rules, the hairpin SNAT, the
	// masquerade.
	if n != 21 {
		t.Errorf("rules: %d", n)
	}
	listing := "-P PREROUTING ACCEPT\n-N FP-SERVICES\n-N FP-SVC-OLD\n-N FP-SEP-OLD\n-N KUBE-SVC-X\n"
	for _, l := range strings.Split(nat, "\n") {
		if name, ok := strings.CutPrefix(l, ":"); ok {
			listing += "-N " + strings.Fields(name)[0] + "\n"
		}
	}
	if stale := staleNatChains(listing, nat); strings.Join(stale, " ") != "FP-SVC-OLD FP-SEP-OLD" {
		t.Errorf("stale chains: %v", stale)
	}
}
