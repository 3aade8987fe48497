package lxc

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/fastpath-bench/fastpath/datapath/model"
)

// l4ChecksumAt is l4Checksum for an IPv4 header of any length.
func l4ChecksumAt(pkt []byte) uint16 {
	ihl := int(pkt[14]&0xf) * 4
	ip := pkt[14 : 14+ihl]
	l4 := pkt[14+ihl:]
	var pseudo uint32
	for _, o := range []int{12, 14, 16, 18} {
		pseudo += uint32(binary.BigEndian.Uint16(ip[o:]))
	}
	pseudo += uint32(ip[9]) + uint32(len(l4))
	return checksum16(l4, pseudo)
}

// TestNodePortUplink runs the uplink program on packets from outside to a
// NodePort: to a backend on another node the SYN is translated and carries
// the DSR option (valid checksums), later packets are translated without
// it; that node's uplink program learns the option, and its pod's egress
// hook then turns the reply's source into the NodePort the client used.
func TestNodePortUplink(t *testing.T) {
	d := loadClientOnLo(t, testObjects())
	from, _ := d.Programs()
	uplink := d.objs.FpFromNetdev
	external := netip.MustParseAddr("198.18.0.254")
	node1 := netip.MustParseAddr("198.18.0.1")
	remote := netip.MustParseAddr("10.9.0.7") // a backend on another node
	svc := service(vip, 80, model.ProtoTCP, backend(remote, 8080, model.BackendActive))
	svc.NodePortType = true
	svc.Ports[0].NodePort = 30080
	local := service(vipOther, 80, model.ProtoTCP, backend(clientIP, 8080, model.BackendActive))
	local.NodePortType = true
	local.Ports[0].NodePort = 30081
	if _, err := d.ApplyServices([]*model.Service{svc, local}, []netip.Addr{node1}, LBOptions{}); err != nil {
		t.Fatal(err)
	}

	runRaw := func(prog *ebpf.Program, pkt []byte) (uint32, []byte) {
		t.Helper()
		opts := &ebpf.RunOptions{Data: pkt, DataOut: make([]byte, len(pkt)+64)}
		ret, err := prog.Run(opts)
		if err != nil {
			t.Fatalf("BPF_PROG_RUN: %v", err)
		}
		out := opts.DataOut
		ihl := int(out[14]&0xf) * 4
		if checksum16(out[14:14+ihl], 0) != 0 {
			t.Fatalf("bad IPv4 checksum: % x", out[14:14+ihl])
		}
		if l4ChecksumAt(out) != 0 {
			t.Fatalf("bad L4 checksum")
		}
		return ret, out
	}

	ret, out := runRaw(uplink, withChecksums(tcpPacket(external, 40000, node1, 30080, flagSYN)))
	if ret != actOK {
		t.Fatalf("SYN to the NodePort: verdict %d", ret)
	}
	if out[14] != 0x47 || binary.BigEndian.Uint16(out[16:]) != 20+8+20 {
		t.Fatalf("SYN to a remote backend: header % x, want IHL 6 and the DSR option", out[14:42])
	}
	wantOpt := []byte{0x9a, 8, 0x75, 0x80, 198, 18, 0, 1} // port 30080, node1
	if !bytes.Equal(out[34:42], wantOpt) {
		t.Fatalf("DSR option % x, want % x", out[34:42], wantOpt)
	}
	if dst, _ := netip.AddrFromSlice(out[30:34]); dst != remote || binary.BigEndian.Uint16(out[42+2:]) != 8080 {
		t.Fatalf("SYN sent to %s:%d, want the backend", dst, binary.BigEndian.Uint16(out[44:]))
	}
	ret, out = runRaw(uplink, withChecksums(tcpPacket(external, 40000, node1, 30080, flagACK)))
	if ret != actOK || out[14] != 0x45 {
		t.Fatalf("second packet: verdict %d, IHL %d (no option after the SYN)", ret, out[14]&0xf)
	}

	// The backend's node: the option arrives, the reply leaves as the
	// NodePort. Here the backend is the local endpoint (clientIP).
	syn := withChecksums(tcpPacket(external, 40001, clientIP, 8080, flagSYN))
	withOpt := append(append(append([]byte{}, syn[:34]...), wantOpt...), syn[34:]...)
	withOpt[14] = 0x47
	binary.BigEndian.PutUint16(withOpt[16:], uint16(len(withOpt)-14))
	binary.BigEndian.PutUint16(withOpt[24:], 0)
	binary.BigEndian.PutUint16(withOpt[24:], checksum16(withOpt[14:42], 0))
	if ret, _ := runRaw(uplink, withOpt); ret != actOK {
		t.Fatalf("SYN with the option: verdict %d", ret)
	}
	_, to := d.Programs()
	if ret, _ := runRaw(to, withChecksums(tcpPacket(external, 40001, clientIP, 8080, flagSYN))); ret != actOK {
		t.Fatalf("SYN into the backend pod: verdict %d", ret)
	}
	// The reply is redirected (TC_ACT_REDIRECT) with the NodePort as its
	// source.
	ret, out = runRaw(from, withChecksums(tcpPacket(clientIP, 8080, external, 40001, flagSYN|flagACK)))
	if src, _ := netip.AddrFromSlice(out[26:30]); src != node1 || binary.BigEndian.Uint16(out[34:]) != 30080 {
		t.Fatalf("reply left as %s:%d (verdict %d), want %s:30080", src, binary.BigEndian.Uint16(out[34:]), ret, node1)
	}
}
