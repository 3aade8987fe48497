package netns

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"os/exec"
	"testing"
	"time"

	"github.com/fastpath-bench/fastpath/datapath/lxc"
	"github.com/fastpath-bench/fastpath/datapath/model"
	"github.com/fastpath-bench/fastpath/harness/cluster"
	"github.com/fastpath-bench/fastpath/harness/execx"
	"github.com/fastpath-bench/fastpath/harness/probe"
	"github.com/fastpath-bench/fastpath/internal/testutil"
)

// TestTunnelIdentity runs the agents with the VXLAN overlay: connections
// between pods of different nodes travel in it (the receiving node's
// VXLAN device counts them) and are judged by the identity the VNI
// carries. Then VXLAN packets are forged from a node: a packet whose
// inner source is the allowed client's address but whose VNI is another
// pod's identity is dropped; the same packet with the client's identity
// is delivered, and so is one from another address with the client's
// identity: the identity comes from the tunnel, never from the address.
func TestTunnelIdentity(t *testing.T) {
	ctx := context.Background()
	c, pods := overlayCluster(t)
	if _, err := c.WriteState("50-policy.yaml", []byte(allowClient)); err != nil {
		t.Fatal(err)
	}
	if err := c.StartAgents(ctx, cluster.AgentOptions{Datapath: "ebpf", ExtraArgs: []string{"--tunnel", "vxlan"}}); err != nil {
		t.Fatal(err)
	}
	n1, n2 := NodeNS(c.spec.RunID, "n1"), NodeNS(c.spec.RunID, "n2")
	before := rxPackets(t, n2)
	connect := func(from string) probe.Result {
		return probe.Connect(ctx, c.PodNetns("t/"+from), pods["server"].IP, 8080, "TCP", time.Second)
	}
	if r := connect("client"); !r.Connected {
		t.Fatalf("client -> server over the overlay: %v", r.Err)
	}
	if r := connect("other"); r.Connected {
		t.Fatal("other -> server connected over the overlay")
	}
	if after := rxPackets(t, n2); after <= before {
		t.Fatalf("n2's %s received %d packets before and %d after the probes: the overlay was not used", lxc.TunnelDevice, before, after)
	}

	// Forged VXLAN from node n1 to n2, to a UDP socket in the server pod.
	idOf := identities(t, c, pods)
	srv := pods["server"].IP
	vx := newOverlayProbe(t, c.PodNetns("t/server"), 5353)
	forge := func(id model.Identity, src, payload string, delivered bool) {
		t.Helper()
		vx.expectSent(func() error { return c.ForgeOverlay("n1", "n2", uint32(id), pods[src].IP, srv, 5353, []byte(payload)) }, payload, delivered)
	}
	forge(idOf("other"), "client", "forged-address", false)
	forge(idOf("client"), "client", "client", true)
	forge(idOf("client"), "other", "identity-decides", true)

	if err := c.StopAgents(ctx); err != nil {
		t.Fatal(err)
	}
	for _, ns := range []string{n1, n2} {
		if out, err := exec.Command("ip", "-n", ns, "link", "show", lxc.TunnelDevice).CombinedOutput(); err == nil {
			t.Fatalf("%s still has %s after the agents stopped: %s", ns, lxc.TunnelDevice, out)
		}
	}
}

// TestOverlayConstants: the harness's view of the overlay (forge.go) is
// the datapath's.
func TestOverlayConstants(t *testing.T) {
	if overlayDevice != lxc.TunnelDevice || overlayPort != lxc.TunnelPort {
		t.Fatalf("harness overlay %s:%d, datapath %s:%d", overlayDevice, overlayPort, lxc.TunnelDevice, lxc.TunnelPort)
	}
	if overlayGeneveDevice != lxc.GeneveDevice || overlayGenevePort != lxc.GenevePort ||
		geneveOptClass != lxc.TunnelOptClass || geneveOptType != lxc.TunnelOptType || geneveOptLen != lxc.TunnelOptLen {
		t.Fatalf("harness Geneve overlay %s:%d option %#x/%#x/%d, datapath %s:%d option %#x/%#x/%d",
			overlayGeneveDevice, overlayGenevePort, geneveOptClass, geneveOptType, geneveOptLen,
			lxc.GeneveDevice, lxc.GenevePort, lxc.TunnelOptClass, lxc.TunnelOptType, lxc.TunnelOptLen)
	}
}

