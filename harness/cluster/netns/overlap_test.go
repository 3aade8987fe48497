package netns

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
	"github.com/fastpath-bench/fastpath/datapath/clustermesh/embedetcd"
	"github.com/fastpath-bench/fastpath/harness/cluster"
	"github.com/fastpath-bench/fastpath/harness/execx"
	"github.com/fastpath-bench/fastpath/harness/probe"
	"github.com/fastpath-bench/fastpath/internal/testutil"
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
	c, pods := meshPairCluster(t, []cluster.PodSpec{
		{Namespace: "t", Name: "client", Node: "n1", IP: shared, Labels: map[string]string{"app": "client"}},
		{Namespace: "t", Name: "server", Node: "n2", Labels: map[string]string{"app": "server"}},
		{Namespace: "t", Name: "peer", Node: "n2", Labels: map[string]string{"app": "peer"}},
	})
	// twin is created on its own: Create would route a requested address
	// outside the node's pod CIDR to that node from every other node,
	// clashing with the client's route on n1 (the two clusters' underlays
	// here are one network; nothing but the overlay crosses it for pods).
	twin := cluster.Pod{PodSpec: cluster.PodSpec{Namespace: "t", Name: "twin", Node: "n2", Labels: map[string]string{"app": "client"}}, IP: shared}
	if err := c.addPod(c.nodes[1], twin.PodSpec, shared); err != nil {
		t.Fatal(err)
	}
	pods["twin"] = twin
	twinNS := PodNS(c.spec.RunID, "t", "twin")
	for _, name := range []string{"server", "peer"} {
		srv, err := probe.Serve(c.PodNetns("t/"+name), 8080, "TCP")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { srv.Close() })
	}

	agents := startMeshPair(t, c, []meshMember{
		{Name: "east", ID: 1, Node: "n1", PodCIDRs: []netip.Prefix{PodCIDR(0)},
			State: podsYAML(pods, "client") + nodeYAML("n1", 0)},
		{Name: "west", ID: 2, Node: "n2", PodCIDRs: []netip.Prefix{PodCIDR(1), PodCIDR(0)},
			State: podsYAML(pods, "server", "peer", "twin") + nodeYAML("n2", 1) + `---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: from-east-clients, namespace: t}
spec:
  podSelector: {matchLabels: {app: server}}
  policyTypes: [Ingress]
  ingress:
  - from: [{podSelector: {matchLabels: {app: client, io.cilium.k8s.policy.cluster: east}}}]
    ports: [{protocol: TCP, port: 8080}]
`},
	})
	waitPeerEndpoints(t, agents["east"].socket, "west", 3)
	waitPeerEndpoints(t, agents["west"].socket, "east", 1)

	connect := func(ns, to string) probe.Result {
		return probe.Connect(ctx, ns, pods[to].IP, 8080, "TCP", time.Second)
	}
	client := c.PodNetns("t/client")
	for _, tc := range []struct {
		from, ns, to string
		want         bool
	}{
		{"east/client", client, "server", true},
		{"east/client", client, "peer", true},
		{"west/twin", twinNS, "server", false},
		{"west/twin", twinNS, "peer", true},
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

// meshPairCluster builds the two nodes n1 and n2 of a two-cluster test
// (the clusters' agents are started by startMeshPair) with pods; it goes
// at the test's end.
func meshPairCluster(t *testing.T, specs []cluster.PodSpec) (*Cluster, map[string]cluster.Pod) {
	t.Helper()
	testutil.RequireRoot(t)
	c, err := NewProvider(Options{AgentBinary: agentBin}).Create(context.Background(), cluster.Spec{
		RunID:  runID(t),
		Nodes:  []string{"n1", "n2"},
		Pods:   specs,
		LogDir: t.TempDir(),
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

// meshMember is one cluster of a two-cluster test: one node, its state.
type meshMember struct {
	Name     string
	ID       int
	Node     string
	PodCIDRs []netip.Prefix
	// State is the cluster's desired state (state.yaml of its agent).
	State string
	// Files are more files of its state directory, by name.
	Files map[string]string
	// Args are more agent flags.
	Args []string
}

// meshAgent is a member's agent: its API socket and state directory.
type meshAgent struct {
	socket, stateDir string
}

// startMeshPair starts, for each member, an etcd on the external host
// and an agent on its node with its own state directory, joined by
// --clustermesh over the overlay (pod CIDRs may overlap); it returns the
// agents by cluster. Everything stops at the test's end.
func startMeshPair(t *testing.T, c *Cluster, members []meshMember) map[string]meshAgent {
	t.Helper()
	etcds := map[string]*embedetcd.Server{}
	for _, m := range members {
		var s *embedetcd.Server
		err := execx.RunInNetns(c.ExternalNetns(), func() (err error) {
			s, err = embedetcd.Start(embedetcd.Options{Name: m.Name, Dir: t.TempDir(), NoFsync: true, LogFile: filepath.Join(t.TempDir(), "etcd.log"),
				ClientURL: "http://" + ExternalAddr().String() + ":0", PeerURL: "http://" + ExternalAddr().String() + ":0"})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		etcds[m.Name] = s
		t.Cleanup(func() { s.Close() })
	}
	cidrs := func(ps []netip.Prefix) string {
		var s []string
		for _, p := range ps {
			s = append(s, p.String())
		}
		return "[" + strings.Join(s, ", ") + "]"
	}
	dir := t.TempDir()
	agents := map[string]meshAgent{}
	for _, m := range members {
		cfg := fmt.Sprintf("name: %s\nid: %d\npodCIDRs: %s\nserviceCIDR: 10.%d.0.0/16\nendpoints: [%s]\nleaseTTL: 2s\nallowOverlappingPodCIDRs: true\npeers:\n",
			m.Name, m.ID, cidrs(m.PodCIDRs), 95+m.ID, etcds[m.Name].Endpoint())
		for _, p := range members {
			if p.Name != m.Name {
				cfg += fmt.Sprintf("- {name: %s, id: %d, podCIDRs: %s, serviceCIDR: 10.%d.0.0/16, endpoints: [%s]}\n",
					p.Name, p.ID, cidrs(p.PodCIDRs), 95+p.ID, etcds[p.Name].Endpoint())
			}
		}
		sd := filepath.Join(dir, m.Name)
		if err := os.MkdirAll(sd, 0o755); err != nil {
			t.Fatal(err)
		}
		files := map[string]string{"state.yaml": m.State}
		for k, v := range m.Files {
			files[k] = v
		}
		for name, data := range files {
			if err := os.WriteFile(filepath.Join(sd, name), []byte(data), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		cf := filepath.Join(dir, m.Name+"-mesh.yaml")
		if err := os.WriteFile(cf, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		agents[m.Name] = meshAgent{socket: filepath.Join(dir, m.Name+".sock"), stateDir: sd}
		args := append([]string{"--node", m.Node, "--state-dir", sd, "--datapath", "ebpf", "--tunnel", "vxlan",
			"--clustermesh", cf, "--clustermesh-publish", "--api-socket", agents[m.Name].socket}, m.Args...)
		cmd := exec.Command(agentBin, args...)
		logPath := filepath.Join(dir, m.Name+".log")
		logf, err := os.Create(logPath)
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := execx.StartInNetns(NodeNS(c.spec.RunID, m.Node), cmd); err != nil {
			t.Fatal(err)
		}
		logf.Close()
		name := m.Name
		t.Cleanup(func() {
			_ = cmd.Process.Signal(os.Interrupt)
			_ = cmd.Wait()
			if t.Failed() {
				b, _ := os.ReadFile(logPath)
				t.Logf("agent of %s:\n%s", name, b)
			}
		})
	}
	return agents
}

// waitPeerEndpoints waits until the agent at socket is ready and has want
// endpoints of cluster peer.
func waitPeerEndpoints(t *testing.T, socket, peer string, want int) *agentapi.Status {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	st, err := agentapi.NewClient(socket).WaitFor(ctx, 20*time.Millisecond, func(s *agentapi.Status) bool {
		if !s.Ready || len(s.Pending) > 0 || s.Mesh == nil {
			return false
		}
		for _, p := range s.Mesh.Peers {
			if p.Name == peer {
				return p.Endpoints == want
			}
		}
		return false
	})
	if err != nil {
		last, _ := agentapi.NewClient(socket).Status(context.Background())
		t.Fatalf("agent at %s with %d endpoints of %s: %v (status %+v)", socket, want, peer, err, last)
	}
	return st
}

// podsYAML is the Pods names of pods as state YAML.
func podsYAML(pods map[string]cluster.Pod, names ...string) string {
	var b strings.Builder
	for _, name := range names {
		p := pods[name]
		var labels []string
		for k, v := range p.Labels {
			labels = append(labels, k+": "+v)
		}
		fmt.Fprintf(&b, "apiVersion: v1\nkind: Pod\nmetadata: {name: %s, namespace: %s, labels: {%s}}\nspec: {nodeName: %s}\nstatus: {podIP: %s}\n---\n",
			p.Name, p.Namespace, strings.Join(labels, ", "), p.Node, p.IP)
	}
	return b.String()
}

// nodeYAML is node name (index i of the topology) and namespace t as
// state YAML.
func nodeYAML(name string, i int) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Node
metadata: {name: %s}
spec: {podCIDR: %s}
status: {addresses: [{type: InternalIP, address: %s}]}
---
apiVersion: v1
kind: Namespace
metadata: {name: t}
`, name, PodCIDR(i), NodeIP(i))
}
