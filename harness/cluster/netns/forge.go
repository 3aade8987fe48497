package netns

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"

	"github.com/fastpath-bench/fastpath/harness/execx"
)

// The agents' VXLAN overlay as the harness sees it from outside
// (datapath/lxc's TunnelDevice and TunnelPort; TestOverlayConstants
// checks them: the harness does not import the datapath).
const (
	overlayDevice = "fp_vxlan"
	overlayPort   = 8472
)

// ForgeOverlay sends, from node from, a VXLAN packet to node to's overlay
// device carrying a UDP datagram from src to dst:port with payload, and
// identity vni in the header: what a compromised node (or anything with
// the node's network) can put on the wire. The receiving node must judge
// it by the VNI, whatever src says.
func (c *Cluster) ForgeOverlay(from, to string, vni uint32, src, dst netip.Addr, port int, payload []byte) error {
	var fromNS string
	var toIP netip.Addr
	for _, n := range c.nodes {
		if n.name == from {
			fromNS = n.ns
		}
		if n.name == to {
			toIP = n.ip
		}
	}
	if fromNS == "" || !toIP.IsValid() {
		return fmt.Errorf("forge overlay packet %s -> %s: no such node", from, to)
	}
	h, err := openNL(NodeNS(c.spec.RunID, to))
	if err != nil {
		return err
	}
	link, err := h.handle.LinkByName(overlayDevice)
	h.close()
	if err != nil {
		return fmt.Errorf("node %s: %s: %w (is the overlay on?)", to, overlayDevice, err)
	}
	frame := VXLANFrame(vni, link.Attrs().HardwareAddr, src, dst, uint16(port), payload)
	return execx.RunInNetns(fromNS, func() error {
		conn, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(toIP, overlayPort)))
		if err != nil {
			return err
		}
		defer conn.Close()
		_, err = conn.Write(frame)
		return err
	})
}

// VXLANFrame is a VXLAN payload (header with vni, inner Ethernet frame to
// mac) carrying a UDP datagram from src to dst:port.
func VXLANFrame(vni uint32, mac net.HardwareAddr, src, dst netip.Addr, port uint16, payload []byte) []byte {
	b := make([]byte, 8+14+20+8+len(payload))
	b[0] = 0x08 // VNI present
	binary.BigEndian.PutUint32(b[4:], vni<<8)
	eth := b[8:]
	copy(eth[0:6], mac)
	copy(eth[6:12], []byte{0x02, 0, 0, 0, 0, 0x99})
	binary.BigEndian.PutUint16(eth[12:], 0x0800)
	ip := eth[14:]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(20+8+len(payload)))
	ip[8] = 64
	ip[9] = 17
	s, d := src.As4(), dst.As4()
	copy(ip[12:], s[:])
	copy(ip[16:], d[:])
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(ip[i:]))
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(ip[10:], ^uint16(sum))
	udp := ip[20:]
	binary.BigEndian.PutUint16(udp[0:], 40000)
	binary.BigEndian.PutUint16(udp[2:], port)
	binary.BigEndian.PutUint16(udp[4:], uint16(8+len(payload)))
	copy(udp[8:], payload) // checksum 0: none (IPv4)
	return b
}
