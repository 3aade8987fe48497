package lxc

import (
	"encoding/binary"
	"testing"

	"github.com/cilium/ebpf"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fastpath-bench/fastpath/datapath/model"
)

// l7Objects: the server takes HTTP GET on TCP 80 from app=client (an L7
// rule) and anything on TCP 8080 from app=client.
func l7Objects() *model.Objects {
	objs := testObjects()
	objs.NetworkPolicies = nil
	objs.CiliumNetworkPolicies = []model.CiliumNetworkPolicy{{
		ObjectMeta: metav1.ObjectMeta{Name: "l7", Namespace: "t"},
		Spec: &model.CiliumRule{
			EndpointSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "server"}},
			Ingress: []model.CiliumIngressRule{{
				FromEndpoints: []metav1.LabelSelector{{MatchLabels: map[string]string{"app": "client"}}},
				ToPorts: []model.CiliumPortRule{
					{Ports: []model.CiliumPortProtocol{{Port: "80", Protocol: "TCP"}}, Rules: &model.CiliumL7Rules{HTTP: []model.CiliumHTTPRule{{Method: "GET"}}}},
					{Ports: []model.CiliumPortProtocol{{Port: "8080", Protocol: "TCP"}}},
				},
			}},
		},
	}}
	return objs
}

// runMarked runs prog on pkt with skb->mark set (the third u32 of
// struct __sk_buff).
func runMarked(t *testing.T, prog *ebpf.Program, pkt []byte, mark uint32) uint32 {
	t.Helper()
	ctx := make([]byte, 12)
	binary.NativeEndian.PutUint32(ctx[8:], mark)
	ret, err := prog.Run(&ebpf.RunOptions{Data: pkt, Context: ctx})
	if err != nil {
		t.Fatalf("BPF_PROG_RUN: %v", err)
	}
	return ret
}

// TestL7RuleNeedsTheProxy checks the pod side of the redirect: a new
// connection an L7 rule applies to passes only when the proxy sends it;
// one that reaches the pod directly has bypassed the proxy and is dropped.
func TestL7RuleNeedsTheProxy(t *testing.T) {
	d := loadServerOnLo(t, l7Objects())
	_, to := d.Programs()
	for _, tc := range []ingressCase{
		{"client on the L7 port, not through the proxy", tcpPacket(clientIP, 32001, serverIP, 80, flagSYN), actDrop, Reason(lxcReasonDROP_PROXY_REQUIRED)},
		{"client on the L4 port", tcpPacket(clientIP, 32002, serverIP, 8080, flagSYN), actOK, ReasonForwarded},
		{"other pod on the L7 port: no rule", tcpPacket(otherIP, 32003, serverIP, 80, flagSYN), actDrop, DropPolicy},
	} {
		t.Run(tc.name, func(t *testing.T) { d.expectVerdict(t, to, tc.pkt, tc.want, tc.reason, model.Ingress) })
	}
	t.Run("sent by the proxy", func(t *testing.T) {
		before := d.count(t, Reason(lxcReasonREASON_FROM_PROXY), model.Ingress)
		if got := runMarked(t, to, tcpPacket(clientIP, 32004, serverIP, 80, flagSYN), uint32(MarkFromProxy)); got != actOK {
			t.Fatalf("verdict %d, want pass", got)
		}
		if after := d.count(t, Reason(lxcReasonREASON_FROM_PROXY), model.Ingress); after != before+1 {
			t.Fatalf("REASON_FROM_PROXY went %d -> %d", before, after)
		}
	})
	t.Run("another mark does not pass", func(t *testing.T) {
		if got := runMarked(t, to, tcpPacket(clientIP, 32005, serverIP, 80, flagSYN), uint32(MarkToProxy)); got != actDrop {
			t.Fatalf("verdict %d, want drop", got)
		}
	})
}

// TestL7RedirectFailsClosedWithoutProxy checks the uplink side: a new
// connection that must go to the proxy is dropped when no proxy listens;
// traffic no L7 rule applies to is left alone and not counted.
func TestL7RedirectFailsClosedWithoutProxy(t *testing.T) {
	d := loadServerOnLo(t, l7Objects())
	up := d.objs.FpFromNetdev
	unavailable := Reason(lxcReasonDROP_PROXY_UNAVAILABLE)
	before := d.count(t, unavailable, model.Ingress)
	if got := run(t, up, tcpPacket(clientIP, 33001, serverIP, 80, flagSYN)); got != actDrop {
		t.Fatalf("SYN to the L7 port without a proxy: verdict %d, want drop", got)
	}
	if after := d.count(t, unavailable, model.Ingress); after != before+1 {
		t.Fatalf("DROP_PROXY_UNAVAILABLE went %d -> %d", before, after)
	}
	// A proxy port where nothing listens is no better.
	if err := d.SetProxyPort(1); err != nil {
		t.Fatal(err)
	}
	if got := run(t, up, tcpPacket(clientIP, 33002, serverIP, 80, flagSYN)); got != actDrop {
		t.Fatalf("SYN to the L7 port, nothing on the proxy port: verdict %d, want drop", got)
	}
	forwarded := d.count(t, ReasonForwarded, model.Ingress)
	for _, pkt := range [][]byte{
		tcpPacket(clientIP, 33003, serverIP, 8080, flagSYN), // L4 port
		tcpPacket(otherIP, 33004, serverIP, 80, flagSYN),    // not admitted: the pod's hook drops it
		tcpPacket(clientIP, 33005, serverIP, 80, flagACK),   // not a first packet, no proxy socket
		udpPacket(clientIP, 33006, serverIP, 80),
		tcpPacket(clientIP, 33007, otherIP, 80, flagSYN), // not a local pod
	} {
		if got := run(t, up, pkt); got != actOK {
			t.Fatalf("verdict %d, want pass", got)
		}
	}
	if after := d.count(t, ReasonForwarded, model.Ingress); after != forwarded {
		t.Fatalf("the uplink program counted packets it left alone (%d -> %d)", forwarded, after)
	}
}

// TestPolicyEntriesCarryL7Bits checks the key expansion of an L7 rule.
func TestPolicyEntriesCarryL7Bits(t *testing.T) {
	r, err := model.Resolve(l7Objects())
	if err != nil {
		t.Fatal(err)
	}
	ep, _ := r.Endpoint("t/server")
	var l7, l4 int
	for _, e := range PolicyEntries(ep) {
		switch {
		case e.Port == 80 && e.Allow && e.Proxy:
			l7++
		case e.Port == 8080 && e.Allow && !e.Proxy:
			l4++
		default:
			t.Errorf("unexpected entry %+v", e)
		}
	}
	if l7 != 1 || l4 != 1 {
		t.Fatalf("entries: %d L7 on port 80, %d L4 on 8080; want 1 and 1", l7, l4)
	}
	if endpointFlags(ep)&uint32(lxcEndpointFlagsEP_F_INGRESS_L7) == 0 {
		t.Fatal("endpoint flags lack EP_F_INGRESS_L7")
	}
}
