package kind

import (
	"context"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/fastpath-bench/fastpath/harness/cluster"
	"github.com/fastpath-bench/fastpath/harness/probe"
	"github.com/fastpath-bench/fastpath/internal/testutil"
)

// TestMeshOnKind builds a two-cluster mesh on kind (two kind clusters on
// one Docker network, an etcd pod each, the agents with --tunnel vxlan
// and the mesh configuration): east's client reaches west's server
// through the overlay; a policy in west admits only cluster east's
// client by the cluster label (west's own pod is refused); west's
// agents see east's pods, east's agent publishes; east's etcd stopped
// (2 s lease), new connections from east fail within seconds; started
// again, they return. Nothing is left afterwards.
func TestMeshOnKind(t *testing.T) {
	ctx, nodeImage, img, id := meshTestEnv(t, "m")
	spec := cluster.Spec{RunID: id, Nodes: []string{"e1", "w1"}, MeshLeaseTTL: 2 * time.Second,
		Clusters: []cluster.ClusterSpec{{Name: "east", ID: 1, Nodes: []string{"e1"}}, {Name: "west", ID: 2, Nodes: []string{"w1"}}},
		Pods: []cluster.PodSpec{
			{Namespace: "e2e", Name: "client", Node: "e1", Labels: map[string]string{"app": "client"}},
			{Namespace: "e2e", Name: "local", Node: "w1", Labels: map[string]string{"app": "client"}},
			{Namespace: "e2e", Name: "server", Node: "w1", Labels: map[string]string{"app": "server"}, Ports: []cluster.Port{{Port: 8080, Protocol: "TCP"}}},
		}}
	start := time.Now()
	retain := os.Getenv("FASTPATH_KIND_RETAIN") == "1"
	topo, err := Build(ctx, spec, TopologyOptions{NodeImage: nodeImage, AgentImage: img, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	destroyed := false
	t.Cleanup(func() {
		if !destroyed && !(retain && t.Failed()) {
			_ = topo.Destroy(context.Background())
		}
	})
	t.Logf("two clusters with agents and pods in %s", time.Since(start).Round(time.Second))
	start = time.Now()
	if err := topo.StartAgents(ctx, cluster.AgentOptions{Datapath: "ebpf"}); err != nil {
		t.Fatal(err)
	}
	t.Logf("agents on ebpf, every peer's pods programmed, in %s", time.Since(start).Round(100*time.Millisecond))
	for _, n := range []string{"e1", "w1"} {
		st, err := topo.AgentClient(n).Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mesh == nil || st.Mesh.Cluster != topo.ClusterOf(n) || !st.Mesh.Publishing || len(st.Mesh.Peers) != 1 {
			t.Fatalf("agent on %s: mesh %+v", n, st.Mesh)
		}
	}
	var server netip.Addr
	for _, p := range topo.Pods() {
		if p.Name == "server" {
			server = p.IP
		}
	}
	if !topo.Member("west").NodeIP("w1").IsValid() || !topo.NodeIP("w1").IsValid() || server == (netip.Addr{}) {
		t.Fatalf("addresses: server %s", server)
	}
	srv, err := probe.Serve(topo.PodNetns("e2e/server"), 8080, "TCP")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	connect := func(from string) bool {
		return probe.Connect(ctx, topo.PodNetns("e2e/"+from), server, 8080, "TCP", time.Second).Connected
	}
	if !connect("client") || !connect("local") {
		t.Fatal("no policy: client (east) or local (west) cannot reach west's server")
	}
	policy := []byte(`apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: from-east
  namespace: e2e
  annotations: {fastpath.dev/cluster: west}
spec:
  podSelector: {matchLabels: {app: server}}
  ingress:
  - from:
    - podSelector: {matchLabels: {app: client, io.cilium.k8s.policy.cluster: east}}
`)
	since := time.Now()
	tok, err := topo.WriteState("policy.yaml", policy)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(tok, cluster.MeshTokenPrefix) {
		t.Fatalf("token %q", tok)
	}
	if _, err := topo.WaitProgrammed(ctx, tok, since); err != nil {
		t.Fatal(err)
	}
	if !connect("client") {
		t.Error("east's client refused by a policy admitting it by cluster label")
	}
	if connect("local") {
		t.Error("west's own pod admitted by a policy for cluster east only")
	}
	// Partition: east's etcd stops; west forgets east's identities a
	// lease TTL later, and east's new connections fail closed.
	stop := time.Now()
	if err := topo.StopControlPlane("east"); err != nil {
		t.Fatal(err)
	}
	stopped := time.Since(stop)
	failed := time.Duration(0)
	for time.Since(stop) < 30*time.Second {
		if !connect("client") {
			failed = time.Since(stop)
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if failed == 0 {
		t.Fatal("east's client still admitted 30 s after east's etcd stopped")
	}
	t.Logf("east's etcd pod deleted in %s; east's client refused %s after the stop began", stopped.Round(10*time.Millisecond), failed.Round(10*time.Millisecond))
	back := time.Now()
	if err := topo.StartControlPlane("east"); err != nil {
		t.Fatal(err)
	}
	ok := false
	for time.Since(back) < time.Minute {
		if connect("client") {
			ok = true
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if !ok {
		t.Fatal("east's client still refused a minute after east's etcd started again")
	}
	t.Logf("east's etcd back: client admitted again after %s", time.Since(back).Round(10*time.Millisecond))

	srv.Close()
	if err := topo.Destroy(ctx); err != nil {
		t.Fatal(err)
	}
	destroyed = true
	for _, name := range []string{id + "-east", id + "-west"} {
		left, err := dockerOut(ctx, "ps", "-a", "-q", "--filter", "label=io.x-k8s.kind.cluster="+name)
		if err != nil || strings.TrimSpace(left) != "" {
			t.Fatalf("containers of %s left: %q (%v)", name, left, err)
		}
	}
}

// meshTestEnv is what a mesh test on kind starts from: a context of 15
// minutes, the node image (skipped without kind; preflight passed), the
// agent image, and a run id with letter.
func meshTestEnv(t *testing.T, letter string) (ctx context.Context, nodeImage, agentImg, id string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	t.Cleanup(cancel)
	nodeImage = requireKind(t, ctx)
	if err := Preflight(ctx, nodeImage); err != nil {
		t.Fatal(err)
	}
	_, agentImg = agentImage(t, ctx)
	return ctx, nodeImage, agentImg, strings.Replace(testutil.RunID(letter), "fp-t", NamePrefix+"t", 1)
}
