package attach

import (
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"

	"github.com/fastpath-bench/fastpath/internal/testutil"
)

func dummy(t *testing.T) int {
	t.Helper()
	testutil.InNewNetns(t)
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "fp0"}, PeerName: "fp1"}); err != nil {
		t.Fatal(err)
	}
	l, err := netlink.LinkByName("fp0")
	if err != nil {
		t.Fatal(err)
	}
	return l.Attrs().Index
}

func prog(t *testing.T) *ebpf.Program {
	t.Helper()
	p, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.SchedCLS, License: "GPL", Instructions: returnZero})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func TestNetlinkAttachAndDetach(t *testing.T) {
	idx := dummy(t)
	p := prog(t)
	for _, dir := range []Direction{Ingress, Egress} {
		a, err := TC(TCOptions{Ifindex: idx, Program: p, Direction: dir, Mode: ModeNetlink})
		if err != nil {
			t.Fatal(err)
		}
		if a.Mode() != ModeNetlink {
			t.Fatalf("mode %s", a.Mode())
		}
		parent := uint32(netlink.HANDLE_MIN_INGRESS)
		if dir == Egress {
			parent = netlink.HANDLE_MIN_EGRESS
		}
		link, _ := netlink.LinkByIndex(idx)
		filters, err := netlink.FilterList(link, parent)
		if err != nil || len(filters) != 1 {
			t.Fatalf("%s filters: %v %v", dir, filters, err)
		}
		if bf, ok := filters[0].(*netlink.BpfFilter); !ok || !bf.DirectAction {
			t.Fatalf("%s filter is not a direct-action bpf filter: %+v", dir, filters[0])
		}
		if err := a.Detach(); err != nil {
			t.Fatal(err)
		}
		if filters, _ := netlink.FilterList(link, parent); len(filters) != 0 {
			t.Fatalf("%s filter left after detach: %v", dir, filters)
		}
	}
}

func TestTCXAttachAndDetach(t *testing.T) {
	if err := HaveTCX(); err != nil {
		testutil.SkipOrFail(t, true, "kernel has no TCX: "+err.Error())
	}
	idx := dummy(t)
	p := prog(t)
	a, err := TC(TCOptions{Ifindex: idx, Program: p, Direction: Ingress})
	if err != nil {
		t.Fatal(err)
	}
	if a.Mode() != ModeTCX {
		t.Fatalf("auto mode on a TCX kernel chose %s", a.Mode())
	}
	q, err := link.QueryPrograms(link.QueryOptions{Target: idx, Attach: ebpf.AttachTCXIngress})
	if err != nil || len(q.Programs) != 1 {
		t.Fatalf("query: %+v %v", q, err)
	}
	if err := a.Detach(); err != nil {
		t.Fatal(err)
	}
	q, _ = link.QueryPrograms(link.QueryOptions{Target: idx, Attach: ebpf.AttachTCXIngress})
	if q != nil && len(q.Programs) != 0 {
		t.Fatalf("program left after detach")
	}
}

func TestParseMode(t *testing.T) {
	for in, want := range map[string]Mode{"": ModeAuto, "auto": ModeAuto, "tcx": ModeTCX, "tc": ModeNetlink} {
		if got, err := ParseMode(in); err != nil || got != want {
			t.Errorf("ParseMode(%q) = %q, %v", in, got, err)
		}
	}
	if _, err := ParseMode("xdp"); err == nil {
		t.Error("bad mode accepted")
	}
}
