package agent

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fastpath-bench/fastpath/datapath/agentapi"
	"github.com/fastpath-bench/fastpath/datapath/clustermesh"
	"github.com/fastpath-bench/fastpath/datapath/clustermesh/embedetcd"
	"github.com/fastpath-bench/fastpath/datapath/model"
	"github.com/fastpath-bench/fastpath/internal/testutil"
)

const meshConfig = `name: %s
id: %d
podCIDRs: [%s]
serviceCIDR: %s
endpoints: [%s]
leaseTTL: 10s
peers:
- {name: %s, id: %d, podCIDRs: [%s], serviceCIDR: %s, endpoints: [%s]}
`

// meshAgent is an eBPF agent of cluster east (overlay, --clustermesh,
// publishing) in a new network namespace, with east's and west's etcd
// embedded, and west's configuration for the test's own publisher and
// watcher.
type meshAgent struct {
	ctx   context.Context
	dir   string // east's state
	west  *clustermesh.Config
	cl    *agentapi.Client
	etcds []*embedetcd.Server
}

// startMeshAgent starts it with the state files (name → content) and the
// node n1 (192.168.1.1).
func startMeshAgent(t *testing.T, state map[string]string) *meshAgent {
	t.Helper()
	testutil.RequireRoot(t)
	var etcds []*embedetcd.Server
	for _, name := range []string{"east", "west"} {
		s, err := embedetcd.Start(embedetcd.Options{Name: name, Dir: t.TempDir(), NoFsync: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		etcds = append(etcds, s)
	}
	cfgDir := t.TempDir()
	eastCfg := filepath.Join(cfgDir, "east.yaml")
	if err := os.WriteFile(eastCfg, fmt.Appendf(nil, meshConfig, "east", 1, "10.0.0.0/16", "10.96.0.0/16", etcds[0].Endpoint(),
		"west", 2, "10.2.0.0/16", "10.97.0.0/16", etcds[1].Endpoint()), 0o644); err != nil {
		t.Fatal(err)
	}
	west, err := clustermesh.DecodeConfig(fmt.Appendf(nil, meshConfig, "west", 2, "10.2.0.0/16", "10.97.0.0/16", etcds[1].Endpoint(),
		"east", 1, "10.0.0.0/16", "10.96.0.0/16", etcds[0].Endpoint()))
	if err != nil {
		t.Fatal(err)
	}

	testutil.InNewNetns(t)
	dir := t.TempDir()
	write(t, dir, "node.yaml", `apiVersion: v1
kind: Node
metadata: {name: n1}
status: {addresses: [{type: InternalIP, address: 192.168.1.1}]}
`)
	for name, content := range state {
		write(t, dir, name, content)
	}
	sock := filepath.Join(t.TempDir(), "agent.sock")
	a, err := New(Config{Node: "n1", StateDir: dir, Datapath: "ebpf", Tunnel: "vxlan", ClusterMesh: eastCfg, ClusterMeshPublish: true,
		Socket: sock, Resync: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return &meshAgent{ctx: ctx, dir: dir, west: west, cl: agentapi.NewClient(sock), etcds: etcds}
}

// wait waits until the agent's status meets cond.
func (m *meshAgent) wait(t *testing.T, what string, cond func(*agentapi.Status) bool) *agentapi.Status {
	t.Helper()
	wctx, c := context.WithTimeout(m.ctx, 15*time.Second)
	defer c()
	st, err := m.cl.WaitFor(wctx, 20*time.Millisecond, cond)
	if err != nil {
		last, _ := m.cl.Status(m.ctx)
		t.Fatalf("%s: %v (status %+v)", what, err, last)
	}
	return st
}

// westPublisher publishes west's state to west's etcd.
func (m *meshAgent) westPublisher(t *testing.T) *clustermesh.Publisher {
	t.Helper()
	cli, err := clustermesh.NewClient(m.west.Endpoints)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	pub, err := clustermesh.NewPublisher(m.west, cli, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.Start(m.ctx); err != nil {
		t.Fatal(err)
	}
	return pub
}

// westWatcher watches east as west does.
func (m *meshAgent) westWatcher(t *testing.T) (*clustermesh.Watcher, <-chan clustermesh.Snapshot) {
	t.Helper()
	// The latest snapshot is always in the channel (an older one dropped
	// when it is full).
	watched := make(chan clustermesh.Snapshot, 1)
	w, err := clustermesh.NewWatcher(m.west, clustermesh.WatcherOptions{OnChange: func(s clustermesh.Snapshot) {
		for {
			select {
			case watched <- s:
				return
			default:
			}
			select {
			case <-watched:
			default:
			}
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	go w.Run(m.ctx)
	return w, watched
}

// TestClusterMesh runs an eBPF agent of cluster east with the overlay and
// --clustermesh: it publishes east's pods to east's etcd (seen by a
// watcher of cluster west), programs west's pods as peers once west
// publishes them, and drops them when west's lease is revoked.
func TestClusterMesh(t *testing.T) {
	m := startMeshAgent(t, map[string]string{"pods.yaml": pods})
	ctx, wait := m.ctx, m.wait
	peers := func(s *agentapi.Status) int {
		if s.Mesh == nil {
			return -1
		}
		for _, p := range s.Mesh.Peers {
			if p.Name == "west" {
				return p.Endpoints
			}
		}
		return -1
	}
	st := wait(t, "programmed with the mesh", func(s *agentapi.Status) bool { return s.Ready && s.Mesh != nil })
	if st.Tunnel != "fp_vxlan" || st.Mesh.Cluster != "east" || !st.Mesh.Publishing {
		t.Fatalf("status: tunnel %q, mesh %+v", st.Tunnel, st.Mesh)
	}

	// East's pod reaches west's etcd... as west's watcher sees it.
	w, watched := m.westWatcher(t)
	deadline := time.After(15 * time.Second)
	for found := false; !found; {
		select {
		case s := <-watched:
			ep, ok := s.Clusters["east"].Endpoints[netip.MustParseAddr("10.0.0.1")]
			found = ok && ep.NodeIP == netip.MustParseAddr("192.168.1.1") &&
				model.Identity(ep.GlobalIdentity) == model.GlobalIdentity(1, model.LocalIdentity(model.Identity(ep.GlobalIdentity)))
		case <-deadline:
			t.Fatalf("east's pod not published: %+v", w.Snapshot().Clusters["east"])
		}
	}

	// West publishes a pod: east's agent programs it as a peer.
	pub := m.westPublisher(t)
	labels := map[string]string{"app": "b", model.LabelNamespace: "t", model.LabelServiceAccount: "default"}
	if err := pub.Publish(ctx, clustermesh.State{
		Endpoints:  []clustermesh.Endpoint{{IP: netip.MustParseAddr("10.2.0.10"), Namespace: "t", Name: "b", Labels: labels, Node: "w1", NodeIP: netip.MustParseAddr("172.16.0.1"), Identity: 0x100}},
		Identities: map[model.Identity]map[string]string{0x100: labels},
		Nodes:      []clustermesh.Node{{Name: "w1", IP: netip.MustParseAddr("172.16.0.1")}},
	}); err != nil {
		t.Fatal(err)
	}
	wait(t, "west's pod programmed", func(s *agentapi.Status) bool { return peers(s) == 1 && s.LastError == "" })

	// West goes away (its lease revoked): its pod is no peer any more.
	if err := pub.Revoke(ctx); err != nil {
		t.Fatal(err)
	}
	st = wait(t, "west's pod dropped", func(s *agentapi.Status) bool { return peers(s) == 0 })
	if !strings.Contains(fmt.Sprint(st.Mesh.Peers), "west") {
		t.Fatalf("peers %+v", st.Mesh.Peers)
	}
}

// TestClusterMeshNeedsOverlay: remote identities travel in the overlay.
func TestClusterMeshNeedsOverlay(t *testing.T) {
	_, err := New(Config{Node: "n1", StateDir: t.TempDir(), Datapath: "ebpf", ClusterMesh: "/nonexistent.yaml", ClusterMeshPublish: true})
	if err == nil || !strings.Contains(err.Error(), "--clustermesh needs --datapath ebpf and --tunnel vxlan or geneve") || !strings.Contains(err.Error(), "/nonexistent.yaml") {
		t.Fatalf("error %v", err)
	}
	_, err = New(Config{Node: "n1", StateDir: t.TempDir(), Datapath: "none", ClusterMeshPublish: true})
	if err == nil || !strings.Contains(err.Error(), "--clustermesh-publish needs --clustermesh") {
		t.Fatalf("error %v", err)
	}
}

// echoService is east's Service t/echo (global, {{affinity}} the extra
// annotations) with the local pod a as backend ({{ready}}) and an address
// that is no pod.
const echoService = `apiVersion: v1
kind: Service
metadata:
  name: echo
  namespace: t
  annotations: {service.fastpath.dev/global: "true"{{affinity}}}
spec:
  clusterIP: 10.96.0.80
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: echo-1, namespace: t, labels: {kubernetes.io/service-name: echo}}
addressType: IPv4
endpoints:
- addresses: [10.0.0.1]
  conditions: {ready: {{ready}}}
  targetRef: {kind: Pod, name: a}
- addresses: [10.0.9.9]
ports: [{name: http, port: 8080}]
`

func echoState(affinity string, ready bool) string {
	return strings.NewReplacer("{{affinity}}", affinity, "{{ready}}", fmt.Sprint(ready)).Replace(echoService)
}

// lbBackends is the load balancer's view of a frontend, as "address
// [cluster] slots" per backend (slots 0: no new flows), from GET /v1/lb.
func (m *meshAgent) lbBackends(t *testing.T, frontend string) string {
	t.Helper()
	fronts, err := m.cl.LB(m.ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fronts {
		if f.Frontend != frontend {
			continue
		}
		var parts []string
		for _, be := range f.Backends {
			s := be.Address
			if be.Cluster != "" {
				s += " " + be.Cluster
			}
			if be.Standby {
				s += " standby"
			}
			parts = append(parts, fmt.Sprintf("%s %d", s, be.Slots))
		}
		return strings.Join(parts, ", ")
	}
	return "no frontend " + frontend
}

// waitLB waits until lbBackends(frontend) is want.
func (m *meshAgent) waitLB(t *testing.T, what, frontend, want string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		got := m.lbBackends(t, frontend)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: load balancer %s has %q, want %q", what, frontend, got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestClusterMeshGlobalService: east's agent publishes its global Service
// with its pods as backends (not an address that is no pod, nor the
// backends it takes from west); once west publishes the same Service,
// east's load balancer selects west's backend too (only one that is a
// pod west publishes); affinity local puts west's on standby while east's
// is ready and fails over to it when it is not; when west's lease is
// revoked its backend goes.
func TestClusterMeshGlobalService(t *testing.T) {
	m := startMeshAgent(t, map[string]string{"pods.yaml": pods, "echo.yaml": echoState("", true)})
	const fe = "10.96.0.80:80/TCP"
	m.wait(t, "programmed with the mesh", func(s *agentapi.Status) bool { return s.Ready && s.Mesh != nil && s.LastError == "" })
	m.waitLB(t, "east alone", fe, "10.0.0.1:8080 1, 10.0.9.9:8080 1")

	w, watched := m.westWatcher(t)
	published := func(what string, cond func(clustermesh.GlobalService) bool) {
		t.Helper()
		deadline := time.After(15 * time.Second)
		for {
			if svc, ok := w.Snapshot().Clusters["east"].Services["t/echo"]; ok && cond(svc) {
				return
			}
			select {
			case <-watched:
			case <-deadline:
				t.Fatalf("%s: east's t/echo as west sees it: %+v", what, w.Snapshot().Clusters["east"].Services)
			}
		}
	}
	published("east's Service", func(s clustermesh.GlobalService) bool {
		return len(s.Ports) == 1 && s.Ports[0].Name == "http" && s.Ports[0].Port == 80 && len(s.Ports[0].Backends) == 1 &&
			s.Ports[0].Backends[0] == clustermesh.Backend{IP: netip.MustParseAddr("10.0.0.1"), Port: 8080, Pod: "t/a"}
	})

	pub := m.westPublisher(t)
	labels := map[string]string{"app": "b", model.LabelNamespace: "t", model.LabelServiceAccount: "default"}
	if err := pub.Publish(m.ctx, clustermesh.State{
		Endpoints:  []clustermesh.Endpoint{{IP: netip.MustParseAddr("10.2.0.10"), Namespace: "t", Name: "b", Labels: labels, Node: "w1", NodeIP: netip.MustParseAddr("172.16.0.1"), Identity: 0x100}},
		Identities: map[model.Identity]map[string]string{0x100: labels},
		Nodes:      []clustermesh.Node{{Name: "w1", IP: netip.MustParseAddr("172.16.0.1")}},
		Services: []clustermesh.GlobalService{{Namespace: "t", Name: "echo", Ports: []clustermesh.ServicePort{{Name: "http", Protocol: "TCP", Port: 80, Backends: []clustermesh.Backend{
			{IP: netip.MustParseAddr("10.2.0.10"), Port: 8080, Node: "w1", Pod: "t/b"},
			{IP: netip.MustParseAddr("10.2.0.11"), Port: 8080, Node: "w1"}, // no pod west publishes
		}}}}},
	}); err != nil {
		t.Fatal(err)
	}
	st := m.wait(t, "west's Service programmed", func(s *agentapi.Status) bool {
		return s.Mesh != nil && len(s.Mesh.Peers) == 1 && s.Mesh.Peers[0].Services == 1 && s.LastError == ""
	})
	if p := st.Mesh.Peers[0]; p.Endpoints != 1 || p.Backends != 2 {
		t.Errorf("peer %+v", p)
	}
	m.waitLB(t, "merged", fe, "10.0.0.1:8080 1, 10.0.9.9:8080 1, 10.2.0.10:8080 west 1")
	// East publishes its own backends only.
	published("east's Service after the merge", func(s clustermesh.GlobalService) bool { return len(s.Ports[0].Backends) == 1 })
	if got := w.Snapshot().Clusters["east"].Services["t/echo"].Ports[0].Backends; len(got) != 1 || got[0].IP != netip.MustParseAddr("10.0.0.1") {
		t.Errorf("east publishes %+v", got)
	}

	// Affinity local: west's backend on standby while east's are ready.
	write(t, m.dir, "echo.yaml", echoState(", service.fastpath.dev/affinity: local", true))
	m.waitLB(t, "affinity local", fe, "10.0.0.1:8080 1, 10.0.9.9:8080 1, 10.2.0.10:8080 west standby 0")
	published("east's affinity", func(s clustermesh.GlobalService) bool { return s.Affinity == clustermesh.AffinityLocal })
	// East's pod not ready (and the other address gone): west's.
	notReady := strings.Replace(echoState(", service.fastpath.dev/affinity: local", false), "- addresses: [10.0.9.9]\n", "", 1)
	write(t, m.dir, "echo.yaml", notReady)
	m.waitLB(t, "failover", fe, "10.0.0.1:8080 0, 10.2.0.10:8080 west 1")
	published("east without a serving backend", func(s clustermesh.GlobalService) bool { return len(s.Ports[0].Backends) == 0 })

	// West leaves: its backend goes; east has none that takes new flows.
	if err := pub.Revoke(m.ctx); err != nil {
		t.Fatal(err)
	}
	m.waitLB(t, "west gone", fe, "10.0.0.1:8080 0")
}
