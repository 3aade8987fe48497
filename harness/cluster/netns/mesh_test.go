package netns

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/fastpath-bench/fastpath/datapath/agentapi"
	"github.com/fastpath-bench/fastpath/datapath/clustermesh/embedetcd"
	"github.com/fastpath-bench/fastpath/datapath/model"
	"github.com/fastpath-bench/fastpath/harness/execx"
	"github.com/fastpath-bench/fastpath/harness/probe"
)

// TestClusterMeshOverlay: two clusters, east (node n1: pods client and
// other) and west (node n2: pod server), each with its own etcd (on the
// external host, which both reach) and its own agent state, joined by
// --clustermesh over the VXLAN overlay. West's server admits app=client
// of cluster east only:
//   - east's client connects, east's other does not (its identity, not
//     its address, decides: forged VXLAN with the client's address and
//     other's identity is dropped, the reverse delivered);
//   - when west can no longer reach east's etcd (stopped: a partition),
//     east's identities expire after their lease, and new connections from
//     east fail closed.
func TestClusterMeshOverlay(t *testing.T) {
	ctx := context.Background()
	c, pods := overlayCluster(t)

	// One etcd per cluster, listening on the external host's address.
	etcds := map[string]*embedetcd.Server{}
	stopped := map[string]bool{}
	for _, name := range []string{"east", "west"} {
		var s *embedetcd.Server
		err := execx.RunInNetns(c.ExternalNetns(), func() (err error) {
			s, err = embedetcd.Start(embedetcd.Options{Name: name, Dir: t.TempDir(), NoFsync: true, LogFile: filepath.Join(t.TempDir(), "etcd.log"),
				ClientURL: "http://" + ExternalAddr().String() + ":0", PeerURL: "http://" + ExternalAddr().String() + ":0"})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		etcds[name] = s
		t.Cleanup(func() {
			if !stopped[name] {
				s.Close()
			}
		})
	}
	cfg := func(self, peer string, selfID, peerID, selfNode, peerNode int) string {
		return fmt.Sprintf(`name: %s
id: %d
podCIDRs: [%s]
serviceCIDR: 10.%d.0.0/16
endpoints: [%s]
leaseTTL: 2s
peers:
- {name: %s, id: %d, podCIDRs: [%s], serviceCIDR: 10.%d.0.0/16, endpoints: [%s]}
`, self, selfID, PodCIDR(selfNode), 95+selfID, etcds[self].Endpoint(), peer, peerID, PodCIDR(peerNode), 95+peerID, etcds[peer].Endpoint())
	}
	podYAML := func(name, node string) string {
		p := pods[name]
		return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: %s, namespace: t, labels: {app: %s}}
spec: {nodeName: %s}
status: {podIP: %s}
---
`, name, p.Labels["app"], node, p.IP)
	}
	nodeYAML := func(name string, i int) string {
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
	states := map[string]string{
		"east": podYAML("client", "n1") + podYAML("other", "n1") + nodeYAML("n1", 0),
		"west": podYAML("server", "n2") + nodeYAML("n2", 1) + `---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: from-east-clients, namespace: t}
spec:
  podSelector: {matchLabels: {app: server}}
  policyTypes: [Ingress]
  ingress:
  - from: [{podSelector: {matchLabels: {app: client, io.cilium.k8s.policy.cluster: east}}}]
    ports: [{protocol: TCP, port: 8080}, {protocol: UDP, port: 5353}]
`,
	}
	configs := map[string]string{"east": cfg("east", "west", 1, 2, 0, 1), "west": cfg("west", "east", 2, 1, 1, 0)}
	dir := t.TempDir()
	nodeOf := map[string]string{"east": "n1", "west": "n2"}
	sockets := map[string]string{}
	for _, name := range []string{"east", "west"} {
		sd := filepath.Join(dir, name)
		if err := os.MkdirAll(sd, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(sd, "state.yaml"), []byte(states[name]), 0o644); err != nil {
			t.Fatal(err)
		}
		cf := filepath.Join(dir, name+"-mesh.yaml")
		if err := os.WriteFile(cf, []byte(configs[name]), 0o644); err != nil {
			t.Fatal(err)
		}
		node := nodeOf[name]
		sockets[name] = filepath.Join(dir, name+".sock")
		cmd := exec.Command(agentBin, "--node", node, "--state-dir", sd, "--datapath", "ebpf", "--tunnel", "vxlan",
			"--clustermesh", cf, "--clustermesh-publish", "--api-socket", sockets[name])
		logf, err := os.Create(filepath.Join(dir, name+".log"))
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := execx.StartInNetns(NodeNS(c.spec.RunID, node), cmd); err != nil {
			t.Fatal(err)
		}
		logf.Close()
		t.Cleanup(func() {
			_ = cmd.Process.Signal(os.Interrupt)
			_ = cmd.Wait()
			if t.Failed() {
				b, _ := os.ReadFile(filepath.Join(dir, name+".log"))
				t.Logf("agent of %s:\n%s", name, b)
			}
		})
	}
	peerEndpoints := func(cluster, peer string, want int) *agentapi.Status {
		t.Helper()
		wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		st, err := agentapi.NewClient(sockets[cluster]).WaitFor(wctx, 20*time.Millisecond, func(s *agentapi.Status) bool {
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
			last, _ := agentapi.NewClient(sockets[cluster]).Status(ctx)
			t.Fatalf("%s's agent with %d endpoints of %s: %v (status %+v)", cluster, want, peer, err, last)
		}
		return st
	}
	peerEndpoints("east", "west", 1)
	peerEndpoints("west", "east", 2)

	connect := func(from string) probe.Result {
		return probe.Connect(ctx, c.PodNetns("t/"+from), pods["server"].IP, 8080, "TCP", time.Second)
	}
	if r := connect("client"); !r.Connected {
		t.Fatalf("east/client -> west/server: %v", r.Err)
	}
	if r := connect("other"); r.Connected {
		t.Fatal("east/other -> west/server connected")
	}

	// Forged VXLAN from east's node: the identity decides.
	eastIDs := eastIdentities(t, states["east"])
	vx := newVXLANProbe(t, c.PodNetns("t/server"), pods["server"].IP, 5353, NodeNS(c.spec.RunID, "n1"), NodeIP(1))
	vx.expect(eastIDs["other"], pods["client"].IP, "forged-address", false)
	vx.expect(eastIDs["client"], pods["other"].IP, "identity-decides", true)

	// Partition: west loses east's etcd. East's identities expire after
	// their lease (2 s) and new connections from east fail closed.
	// (Close waits for the watch streams for several seconds: stop it
	// aside and time the expiry from the start.)
	cut := time.Now()
	stopped["east"] = true
	closing := make(chan struct{})
	go func() { etcds["east"].Close(); close(closing) }()
	t.Cleanup(func() { <-closing })
	peerEndpoints("west", "east", 0)
	expired := time.Since(cut)
	if r := connect("client"); r.Connected {
		t.Fatal("east/client -> west/server connected after east's identities expired")
	}
	t.Logf("east's identities expired on west %s after its etcd began to stop (lease TTL 2s)", expired.Round(10*time.Millisecond))
}

// eastIdentities resolves east's state as east's agent does (cluster east,
// id 1) and returns its pods' global identities by name.
func eastIdentities(t *testing.T, state string) map[string]model.Identity {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "state.yaml"), []byte(state), 0o644); err != nil {
		t.Fatal(err)
	}
	objs, err := (&model.Loader{}).Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	objs.Cluster = model.ClusterInfo{Name: "east", ID: 1}
	r, err := model.Resolve(objs)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]model.Identity{}
	for _, ep := range r.Endpoints {
		out[ep.Name] = ep.Identity
	}
	return out
}
