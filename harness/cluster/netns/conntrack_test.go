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

// ctHandle is a conntrack netlink handle in the named namespace (the
// test skips where the kernel has none).
func ctHandle(t *testing.T, ns string) *netlink.Handle {
	t.Helper()
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

// addReverseEntry makes the kind of entry the eBPF datapath leaves: an
// established TCP connection from a server's port 9000 to a client's
// port 40000, as netfilter tracks replies it saw without their requests.
func addReverseEntry(t *testing.T, h *netlink.Handle) {
	t.Helper()
	f := &netlink.ConntrackFlow{FamilyType: unix.AF_INET, TimeOut: 300, ProtoInfo: &netlink.ProtoInfoTCP{State: 3}} // established
	f.Forward = netlink.IPTuple{SrcIP: net.ParseIP("10.245.1.2"), DstIP: net.ParseIP("10.244.1.2"), Protocol: unix.IPPROTO_TCP, SrcPort: 9000, DstPort: 40000}
	f.Reverse = netlink.IPTuple{SrcIP: net.ParseIP("10.244.1.2"), DstIP: net.ParseIP("10.245.1.2"), Protocol: unix.IPPROTO_TCP, SrcPort: 40000, DstPort: 9000}
	if err := h.ConntrackCreate(netlink.ConntrackTable, unix.AF_INET, f); err != nil {
		t.Skipf("cannot create a conntrack entry here: %v", err)
	}
}

// reverseEntries counts the entries addReverseEntry makes.
func reverseEntries(t *testing.T, h *netlink.Handle) int {
	t.Helper()
	flows, err := h.ConntrackTableList(netlink.ConntrackTable, unix.AF_INET)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, f := range flows {
		if f.Forward.SrcPort == 9000 && f.Forward.DstPort == 40000 {
			n++
		}
	}
	return n
}

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
	ha, hb := ctHandle(t, a), ctHandle(t, b)
	addReverseEntry(t, ha)
	addReverseEntry(t, hb)
	if reverseEntries(t, ha) != 1 || reverseEntries(t, hb) != 1 {
		t.Fatalf("entries before the flush: %d, %d; want 1, 1", reverseEntries(t, ha), reverseEntries(t, hb))
	}
	if err := FlushConntrack(netnsRunDir + "/" + a); err != nil {
		t.Fatal(err)
	}
	if n := reverseEntries(t, ha); n != 0 {
		t.Errorf("%d entries left in the flushed namespace", n)
	}
	if n := reverseEntries(t, hb); n != 1 {
		t.Errorf("the other namespace's entry was flushed too (%d left)", n)
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
	h := ctHandle(t, c.nodes[0].ns)
	addReverseEntry(t, h)
	if err := c.StartAgents(ctx, cluster.AgentOptions{Datapath: "none"}); err != nil {
		t.Fatal(err)
	}
	defer c.StopAgents(context.Background())
	if n := reverseEntries(t, h); n != 0 {
		t.Fatalf("%d entries made before StartAgents are still there", n)
	}
}
