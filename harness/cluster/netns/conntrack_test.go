package netns

import (
	"context"
	"net"
	"testing"

	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/fastpath-bench/fastpath/harness/cluster"
	"github.com/fastpath-bench/fastpath/internal/testutil"
)

// A conntrack entry made in a namespace is gone after FlushConntrack of
// that namespace, and one in another namespace is not.
func TestFlushConntrack(t *testing.T) {
	testutil.RequireRoot(t)
	a, b := testutil.RunID("cta"), testutil.RunID("ctb")
	for _, n := range []string{a, b} {
		if err := addNetns(n); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = delNetns(n) })
	}
	handle := func(ns string) *netlink.Handle {
		nsh, err := vnetns.GetFromName(ns)
		if err != nil {
			t.Fatal(err)
		}
		defer nsh.Close()
		h, err := netlink.NewHandleAt(nsh, unix.NETLINK_NETFILTER)
		if err != nil {
			t.Skipf("no conntrack netlink in this kernel: %v", err)
		}
		t.Cleanup(h.Close)
		return h
	}
	flow := func() *netlink.ConntrackFlow {
		f := &netlink.ConntrackFlow{FamilyType: unix.AF_INET, TimeOut: 300}
		f.Forward = netlink.IPTuple{SrcIP: net.ParseIP("10.245.1.2"), DstIP: net.ParseIP("10.244.1.2"), Protocol: unix.IPPROTO_TCP, SrcPort: 9000, DstPort: 40000}
		f.Reverse = netlink.IPTuple{SrcIP: net.ParseIP("10.244.1.2"), DstIP: net.ParseIP("10.245.1.2"), Protocol: unix.IPPROTO_TCP, SrcPort: 40000, DstPort: 9000}
		f.ProtoInfo = &netlink.ProtoInfoTCP{State: 3} // established
		return f
	}
	count := func(h *netlink.Handle) int {
		flows, err := h.ConntrackTableList(netlink.ConntrackTable, unix.AF_INET)
		if err != nil {
			t.Fatal(err)
		}
		return len(flows)
	}
	ha, hb := handle(a), handle(b)
	for _, h := range []*netlink.Handle{ha, hb} {
		if err := h.ConntrackCreate(netlink.ConntrackTable, unix.AF_INET, flow()); err != nil {
			t.Skipf("cannot create a conntrack entry here: %v", err)
		}
	}
	if count(ha) != 1 || count(hb) != 1 {
		t.Fatalf("entries before the flush: %d, %d; want 1, 1", count(ha), count(hb))
	}
	if err := FlushConntrack(netnsRunDir + "/" + a); err != nil {
		t.Fatal(err)
	}
	if count(ha) != 0 {
		t.Errorf("%d entries left in the flushed namespace", count(ha))
	}
	if count(hb) != 1 {
		t.Errorf("the other namespace's entry was flushed too (%d left)", count(hb))
	}
}

// StartAgents empties the nodes' conntrack tables before the datapath
// starts: an entry left in a node's table (as the previous datapath's
// traffic leaves them) is gone once the agents run.
func TestStartAgentsFlushesConntrack(t *testing.T) {
	testutil.RequireRoot(t)
	ctx := context.Background()
	c, err := NewProvider(Options{AgentBinary: agentBin}).Create(ctx, cluster.Spec{
		RunID:  runID(t),
		Nodes:  []string{"n1"},
		Pods:   []cluster.PodSpec{{Namespace: "t", Name: "a", Node: "n1"}},
		LogDir: t.TempDir(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Destroy(context.Background()) })
	ns := c.nodes[0].ns
	nsh, err := vnetns.GetFromName(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer nsh.Close()
	h, err := netlink.NewHandleAt(nsh, unix.NETLINK_NETFILTER)
	if err != nil {
		t.Skipf("no conntrack netlink in this kernel: %v", err)
	}
	defer h.Close()
	f := &netlink.ConntrackFlow{FamilyType: unix.AF_INET, TimeOut: 300, ProtoInfo: &netlink.ProtoInfoTCP{State: 3}}
	f.Forward = netlink.IPTuple{SrcIP: net.ParseIP("10.1.0.9"), DstIP: net.ParseIP("10.1.0.2"), Protocol: unix.IPPROTO_TCP, SrcPort: 9000, DstPort: 40000}
	f.Reverse = netlink.IPTuple{SrcIP: net.ParseIP("10.1.0.2"), DstIP: net.ParseIP("10.1.0.9"), Protocol: unix.IPPROTO_TCP, SrcPort: 40000, DstPort: 9000}
	if err := h.ConntrackCreate(netlink.ConntrackTable, unix.AF_INET, f); err != nil {
		t.Skipf("cannot create a conntrack entry here: %v", err)
	}
	if err := c.StartAgents(ctx, cluster.AgentOptions{Datapath: "none"}); err != nil {
		t.Fatal(err)
	}
	defer c.StopAgents(context.Background())
	flows, err := h.ConntrackTableList(netlink.ConntrackTable, unix.AF_INET)
	if err != nil {
		t.Fatal(err)
	}
	for _, fl := range flows {
		if fl.Forward.SrcPort == 9000 && fl.Forward.DstPort == 40000 {
			t.Fatalf("the entry made before StartAgents is still there: %s", fl)
		}
	}
}
