package lxc

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fastpath-bench/fastpath/datapath/model"
	"github.com/fastpath-bench/fastpath/internal/testutil"
)

// enableTunnel turns the overlay of type typ on, skipping the test on a
// kernel without that device type (this host's has no Geneve; the VM
// kernels of the matrix have it as a module).
func enableTunnel(t *testing.T, d *Datapath, typ string) {
	t.Helper()
	if err := d.EnableTunnel(TunnelOptions{Type: typ}); err != nil {
		if errors.Is(err, unix.EOPNOTSUPP) {
			testutil.SkipOrFail(t, true, err.Error())
		}
		t.Fatal(err)
	}
}

// identityOpt is the Geneve option carrying identity (bpf/lib/tunnel.h).
func identityOpt(identity uint32) []byte {
	o := make([]byte, 8)
	binary.BigEndian.PutUint16(o, TunnelOptClass)
	o[2] = TunnelOptType
	o[3] = TunnelOptLen
	binary.BigEndian.PutUint32(o[4:], identity)
	return o
}

// geneveFrame is a Geneve payload: header with vni and opts (a multiple
// of 4 bytes), then inner (an Ethernet frame; its destination becomes
// TunnelMAC).
func geneveFrame(vni uint32, opts, inner []byte) []byte {
	b := make([]byte, 8, 8+len(opts)+len(inner))
	b[0] = byte(len(opts) / 4) // version 0, option length in words
	binary.BigEndian.PutUint16(b[2:], 0x6558)
	binary.BigEndian.PutUint32(b[4:], vni<<8)
	b = append(b, opts...)
	off := len(b)
	b = append(b, inner...)
	copy(b[off:off+6], TunnelMAC)
	return b
}

// overlayFrame is what node 127.0.0.1 sends for a pod with identity:
// VXLAN with it as VNI, or Geneve with VNI 0 and the identity option.
func overlayFrame(typ string, identity model.Identity, inner []byte) []byte {
	if typ == TunnelGeneve {
		return geneveFrame(0, identityOpt(uint32(identity)), inner)
	}
	vni := uint32(identity)
	b := append([]byte{0x08, 0, 0, 0, byte(vni >> 16), byte(vni >> 8), byte(vni), 0}, inner...)
	copy(b[8:14], TunnelMAC)
	return b
}

