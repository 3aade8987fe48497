package lxc

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fastpath-bench/fastpath/datapath/model"
)

const actRedirect = 7 // TC_ACT_REDIRECT

var (
	egwDest     = netip.MustParseAddr("192.0.2.10")
	egwExcluded = netip.MustParseAddr("192.0.2.200")
	node1IP     = netip.MustParseAddr("198.18.0.1")
)

// egwObjects: the test objects on nodes n1 (198.18.0.1, the client's)
// and n2, and an EgressGatewayPolicy sending app=client's traffic to
// 192.0.2.0/24 (but 192.0.2.128/25) through node gateway.
func egwObjects(gateway string) *model.Objects {
	objs := testObjects()
	for i, n := range []string{"n1", "n2"} {
		objs.Nodes = append(objs.Nodes, corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n},
			Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "198.18.0." + string(rune('1'+i))}}}})
	}
	objs.EgressGatewayPolicies = []model.EgressGatewayPolicy{{
		ObjectMeta: metav1.ObjectMeta{Name: "out"},
		Spec: model.EgressGatewayPolicySpec{
			Selectors:        []model.EgressSelector{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "client"}}}},
			DestinationCIDRs: []string{"192.0.2.0/24"},
			ExcludedCIDRs:    []string{"192.0.2.128/25"},
			Gateway:          model.EgressGatewaySpec{Node: gateway},
		},
	}}
	return objs
}

// TestEgressGatewaySource: at the client's egress, a packet to a
// destination CIDR of a policy selecting it goes into the overlay to the
// gateway node; excluded CIDRs, other addresses and pods do not; a policy
// whose gateway is not known drops (fail closed).
func TestEgressGatewaySource(t *testing.T) {
	objs := egwObjects("n2")
	d := loadClientOnLo(t, objs)
	if err := d.EnableTunnel(TunnelOptions{}); err != nil {
		t.Fatal(err)
	}
	from, _ := d.Programs()
	if info := d.EgressGateways(); len(info) != 1 || info[0].Gateway || info[0].Dropped != "" || info[0].Sources != 1 {
		t.Fatalf("egress gateways: %+v", info)
	}
	for i, c := range []struct {
		dst  netip.Addr
		want uint32
	}{
		{egwDest, actRedirect},
		{egwExcluded, actOK},
		{netip.MustParseAddr("8.8.8.8"), actOK},
		{serverIP, actOK},
		{netip.MustParseAddr("198.18.0.2"), actOK}, // the gateway node itself is in the mesh
	} {
		if got := run(t, from, tcpPacket(clientIP, uint16(33000+i), c.dst, 80, flagSYN)); got != c.want {
			t.Errorf("client -> %s: verdict %d, want %d", c.dst, got, c.want)
		}
	}

	// The gateway node is gone: the selected traffic is dropped.
	objs = egwObjects("n9")
	if _, err := d.Apply(mustResolve(t, objs), "n1"); err != nil {
		t.Fatal(err)
	}
	if info := d.EgressGateways(); len(info) != 1 || info[0].Dropped == "" {
		t.Fatalf("egress gateways: %+v", info)
	}
	d.expectVerdict(t, from, tcpPacket(clientIP, 33100, egwDest, 80, flagSYN), actDrop, DropNoEgressGateway, model.Egress)
	if got := run(t, from, tcpPacket(clientIP, 33101, egwExcluded, 80, flagSYN)); got != actOK {
		t.Errorf("excluded destination: verdict %d", got)
	}

	// No policy: the trie's slot is emptied.
	objs.EgressGatewayPolicies = nil
	if _, err := d.Apply(mustResolve(t, objs), "n1"); err != nil {
		t.Fatal(err)
	}
	if got := run(t, from, tcpPacket(clientIP, 33102, egwDest, 80, flagSYN)); got != actOK {
		t.Errorf("without a policy: verdict %d", got)
	}
	var inner *ebpf.Map
	if err := d.objs.FpEgressGw.Lookup(uint32(0), &inner); err == nil {
		inner.Close()
		t.Error("fp_egress_gw still holds a trie")
	}
}

