package netns

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fastpath-bench/fastpath/harness/cluster"
	"github.com/fastpath-bench/fastpath/harness/probe"
	"github.com/fastpath-bench/fastpath/internal/testutil"
)

// TestMeshTopology builds a two-cluster mesh through the provider
// (Spec.Clusters): each cluster gets its own state and etcd, the agents
// join the mesh, a policy written for one cluster only (the cluster
// annotation) selects the other cluster's pods by cluster label, and
// stopping a cluster's control plane makes the other forget its pods.
func TestMeshTopology(t *testing.T) {
	testutil.RequireRoot(t)
	ctx := context.Background()
	logDir := agentLogDir(t)
	c, err := NewProvider(Options{AgentBinary: agentBin}).Create(ctx, cluster.Spec{
		RunID: runID(t),
		Nodes: []string{"e1", "w1", "w2"},
		Pods: []cluster.PodSpec{
			{Namespace: "t", Name: "client", Node: "e1", Labels: map[string]string{"app": "client"}},
			{Namespace: "t", Name: "wclient", Node: "w2", Labels: map[string]string{"app": "client"}},
			{Namespace: "t", Name: "server", Node: "w1", Labels: map[string]string{"app": "server"}},
		},
		Clusters: []cluster.ClusterSpec{
			{Name: "east", ID: 1, Nodes: []string{"e1"}},
			{Name: "west", ID: 2, Nodes: []string{"w1", "w2"}},
		},
		MeshLeaseTTL: 2 * time.Second,
		LogDir:       logDir,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Destroy(context.Background()) })
	if got := c.ClusterOf("w2"); got != "west" {
		t.Fatalf("ClusterOf(w2) = %q", got)
	}
	srv, err := probe.Serve(c.PodNetns("t/server"), 8080, "TCP")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	if err := c.StartAgents(ctx, cluster.AgentOptions{Datapath: "ebpf"}); err != nil {
		t.Fatal(err)
	}
	// East's state has only east's pod; west's both of west's.
	b, err := os.ReadFile(filepath.Join(c.ClusterStateDir("east"), "00-cluster.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "name: client") || strings.Contains(string(b), "name: server") {
		t.Fatalf("east's cluster state:\n%s", b)
	}

	policy := `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: from-east
  namespace: t
  annotations: {` + cluster.ClusterAnnotation + `: west}
spec:
  podSelector: {matchLabels: {app: server}}
  policyTypes: [Ingress]
  ingress:
  - from: [{podSelector: {matchLabels: {app: client, io.cilium.k8s.policy.cluster: east}}}]
`
	token, err := c.WriteState("50-policy.yaml", []byte(policy))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(token, cluster.MeshTokenPrefix) {
		t.Fatalf("token %q", token)
	}
	if _, err := os.Stat(filepath.Join(c.ClusterStateDir("east"), "50-policy.yaml")); !os.IsNotExist(err) {
		t.Fatalf("west's policy was written to east's state too (%v)", err)
	}
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if _, err := c.WaitProgrammed(wctx, token, time.Now()); err != nil {
		t.Fatal(err)
	}
	connect := func(from string) probe.Result {
		return probe.Connect(ctx, c.PodNetns("t/"+from), c.pod("server").IP, 8080, "TCP", time.Second)
	}
	if r := connect("client"); !r.Connected {
		t.Fatalf("east/client -> west/server: %v", r.Err)
	}
	if r := connect("wclient"); r.Connected {
		t.Fatal("west/wclient -> west/server connected: the policy admits east's clients only")
	}

	// A bad annotation is refused, naming the document.
	if _, err := c.WriteState("60-bad.yaml", []byte(strings.Replace(policy, ": west}", ": north}", 1))); err == nil || !strings.Contains(err.Error(), `no cluster "north"`) {
		t.Fatalf("unknown cluster: %v", err)
	}

	// Partition: east's control plane stops; west forgets east's pod a
	// lease TTL later, and east's client no longer gets in.
	cut := time.Now()
	if err := c.StopControlPlane("east"); err != nil {
		t.Fatal(err)
	}
	t.Logf("east's control plane stopped in %s", time.Since(cut).Round(10*time.Millisecond))
	deadline := time.Now().Add(15 * time.Second)
	for connect("client").Connected {
		if time.Now().After(deadline) {
			t.Fatal("east/client still connects 15s after east's control plane stopped")
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("east's client denied %s after east's etcd stopped (lease TTL 2s)", time.Since(cut).Round(10*time.Millisecond))
	if err := c.StartControlPlane("east"); err != nil {
		t.Fatal(err)
	}
}

func (c *Cluster) pod(name string) cluster.Pod {
	for _, p := range c.pods {
		if p.Name == name {
			return p
		}
	}
	return cluster.Pod{}
}

// agentLogDir is a log directory whose agent logs the test prints when it
// fails.
func agentLogDir(t *testing.T) string {
	dir := t.TempDir()
	t.Cleanup(func() {
		if t.Failed() {
			logs, _ := filepath.Glob(filepath.Join(dir, "agent-*.log"))
			for _, l := range logs {
				b, _ := os.ReadFile(l)
				t.Logf("%s:\n%s", filepath.Base(l), b)
			}
		}
	})
	return dir
}

// eastWest builds a two-cluster mesh through the provider: east on node
// n1, west on n2 (lease TTL 2 s), with pods; it goes at the test's end.
// The caller writes state and starts the agents.
func eastWest(t *testing.T, specs []cluster.PodSpec) (*Cluster, map[string]cluster.Pod) {
	t.Helper()
	testutil.RequireRoot(t)
	c, err := NewProvider(Options{AgentBinary: agentBin}).Create(context.Background(), cluster.Spec{
		RunID: runID(t),
		Nodes: []string{"n1", "n2"},
		Pods:  specs,
		Clusters: []cluster.ClusterSpec{
			{Name: "east", ID: 1, Nodes: []string{"n1"}},
			{Name: "west", ID: 2, Nodes: []string{"n2"}},
		},
		MeshLeaseTTL: 2 * time.Second,
		LogDir:       agentLogDir(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Destroy(context.Background()) })
	pods := map[string]cluster.Pod{}
	for _, p := range c.Pods() {
		pods[p.Name] = p
	}
	return c, pods
}
