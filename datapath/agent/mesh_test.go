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
leaseTTL: 2s
peers:
- {name: %s, id: %d, podCIDRs: [%s], serviceCIDR: %s, endpoints: [%s]}
`

// TestClusterMesh runs an eBPF agent of cluster east with the overlay and
// --clustermesh: it publishes east's pods to east's etcd (seen by a
// watcher of cluster west), programs west's pods as peers once west
// publishes them, and drops them when west's lease is revoked.
func TestClusterMesh(t *testing.T) {
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
	write(t, dir, "pods.yaml", pods+`---
apiVersion: v1
kind: Node
metadata: {name: n1}
status: {addresses: [{type: InternalIP, address: 192.168.1.1}]}
`)
	sock := filepath.Join(t.TempDir(), "agent.sock")
	a, err := New(Config{Node: "n1", StateDir: dir, Datapath: "ebpf", Tunnel: "vxlan", ClusterMesh: eastCfg, ClusterMeshPublish: true,
		Socket: sock, Resync: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() { cancel(); <-done }()
	cl := agentapi.NewClient(sock)
	wait := func(what string, cond func(*agentapi.Status) bool) *agentapi.Status {
		t.Helper()
		wctx, c := context.WithTimeout(ctx, 15*time.Second)
		defer c()
		st, err := cl.WaitFor(wctx, 20*time.Millisecond, cond)
		if err != nil {
			last, _ := cl.Status(ctx)
			t.Fatalf("%s: %v (status %+v)", what, err, last)
		}
		return st
	}
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
	st := wait("programmed with the mesh", func(s *agentapi.Status) bool { return s.Ready && s.Mesh != nil })
	if st.Tunnel != "fp_vxlan" || st.Mesh.Cluster != "east" || !st.Mesh.Publishing {
		t.Fatalf("status: tunnel %q, mesh %+v", st.Tunnel, st.Mesh)
	}

	// East's pod reaches west's etcd... as west's watcher sees it.
	watched := make(chan clustermesh.Snapshot, 16)
	w, err := clustermesh.NewWatcher(west, clustermesh.WatcherOptions{OnChange: func(s clustermesh.Snapshot) { watched <- s }})
	if err != nil {
		t.Fatal(err)
	}
	go w.Run(ctx)
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
	cli, err := clustermesh.NewClient(west.Endpoints)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	pub, err := clustermesh.NewPublisher(west, cli, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.Start(ctx); err != nil {
		t.Fatal(err)
	}
	labels := map[string]string{"app": "b", model.LabelNamespace: "t", model.LabelServiceAccount: "default"}
	if err := pub.Publish(ctx, clustermesh.State{
		Endpoints:  []clustermesh.Endpoint{{IP: netip.MustParseAddr("10.2.0.10"), Namespace: "t", Name: "b", Labels: labels, Node: "w1", NodeIP: netip.MustParseAddr("172.16.0.1"), Identity: 0x100}},
		Identities: map[model.Identity]map[string]string{0x100: labels},
		Nodes:      []clustermesh.Node{{Name: "w1", IP: netip.MustParseAddr("172.16.0.1")}},
	}); err != nil {
		t.Fatal(err)
	}
	wait("west's pod programmed", func(s *agentapi.Status) bool { return peers(s) == 1 && s.LastError == "" })

	// West goes away (its lease revoked): its pod is no peer any more.
	if err := pub.Revoke(ctx); err != nil {
		t.Fatal(err)
	}
	st = wait("west's pod dropped", func(s *agentapi.Status) bool { return peers(s) == 0 })
	if !strings.Contains(fmt.Sprint(st.Mesh.Peers), "west") {
		t.Fatalf("peers %+v", st.Mesh.Peers)
	}
}

// TestClusterMeshNeedsOverlay: remote identities travel in the overlay.
func TestClusterMeshNeedsOverlay(t *testing.T) {
	_, err := New(Config{Node: "n1", StateDir: t.TempDir(), Datapath: "ebpf", ClusterMesh: "/nonexistent.yaml", ClusterMeshPublish: true})
	if err == nil || !strings.Contains(err.Error(), "--clustermesh needs --datapath ebpf --tunnel vxlan") || !strings.Contains(err.Error(), "/nonexistent.yaml") {
		t.Fatalf("error %v", err)
	}
	_, err = New(Config{Node: "n1", StateDir: t.TempDir(), Datapath: "none", ClusterMeshPublish: true})
	if err == nil || !strings.Contains(err.Error(), "--clustermesh-publish needs --clustermesh") {
		t.Fatalf("error %v", err)
	}
}
