package netns

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/fastpath-bench/fastpath/harness/cluster"
	"github.com/fastpath-bench/fastpath/harness/probe"
)

// TestOverlappingPodAddress: two clusters share a pod address. East's
// client (node n1) and west's twin (node n2) both have address P; west's
// server admits app=client of cluster east only, and west's peer admits
// everyone. In west's ipcache P is twin's, so only the identity the
// overlay carries tells east's client apart, and only the flow the
// overlay remembered (fp_tunnel_flows) sends the server's replies back
// to east instead of to twin:
//   - east/client -> west/server and west/peer: TCP echo, the replies
//     back through the tunnel;
//   - west/twin -> west/server: denied (twin's labels are the client's,
//     its cluster is not);
//   - west/twin -> west/peer: connects, its replies stay local.
func TestOverlappingPodAddress(t *testing.T) {
	ctx := context.Background()
	shared := netip.MustParseAddr("198.19.1.50") // in n1's pod CIDR
	c, pods := eastWest(t, []cluster.PodSpec{
		{Namespace: "t", Name: "client", Node: "n1", IP: shared, Labels: map[string]string{"app": "client"}},
		{Namespace: "t", Name: "server", Node: "n2", Labels: map[string]string{"app": "server"}},
		{Namespace: "t", Name: "peer", Node: "n2", Labels: map[string]string{"app": "peer"}},
		{Namespace: "t", Name: "twin", Node: "n2", IP: shared, Labels: map[string]string{"app": "client"}},
	})
	for _, name := range []string{"server", "peer"} {
		srv, err := probe.Serve(c.PodNetns("t/"+name), 8080, "TCP")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { srv.Close() })
	}
	if _, err := c.WriteState("50-policy.yaml", []byte(`apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: from-east-clients
  namespace: t
  annotations: {`+cluster.ClusterAnnotation+`: west}
spec:
  podSelector: {matchLabels: {app: server}}
  policyTypes: [Ingress]
  ingress:
  - from: [{podSelector: {matchLabels: {app: client, io.cilium.k8s.policy.cluster: east}}}]
    ports: [{protocol: TCP, port: 8080}]
`)); err != nil {
		t.Fatal(err)
	}
	if err := c.StartAgents(ctx, cluster.AgentOptions{Datapath: "ebpf"}); err != nil {
		t.Fatal(err)
	}

	connect := func(ns, to string) probe.Result {
		return probe.Connect(ctx, ns, pods[to].IP, 8080, "TCP", time.Second)
	}
	client, twin := c.PodNetns("t/client"), c.PodNetns("t/twin")
	for _, tc := range []struct {
		from, ns, to string
		want         bool
	}{
		{"east/client", client, "server", true},
		{"east/client", client, "peer", true},
		{"west/twin", twin, "server", false},
		{"west/twin", twin, "peer", true},
		{"east/client", client, "server", true}, // again, after twin's flows
	} {
		if r := connect(tc.ns, tc.to); r.Connected != tc.want {
			t.Errorf("%s (%s) -> west/%s: connected %v, want %v (%v)", tc.from, shared, tc.to, r.Connected, tc.want, r.Err)
		}
	}
	if n := rxPackets(t, NodeNS(c.spec.RunID, "n1")); n == 0 {
		t.Error("no packet came back to n1 through the overlay")
	}
}
