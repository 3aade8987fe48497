package lxc

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fastpath-bench/fastpath/baselines/iptables"
	"github.com/fastpath-bench/fastpath/datapath/model"
	"github.com/fastpath-bench/fastpath/internal/testutil"
)

var (
	vip      = netip.MustParseAddr("10.96.0.10")
	vipOther = netip.MustParseAddr("10.96.0.11")
)

// loadClientOnLo loads the datapath in a fresh netns with the client
// endpoint bound to loopback: fp_from_container then sees the client's
// packets, fp_to_container the packets delivered to it.
func loadClientOnLo(t *testing.T, objs *model.Objects) *Datapath {
	t.Helper()
	return loadClientOnLoTB(t, objs)
}

func loadClientOnLoTB(t testing.TB, objs *model.Objects) *Datapath {
	t.Helper()
	d, _ := loadOnLo(t, objs, "client")
	return d
}

func service(ip netip.Addr, port uint16, proto model.Protocol, backends ...model.Backend) *model.Service {
	return &model.Service{Namespace: "t", Name: "svc-" + ip.String(), ClusterIP: ip,
		Ports: []model.ServicePort{{Protocol: proto, Port: port, Backends: backends}}}
}

func backend(ip netip.Addr, port uint16, st model.BackendState) model.Backend {
	return model.Backend{Addr: ip, Port: port, State: st, Weight: 1}
}

