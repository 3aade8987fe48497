package lxc

import (
	"net"
	"net/netip"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fastpath-bench/fastpath/datapath/model"
)

// tunnelMark is tunnel_mark of bpf/lib/proxy.h.
func tunnelMark(id model.Identity) uint32 {
	return uint32(id&0xffff)<<16 | uint32(id>>16)&0xff | uint32(lxcProxyMarkMARK_FROM_TUNNEL)
}

// TestIdentityFromTunnel: the server's ingress policy admits app=client
// only. A packet that came through the overlay is judged by the identity
// its tunnel carried (the mark fp_from_tunnel sets), not by its source
// address: the client's address with another pod's identity is dropped,
// another pod's address with the client's identity passes. Without the
// mark the address decides, as on a routed network.
func TestIdentityFromTunnel(t *testing.T) {
	objs := testObjects()
	d := loadServerOnLo(t, objs)
	_, to := d.Programs()
	r := mustResolve(t, objs)
	idOf := func(ip string) model.Identity {
		ep, ok := r.EndpointByIP(netip.MustParseAddr(ip))
		if !ok {
			t.Fatalf("no endpoint %s", ip)
		}
		return ep.Identity
	}
	client, other := idOf(clientIP.String()), idOf(otherIP.String())
	if client == other {
		t.Fatal("client and other share an identity")
	}
	for i, c := range []struct {
		name string
		from string
		mark uint32
		want uint32
	}{
		{"client address, client identity", clientIP.String(), tunnelMark(client), actOK},
		{"client address forged by another pod", clientIP.String(), tunnelMark(other), actDrop},
		{"other address, client identity", otherIP.String(), tunnelMark(client), actOK},
		{"other address, no tunnel", otherIP.String(), 0, actDrop},
		{"client address, no tunnel", clientIP.String(), 0, actOK},
		{"client address, identity of a 24-bit cluster identity", clientIP.String(), tunnelMark(client | 7<<16), actDrop},
	} {
		pkt := tcpPacket(netip.MustParseAddr(c.from), uint16(31000+i), serverIP, 8080, flagSYN)
		if got := runMarked(t, to, pkt, c.mark); got != c.want {
			t.Errorf("%s: verdict %d, want %d", c.name, got, c.want)
		}
	}
	if got := tunnelMark(0x12abcd); got>>16 != 0xabcd || got&0xff != 0x12 || got&0x0f00 != 0x0e00 {
		t.Errorf("mark layout %#x", got)
	}
}