// overlayCluster is the cluster of the overlay tests: pods client and
// other (app=client, app=other) on node n1, server (app=server, serving
// TCP 8080) on n2; it and the server go at the test's end.
func overlayCluster(t *testing.T) (*Cluster, map[string]cluster.Pod) {
	t.Helper()
	testutil.RequireRoot(t)
	c, err := NewProvider(Options{AgentBinary: agentBin}).Create(context.Background(), cluster.Spec{
		RunID: runID(t),
		Nodes: []string{"n1", "n2"},
		Pods: []cluster.PodSpec{
			{Namespace: "t", Name: "client", Node: "n1", Labels: map[string]string{"app": "client"}},
			{Namespace: "t", Name: "other", Node: "n1", Labels: map[string]string{"app": "other"}},
			{Namespace: "t", Name: "server", Node: "n2", Labels: map[string]string{"app": "server"}},
		},
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
	srv, err := probe.Serve(c.PodNetns("t/server"), 8080, "TCP")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return c, pods
}

// rxPackets is the packet count the VXLAN device of node namespace ns
// has received.
func rxPackets(t *testing.T, ns string) uint64 {
	t.Helper()
	return rxPacketsOn(t, ns, lxc.TunnelDevice)
}

// rxPacketsOn is the packet count device dev of node namespace ns has
// received.
func rxPacketsOn(t *testing.T, ns, dev string) uint64 {
	t.Helper()
	out, err := exec.Command("ip", "-n", ns, "-j", "-s", "link", "show", dev).Output()
	if err != nil {
		t.Fatalf("ip -n %s link show %s: %v", ns, dev, err)
	}
	var links []struct {
		Stats64 struct {
			RX struct {
				Packets uint64 `json:"packets"`
			} `json:"rx"`
		} `json:"stats64"`
	}
	if err := json.Unmarshal(out, &links); err != nil || len(links) != 1 {
		t.Fatalf("ip -j: %v: %s", errors.Join(err), out)
	}
	return links[0].Stats64.RX.Packets
}

// overlayProbe listens on a UDP port of a pod and reports whether
// packets forged to it (through the overlay) arrived.
type overlayProbe struct {
	t        *testing.T
	received chan string
}

// newOverlayProbe listens on UDP port in the pod's namespace podNS.
func newOverlayProbe(t *testing.T, podNS string, port uint16) *overlayProbe {
	t.Helper()
	p := &overlayProbe{t: t, received: make(chan string, 8)}
	err := execx.RunInNetns(podNS, func() error {
		conn, err := net.ListenUDP("udp4", &net.UDPAddr{Port: int(port)})
		if err != nil {
			return err
		}
		t.Cleanup(func() { conn.Close() })
		go func() {
			buf := make([]byte, 64)
			for {
				n, _, err := conn.ReadFromUDP(buf)
				if err != nil {
					return
				}
				p.received <- string(buf[:n])
			}
		}()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// identities resolves c's state as its agents do and returns a lookup of
// the pods' identities by name.
func identities(t *testing.T, c *Cluster, pods map[string]cluster.Pod) func(pod string) model.Identity {
	t.Helper()
	objs, err := (&model.Loader{}).Load(c.StateDir())
	if err != nil {
		t.Fatal(err)
	}
	r, err := model.Resolve(objs)
	if err != nil {
		t.Fatal(err)
	}
	return func(pod string) model.Identity {
		t.Helper()
		ep, ok := r.EndpointByIP(pods[pod].IP)
		if !ok {
			t.Fatalf("no endpoint for %s", pod)
		}
		return ep.Identity
	}
}

// expectSent runs send, which forges payload to the pod, and checks
// whether the pod received it.
func (p *overlayProbe) expectSent(send func() error, payload string, delivered bool) {
	p.t.Helper()
	if err := send(); err != nil {
		p.t.Fatal(err)
	}
	select {
	case got := <-p.received:
		if !delivered || got != payload {
			p.t.Fatalf("the pod got %q, want %q delivered=%v", got, payload, delivered)
		}
	case <-time.After(time.Second):
		if delivered {
			p.t.Fatalf("%q was not delivered", payload)
		}
	}
}
