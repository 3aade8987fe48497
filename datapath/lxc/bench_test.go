package lxc

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/fastpath-bench/fastpath/datapath/model"
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

// BenchmarkServiceLB times the client's egress program per packet of an
// established connection to a ClusterIP (frontend lookup, the flow's
// backend from conntrack, DNAT with checksum updates, conntrack of the
// translated flow) while the node holds 10 to 10,000 services, and the
// same packet sent to a pod address directly ("direct"), for the LB's own
// cost. The program rewrites the packet, so every iteration is its own
// BPF_PROG_RUN with repeat 1 and the kernel's own timing (no syscall
// overhead in ns/pkt):
//
//	go test -run - -bench ServiceLB ./datapath/lxc/
func BenchmarkServiceLB(b *testing.B) {
	for _, n := range []int{0, 10, 100, 1000, 10000} {
		name := fmt.Sprintf("services=%d", n)
		if n == 0 {
			name = "direct"
		}
		b.Run(name, func(b *testing.B) {
			d := loadClientOnLoTB(b, testObjects())
			var svcs []*model.Service
			for i := 0; i < n; i++ {
				ip := netip.AddrFrom4([4]byte{10, 96, byte(i >> 8), byte(i)})
				svcs = append(svcs, service(ip, 80, model.ProtoTCP, backend(serverIP, 8080, model.BackendActive), backend(otherIP, 8080, model.BackendActive)))
			}
			if _, err := d.ApplyServices(svcs, nil, LBOptions{}); err != nil {
				b.Fatal(err)
			}
			from, _ := d.Programs()
			dst := serverIP
			if n > 0 {
				dst = netip.AddrFrom4([4]byte{10, 96, byte((n / 2) >> 8), byte(n / 2)})
			}
			pkt := withChecksums(tcpPacket(clientIP, 40000, dst, 80, flagSYN))
			ack := withChecksums(tcpPacket(clientIP, 40000, dst, 80, flagACK))
			if ret, err := from.Run(&ebpf.RunOptions{Data: pkt}); err != nil || ret != actOK {
				b.Fatalf("first packet: %d %v", ret, err)
			}
			var total time.Duration
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				_, dur, err := from.Benchmark(ack, 1, nil)
				if err != nil {
					b.Fatal(err)
				}
				total += dur
			}
			b.ReportMetric(float64(total.Nanoseconds())/float64(b.N), "ns/pkt")
		})
	}
}

// BenchmarkApplyPolicyChange times Datapath.Apply for a single-policy
// change (the agent's part of propagation after resolving): the server
// endpoint's policy of 100 or 1,000 rules gains or loses one rule, so one
// policy map is rebuilt and swapped per apply.
func BenchmarkApplyPolicyChange(b *testing.B) {
	for _, rules := range []int{100, 1000} {
		b.Run(fmt.Sprintf("rules=%d", rules), func(b *testing.B) {
			objs := testObjects()
			var ports []networkingv1.NetworkPolicyPort
			for i := 0; i < rules; i++ {
				ports = append(ports, tcpPort(20000+i))
			}
			objs.NetworkPolicies[0].Spec.Ingress[0].Ports = ports
			d := loadServerOnLoTB(b, objs)
			without, err := model.Resolve(objs)
			if err != nil {
				b.Fatal(err)
			}
			objs.NetworkPolicies[0].Spec.Ingress[0].Ports = append(ports, tcpPort(9000))
			with, err := model.Resolve(objs)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				r := without
				if i%2 == 0 {
					r = with
				}
				st, err := d.Apply(r, "n1")
				if err != nil {
					b.Fatal(err)
				}
				if st.Swapped != 1 {
					b.Fatalf("swapped %d policy maps, want 1", st.Swapped)
				}
			}
		})
	}
}
