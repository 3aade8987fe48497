package prefilter

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"

	"github.com/fastpath-bench/fastpath/internal/testutil"
)

const (
	xdpDrop = 1
	xdpPass = 2
)

func packet(src string) []byte {
	pkt := make([]byte, 14+20+8)
	binary.BigEndian.PutUint16(pkt[12:], 0x0800)
	ip := pkt[14:]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], 28)
	ip[9] = 17
	s := netip.MustParseAddr(src).As4()
	copy(ip[12:], s[:])
	copy(ip[16:], []byte{198, 19, 1, 11})
	return pkt
}

func load(t testing.TB) *Filter {
	t.Helper()
	testutil.RequireRoot(t)
	f, err := Load(Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func verdict(t *testing.T, f *Filter, pkt []byte) uint32 {
	t.Helper()
	ret, err := f.Program().Run(&ebpf.RunOptions{Data: pkt})
	if err != nil {
		t.Fatal(err)
	}
	return ret
}

func TestPrefilterVerdicts(t *testing.T) {
	f := load(t)
	deny := []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24"), netip.MustParsePrefix("198.51.100.7/32"), netip.MustParsePrefix("10.0.0.0/8")}
	if err := f.Set(deny); err != nil {
		t.Fatal(err)
	}
	for src, want := range map[string]uint32{
		"203.0.113.9":  xdpDrop,
		"198.51.100.7": xdpDrop,
		"198.51.100.8": xdpPass,
		"10.200.3.4":   xdpDrop,
		"11.0.0.1":     xdpPass,
		"203.0.114.1":  xdpPass,
		"198.19.2.11":  xdpPass,
	} {
		if got := verdict(t, f, packet(src)); got != want {
			t.Errorf("from %s: verdict %d, want %d", src, got, want)
		}
	}
	// Not IPv4, and too short for an IPv4 header: passed to the stack.
	arp := packet("203.0.113.9")
	binary.BigEndian.PutUint16(arp[12:], 0x0806)
	if got := verdict(t, f, arp); got != xdpPass {
		t.Errorf("ARP: %d", got)
	}
	if got := verdict(t, f, packet("203.0.113.9")[:20]); got != xdpPass {
		t.Errorf("truncated: %d", got)
	}
	c, err := f.Counters()
	if err != nil {
		t.Fatal(err)
	}
	if c.DroppedPackets != 3 || c.PassedPackets != 6 || c.DroppedBytes != 3*42 {
		t.Errorf("counters: %+v", c)
	}
	// Live update: the /24 goes, a new /16 comes, the /32 stays.
	if err := f.Set([]netip.Prefix{netip.MustParsePrefix("198.51.100.7/32"), netip.MustParsePrefix("192.0.0.0/16")}); err != nil {
		t.Fatal(err)
	}
	for src, want := range map[string]uint32{"203.0.113.9": xdpPass, "198.51.100.7": xdpDrop, "192.0.77.1": xdpDrop, "10.200.3.4": xdpPass} {
		if got := verdict(t, f, packet(src)); got != want {
			t.Errorf("after the update, from %s: verdict %d, want %d", src, got, want)
		}
	}
	list, err := f.List()
	if err != nil || fmt.Sprint(list) != "[192.0.0.0/16 198.51.100.7/32]" {
		t.Errorf("list: %v %v", list, err)
	}
	if err := f.Set([]netip.Prefix{netip.MustParsePrefix("2001:db8::/32")}); err == nil {
		t.Error("an IPv6 prefix was accepted")
	}
}

// TestPrefilterOnVeth attaches the program to a veth and checks that a
// denied source's packets never reach the peer's stack while others do.
func TestPrefilterOnVeth(t *testing.T) {
	f := load(t)
	testutil.InNewNetns(t)
	// No IPv6: the links' own router solicitations and MLD reports
	// would be counted as passed.
	for _, k := range []string{"all", "default"} {
		if err := os.WriteFile("/proc/sys/net/ipv6/conf/"+k+"/disable_ipv6", []byte("1"), 0o644); err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
	}
	la := netlink.NewLinkAttrs()
	la.Name = "pf0"
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: "pf1"}); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"pf0", "pf1"} {
		l, _ := netlink.LinkByName(n)
		if err := netlink.LinkSetUp(l); err != nil {
			t.Fatal(err)
		}
	}
	// A veth drops what it is given until both ends are running (on a
	// loaded machine that is not at once): wait for both (bounded).
	for _, n := range []string{"pf0", "pf1"} {
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			l, err := netlink.LinkByName(n)
			if err != nil {
				t.Fatal(err)
			}
			if l.Attrs().OperState == netlink.OperUp {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s not up after 10 s: %s", n, l.Attrs().OperState)
			}
		}
	}
	if err := f.Attach("pf1"); err != nil {
		t.Fatal(err)
	}
	if d := f.Devices(); fmt.Sprint(d) != "[pf1]" {
		t.Fatalf("devices: %v", d)
	}
	if err := f.Set([]netip.Prefix{netip.MustParsePrefix("203.0.113.0/24")}); err != nil {
		t.Fatal(err)
	}
	before, _ := f.Counters()
	sendRaw(t, "pf0", packet("203.0.113.9"), 5)
	sendRaw(t, "pf0", packet("198.51.100.1"), 3)
	// The peer's XDP runs when the veth's receive side processes the
	// frames, not before the send returns: wait for the counts (bounded).
	after, _ := f.Counters()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if after.DroppedPackets-before.DroppedPackets >= 5 && after.PassedPackets-before.PassedPackets >= 3 {
			break
		}
		after, _ = f.Counters()
	}
	if d := after.DroppedPackets - before.DroppedPackets; d != 5 {
		t.Errorf("dropped %d of the 5 denied packets (passed %d; BPF_PROG_RUN says %d)", d, after.PassedPackets-before.PassedPackets, verdict(t, f, packet("203.0.113.9")))
	}
	if p := after.PassedPackets - before.PassedPackets; p < 3 {
		t.Errorf("passed %d, want at least the 3 allowed packets", p)
	}
}

// BenchmarkPrefilter times the XDP program per packet with BPF_PROG_RUN
// while the trie grows from 10 to 10,000 prefixes; ns/pkt and Mpps (one
// core) are the program's own cost:
//
//	go test -run - -bench Prefilter ./datapath/prefilter/
func BenchmarkPrefilter(b *testing.B) {
	for _, n := range []int{10, 100, 1000, 10000} {
		for _, kind := range []string{"drop", "pass"} {
			b.Run(fmt.Sprintf("prefixes=%d/%s", n, kind), func(b *testing.B) {
				f := load(b)
				var ps []netip.Prefix
				for i := 0; i < n; i++ {
					ps = append(ps, netip.PrefixFrom(netip.AddrFrom4([4]byte{100, byte(i >> 8), byte(i), 0}), 24))
				}
				if err := f.Set(ps); err != nil {
					b.Fatal(err)
				}
				src := fmt.Sprintf("100.%d.%d.9", (n/2)>>8, (n/2)&255)
				want := uint32(xdpDrop)
				if kind == "pass" {
					src, want = "198.51.100.1", xdpPass
				}
				b.ResetTimer()
				ret, per, err := f.Program().Benchmark(packet(src), b.N, nil)
				if err != nil {
					b.Fatal(err)
				}
				if ret != want {
					b.Fatalf("verdict %d, want %d", ret, want)
				}
				ns := float64(per.Nanoseconds())
				b.ReportMetric(ns, "ns/pkt")
				if ns > 0 {
					b.ReportMetric(1e3/ns, "Mpps")
				}
			})
		}
	}
}
