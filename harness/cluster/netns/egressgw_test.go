package netns

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/fastpath-bench/fastpath/datapath/agentapi"
	"github.com/fastpath-bench/fastpath/harness/cluster"
	"github.com/fastpath-bench/fastpath/harness/execx"
	"github.com/fastpath-bench/fastpath/harness/probe"
)

// egressPolicy sends app=client's traffic to the upper half of the
// nodes' network, where the external host is, through node n2 of west.
const egressPolicy = `---
apiVersion: fastpath.dev/v1alpha1
kind: EgressGatewayPolicy
metadata: {name: via-west}
spec:
  selectors: [{podSelector: {matchLabels: {app: client}}}]
  destinationCIDRs: [198.18.0.128/25]
  gateway: {cluster: west, node: n2}
`

// TestEgressGateway: two clusters, east (node n1: pods client and other)
// and west (node n2: pod wclient), joined over the overlay. An
// EgressGatewayPolicy in both clusters' state sends app=client's traffic
// to the external host through n2. A TCP echo server on the external
// host records each connection's peer:
//   - east/client (its gateway in the other cluster): encapsulated to n2,
//     SNATed there to n2's address; the echo comes back through the
//     tunnel;
//   - west/wclient (on the gateway itself): SNATed to n2's address too;
//   - east/other (not selected): arrives with its own address (the test
//     routes the pods' CIDR from the external host to n1);
//   - without the policy in west's state, west's gateway drops what east
//     still sends it: the connection fails, nothing arrives with the
//     client's own address.
func TestEgressGateway(t *testing.T) {
	ctx := context.Background()
	c, pods := eastWest(t, []cluster.PodSpec{
		{Namespace: "t", Name: "client", Node: "n1", Labels: map[string]string{"app": "client"}},
		{Namespace: "t", Name: "other", Node: "n1", Labels: map[string]string{"app": "other"}},
		{Namespace: "t", Name: "wclient", Node: "n2", Labels: map[string]string{"app": "client"}},
	})
	ext := c.ExternalNetns()
	// The external host reaches east's pods through n1 (only the
	// unselected pod's connection needs it).
	if out, err := execx.Run(ctx, "ip", "-n", ext, "route", "add", PodCIDR(0).String(), "via", NodeIP(0).String()); err != nil {
		t.Fatalf("route on the external host: %v: %s", err, out)
	}
	srv, err := probe.Serve(ext, 8080, "TCP")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	peers := srv.Peers()

	// The policy in both clusters' state.
	if _, err := c.WriteState("50-egress.yaml", []byte(egressPolicy)); err != nil {
		t.Fatal(err)
	}
	if err := c.StartAgents(ctx, cluster.AgentOptions{Datapath: "ebpf"}); err != nil {
		t.Fatal(err)
	}
	east, west := c.AgentSocket("n1"), c.AgentSocket("n2")
	waitEgress(t, east, func(gs []agentapi.EgressGateway) bool {
		return len(gs) == 1 && !gs[0].Gateway && gs[0].EgressIP == NodeIP(1).String() && gs[0].Dropped == ""
	})
	waitEgress(t, west, func(gs []agentapi.EgressGateway) bool {
		return len(gs) == 1 && gs[0].Gateway && gs[0].Sources == 2 && gs[0].Dropped == ""
	})

	connect := func(from string) (probe.Result, netip.Addr) {
		t.Helper()
		r := probe.Connect(ctx, c.PodNetns("t/"+from), ExternalAddr(), 8080, "TCP", 2*time.Second)
		select {
		case p := <-peers:
			return r, p
		case <-time.After(100 * time.Millisecond):
			return r, netip.Addr{}
		}
	}
	for _, tc := range []struct {
		from string
		want netip.Addr
	}{
		{"client", NodeIP(1)},
		{"wclient", NodeIP(1)},
		{"other", pods["other"].IP},
		{"client", NodeIP(1)},
	} {
		r, peer := connect(tc.from)
		if !r.Connected || peer != tc.want {
			t.Errorf("%s -> external host: connected %v (%v), the destination saw %s, want %s", tc.from, r.Connected, r.Err, peer, tc.want)
		} else {
			t.Logf("%s (%s) -> %s: seen as %s", tc.from, pods[tc.from].IP, ExternalAddr(), peer)
		}
	}

	// West no longer holds the policy: its gateway SNATs nothing for
	// east, and drops what east still sends it.
	eastOnly := strings.Replace(egressPolicy, "metadata: {name: via-west}", "metadata: {name: via-west, annotations: {"+cluster.ClusterAnnotation+": east}}", 1)
	if _, err := c.WriteState("50-egress.yaml", []byte(eastOnly)); err != nil {
		t.Fatal(err)
	}
	waitEgress(t, west, func(gs []agentapi.EgressGateway) bool { return len(gs) == 0 })
	if r, peer := connect("client"); r.Connected || peer.IsValid() {
		t.Errorf("client -> external host without the gateway's policy: connected %v, the destination saw %s", r.Connected, peer)
	}
	if r, peer := connect("other"); !r.Connected || peer != pods["other"].IP {
		t.Errorf("other -> external host: connected %v (%v), seen as %s", r.Connected, r.Err, peer)
	}
}

// waitEgress waits until the agent at socket reports egress gateways
// that ok accepts.
func waitEgress(t *testing.T, socket string, ok func([]agentapi.EgressGateway) bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := agentapi.NewClient(socket).WaitFor(ctx, 20*time.Millisecond, func(s *agentapi.Status) bool {
		return s.Ready && ok(s.EgressGateways)
	}); err != nil {
		last, _ := agentapi.NewClient(socket).Status(context.Background())
		t.Fatalf("agent at %s: egress gateways %+v: %v", socket, last.EgressGateways, err)
	}
}
