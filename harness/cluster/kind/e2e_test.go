package kind

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fastpath-bench/fastpath/datapath/agentapi"
	"github.com/fastpath-bench/fastpath/harness/cluster"
	"github.com/fastpath-bench/fastpath/harness/images"
	"github.com/fastpath-bench/fastpath/harness/probe"
	"github.com/fastpath-bench/fastpath/internal/testutil"
)

// agentImage builds the agent image from this checkout (static binaries,
// as make image does).
func agentImage(t *testing.T, ctx context.Context) string {
	t.Helper()
	dir := t.TempDir()
	root, err := filepath.Abs("../../..")
	if err != nil {
		t.Fatal(err)
	}
	for bin, pkg := range map[string]string{"fastpath-agent": "./cmd/fastpath-agent", "fastpath-cni": "./cmd/fastpath-cni", "fastpath": "./cmd/fastpath"} {
		cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", filepath.Join(dir, bin), pkg)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("build %s: %v\n%s", bin, err, out)
		}
	}
	ref, err := images.Build(ctx, dir, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	return ref
}

// TestTopologyOnKind builds a real kind cluster with the agent as its CNI
// DaemonSet: pods on two workers (one at an exact address outside every
// node's pod CIDR), connectivity across nodes through the CNI's wiring
// and the agents' routes, then a NetworkPolicy applied to the API server
// and enforced by the eBPF datapath on the server's node (acknowledged by
// revision), and removed again. Nothing is left afterwards.
func TestTopologyOnKind(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	nodeImage := requireKind(t, ctx)
	if err := Preflight(ctx, nodeImage); err != nil {
		t.Fatal(err)
	}
	img := agentImage(t, ctx)
	id := strings.Replace(testutil.RunID("k"), "fp-t", NamePrefix+"t", 1)
	exact := netip.MustParseAddr("10.244.200.7")
	spec := cluster.Spec{RunID: id, Nodes: []string{"node1", "node2"},
		Namespaces: map[string]map[string]string{"e2e": {"team": "e2e"}},
		Pods: []cluster.PodSpec{
			{Namespace: "e2e", Name: "client", Node: "node1", Labels: map[string]string{"app": "client"}},
			{Namespace: "e2e", Name: "trusted", Node: "node1", Labels: map[string]string{"app": "trusted"}},
			{Namespace: "e2e", Name: "server", Node: "node2", Labels: map[string]string{"app": "server"}, IP: exact,
				Ports: []cluster.Port{{Name: "echo", Port: 8080, Protocol: "TCP"}}},
		}}
	start := time.Now()
	// FASTPATH_KIND_RETAIN=1 keeps the cluster of a failed run (fastpath
	// clean removes it).
	retain := os.Getenv("FASTPATH_KIND_RETAIN") == "1"
	topo, err := Build(ctx, spec, TopologyOptions{NodeImage: nodeImage, AgentImage: img, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("cluster with agents and pods in %s", time.Since(start).Round(time.Second))
	destroyed := false
	t.Cleanup(func() {
		if !destroyed && !(retain && t.Failed()) {
			_ = topo.Destroy(context.Background())
		}
	})
	pods := map[string]cluster.Pod{}
	for _, p := range topo.Pods() {
		pods[p.Name] = p
	}
	if got := pods["server"].IP; got != exact {
		t.Fatalf("server has %s, asked for %s", got, exact)
	}
	srv, err := probe.Serve(topo.PodNetns("e2e/server"), 8080, "TCP")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	connect := func(from string) probe.Result {
		return probe.Connect(ctx, topo.PodNetns("e2e/"+from), exact, 8080, "TCP", time.Second)
	}
	for _, from := range []string{"client", "trusted"} {
		if r := connect(from); !r.Connected {
			t.Fatalf("%s -> server (datapath none): %v", from, r.Err)
		}
	}

	if err := topo.StartAgents(ctx, cluster.AgentOptions{Datapath: "ebpf"}); err != nil {
		t.Fatal(err)
	}
	st, err := topo.AgentClient("node2").Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Source != "kubernetes" || st.Datapath != "ebpf" || st.Endpoints != 1 {
		t.Fatalf("node2's agent: source %q datapath %q endpoints %d", st.Source, st.Datapath, st.Endpoints)
	}
	// CPU and memory are measured on the agents' host processes.
	agents := topo.Agents()
	for _, n := range []string{"node1", "node2"} {
		p := agents[n]
		if p == nil {
			t.Fatalf("no agent process for %s (%v)", n, agents)
		}
		comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", p.Cmd.Process.Pid))
		if err != nil || strings.TrimSpace(string(comm)) != "fastpath-agent" {
			t.Fatalf("agent of %s is pid %d, %q (%v)", n, p.Cmd.Process.Pid, comm, err)
		}
	}
	if body, err := topo.AgentClient("node2").Get(ctx, "/metrics"); err != nil || !strings.Contains(string(body), "fastpath_datapath_packets_total") {
		t.Fatalf("metrics: %v\n%s", err, body)
	}

	policy := []byte(`apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: trusted-only, namespace: e2e}
spec:
  podSelector: {matchLabels: {app: server}}
  policyTypes: [Ingress]
  ingress:
  - from: [{podSelector: {matchLabels: {app: trusted}}}]
    ports: [{port: 8080, protocol: TCP}]
`)
	applied := time.Now()
	tok, err := topo.WriteState("np.yaml", policy)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := agentapi.ParseRevisionToken(tok); !ok {
		t.Fatalf("WriteState returned %q, not a revision token", tok)
	}
	took, err := topo.WaitProgrammed(ctx, tok, applied)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("policy %s programmed: %v", tok, took)
	if r := connect("client"); r.Connected {
		t.Fatal("client -> server connected under the trusted-only policy")
	}
	if r := connect("trusted"); !r.Connected {
		t.Fatalf("trusted -> server under the trusted-only policy: %v", r.Err)
	}
	tok, err = topo.RemoveState("np.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := topo.WaitProgrammed(ctx, tok, time.Now()); err != nil {
		t.Fatalf("policy deletion %s: %v", tok, err)
	}
	if r := connect("client"); !r.Connected {
		t.Fatalf("client -> server after the policy was deleted: %v", r.Err)
	}

	if err := topo.StopAgents(ctx); err != nil {
		t.Fatal(err)
	}
	srv.Close()
	if err := topo.Destroy(ctx); err != nil {
		t.Fatal(err)
	}
	destroyed = true
	left, err := dockerOut(ctx, "ps", "-a", "-q", "--filter", "label=io.x-k8s.kind.cluster="+id)
	if err != nil || strings.TrimSpace(left) != "" {
		t.Fatalf("containers left: %q (%v)", left, err)
	}
	if _, err := os.Stat(filepath.Join("/run/netns", topo.PodNetns("e2e/server"))); err == nil {
		t.Fatal("pod netns name left in /run/netns")
	}
}