// checksum16 is the Internet checksum of b (0 when b includes a correct
// checksum field).
func checksum16(b []byte, sum uint32) uint16 {
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

func l4Checksum(pkt []byte) uint16 {
	ip := pkt[14:34]
	l4 := pkt[34:]
	var pseudo uint32
	pseudo += uint32(binary.BigEndian.Uint16(ip[12:])) + uint32(binary.BigEndian.Uint16(ip[14:]))
	pseudo += uint32(binary.BigEndian.Uint16(ip[16:])) + uint32(binary.BigEndian.Uint16(ip[18:]))
	pseudo += uint32(ip[9]) + uint32(len(l4))
	return checksum16(l4, pseudo)
}

// withChecksums fills the IPv4 and TCP/UDP checksums.
func withChecksums(pkt []byte) []byte {
	ip := pkt[14:34]
	binary.BigEndian.PutUint16(ip[10:], 0)
	binary.BigEndian.PutUint16(ip[10:], checksum16(ip, 0))
	off := 34 + 16
	if ip[9] == 17 {
		off = 34 + 6
	}
	binary.BigEndian.PutUint16(pkt[off:], 0)
	binary.BigEndian.PutUint16(pkt[off:], l4Checksum(pkt))
	return pkt
}

type tuple struct {
	src, dst     netip.Addr
	sport, dport uint16
}

// runOut runs pkt and returns the verdict and the packet as it left.
func runOut(t *testing.T, prog *ebpf.Program, pkt []byte) (uint32, []byte, tuple) {
	t.Helper()
	out := make([]byte, len(pkt)+64)
	opts := &ebpf.RunOptions{Data: pkt, DataOut: out}
	ret, err := prog.Run(opts)
	if err != nil {
		t.Fatalf("BPF_PROG_RUN: %v", err)
	}
	out = opts.DataOut
	if checksum16(out[14:34], 0) != 0 {
		t.Fatalf("bad IPv4 checksum after the program")
	}
	if l4Checksum(out) != 0 {
		t.Fatalf("bad L4 checksum after the program")
	}
	s, _ := netip.AddrFromSlice(out[26:30])
	d, _ := netip.AddrFromSlice(out[30:34])
	return ret, out, tuple{s, d, binary.BigEndian.Uint16(out[34:]), binary.BigEndian.Uint16(out[36:])}
}

func TestServiceTranslation(t *testing.T) {
	d := loadClientOnLo(t, testObjects())
	from, to := d.Programs()
	for _, algo := range []string{LBRandom, LBMaglev} {
		t.Run(algo, func(t *testing.T) {
			svc := service(vip, 80, model.ProtoTCP, backend(serverIP, 8080, model.BackendActive), backend(otherIP, 8080, model.BackendActive))
			udp := service(vip, 53, model.ProtoUDP, backend(serverIP, 5353, model.BackendActive))
			if _, err := d.ApplyServices([]*model.Service{svc, udp}, nil, LBOptions{Algorithm: algo, MaglevTableSize: 251}); err != nil {
				t.Fatal(err)
			}
			chosen := map[netip.Addr]int{}
			for sport := uint16(20000); sport < 20064; sport++ {
				ret, _, tp := runOut(t, from, withChecksums(tcpPacket(clientIP, sport, vip, 80, flagSYN)))
				if ret != actOK || tp.dport != 8080 || (tp.dst != serverIP && tp.dst != otherIP) || tp.src != clientIP {
					t.Fatalf("SYN to the VIP: verdict %d, left as %+v", ret, tp)
				}
				chosen[tp.dst]++
				// The flow sticks to its backend.
				for i := 0; i < 3; i++ {
					_, _, again := runOut(t, from, withChecksums(tcpPacket(clientIP, sport, vip, 80, flagACK)))
					if again.dst != tp.dst {
						t.Fatalf("flow %d moved from %s to %s", sport, tp.dst, again.dst)
					}
				}
				// The reply comes back from the VIP.
				ret, _, rp := runOut(t, to, withChecksums(tcpPacket(tp.dst, 8080, clientIP, sport, flagSYN|flagACK)))
				if ret != actOK || rp.src != vip || rp.sport != 80 {
					t.Fatalf("reply: verdict %d, delivered as %+v", ret, rp)
				}
			}
			if len(chosen) != 2 {
				t.Errorf("64 flows all went to %v", chosen)
			}
			ret, _, tp := runOut(t, from, withChecksums(udpPacket(clientIP, 3333, vip, 53)))
			if ret != actOK || tp.dst != serverIP || tp.dport != 5353 {
				t.Fatalf("UDP to the VIP: %d %+v", ret, tp)
			}
			ret, _, rp := runOut(t, to, withChecksums(udpPacket(serverIP, 5353, clientIP, 3333)))
			if ret != actOK || rp.src != vip || rp.sport != 53 {
				t.Fatalf("UDP reply: %d %+v", ret, rp)
			}
		})
	}
}

func TestServiceBackendStatesAndRemoval(t *testing.T) {
	d := loadClientOnLo(t, testObjects())
	from, _ := d.Programs()
	apply := func(bs ...model.Backend) {
		t.Helper()
		if _, err := d.ApplyServices([]*model.Service{service(vip, 80, model.ProtoTCP, bs...)}, nil, LBOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// Terminating and quarantined backends get no new flow while an active
	// one exists; a terminating one does when it is the last.
	apply(backend(serverIP, 8080, model.BackendActive), backend(otherIP, 8080, model.BackendTerminating), backend(clientIP, 8080, model.BackendQuarantined))
	for sport := uint16(21000); sport < 21032; sport++ {
		if _, _, tp := runOut(t, from, withChecksums(tcpPacket(clientIP, sport, vip, 80, flagSYN))); tp.dst != serverIP {
			t.Fatalf("new flow went to %s", tp.dst)
		}
	}
	// A flow on the server stays there when the server starts
	// terminating (existing flows keep their backend).
	apply(backend(serverIP, 8080, model.BackendTerminating), backend(otherIP, 8080, model.BackendActive))
	if _, _, tp := runOut(t, from, withChecksums(tcpPacket(clientIP, 21000, vip, 80, flagACK))); tp.dst != serverIP {
		t.Fatalf("existing flow moved to %s", tp.dst)
	}
	if _, _, tp := runOut(t, from, withChecksums(tcpPacket(clientIP, 21100, vip, 80, flagSYN))); tp.dst != otherIP {
		t.Fatalf("new flow went to %s", tp.dst)
	}
	// Removed mid-flow: the flow is sent to a remaining backend.
	apply(backend(otherIP, 8080, model.BackendActive))
	if _, _, tp := runOut(t, from, withChecksums(tcpPacket(clientIP, 21000, vip, 80, flagACK))); tp.dst != otherIP {
		t.Fatalf("flow of a removed backend went to %s", tp.dst)
	}
	// No backend: dropped with its own reason, and counted.
	apply()
	d.expectVerdict(t, from, withChecksums(tcpPacket(clientIP, 21200, vip, 80, flagSYN)), actDrop, DropNoServiceBackend, model.Egress)
	// Not a frontend: untouched.
	if ret, _, tp := runOut(t, from, withChecksums(tcpPacket(clientIP, 21201, vipOther, 80, flagSYN))); ret != actOK || tp.dst != vipOther {
		t.Fatalf("non-service traffic: %d %+v", ret, tp)
	}
}

// TestServicePolicyAfterTranslation: egress policy is checked against the
// backend the flow was sent to, not the VIP.
func TestServicePolicyAfterTranslation(t *testing.T) {
	objs := testObjects()
	objs.NetworkPolicies = append(objs.NetworkPolicies, networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "client-egress", Namespace: "t"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "client"}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress},
			Egress: []networkingv1.NetworkPolicyEgressRule{{
				To: []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "server"}}}},
			}},
		},
	})
	_ = corev1.ProtocolTCP
	d := loadClientOnLo(t, objs)
	from, _ := d.Programs()
	if _, err := d.ApplyServices([]*model.Service{
		service(vip, 80, model.ProtoTCP, backend(serverIP, 8080, model.BackendActive)),
		service(vipOther, 80, model.ProtoTCP, backend(otherIP, 8080, model.BackendActive)),
	}, nil, LBOptions{}); err != nil {
		t.Fatal(err)
	}
	d.expectVerdict(t, from, withChecksums(tcpPacket(clientIP, 22000, vip, 80, flagSYN)), actOK, ReasonForwarded, model.Egress)
	d.expectVerdict(t, from, withChecksums(tcpPacket(clientIP, 22001, vipOther, 80, flagSYN)), actDrop, DropPolicy, model.Egress)
}

