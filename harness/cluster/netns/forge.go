package netns

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"

	"github.com/fastpath-bench/fastpath/harness/execx"
)

// The agents' overlay as the harness sees it from outside (datapath/lxc's
// TunnelDevice, TunnelPort, GeneveDevice, GenevePort and the identity
// option's class, type and length; TestOverlayConstants checks them: the
// harness does not import the datapath).
const (
	overlayDevice       = "fp_vxlan"
	overlayPort         = 8472
	overlayGeneveDevice = "fp_geneve"
	overlayGenevePort   = 6081
	geneveOptClass      = 0xfff0
	geneveOptType       = 0x81
	geneveOptLen        = 1
)

// ForgeOverlay sends, from node from, an overlay packet to node to's
// overlay device carrying a UDP datagram from src to dst:port with
// payload, and identity vni in the tunnel (VXLAN: the VNI; Geneve, when
// node to has the Geneve device: the identity option, VNI 0): what a
// compromised node (or anything with the node's network) can put on the
// wire. The receiving node must judge it by that identity, whatever src
// says.
func (c *Cluster) ForgeOverlay(from, to string, vni uint32, src, dst netip.Addr, port int, payload []byte) error {
	return c.forgeOverlay(from, to, func(geneve bool, mac net.HardwareAddr) []byte {
		if geneve {
			return GeneveFrame(0, GeneveIdentityOption(vni), mac, src, dst, uint16(port), payload)
		}
		return VXLANFrame(vni, mac, src, dst, uint16(port), payload)
	})
}

// ForgeGeneve sends, from node from, a Geneve packet with VNI vni and
// options opts (GeneveFrame) to node to's Geneve device.
func (c *Cluster) ForgeGeneve(from, to string, vni uint32, opts []byte, src, dst netip.Addr, port int, payload []byte) error {
	return c.forgeOverlay(from, to, func(geneve bool, mac net.HardwareAddr) []byte {
		if !geneve {
			return nil
		}
		return GeneveFrame(vni, opts, mac, src, dst, uint16(port), payload)
	})
}

// forgeOverlay sends the frame build makes for node to's overlay device
// (Geneve or VXLAN, with the device's MAC) from node from's namespace.
func (c *Cluster) forgeOverlay(from, to string, build func(geneve bool, mac net.HardwareAddr) []byte) error {
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
	geneve, port := true, overlayGenevePort
	link, err := h.handle.LinkByName(overlayGeneveDevice)
	if err != nil {
		geneve, port = false, overlayPort
		link, err = h.handle.LinkByName(overlayDevice)
	}
	h.close()
	if err != nil {
		return fmt.Errorf("node %s: neither %s nor %s: %w (is the overlay on?)", to, overlayDevice, overlayGeneveDevice, err)
	}
	frame := build(geneve, link.Attrs().HardwareAddr)
	if frame == nil {
		return fmt.Errorf("node %s: no %s (the overlay is not Geneve)", to, overlayGeneveDevice)
	}
	return execx.RunInNetns(fromNS, func() error {
		conn, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(toIP, uint16(port))))
		if err != nil {
			return err
		}
		defer conn.Close()
		_, err = conn.Write(frame)
		return err
	})
}

// GeneveIdentityOption is the Geneve option that carries identity in the
// agents' overlay (class 0xfff0, type 0x81, 4 bytes, big-endian).
func GeneveIdentityOption(identity uint32) []byte {
	o := make([]byte, 8)
	binary.BigEndian.PutUint16(o, geneveOptClass)
	o[2] = geneveOptType
	o[3] = geneveOptLen
	binary.BigEndian.PutUint32(o[4:], identity)
	return o
}

// GeneveFrame is a Geneve payload (header with vni and opts, a multiple
// of 4 bytes; inner Ethernet frame to mac) carrying a UDP datagram from
// src to dst:port.
func GeneveFrame(vni uint32, opts []byte, mac net.HardwareAddr, src, dst netip.Addr, port uint16, payload []byte) []byte {
	vx := VXLANFrame(0, mac, src, dst, port, payload)
	b := make([]byte, 8, 8+len(opts)+len(vx)-8)
	b[0] = byte(len(opts) / 4) // version 0, options' length in 4-byte words
	binary.BigEndian.PutUint16(b[2:], 0x6558)
	binary.BigEndian.PutUint32(b[4:], vni<<8)
	b = append(b, opts...)
	return append(b, vx[8:]...)
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