// TestRemotePeers: pods of another cluster of the mesh are peers. They
// get the ipcache entries the overlay needs (their global identity, their
// node as tunnel endpoint), and the local pod's egress policy, which
// admits app=a of cluster west only, is enforced against them by those
// identities.
func TestRemotePeers(t *testing.T) {
	objs := testObjects()
	objs.Cluster = model.ClusterInfo{Name: "east", ID: 1}
	remote := func(cluster string, id uint8, local model.Identity, name, ip, nodeIP string, app string) model.RemoteEndpoint {
		return model.RemoteEndpoint{Namespace: "t", Name: name, IP: netip.MustParseAddr(ip), Node: "w1", NodeIP: netip.MustParseAddr(nodeIP),
			Identity: model.GlobalIdentity(id, local),
			Labels:   map[string]string{"app": app, model.LabelNamespace: "t", model.LabelServiceAccount: "default", model.LabelCluster: cluster}}
	}
	objs.Remote = []model.RemoteCluster{
		{Name: "west", ID: 2, Nodes: []model.Node{{Name: "w1", IP: netip.MustParseAddr("172.16.0.1")}}, Endpoints: []model.RemoteEndpoint{
			remote("west", 2, 0x100, "a", "10.2.0.10", "172.16.0.1", "a"),
			remote("west", 2, 0x101, "b", "10.2.0.11", "172.16.0.1", "b"),
		}},
		{Name: "north", ID: 3, Nodes: []model.Node{{Name: "w1", IP: netip.MustParseAddr("172.17.0.1")}}, Endpoints: []model.RemoteEndpoint{
			remote("north", 3, 0x100, "a", "10.3.0.10", "172.17.0.1", "a"),
		}},
	}
	objs.NetworkPolicies = append(objs.NetworkPolicies, networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "to-west-a", Namespace: "t"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "client"}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress},
			Egress: []networkingv1.NetworkPolicyEgressRule{{To: []networkingv1.NetworkPolicyPeer{{
				PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "a", model.LabelCluster: "west"}},
			}}}},
		},
	})
	d := loadClientOnLo(t, objs)
	from, _ := d.Programs()
	var v lxcIpcacheValue
	if err := d.objs.FpIpcache.Lookup(lxcIpcacheKey{Prefixlen: 32, Addr: be32(netip.MustParseAddr("10.2.0.10"))}, &v); err != nil {
		t.Fatal(err)
	}
	if v.Identity != uint32(model.GlobalIdentity(2, 0x100)) || v.TunnelEndpoint != be32(netip.MustParseAddr("172.16.0.1")) {
		t.Fatalf("ipcache of west/t/a: %+v", v)
	}
	for i, c := range []struct {
		to   string
		want uint32
	}{
		{"10.2.0.10", actOK},   // west's app=a
		{"10.2.0.11", actDrop}, // west's app=b
		{"10.3.0.10", actDrop}, // north's app=a: another cluster
	} {
		pkt := tcpPacket(clientIP, uint16(32000+i), netip.MustParseAddr(c.to), 80, flagSYN)
		if got := run(t, from, pkt); got != c.want {
			t.Errorf("client -> %s: verdict %d, want %d", c.to, got, c.want)
		}
	}
}