// sendOverlay sends frame (overlayFrame) from 127.0.0.1 to the overlay
// device of type typ in the test's network namespace.
func sendOverlay(t *testing.T, typ string, frame []byte) {
	t.Helper()
	port := TunnelPort
	if typ == TunnelGeneve {
		port = GenevePort
	}
	conn, err := net.DialUDP("udp4", nil, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write(frame); err != nil {
		t.Fatal(err)
	}
}

// TestGeneveIdentity: with the Geneve overlay the sender's identity
// travels in the option, and fp_from_tunnel takes it from there (real
// Geneve packets into the node's device, observed in fp_tunnel_flows,
// which records the identity a flow came with): the VNI is ignored, and
// a packet without exactly the option, or with a malformed one, is
// dropped (DROP_NO_TUNNEL_OPT). The reply of such a flow goes back
// through the Geneve device (tunnel_send with the option).
func TestGeneveIdentity(t *testing.T) {
	objs := testObjects()
	objs.Cluster = model.ClusterInfo{Name: "east", ID: 1}
	objs.Nodes = []corev1.Node{
		{ObjectMeta: metav1.ObjectMeta{Name: "n1"}, Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "198.18.0.1"}}}},
	}
	remoteID := model.GlobalIdentity(2, 0x100)
	otherID := model.GlobalIdentity(2, 0x101)
	objs.Remote = []model.RemoteCluster{{Name: "west", ID: 2, Nodes: []model.Node{{Name: "w1", IP: netip.MustParseAddr("172.16.0.1")}},
		Endpoints: []model.RemoteEndpoint{{Namespace: "t", Name: "client", IP: clientIP, Node: "w1", NodeIP: netip.MustParseAddr("172.16.0.1"),
			Identity: remoteID, Labels: map[string]string{"app": "client", model.LabelNamespace: "t", model.LabelServiceAccount: "default", model.LabelCluster: "west"}}}}}
	d, _ := loadOnLo(t, objs, "none")
	enableTunnel(t, d, TunnelGeneve)
	if d.TunnelDeviceName() != GeneveDevice || d.TunnelType() != TunnelGeneve {
		t.Fatalf("overlay %s/%s", d.TunnelDeviceName(), d.TunnelType())
	}
	l, err := netlink.LinkByName(GeneveDevice)
	if err != nil {
		t.Fatal(err)
	}
	if g, ok := l.(*netlink.Geneve); !ok || !g.FlowBased || int(g.Dport) != GenevePort || g.HardwareAddr.String() != TunnelMAC.String() || g.MTU != 1442 {
		t.Fatalf("device %#v", l)
	}
	var cfg lxcTunnelConfig
	if err := d.objs.FpTunnel.Lookup(uint32(0), &cfg); err != nil || cfg.Ifindex != uint32(l.Attrs().Index) || cfg.Type != uint32(lxcTunnelTypeTUNNEL_TYPE_GENEVE) {
		t.Fatalf("fp_tunnel %+v, %v", cfg, err)
	}

	key := func(peerPort uint16) lxcTunnelFlowKey {
		return lxcTunnelFlowKey{Saddr: be32(serverIP), Daddr: be32(clientIP), Sport: htons(8080), Dport: htons(peerPort), Proto: 6}
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
	syn := func(sport uint16) []byte { return tcpPacket(clientIP, sport, serverIP, 8080, flagSYN) }

	// The option's identity, not the VNI's, is the flow's.
	sendOverlay(t, TunnelGeneve, geneveFrame(uint32(otherID), identityOpt(uint32(remoteID)), syn(40000)))
	v, ok := waitFlow(key(40000))
	if !ok {
		t.Fatal("no fp_tunnel_flows entry for a Geneve packet with the identity option")
	}
	if v.Remote != be32(netip.MustParseAddr("127.0.0.1")) || v.Identity != uint32(remoteID) {
		t.Fatalf("entry %+v, want remote 127.0.0.1 and the option's identity %d (VNI %d)", v, remoteID, otherID)
	}

	// Malformed or missing options: dropped, counted, no entry.
	opt := identityOpt(uint32(remoteID))
	with := func(i int, b byte) []byte { o := append([]byte(nil), opt...); o[i] = b; return o }
	unknown := []byte{0x01, 0x4b, 0x01, 0x01, 0, 0, 0, 0}
	bad := []struct {
		name string
		opts []byte
	}{
		{"no option (identity in the VNI)", nil},
		{"another class", with(0, 0x01)},
		{"another type", with(2, 0x01)},
		{"not critical", with(2, TunnelOptType&0x7f)},
		{"identity above 24 bits", with(4, 0x01)},
		{"length 2", append(with(3, 2), 0, 0, 0, 0)},
		{"a second option after it", append(append([]byte(nil), opt...), unknown...)},
		{"another option before it", append(append([]byte(nil), unknown...), opt...)},
	}
	before := d.count(t, DropNoTunnelOpt, model.Ingress)
	for i, c := range bad {
		sendOverlay(t, TunnelGeneve, geneveFrame(uint32(remoteID), c.opts, syn(uint16(41000+i))))
	}
	// A good packet after them: once its entry is there, all were seen.
	sendOverlay(t, TunnelGeneve, geneveFrame(0, opt, syn(40001)))
	if _, ok := waitFlow(key(40001)); !ok {
		t.Fatal("no entry for the packet after the malformed ones")
	}
	if got := d.count(t, DropNoTunnelOpt, model.Ingress) - before; got != uint64(len(bad)) {
		t.Errorf("%d packets dropped with %s, want %d", got, DropNoTunnelOpt, len(bad))
	}
	for i, c := range bad {
		if err := d.objs.FpTunnelFlows.Lookup(key(uint16(41000+i)), &v); err == nil {
			t.Errorf("%s: an entry %+v", c.name, v)
		}
	}
	if DropNoTunnelOpt.String() != "DROP_NO_TUNNEL_OPT" || !DropNoTunnelOpt.IsDrop() {
		t.Errorf("reason %s", DropNoTunnelOpt)
	}

	// The reply goes back through the Geneve device.
	d.opts.InterfaceName = func(ep *model.Endpoint) string {
		if ep.Name == "server" {
			return "lo"
		}
		return "absent-" + ep.Name
	}
	if st, err := d.Apply(mustResolve(t, objs), "n1"); err != nil || st.Endpoints != 1 {
		t.Fatalf("apply: %+v, %v", st, err)
	}
	from, to := d.Programs()
	if got := runMarked(t, to, syn(40000), tunnelMark(remoteID)); got != actOK {
		t.Fatalf("west's client -> server: verdict %d", got)
	}
	d.expectVerdict(t, from, tcpPacket(serverIP, 8080, clientIP, 40000, flagSYN|flagACK), actRedirect, ReasonReply, model.Egress)
}
