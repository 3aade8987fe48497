package kind

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/fastpath-bench/fastpath/datapath/agentapi"
	"github.com/fastpath-bench/fastpath/harness/cluster"
	"github.com/fastpath-bench/fastpath/harness/execx"
	"github.com/fastpath-bench/fastpath/harness/probe"
)

// kindEgressPolicy sends app=client's traffic to the upper half of the
// nodes' network, where the external host is, through west's node %s
// (the spec's name, as on netns: WriteState gives the API server the
// kind worker's).
const kindEgressPolicy = `apiVersion: fastpath.dev/v1alpha1
kind: EgressGatewayPolicy
metadata: {name: via-west%s}
spec:
  selectors: [{podSelector: {matchLabels: {app: client}}}]
  destinationCIDRs: [198.18.0.128/25]
  gateway: {cluster: west, node: %s}
`

// TestEgressGatewayOnKind: the egress gateway on two kind clusters of a
// mesh, east (node n1: pods client and other) and west (node n2: pod
// wclient). An EgressGatewayPolicy applied to both API servers sends
// app=client's traffic to the external host (198.18.0.254, on the nodes'
// Docker network) through n2. A TCP echo server on the external host
// records each connection's peer:
//   - east/client: encapsulated to n2, SNATed there to n2's address; the
//     echo comes back through the tunnel;
//   - west/wclient (on the gateway itself): SNATed to n2's address;
//   - east/other (not selected): arrives with its own pod address — a
//     kind node masquerades nothing (its nat table has Docker's DNS rules
//     only), and the external host routes east's pods through n1;
//   - the policy removed from west's API server only: west's gateway
//     drops what east still sends it, the connection fails, nothing
//     arrives; other is unaffected.
func TestEgressGatewayOnKind(t *testing.T) {
	ctx, nodeImage, img, id := meshTestEnv(t, "x")
	spec := cluster.Spec{RunID: id, Nodes: []string{"n1", "n2"},
		Clusters: []cluster.ClusterSpec{{Name: "east", ID: 1, Nodes: []string{"n1"}}, {Name: "west", ID: 2, Nodes: []string{"n2"}}},
		Pods: []cluster.PodSpec{
			{Namespace: "e2e", Name: "client", Node: "n1", Labels: map[string]string{"app": "client"}},
			{Namespace: "e2e", Name: "other", Node: "n1", Labels: map[string]string{"app": "other"}},
			{Namespace: "e2e", Name: "wclient", Node: "n2", Labels: map[string]string{"app": "client"}},
		}}
	start := time.Now()
	topo, err := Build(ctx, spec, TopologyOptions{NodeImage: nodeImage, AgentImage: img, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = topo.Destroy(context.Background()) })
	t.Logf("two clusters with pods in %s", time.Since(start).Round(time.Second))

	pods := map[string]netip.Addr{}
	for _, p := range topo.Pods() {
		pods[p.Name] = p.IP
	}
	n1, n2 := topo.NodeIP("n1"), topo.NodeIP("n2")
	ext := topo.ExternalNetns()
	if ext == "" || !n1.IsValid() || !n2.IsValid() || !pods["client"].IsValid() || !pods["other"].IsValid() || !pods["wclient"].IsValid() {
		t.Fatalf("external host %q, n1 %s, n2 %s, pods %v", ext, n1, n2, pods)
	}
	// A kind node does not masquerade its pods' traffic: the unselected
	// pod's connection arrives with its own address, and its reply
	// needs a route to east's pods.
	if nat, err := dockerOut(ctx, "exec", topo.KindNode("n1"), "iptables-save", "-t", "nat"); err != nil || strings.Contains(nat, "MASQUERADE") {
		t.Fatalf("n1's nat table (%v): masquerades?\n%s", err, nat)
	}
	if out, err := execx.Run(ctx, "ip", "-n", ext, "route", "add", MeshPodSubnet(0).String(), "via", n1.String()); err != nil {
		t.Fatalf("route on the external host: %v: %s", err, out)
	}
	srv, err := probe.Serve(ext, 8080, "TCP")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	peers := srv.Peers()

	policy := fmt.Sprintf(kindEgressPolicy, "", "n2")
	if _, err := topo.WriteState("egress.yaml", []byte(policy)); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	if err := topo.StartAgents(ctx, cluster.AgentOptions{Datapath: "ebpf"}); err != nil {
		t.Fatal(err)
	}
	waitEgressOnKind(t, ctx, topo, "n1", func(gs []agentapi.EgressGateway) bool {
		return len(gs) == 1 && !gs[0].Gateway && gs[0].EgressIP == n2.String() && gs[0].Sources == 1 && gs[0].Dropped == ""
	})
	waitEgressOnKind(t, ctx, topo, "n2", func(gs []agentapi.EgressGateway) bool {
		return len(gs) == 1 && gs[0].Gateway && gs[0].EgressIP == n2.String() && gs[0].Sources == 2 && gs[0].Dropped == ""
	})
	t.Logf("agents on ebpf, the policy programmed on both nodes, in %s", time.Since(start).Round(100*time.Millisecond))

	// connect opens a connection from pod to the external host and
	// returns its result and the peer the external host saw (none within
	// a second of the end: nothing arrived).
	connect := func(pod string) (probe.Result, netip.Addr) {
		t.Helper()
		for len(peers) > 0 {
			<-peers
		}
		r := probe.Connect(ctx, topo.PodNetns("e2e/"+pod), ExternalIP, 8080, "TCP", 2*time.Second)
		select {
		case p := <-peers:
			return r, p
		case <-time.After(time.Second):
			return r, netip.Addr{}
		}
	}
	for _, tc := range []struct {
		from, why string
		want      netip.Addr
	}{
		{"client", "SNATed by west's gateway n2", n2},
		{"wclient", "SNATed on the gateway itself", n2},
		{"other", "not selected: its own address", pods["other"]},
		{"client", "again", n2},
	} {
		r, peer := connect(tc.from)
		if !r.Connected || peer != tc.want {
			t.Errorf("%s (%s) -> external host: connected %v (%v), the destination saw %s, want %s (%s)", tc.from, pods[tc.from], r.Connected, r.Err, peer, tc.want, tc.why)
		} else {
			t.Logf("%s (%s) -> %s: seen as %s (%s)", tc.from, pods[tc.from], ExternalIP, peer, tc.why)
		}
	}

	// The policy in east's API server only: west's gateway no longer
	// SNATs for east's client and drops what east still sends it.
	eastOnly := fmt.Sprintf(kindEgressPolicy, ", annotations: {"+cluster.ClusterAnnotation+": east}", "n2")
	since := time.Now()
	tok, err := topo.WriteState("egress.yaml", []byte(eastOnly))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := topo.WaitProgrammed(ctx, tok, since); err != nil {
		t.Fatal(err)
	}
	waitEgressOnKind(t, ctx, topo, "n2", func(gs []agentapi.EgressGateway) bool { return len(gs) == 0 })
	waitEgressOnKind(t, ctx, topo, "n1", func(gs []agentapi.EgressGateway) bool {
		return len(gs) == 1 && gs[0].EgressIP == n2.String() && gs[0].Dropped == ""
	})
	if r, peer := connect("client"); r.Connected || peer.IsValid() {
		t.Errorf("client -> external host without the gateway's policy: connected %v, the destination saw %s", r.Connected, peer)
	} else {
		t.Logf("client -> %s without west's policy: refused (%v), nothing arrived", ExternalIP, r.Err)
	}
	if r, peer := connect("other"); !r.Connected || peer != pods["other"] {
		t.Errorf("other -> external host: connected %v (%v), seen as %s, want %s", r.Connected, r.Err, peer, pods["other"])
	}
}

// waitEgressOnKind waits until node's agent reports egress gateways that
// ok accepts.
func waitEgressOnKind(t *testing.T, ctx context.Context, topo *Topology, node string, ok func([]agentapi.EgressGateway) bool) {
	t.Helper()
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cl := topo.AgentClient(node)
	if _, err := cl.WaitFor(wctx, 50*time.Millisecond, func(s *agentapi.Status) bool {
		return s.Ready && ok(s.EgressGateways)
	}); err != nil {
		last, _ := cl.Status(ctx)
		var gs []agentapi.EgressGateway
		if last != nil {
			gs = last.EgressGateways
		}
		t.Fatalf("agent on %s: egress gateways %+v: %v", node, gs, err)
	}
}