// TestServiceIDsSurviveReload: a new Datapath on the same pinned maps
// reads the ids back, so a flow keeps its backend and reverse translation.
func TestServiceIDsSurviveReload(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.InNewNetns(t)
	lo, _ := netlink.LinkByName("lo")
	netlink.LinkSetUp(lo)
	pin := t.TempDir()
	if err := unix.Mount("bpf", pin, "bpf", 0, ""); err != nil {
		t.Fatalf("mount a bpffs to pin in: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(pin, unix.MNT_DETACH) })
	var svcs []*model.Service
	// load is an agent start: a new Datapath on the pinned maps, then one
	// Apply of the whole state, services included.
	load := func() *Datapath {
		d, err := Load(Options{PinPath: pin, InterfaceName: func(ep *model.Endpoint) string {
			if ep.Name == "client" {
				return "lo"
			}
			return "absent-" + ep.Name
		}})
		if err != nil {
			t.Fatal(err)
		}
		r, _ := model.Resolve(testObjects())
		r.Services = svcs
		if _, err := d.Apply(r, "n1"); err != nil {
			t.Fatal(err)
		}
		return d
	}
	// The first agent also has a service that sorts first and is gone by
	// the restart: ids assigned afresh would then differ from the ones
	// conntrack holds.
	main := service(vip, 80, model.ProtoTCP, backend(serverIP, 8080, model.BackendActive), backend(otherIP, 8080, model.BackendActive))
	svcs = []*model.Service{service(netip.MustParseAddr("10.96.0.0"), 80, model.ProtoTCP, backend(clientIP, 9999, model.BackendActive)), main}
	d1 := load()
	from, _ := d1.Programs()
	first := map[uint16]netip.Addr{}
	for sport := uint16(23000); sport < 23016; sport++ {
		_, _, tp := runOut(t, from, withChecksums(tcpPacket(clientIP, sport, vip, 80, flagSYN)))
		first[sport] = tp.dst
	}
	d1.Close()
	time.Sleep(10 * time.Millisecond)

	// Reversed backend order: ids must come from the maps, not the order.
	main.Ports[0].Backends[0], main.Ports[0].Backends[1] = main.Ports[0].Backends[1], main.Ports[0].Backends[0]
	svcs = []*model.Service{main}
	d2 := load()
	defer d2.Close()
	// Exactly the live service is left in the maps.
	for name, m := range map[string]*ebpf.Map{"frontends": d2.objs.FpLbFrontends, "revnat": d2.objs.FpLbRevnat, "select": d2.objs.FpLbSelect, "backends": d2.objs.FpLbBackends} {
		want := 1
		if name == "backends" {
			want = 2
		}
		n := 0
		var k, v []byte
		for it := m.Iterate(); it.Next(&k, &v); {
			n++
		}
		if n != want {
			t.Errorf("fp_lb_%s holds %d entries after the restart, want %d", name, n, want)
		}
	}
	from, to := d2.Programs()
	for sport, dst := range first {
		if _, _, tp := runOut(t, from, withChecksums(tcpPacket(clientIP, sport, vip, 80, flagACK))); tp.dst != dst {
			t.Fatalf("after reload flow %d moved from %s to %s", sport, dst, tp.dst)
		}
		if _, _, rp := runOut(t, to, withChecksums(tcpPacket(dst, 8080, clientIP, sport, flagACK))); rp.src != vip {
			t.Fatalf("after reload the reply came from %s", rp.src)
		}
	}
}

func TestDumpLB(t *testing.T) {
	d := loadClientOnLo(t, testObjects())
	svc := service(vip, 80, model.ProtoTCP, backend(serverIP, 8080, model.BackendActive), backend(otherIP, 8080, model.BackendActive))
	svc.AffinityTimeout = 30 * time.Second
	if _, err := d.ApplyServices([]*model.Service{svc}, nil, LBOptions{Algorithm: LBMaglev, MaglevTableSize: 101}); err != nil {
		t.Fatal(err)
	}
	fronts, backends, err := d.DumpLB()
	if err != nil {
		t.Fatal(err)
	}
	if len(fronts) != 1 || len(backends) != 2 {
		t.Fatalf("%d frontends, %d backends", len(fronts), len(backends))
	}
	f := fronts[0]
	if f.VIP != vip || f.Port != 80 || f.Protocol != model.ProtoTCP || !f.Maglev || f.AffinitySeconds != 30 || len(f.Selection) != 101 {
		t.Fatalf("frontend: %+v", f)
	}
	per := map[netip.Addr]int{}
	for _, id := range f.Selection {
		per[backends[id].Addr]++
	}
	if per[serverIP]+per[otherIP] != 101 || per[serverIP] < 50 || per[otherIP] < 50 {
		t.Fatalf("Maglev table spread: %v", per)
	}
}

// TestNodePortFromPod: a pod's connection to a NodePort on any node's
// address is translated at the pod's hook, like a ClusterIP.
func TestNodePortFromPod(t *testing.T) {
	d := loadClientOnLo(t, testObjects())
	from, to := d.Programs()
	node1, node2 := netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("198.18.0.2")
	svc := service(vip, 80, model.ProtoTCP, backend(serverIP, 8080, model.BackendActive))
	svc.NodePortType = true
	svc.Ports[0].NodePort = 30080
	st, err := d.ApplyServices([]*model.Service{svc}, []netip.Addr{node1, node2}, LBOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if st.Frontends != 3 {
		t.Fatalf("frontends: %d, want ClusterIP + 2 node ports", st.Frontends)
	}
	for i, n := range []netip.Addr{node1, node2} {
		sport := uint16(24000 + i)
		ret, _, tp := runOut(t, from, withChecksums(tcpPacket(clientIP, sport, n, 30080, flagSYN)))
		if ret != actOK || tp.dst != serverIP || tp.dport != 8080 {
			t.Fatalf("to %s:30080: %d %+v", n, ret, tp)
		}
		_, _, rp := runOut(t, to, withChecksums(tcpPacket(serverIP, 8080, clientIP, sport, flagSYN|flagACK)))
		if rp.src != n || rp.sport != 30080 {
			t.Fatalf("reply of %s:30080 came from %s:%d", n, rp.src, rp.sport)
		}
	}
	// The ClusterIP's port is not a node port.
	if _, _, tp := runOut(t, from, withChecksums(tcpPacket(clientIP, 24010, node1, 80, flagSYN))); tp.dst != node1 {
		t.Fatalf("node1:80 was translated to %s", tp.dst)
	}
}

// TestMaglevSameAfterRestart: a new agent on the same pinned maps builds
// the same Maglev table (same backend for every slot), so flows hashed to
// a backend keep it across restarts even without conntrack.
func TestMaglevSameAfterRestart(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.InNewNetns(t)
	pin := t.TempDir()
	if err := unix.Mount("bpf", pin, "bpf", 0, ""); err != nil {
		t.Fatalf("mount a bpffs to pin in: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(pin, unix.MNT_DETACH) })
	svc := service(vip, 80, model.ProtoTCP, backend(serverIP, 8080, model.BackendActive), backend(otherIP, 8080, model.BackendActive), backend(clientIP, 8080, model.BackendActive))
	table := func(order []int) []netip.AddrPort {
		d, err := Load(Options{PinPath: pin, LB: LBOptions{Algorithm: LBMaglev, MaglevTableSize: 251}})
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		s := *svc
		s.Ports = []model.ServicePort{svc.Ports[0]}
		s.Ports[0].Backends = nil
		for _, i := range order {
			s.Ports[0].Backends = append(s.Ports[0].Backends, svc.Ports[0].Backends[i])
		}
		if _, err := d.ApplyServices([]*model.Service{&s}, nil, d.opts.LB); err != nil {
			t.Fatal(err)
		}
		fronts, backends, err := d.DumpLB()
		if err != nil || len(fronts) != 1 {
			t.Fatalf("dump: %v %d", err, len(fronts))
		}
		var out []netip.AddrPort
		for _, id := range fronts[0].Selection {
			out = append(out, netip.AddrPortFrom(backends[id].Addr, backends[id].Port))
		}
		return out
	}
	first := table([]int{0, 1, 2})
	second := table([]int{2, 0, 1})
	if len(first) != 251 || len(second) != 251 {
		t.Fatalf("table sizes %d, %d", len(first), len(second))
	}
	for i := range first {
		if first[i] != second[i] {
			t.Fatalf("slot %d: %s before the restart, %s after", i, first[i], second[i])
		}
	}
}

// TestServiceHairpin: a pod whose connection through a service lands on
// itself. The request leaves with the hairpin address as source, so the
// pod accepts it; the pod's reply to that address is sent back to the pod,
// and arrives from the frontend. No policy is consulted (the client pod
// here has an ingress policy that admits nothing), and a packet from the
// hairpin address that belongs to no such flow meets the policy as any
// other.
func TestServiceHairpin(t *testing.T) {
	objs := testObjects()
	objs.NetworkPolicies = append(objs.NetworkPolicies, networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "deny-all", Namespace: "t"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "client"}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress},
		},
	})
	d := loadClientOnLo(t, objs)
	from, to := d.Programs()
	svc := service(vip, 80, model.ProtoTCP, backend(clientIP, 8080, model.BackendActive))
	udp := service(vip, 53, model.ProtoUDP, backend(clientIP, 5353, model.BackendActive))
	if _, err := d.ApplyServices([]*model.Service{svc, udp}, nil, LBOptions{}); err != nil {
		t.Fatal(err)
	}
	if HairpinAddr.String() != iptables.HairpinAddr {
		t.Fatalf("HairpinAddr %s, the iptables baseline's %s", HairpinAddr, iptables.HairpinAddr)
	}
	for _, c := range []struct {
		name       string
		pkt        func(src netip.Addr, sport uint16, dst netip.Addr, dport uint16, flags uint8) []byte
		port, back uint16
	}{
		{"tcp", tcpPacket, 80, 8080},
		{"udp", func(s netip.Addr, sp uint16, d netip.Addr, dp uint16, _ uint8) []byte { return udpPacket(s, sp, d, dp) }, 53, 5353},
	} {
		t.Run(c.name, func(t *testing.T) {
			const sport = 40000
			// 1. The request leaves translated, from the hairpin address.
			before := d.count(t, ReasonForwarded, model.Egress)
			ret, _, out := runOut(t, from, withChecksums(c.pkt(clientIP, sport, vip, c.port, flagSYN)))
			if ret != actOK || out != (tuple{HairpinAddr, clientIP, sport, c.back}) {
				t.Fatalf("request: verdict %d, left as %+v", ret, out)
			}
			if got := d.count(t, ReasonForwarded, model.Egress); got != before+1 {
				t.Fatalf("forwarded egress %d -> %d", before, got)
			}
			// 2. It is delivered to the pod although its policy admits
			// nothing.
			ret, _, in := runOut(t, to, withChecksums(c.pkt(HairpinAddr, sport, clientIP, c.back, flagSYN)))
			if ret != actOK || in != (tuple{HairpinAddr, clientIP, sport, c.back}) {
				t.Fatalf("request at the pod: verdict %d, delivered as %+v", ret, in)
			}
			// 3. The pod's reply to the hairpin address goes back to the
			// pod.
			ret, _, rp := runOut(t, from, withChecksums(c.pkt(clientIP, c.back, HairpinAddr, sport, flagSYN|flagACK)))
			if ret != actOK || rp != (tuple{clientIP, clientIP, c.back, sport}) {
				t.Fatalf("reply: verdict %d, left as %+v", ret, rp)
			}
			// 4. And arrives from the frontend.
			ret, _, back := runOut(t, to, withChecksums(c.pkt(clientIP, c.back, clientIP, sport, flagACK)))
			if ret != actOK || back != (tuple{vip, clientIP, c.port, sport}) {
				t.Fatalf("reply at the pod: verdict %d, delivered as %+v", ret, back)
			}
			// Later packets of the flow take the same way.
			ret, _, out = runOut(t, from, withChecksums(c.pkt(clientIP, sport, vip, c.port, flagACK)))
			if ret != actOK || out.src != HairpinAddr {
				t.Fatalf("second request: verdict %d, left as %+v", ret, out)
			}
			// A packet from the hairpin address of no such flow meets the
			// pod's policy; so does a packet to it.
			if ret := run(t, to, withChecksums(c.pkt(HairpinAddr, sport+1, clientIP, c.back, flagSYN))); ret != actDrop {
				t.Fatalf("unknown hairpin flow in: verdict %d", ret)
			}
			if ret := run(t, from, withChecksums(c.pkt(clientIP, c.back, HairpinAddr, sport+1, flagSYN|flagACK))); ret != actDrop {
				t.Fatalf("unknown hairpin flow out: verdict %d", ret)
			}
		})
	}
}
