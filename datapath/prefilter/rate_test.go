package prefilter

import (
	"context"
	"encoding/binary"
	"net"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/fastpath-bench/fastpath/internal/testutil"
)

// xdpMD is struct xdp_md, the context BPF_PROG_RUN takes for XDP.
type xdpMD struct {
	Data, DataEnd, DataMeta, IngressIfindex, RxQueueIndex, EgressIfindex uint32
}

// trafficGen returns a program that transmits every frame it is given
// (XDP_TX): run with BPF_F_TEST_XDP_LIVE_FRAMES on a device, it sends the
// frame out of that device repeat times (the xdp-trafficgen technique;
// Linux 5.18+). There is no pktgen on this kernel.
func trafficGen(tb testing.TB) *ebpf.Program {
	tb.Helper()
	p, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.XDP, License: "GPL", Instructions: asm.Instructions{
		asm.Mov.Imm(asm.R0, 3), // XDP_TX
		asm.Return(),
	}})
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

// passProg returns XDP_PASS: attached to the receiving veth so that frames
// sent with XDP_TX are taken (veth needs an XDP program on the peer) and
// handed to the stack, where iptables sees them.
func passProg(tb testing.TB) *ebpf.Program {
	tb.Helper()
	p, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.XDP, License: "GPL", Instructions: asm.Instructions{
		asm.Mov.Imm(asm.R0, 2), // XDP_PASS
		asm.Return(),
	}})
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

// BenchmarkDropRate sends the same frames from a denied source over a veth
// pair as fast as one core can generate them, and measures how many per
// second the receiving side drops: with the XDP prefilter on the receiving
// veth, and with an XDP_PASS program there plus an iptables raw-table DROP
// by ipset (the baseline's prefilter), side by side in one run. Report:
// drop Mpps of each and their ratio.
//
//	go test -run - -bench DropRate ./datapath/prefilter/
func BenchmarkDropRate(b *testing.B) {
	testutil.RequireRoot(b)
	for _, tool := range []string{"iptables", "ipset"} {
		if _, err := exec.LookPath(tool); err != nil {
			b.Skipf("%s not installed", tool)
		}
	}
	testutil.InNewNetns(b)
	la := netlink.NewLinkAttrs()
	la.Name = "gen0"
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: "sink0"}); err != nil {
		b.Fatal(err)
	}
	for _, n := range []string{"gen0", "sink0"} {
		l, _ := netlink.LinkByName(n)
		netlink.LinkSetUp(l)
	}
	sink, _ := net.InterfaceByName("sink0")
	gen, _ := net.InterfaceByName("gen0")
	addr, _ := netlink.ParseAddr("198.19.9.1/24")
	sl, _ := netlink.LinkByName("sink0")
	netlink.AddrAdd(sl, addr)
	frame := packet("203.0.113.9")
	copy(frame[0:6], sink.HardwareAddr)
	copy(frame[6:12], gen.HardwareAddr)
	copy(frame[30:34], []byte{198, 19, 9, 1})
	ip := frame[14:34]
	binary.BigEndian.PutUint16(ip[10:], 0)
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(ip[i:]))
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(ip[10:], ^uint16(sum))
	tx := trafficGen(b)
	defer tx.Close()
	send := func(n int) time.Duration {
		start := time.Now()
		for sent := 0; sent < n; {
			batch := min(n-sent, 1<<20)
			_, err := tx.Run(&ebpf.RunOptions{Data: frame, Repeat: uint32(batch), Flags: unix.BPF_F_TEST_XDP_LIVE_FRAMES, Context: xdpMD{DataEnd: uint32(len(frame)), IngressIfindex: uint32(gen.Index)}})
			if err != nil {
				b.Fatalf("live-frames BPF_PROG_RUN (Linux 5.18+): %v", err)
			}
			sent += batch
		}
		return time.Since(start)
	}
	const frames = 2_000_000
	run := func(name string, dropped func() uint64) float64 {
		before := dropped()
		start := time.Now()
		send(frames)
		time.Sleep(50 * time.Millisecond) // let the receiver drain its ring
		d := dropped() - before
		rate := float64(d) / time.Since(start).Seconds() / 1e6
		b.Logf("%s: %d of %d frames dropped, %.2f Mpps", name, d, frames, rate)
		return rate
	}

	// XDP prefilter on the receiving veth.
	f, err := Load(Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if err := f.Set([]netip.Prefix{netip.MustParsePrefix("203.0.113.0/24")}); err != nil {
		b.Fatal(err)
	}
	if err := f.Attach("sink0"); err != nil {
		b.Fatal(err)
	}
	xdpRate := run("xdp prefilter", func() uint64 { c, _ := f.Counters(); return c.DroppedPackets })
	f.Close()

	// iptables raw DROP, behind an XDP_PASS program.
	pass := passProg(b)
	defer pass.Close()
	l, err := link.AttachXDP(link.XDPOptions{Program: pass, Interface: sink.Index})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	sh := func(args ...string) {
		if out, err := exec.CommandContext(context.Background(), args[0], args[1:]...).CombinedOutput(); err != nil {
			b.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	sh("ipset", "create", "fp-bench-deny", "hash:net")
	defer exec.Command("ipset", "destroy", "fp-bench-deny").Run()
	sh("ipset", "add", "fp-bench-deny", "203.0.113.0/24")
	sh("iptables", "-w", "-t", "raw", "-A", "PREROUTING", "-m", "set", "--match-set", "fp-bench-deny", "src", "-j", "DROP")
	defer exec.Command("iptables", "-w", "-t", "raw", "-F", "PREROUTING").Run()
	iptRate := run("iptables raw", func() uint64 {
		out, _ := exec.Command("iptables", "-w", "-t", "raw", "-L", "PREROUTING", "-v", "-x", "-n").Output()
		for _, line := range strings.Split(string(out), "\n") {
			if fs := strings.Fields(line); len(fs) > 2 && fs[2] == "DROP" {
				n, _ := strconv.ParseUint(fs[0], 10, 64)
				return n
			}
		}
		return 0
	})
	b.ReportMetric(xdpRate, "xdp-Mpps")
	b.ReportMetric(iptRate, "iptables-Mpps")
	if iptRate > 0 {
		b.ReportMetric(xdpRate/iptRate, "ratio")
	}
}