// TestReturnTunnel: clusters may share pod addresses, and an address a
// local pod has is the local pod's in the ipcache. A connection that
// comes through the overlay from a remote pod with such an address is
// remembered by fp_from_tunnel (a real VXLAN packet into the node's
// device, keyed by the tuple of its replies, with the sending node and
// the VNI), and the server's replies go back through the tunnel to that
// node instead of to the local pod of that address; the local pod's own
// flows, and a flow whose address the ipcache does lead back, are not
// touched.
func TestReturnTunnel(t *testing.T) {
	objs := testObjects()
	objs.Cluster = model.ClusterInfo{Name: "east", ID: 1}
	// A node whose pods the ipcache sends through the tunnel to the
	// loopback address the test's VXLAN packets come from.
	objs.Nodes = []corev1.Node{
		{ObjectMeta: metav1.ObjectMeta{Name: "n1"}, Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "198.18.0.1"}}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "n2"}, Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "127.0.0.1"}}}},
	}
	far := pod("far", netip.MustParseAddr("10.0.0.9"), map[string]string{"app": "client"})
	far.Spec.NodeName = "n2"
	objs.Pods = append(objs.Pods, far)
	// West's client has east's client's address (shadowed: the ipcache
	// keeps the local pod).
	remoteID := model.GlobalIdentity(2, 0x100)
	objs.Remote = []model.RemoteCluster{{Name: "west", ID: 2, Nodes: []model.Node{{Name: "w1", IP: netip.MustParseAddr("172.16.0.1")}},
		Endpoints: []model.RemoteEndpoint{{Namespace: "t", Name: "client", IP: clientIP, Node: "w1", NodeIP: netip.MustParseAddr("172.16.0.1"),
			Identity: remoteID, Labels: map[string]string{"app": "client", model.LabelNamespace: "t", model.LabelServiceAccount: "default", model.LabelCluster: "west"}}}}}
	// The VXLAN packets travel over lo, where the server's programs
	// would judge them as packets into the server: it is bound to lo
	// only after they came through.
	d, _ := loadOnLo(t, objs, "none")
	if err := d.EnableTunnel(TunnelOptions{}); err != nil {
		t.Fatal(err)
	}
	from, to := d.Programs()
	var cv lxcIpcacheValue
	if err := d.objs.FpIpcache.Lookup(lxcIpcacheKey{Prefixlen: 32, Addr: be32(clientIP)}, &cv); err != nil || cv.TunnelEndpoint != 0 {
		t.Fatalf("ipcache of the shared address: %+v, %v (want the local pod's)", cv, err)
	}

	// West's client opens a connection from port 40000: a VXLAN packet
	// into fp_vxlan from 127.0.0.1 (the "node" it came from).
	sendVXLAN := func(vni model.Identity, src netip.Addr, sport uint16) {
		t.Helper()
		inner := tcpPacket(src, sport, serverIP, 8080, flagSYN)
		copy(inner[0:6], TunnelMAC)
		frame := append([]byte{0x08, 0, 0, 0, byte(vni >> 16), byte(vni >> 8), byte(vni), 0}, inner...)
		conn, err := net.DialUDP("udp4", nil, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: TunnelPort})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if _, err := conn.Write(frame); err != nil {
			t.Fatal(err)
		}
	}
	key := func(peer netip.Addr, peerPort uint16) lxcTunnelFlowKey {
		return lxcTunnelFlowKey{Saddr: be32(serverIP), Daddr: be32(peer), Sport: htons(8080), Dport: htons(peerPort), Proto: 6}
	}
	waitFlow := func(k lxcTunnelFlowKey) (lxcTunnelFlow, bool) {
		var v lxcTunnelFlow
		for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			if err := d.objs.FpTunnelFlows.Lookup(k, &v); err == nil {
				return v, true
			}
		}
		return v, false
	}
	sendVXLAN(remoteID, clientIP, 40000)
	v, ok := waitFlow(key(clientIP, 40000))
	if !ok {
		t.Fatal("no fp_tunnel_flows entry for the connection from the overlay")
	}
	if v.Remote != be32(netip.MustParseAddr("127.0.0.1")) || v.Identity != uint32(remoteID) || v.ExpiresNs == 0 {
		t.Fatalf("fp_tunnel_flows entry %+v, want remote 127.0.0.1 and identity %d", v, remoteID)
	}
	// A pod whose address the ipcache leads back to that node needs none.
	sendVXLAN(remoteID, netip.MustParseAddr("10.0.0.9"), 40001)
	sendVXLAN(remoteID, clientIP, 40002) // after it: both are processed once this one is
	if _, ok := waitFlow(key(clientIP, 40002)); !ok {
		t.Fatal("no entry for the second connection")
	}
	if err := d.objs.FpTunnelFlows.Lookup(key(netip.MustParseAddr("10.0.0.9"), 40001), &v); err == nil {
		t.Fatal("an entry for a flow the ipcache leads back")
	}

	d.opts.InterfaceName = func(ep *model.Endpoint) string {
		if ep.Name == "server" {
			return "lo"
		}
		return "absent-" + ep.Name
	}
	if st, err := d.Apply(mustResolve(t, objs), "n1"); err != nil || st.Endpoints != 1 {
		t.Fatalf("apply: %+v, %v", st, err)
	}

	// The connection reaches the server (the VNI's identity is west's
	// app=client, which the server admits); its reply goes back through
	// the tunnel, though the ipcache has a local pod at that address.
	syn := tcpPacket(clientIP, 40000, serverIP, 8080, flagSYN)
	if got := runMarked(t, to, syn, tunnelMark(remoteID)); got != actOK {
		t.Fatalf("west's client -> server: verdict %d", got)
	}
	d.expectVerdict(t, from, tcpPacket(serverIP, 8080, clientIP, 40000, flagSYN|flagACK), actRedirect, ReasonReply, model.Egress)
	// The local client's own connection (another port) is answered locally.
	if got := run(t, to, tcpPacket(clientIP, 41000, serverIP, 8080, flagSYN)); got != actOK {
		t.Fatalf("local client -> server: verdict %d", got)
	}
	d.expectVerdict(t, from, tcpPacket(serverIP, 8080, clientIP, 41000, flagSYN|flagACK), actOK, ReasonReply, model.Egress)
}
