package netns

import (
	"net"
	"testing"

	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

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