// TestEgressGatewayLocalSNAT: the client's node is the gateway; its egress
// hook SNATs the client's packets to the node's address and a port of
// the NAT range (checksums valid), and the uplink program turns the
// reply back to the client. An egress IP that is not the node's drops.
func TestEgressGatewayLocalSNAT(t *testing.T) {
	objs := egwObjects("n1")
	d, _ := loadOnLo(t, objs, "client")
	lo, _ := netlink.LinkByName("lo")
	if err := netlink.AddrAdd(lo, &netlink.Addr{IPNet: &net.IPNet{IP: node1IP.AsSlice(), Mask: net.CIDRMask(32, 32)}}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Apply(mustResolve(t, objs), "n1"); err != nil {
		t.Fatal(err)
	}
	if info := d.EgressGateways(); len(info) != 1 || !info[0].Gateway || info[0].Dropped != "" {
		t.Fatalf("egress gateways: %+v", info)
	}
	from, _ := d.Programs()
	_, _, tup := runOut(t, from, withChecksums(tcpPacket(clientIP, 34000, egwDest, 80, flagSYN)))
	if tup.src != node1IP || tup.dst != egwDest || tup.dport != 80 || tup.sport < EgressNATPortMin {
		t.Fatalf("SNATed packet %+v", tup)
	}
	// The same flow keeps its port.
	if _, _, again := runOut(t, from, withChecksums(tcpPacket(clientIP, 34000, egwDest, 80, flagACK))); again.sport != tup.sport {
		t.Fatalf("second packet from port %d, first %d", again.sport, tup.sport)
	}
	nats, err := d.EgressNATs()
	if err != nil || len(nats) != 1 || nats[0].Pod != netip.AddrPortFrom(clientIP, 34000) || nats[0].PodNode.IsValid() {
		t.Fatalf("NAT entries %+v, %v", nats, err)
	}
	// The reply, at the uplink.
	ret, _, back := runOut(t, d.objs.FpFromNetdev, withChecksums(tcpPacket(egwDest, 80, node1IP, tup.sport, flagSYN|flagACK)))
	if ret != actOK || back.dst != clientIP || back.dport != 34000 || back.src != egwDest {
		t.Fatalf("reply: verdict %d, %+v", ret, back)
	}
	// A packet to the egress IP on another port is not touched.
	if _, _, other := runOut(t, d.objs.FpFromNetdev, withChecksums(tcpPacket(egwDest, 80, node1IP, tup.sport+1, flagACK))); other.dst != node1IP {
		t.Fatalf("unrelated packet rewritten: %+v", other)
	}
	// UDP too; ICMP cannot be SNATed: dropped.
	if _, _, u := runOut(t, from, withChecksums(udpPacket(clientIP, 5353, egwDest, 53))); u.src != node1IP || u.sport < EgressNATPortMin {
		t.Fatalf("UDP: %+v", u)
	}
	echo := append(eth(0x0800), ipv4Header(clientIP, egwDest, 1, 8)...)
	echo = append(echo, 8, 0, 0, 0, 0, 1, 0, 1)
	d.expectVerdict(t, from, echo, actDrop, DropEgressGatewayNAT, model.Egress)

	// An egress IP that is not this node's: dropped, not sent with it.
	objs.EgressGatewayPolicies[0].Spec.Gateway.EgressIP = "198.18.0.99"
	if _, err := d.Apply(mustResolve(t, objs), "n1"); err != nil {
		t.Fatal(err)
	}
	if info := d.EgressGateways(); info[0].Dropped == "" {
		t.Fatalf("egress gateways: %+v", info)
	}
	d.expectVerdict(t, from, tcpPacket(clientIP, 34001, egwDest, 80, flagSYN), actDrop, DropNoEgressGateway, model.Egress)
}

// TestEgressGatewayFromTunnel: this node (n1) is the gateway of a policy
// that selects a remote cluster's pod. Its VXLAN packet (a real one, into
// the node's device) to the destination is SNATed with the sending node
// remembered, and the uplink program sends the reply back through the
// overlay to that node; a packet from the overlay to outside the mesh of
// an identity no policy gives this gateway is dropped.
func TestEgressGatewayFromTunnel(t *testing.T) {
	for _, typ := range TunnelTypes {
		t.Run(typ, func(t *testing.T) { testEgressGatewayFromTunnel(t, typ) })
	}
}

func testEgressGatewayFromTunnel(t *testing.T, typ string) {
	objs := egwObjects("n1")
	objs.Cluster = model.ClusterInfo{Name: "east", ID: 1}
	westClient := model.GlobalIdentity(2, 0x100)
	objs.Remote = []model.RemoteCluster{{Name: "west", ID: 2, Nodes: []model.Node{{Name: "w1", IP: netip.MustParseAddr("127.0.0.1")}},
		Endpoints: []model.RemoteEndpoint{{Namespace: "t", Name: "client", IP: netip.MustParseAddr("10.2.0.10"), Node: "w1", NodeIP: netip.MustParseAddr("127.0.0.1"),
			Identity: westClient, Labels: map[string]string{"app": "client", model.LabelNamespace: "t", model.LabelServiceAccount: "default", model.LabelCluster: "west"}}}}}
	// No endpoint on lo: the VXLAN packets travel over it (TestReturnTunnel).
	d, _ := loadOnLo(t, objs, "none")
	lo, _ := netlink.LinkByName("lo")
	if err := netlink.AddrAdd(lo, &netlink.Addr{IPNet: &net.IPNet{IP: node1IP.AsSlice(), Mask: net.CIDRMask(32, 32)}}); err != nil {
		t.Fatal(err)
	}
	enableTunnel(t, d, typ)
	if _, err := d.Apply(mustResolve(t, objs), "n1"); err != nil {
		t.Fatal(err)
	}
	if info := d.EgressGateways(); len(info) != 1 || !info[0].Gateway || info[0].Sources != 2 {
		t.Fatalf("egress gateways: %+v", info)
	}
	send := func(vni model.Identity, sport uint16) {
		t.Helper()
		sendOverlay(t, typ, overlayFrame(typ, vni, withChecksums(tcpPacket(netip.MustParseAddr("10.2.0.10"), sport, egwDest, 80, flagSYN))))
	}
	drops := d.count(t, DropNoEgressGateway, model.Ingress)
	send(westClient, 40000)
	send(model.GlobalIdentity(2, 0x101), 40001) // not selected
	var nats []EgressNAT
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		var err error
		if nats, err = d.EgressNATs(); err != nil {
			t.Fatal(err)
		}
		if len(nats) > 0 && d.count(t, DropNoEgressGateway, model.Ingress) > drops {
			break
		}
	}
	if len(nats) != 1 || nats[0].Pod != netip.MustParseAddrPort("10.2.0.10:40000") || nats[0].PodNode != netip.MustParseAddr("127.0.0.1") ||
		nats[0].EgressIP.Addr() != node1IP || nats[0].Dest != netip.AddrPortFrom(egwDest, 80) {
		t.Fatalf("NAT entries %+v", nats)
	}
	if got := d.count(t, DropNoEgressGateway, model.Ingress); got != drops+1 {
		t.Errorf("%d packets of an unselected identity dropped, want 1", got-drops)
	}
	// The reply goes back into the overlay, to the sending node.
	ret, _, back := runOut(t, d.objs.FpFromNetdev, withChecksums(tcpPacket(egwDest, 80, node1IP, nats[0].EgressIP.Port(), flagSYN|flagACK)))
	if ret != actRedirect || back.dst != netip.MustParseAddr("10.2.0.10") || back.dport != 40000 {
		t.Fatalf("reply: verdict %d, %+v", ret, back)
	}
}
