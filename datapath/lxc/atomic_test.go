package lxc

import (
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cilium/ebpf"
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/fastpath-bench/fastpath/datapath/model"
)

// TestUpdatesNeverExposeHalfAppliedPolicy applies 1,000 policy updates
// (each replacing the endpoint's whole policy with a different set of extra
// rules) while another goroutine keeps sending new connections that the
// policy always allows and always denies. Because every update builds a
// new trie and swaps it in with one map update, no packet may see a
// missing or partial policy: zero allowed packets dropped, zero denied
// packets passed.
func TestUpdatesNeverExposeHalfAppliedPolicy(t *testing.T) {
	objs := testObjects()
	d := loadServerOnLo(t, objs)
	_, to := d.Programs()

	var stop atomic.Bool
	var wrongAllowed, wrongDenied, sent atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for sport := uint16(1024); !stop.Load(); sport++ {
			if sport == 0 {
				sport = 1024
			}
			// (BPF_PROG_RUN runs on the loopback of the calling thread's
			// namespace; loopback is ifindex 1 in every namespace, the
			// index the endpoint is bound to.)
			// A new source port each time: conntrack cannot answer, the
			// policy must.
			if ret, err := to.Run(&ebpf.RunOptions{Data: tcpPacket(clientIP, sport, serverIP, 8080, flagSYN)}); err != nil || ret != actOK {
				wrongDenied.Add(1)
			}
			if ret, err := to.Run(&ebpf.RunOptions{Data: tcpPacket(otherIP, sport, serverIP, 8080, flagSYN)}); err != nil || ret != actDrop {
				wrongAllowed.Add(1)
			}
			sent.Add(2)
		}
	}()

	base := objs.NetworkPolicies[0].Spec.Ingress[0]
	for i := 0; i < 1000; i++ {
		extra := networkingv1.NetworkPolicyIngressRule{From: base.From}
		for p := 0; p < 1+i%50; p++ {
			extra.Ports = append(extra.Ports, tcpPort(20000+(i*7+p)%30000))
		}
		objs.NetworkPolicies[0].Spec.Ingress = []networkingv1.NetworkPolicyIngressRule{base, extra}
		r, err := model.Resolve(objs)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := d.Apply(r, "n1"); err != nil {
			t.Fatal(err)
		}
	}
	stop.Store(true)
	wg.Wait()
	t.Logf("%d packets checked during 1000 updates", sent.Load())
	if wrongDenied.Load() != 0 || wrongAllowed.Load() != 0 {
		t.Fatalf("allowed packets dropped: %d, denied packets passed: %d", wrongDenied.Load(), wrongAllowed.Load())
	}
	if sent.Load() < 1000 {
		t.Fatalf("only %d packets sent during the updates", sent.Load())
	}
}
