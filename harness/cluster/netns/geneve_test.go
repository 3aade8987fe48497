package netns

import (
	"context"
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/fastpath-bench/fastpath/datapath/agentapi"
	"github.com/fastpath-bench/fastpath/datapath/lxc"
	"github.com/fastpath-bench/fastpath/harness/cluster"
	"github.com/fastpath-bench/fastpath/harness/probe"
	"github.com/fastpath-bench/fastpath/internal/testutil"
)

// requireGeneve skips the test on a kernel without Geneve devices (this
// host's: CONFIG_GENEVE is not set; the matrix's Debian kernels have the
// module).
func requireGeneve(t *testing.T) {
	t.Helper()
	ns := testutil.NamedNetns(t, "geneve")
	name := ns[strings.LastIndex(ns, "/")+1:]
	if out, err := exec.Command("ip", "-n", name, "link", "add", "g0", "type", "geneve", "external").CombinedOutput(); err != nil {
		testutil.SkipOrFail(t, true, "kernel without Geneve devices (CONFIG_GENEVE): "+strings.TrimSpace(string(out)))
	}
}

// TestGeneveIdentity runs the agents with the Geneve overlay: connections
// between pods of different nodes travel in it (the receiving node's
// fp_geneve counts them; there is no fp_vxlan) and are judged by the
// identity its option carries. Then Geneve packets are forged from a
// node: the client's address with another pod's identity in the option is
// dropped, another pod's address with the client's identity is delivered;
// the VNI does not count (the client's identity in the VNI with the other
// pod's in the option is dropped), and a packet without the option, or
// with the option of another class, is dropped.
func TestGeneveIdentity(t *testing.T) {
	requireGeneve(t)
	ctx := context.Background()
	c, pods := overlayCluster(t)
	if _, err := c.WriteState("50-policy.yaml", []byte(allowClient)); err != nil {
		t.Fatal(err)
	}
	if err := c.StartAgents(ctx, cluster.AgentOptions{Datapath: "ebpf", ExtraArgs: []string{"--tunnel", "geneve"}}); err != nil {
		t.Fatal(err)
	}
	var st agentapi.Status
	b, err := c.AgentClient("n2").Get(ctx, "/v1/status")
	if err == nil {
		err = json.Unmarshal(b, &st)
	}
	if err != nil || st.Tunnel != lxc.GeneveDevice || st.TunnelType != lxc.TunnelGeneve {
		t.Fatalf("n2's status: tunnel %q type %q, %v", st.Tunnel, st.TunnelType, err)
	}
	n1, n2 := NodeNS(c.spec.RunID, "n1"), NodeNS(c.spec.RunID, "n2")
	if out, err := exec.Command("ip", "-n", n2, "link", "show", lxc.TunnelDevice).CombinedOutput(); err == nil {
		t.Fatalf("n2 has %s with --tunnel geneve: %s", lxc.TunnelDevice, out)
	}
	before := rxPacketsOn(t, n2, lxc.GeneveDevice)
	connect := func(from string) probe.Result {
		return probe.Connect(ctx, c.PodNetns("t/"+from), pods["server"].IP, 8080, "TCP", time.Second)
	}
	if r := connect("client"); !r.Connected {
		t.Fatalf("client -> server over Geneve: %v", r.Err)
	}
	if r := connect("other"); r.Connected {
		t.Fatal("other -> server connected over Geneve")
	}
	if after := rxPacketsOn(t, n2, lxc.GeneveDevice); after <= before {
		t.Fatalf("n2's %s received %d packets before and %d after the probes: the overlay was not used", lxc.GeneveDevice, before, after)
	}

	idOf := identities(t, c, pods)
	client, other := uint32(idOf("client")), uint32(idOf("other"))
	srv, cli, oth := pods["server"].IP, pods["client"].IP, pods["other"].IP
	p := newOverlayProbe(t, c.PodNetns("t/server"), 5353)
	forge := func(vni uint32, opts []byte, src string, payload string, delivered bool) {
		t.Helper()
		from := cli
		if src == "other" {
			from = oth
		}
		p.expectSent(func() error { return c.ForgeGeneve("n1", "n2", vni, opts, from, srv, 5353, []byte(payload)) }, payload, delivered)
	}
	// The refused ones first: forged datagrams share one 5-tuple per
	// source address, and a delivered one makes the flow established.
	// ForgeOverlay puts the identity in the option on a Geneve node.
	p.expectSent(func() error { return c.ForgeOverlay("n1", "n2", other, cli, srv, 5353, []byte("forged-address")) }, "forged-address", false)
	forge(client, GeneveIdentityOption(other), "client", "vni-ignored", false)
	forge(client, nil, "client", "no-option", false)
	wrongClass := GeneveIdentityOption(client)
	wrongClass[0], wrongClass[1] = 0x01, 0x4b
	forge(client, wrongClass, "client", "other-class", false)
	p.expectSent(func() error { return c.ForgeOverlay("n1", "n2", client, cli, srv, 5353, []byte("client")) }, "client", true)
	p.expectSent(func() error { return c.ForgeOverlay("n1", "n2", client, oth, srv, 5353, []byte("identity-decides")) }, "identity-decides", true)
	forge(0, GeneveIdentityOption(client), "client", "client-again", true)

	if err := c.StopAgents(ctx); err != nil {
		t.Fatal(err)
	}
	for _, ns := range []string{n1, n2} {
		if out, err := exec.Command("ip", "-n", ns, "link", "show", lxc.GeneveDevice).CombinedOutput(); err == nil {
			t.Fatalf("%s still has %s after the agents stopped: %s", ns, lxc.GeneveDevice, out)
		}
	}
}

// TestMeshAgentArgsTunnel: a mesh's agents get --tunnel vxlan unless the
// datapath's options name a tunnel (ebpf+geneve: --tunnel geneve wins).
func TestMeshAgentArgsTunnel(t *testing.T) {
	m := &meshCluster{spec: cluster.ClusterSpec{Name: "east", ID: 1, Nodes: []string{"e1", "e2"}}, configPath: "/m.yaml"}
	c := &Cluster{meshOf: map[string]*meshCluster{"e1": m, "e2": m}}
	for _, tc := range []struct {
		node, datapath string
		extra          []string
		want           string
	}{
		{"e1", "ebpf", nil, "--tunnel vxlan --clustermesh /m.yaml --clustermesh-publish"},
		{"e2", "ebpf", []string{"--tunnel", "geneve"}, "--clustermesh /m.yaml"},
		{"e2", "ebpf", []string{"--tunnel=geneve"}, "--clustermesh /m.yaml"},
		{"e1", "iptables", nil, ""},
	} {
		if got := strings.Join(c.meshAgentArgs(tc.node, tc.datapath, tc.extra), " "); got != tc.want {
			t.Errorf("%s %s %q: %q, want %q", tc.node, tc.datapath, tc.extra, got, tc.want)
		}
	}
}
