package lxc

import (
	"fmt"
	"testing"

	networkingv1 "k8s.io/api/networking/v1"
)

// BenchmarkPolicyVerdict times the endpoint program per packet with
// BPF_PROG_RUN (repeat inside the kernel) while the endpoint's policy grows
// from 10 to 10,000 rules: the cost must stay flat, since a verdict is at
// most two trie lookups. The packet is a new connection from a peer no rule
// allows, so conntrack never short-cuts the policy lookup. Compare the
// ns/pkt metric across sub-benchmarks of one run:
//
//	go test -run - -bench PolicyVerdict ./datapath/lxc/
func BenchmarkPolicyVerdict(b *testing.B) {
	for _, rules := range []int{10, 100, 1000, 10000} {
		b.Run(fmt.Sprintf("rules=%d", rules), func(b *testing.B) {
			objs := testObjects()
			var ports []networkingv1.NetworkPolicyPort
			for i := 0; i < rules; i++ {
				ports = append(ports, tcpPort(20000+i))
			}
			objs.NetworkPolicies[0].Spec.Ingress[0].Ports = ports
			d := loadServerOnLoTB(b, objs)
			_, to := d.Programs()
			pkt := tcpPacket(otherIP, 40000, serverIP, 20000+uint16(rules/2), flagSYN)
			b.ResetTimer()
			ret, per, err := to.Benchmark(pkt, b.N, nil)
			if err != nil {
				b.Fatal(err)
			}
			if ret != actDrop {
				b.Fatalf("verdict %d, want drop", ret)
			}
			b.ReportMetric(float64(per.Nanoseconds()), "ns/pkt")
		})
	}
}
