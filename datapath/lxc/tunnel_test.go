package lxc

import (
	"net/netip"
	"testing"

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
