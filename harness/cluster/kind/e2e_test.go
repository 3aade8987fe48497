package kind

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fastpath-bench/fastpath/datapath/agentapi"
	"github.com/fastpath-bench/fastpath/deploy"
	"github.com/fastpath-bench/fastpath/harness/cluster"
	"github.com/fastpath-bench/fastpath/harness/images"
	"github.com/fastpath-bench/fastpath/harness/probe"
	"github.com/fastpath-bench/fastpath/internal/testutil"
)

// agentImages builds the agent image and the baselines' one from this
// checkout (static binaries, as make image does).
func agentImages(t *testing.T, ctx context.Context) (string, string) {
	t.Helper()
	dir, ref := agentImage(t, ctx)
	iptablesRef, err := BuildIptablesImage(ctx, dir, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	return ref, iptablesRef
}

// agentImage builds the agent image from this checkout and returns the
// binaries' directory and the image.
func agentImage(t *testing.T, ctx context.Context) (string, string) {
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
	return dir, ref
}

// checkIptablesBaseline switches the agents from eBPF to the iptables
// baseline: kube-proxy (iptables mode) is deployed and load-balances a
// ClusterIP Service, the agents program the NetworkPolicy chains only,
// first in FORWARD, and enforce policy (on the translated address).
// Back on eBPF, kube-proxy is gone and so are its rules and the
// baseline's: the nodes have the KUBE-* chains they had before, no FP-*
// chain, and the eBPF datapath load-balances the Service.
func checkIptablesBaseline(t *testing.T, ctx context.Context, topo *Topology, policy []byte, connect func(string) probe.Result) {
	t.Helper()
	start := time.Now()
	nodes := []string{topo.KindNode("node1"), topo.KindNode("node2")}
	save := func(node string, args ...string) string {
		t.Helper()
		out, err := dockerOut(ctx, append([]string{"exec", node, "iptables-save"}, args...)...)
		if err != nil {
			t.Fatalf("iptables-save on %s: %v", node, err)
		}
		return out
	}
	before := map[string][]string{}
	for _, n := range nodes {
		before[n] = kubeChains(save(n))
	}
	svc := []byte(`apiVersion: v1
kind: Service
metadata: {name: server, namespace: e2e}
spec:
  selector: {app: server}
  ports: [{name: echo, port: 80, targetPort: 8080, protocol: TCP}]
`)
	if _, err := topo.WriteState("svc.yaml", svc); err != nil {
		t.Fatal(err)
	}
	s, err := topo.Client().Kube.CoreV1().Services("e2e").Get(ctx, "server", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	vip := netip.MustParseAddr(s.Spec.ClusterIP)
	viaService := func(from string) probe.Result {
		return probe.Connect(ctx, topo.PodNetns("e2e/"+from), vip, 80, "TCP", time.Second)
	}

	if err := topo.StartAgents(ctx, cluster.AgentOptions{Datapath: "iptables"}); err != nil {
		t.Fatal(err)
	}
	if mode, image := topo.KubeProxy(); mode != "iptables" || !strings.HasPrefix(image, "registry.k8s.io/kube-proxy:") {
		t.Fatalf("kube-proxy %q %q with the iptables datapath", mode, image)
	}
	st, err := topo.AgentClient("node2").Status(ctx)
	if err != nil || st.Datapath != "iptables" || st.Endpoints != 1 {
		t.Fatalf("node2's agent: %+v (%v)", st, err)
	}
	for _, n := range nodes {
		nat := save(n, "-t", "nat")
		if !strings.Contains(nat, "-d "+vip.String()+"/32") || !strings.Contains(nat, ":KUBE-SERVICES") {
			t.Fatalf("node %s: kube-proxy has no rule for %s:\n%s", n, vip, nat)
		}
		if strings.Contains(nat, "FP-SERVICES") {
			t.Fatalf("node %s: the agent programmed Services next to kube-proxy:\n%s", n, nat)
		}
		fwd, err := dockerOut(ctx, "exec", n, "iptables", "-S", "FORWARD")
		if err != nil {
			t.Fatal(err)
		}
		if first, _ := firstRuleOf(fwd, "FORWARD"); first != "-A FORWARD -j FP-FORWARD" {
			t.Fatalf("node %s: the policy chain is not first in FORWARD:\n%s", n, fwd)
		}
	}
	for _, from := range []string{"client", "trusted"} {
		if r := viaService(from); !r.Connected {
			t.Fatalf("%s -> Service %s:80 through kube-proxy: %v", from, vip, r.Err)
		}
	}
	tok, err := topo.WriteState("np.yaml", policy)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := topo.WaitProgrammed(ctx, tok, time.Now()); err != nil {
		t.Fatal(err)
	}
	if r := viaService("client"); r.Connected {
		t.Fatal("client -> Service connected under the trusted-only policy (iptables)")
	}
	if r := connect("client"); r.Connected {
		t.Fatal("client -> server connected under the trusted-only policy (iptables)")
	}
	if r := viaService("trusted"); !r.Connected {
		t.Fatalf("trusted -> Service under the trusted-only policy (iptables): %v", r.Err)
	}
	tok, err = topo.RemoveState("np.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := topo.WaitProgrammed(ctx, tok, time.Now()); err != nil {
		t.Fatal(err)
	}

	if err := topo.StartAgents(ctx, cluster.AgentOptions{Datapath: "ebpf"}); err != nil {
		t.Fatal(err)
	}
	if mode, _ := topo.KubeProxy(); mode != "none" {
		t.Fatalf("kube-proxy %q with the ebpf datapath", mode)
	}
	pods, err := topo.Client().Kube.CoreV1().Pods(deploy.DefaultNamespace).List(ctx, metav1.ListOptions{LabelSelector: deploy.KubeProxyLabel})
	if err != nil || len(pods.Items) > 0 {
		t.Fatalf("kube-proxy pods left: %d (%v)", len(pods.Items), err)
	}
	for _, n := range nodes {
		all := save(n)
		if strings.Contains(all, "KUBE-SERVICES") || strings.Contains(all, "FP-") {
			t.Fatalf("node %s: kube-proxy's or the baseline's rules left with eBPF running:\n%s", n, all)
		}
		if got := kubeChains(all); !slices.Equal(got, before[n]) {
			t.Fatalf("node %s: KUBE-* chains %v, before kube-proxy %v", n, got, before[n])
		}
	}
	if r := viaService("client"); !r.Connected {
		t.Fatalf("client -> Service %s:80 through the eBPF datapath: %v", vip, r.Err)
	}
	if _, err := topo.RemoveState("svc.yaml"); err != nil {
		t.Fatal(err)
	}
	t.Logf("iptables baseline with kube-proxy, and back to eBPF, in %s", time.Since(start).Round(time.Second))
}

// checkNodePortFromExternal: the nodes are on NodeNetwork, and the host
// outside the cluster (at ExternalIP on that network) reaches the server
// pod through a NodePort Service on either node (the eBPF datapath's
// NodePort on the node's eth0: locally, and forwarded to the other node).
func checkNodePortFromExternal(t *testing.T, ctx context.Context, topo *Topology) {
	t.Helper()
	ext := topo.ExternalNetns()
	if ext == "" {
		t.Fatal("no external host")
	}
	for _, n := range []string{"node1", "node2"} {
		if ip := topo.NodeIP(n); !NodeNetwork.Contains(ip) {
			t.Fatalf("%s has %s, outside %s", n, ip, NodeNetwork)
		}
	}
	svc := []byte(`apiVersion: v1
kind: Service
metadata: {name: server-np, namespace: e2e}
spec:
  type: NodePort
  selector: {app: server}
  ports: [{name: echo, port: 80, targetPort: 8080, nodePort: 30080, protocol: TCP}]
`)
	since := time.Now()
	tok, err := topo.WriteState("nodeport.yaml", svc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := topo.WaitProgrammed(ctx, tok, since); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"node1", "node2"} {
		if r := probe.Connect(ctx, ext, topo.NodeIP(n), 30080, "TCP", 2*time.Second); !r.Connected {
			t.Fatalf("external host %s -> NodePort %s:30080 (%s): %v", ExternalIP, topo.NodeIP(n), n, r.Err)
		}
	}
	if r := probe.Connect(ctx, ext, topo.NodeIP("node1"), 30081, "TCP", 500*time.Millisecond); r.Connected {
		t.Fatal("external host -> node1:30081 (no Service) connected")
	}
	tok, err = topo.RemoveState("nodeport.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := topo.WaitProgrammed(ctx, tok, time.Now()); err != nil {
		t.Fatal(err)
	}
}

// firstRuleOf is the first rule of chain in an `iptables -S chain`
// listing.
func firstRuleOf(listing, chain string) (string, bool) {
	for _, l := range strings.Split(listing, "\n") {
		if strings.HasPrefix(l, "-A "+chain+" ") {
			return strings.TrimSpace(l), true
		}
	}
	return "", false
}

// TestTopologyOnKind builds a real kind cluster with the agent as its CNI
// DaemonSet: pods on two workers (one at an exact address outside every
// node's pod CIDR), connectivity across nodes through the CNI's wiring
// and the agents' routes, then a NetworkPolicy applied to the API server
// and enforced by the eBPF datapath on the server's node (acknowledged by
// revision), and removed again. Then the iptables baseline
// (checkIptablesBaseline) and the sidecar baseline
// (checkSidecarBaseline), each back to eBPF. Nothing is left afterwards.
func TestTopologyOnKind(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	nodeImage := requireKind(t, ctx)
	if err := Preflight(ctx, nodeImage); err != nil {
		t.Fatal(err)
	}
	img, iptablesImg := agentImages(t, ctx)
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
	topo, err := Build(ctx, spec, TopologyOptions{NodeImage: nodeImage, AgentImage: img, IptablesAgentImage: iptablesImg, Logf: t.Logf})
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
	checkWorkloadContainers(t, ctx, topo, exact.String())

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
	// Asked again (as for every CPU snapshot): the same processes, from
	// the cache.
	again := topo.Agents()
	for n, p := range agents {
		if q := again[n]; q == nil || q.PID() != p.PID() {
			t.Fatalf("agent of %s: pid %d, then %v", n, p.PID(), q)
		}
	}
	if body, err := topo.AgentClient("node2").Get(ctx, "/metrics"); err != nil || !strings.Contains(string(body), "fastpath_datapath_packets_total") {
		t.Fatalf("metrics: %v\n%s", err, body)
	}

	checkNodePortFromExternal(t, ctx, topo)

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

	checkIptablesBaseline(t, ctx, topo, policy, connect)
	checkSidecarBaseline(t, ctx, topo, policy, connect)

	if err := topo.StopAgents(ctx); err != nil {
		t.Fatal(err)
	}
	srv.Close()
	ext := topo.ExternalNetns()
	if err := topo.Destroy(ctx); err != nil {
		t.Fatal(err)
	}
	destroyed = true
	left, err := dockerOut(ctx, "ps", "-a", "-q", "--filter", "label=io.x-k8s.kind.cluster="+id)
	if err != nil || strings.TrimSpace(left) != "" {
		t.Fatalf("containers left: %q (%v)", left, err)
	}
	for _, ns := range []string{topo.PodNetns("e2e/server"), ext} {
		if _, err := os.Stat(filepath.Join("/run/netns", ns)); err == nil {
			t.Fatalf("netns %s left in /run/netns", ns)
		}
	}
}
