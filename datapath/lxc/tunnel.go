package lxc

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/fastpath-bench/fastpath/datapath/attach"
)

// The overlay (bpf/lib/tunnel.h): pods' packets to pods of other nodes
// travel in VXLAN with the sender's identity as VNI, or in Geneve with the
// identity in an option (TunnelOptClass, TunnelOptType).
const (
	// TunnelDevice is the default name of a node's VXLAN device.
	TunnelDevice = "fp_vxlan"
	// GeneveDevice is the default name of a node's Geneve device.
	GeneveDevice = "fp_geneve"
	// TunnelPort is the VXLAN UDP port.
	TunnelPort = int(lxcTunnelConstTUNNEL_PORT)
	// GenevePort is the Geneve UDP port.
	GenevePort = int(lxcTunnelConstTUNNEL_GENEVE_PORT)
	// MaxTunnelIdentity is the largest identity the overlay carries.
	MaxTunnelIdentity = uint32(lxcTunnelConstTUNNEL_VNI_MASK)
	// TunnelOptClass, TunnelOptType and TunnelOptLen are the Geneve
	// option that carries the sender's identity (big-endian, 4 bytes):
	// an experimental-use class (RFC 8926), the critical bit set.
	TunnelOptClass = uint16(lxcTunnelConstTUNNEL_OPT_CLASS)
	TunnelOptType  = uint8(lxcTunnelConstTUNNEL_OPT_TYPE)
	TunnelOptLen   = uint8(lxcTunnelConstTUNNEL_OPT_LEN)
)

// Tunnel types (TunnelOptions.Type, the agent's --tunnel).
const (
	TunnelVXLAN  = "vxlan"
	TunnelGeneve = "geneve"
)

// TunnelTypes are the overlays EnableTunnel knows.
var TunnelTypes = []string{TunnelVXLAN, TunnelGeneve}

// TunnelMAC is the MAC of every node's overlay device (TUNNEL_MAC in
// bpf/lib/tunnel.h): the inner destination of encapsulated frames.
var TunnelMAC = net.HardwareAddr{0x02, 0xfa, 0x57, 0x00, 0x00, 0x01}

// TunnelOptions configure the overlay; zero values mean defaults.
type TunnelOptions struct {
	// Type is TunnelVXLAN ("": the default) or TunnelGeneve.
	Type string
	// Device is the overlay device's name; "": TunnelDevice (VXLAN) or
	// GeneveDevice.
	Device string
	// MTU of the device; 0: 1450 for VXLAN (a 1500-byte underlay less
	// VXLAN's 50), 1442 for Geneve (less 50 and the 8-byte option).
	MTU int
}

// tunnelState is the overlay of a Datapath.
type tunnelState struct {
	link    netlink.Link
	typ     string
	att     attach.Attachment
	created bool
}

// EnableTunnel sends pods' packets to pods of other nodes through the
// overlay: it creates the VXLAN or Geneve device (external mode,
// TunnelPort or GenevePort, TunnelMAC) in the current network namespace,
// or takes over one that has exactly that configuration, attaches the
// program that reads the sender's identity from the tunnel to its tc
// ingress, and points the endpoints' egress programs at it (fp_tunnel:
// the device and the type). Close removes what it created.
func (d *Datapath) EnableTunnel(opts TunnelOptions) (err error) {
	var typ lxcTunnelType
	switch opts.Type {
	case "", TunnelVXLAN:
		opts.Type, typ = TunnelVXLAN, lxcTunnelTypeTUNNEL_TYPE_VXLAN
		if opts.Device == "" {
			opts.Device = TunnelDevice
		}
		if opts.MTU == 0 {
			opts.MTU = 1450
		}
	case TunnelGeneve:
		typ = lxcTunnelTypeTUNNEL_TYPE_GENEVE
		if opts.Device == "" {
			opts.Device = GeneveDevice
		}
		if opts.MTU == 0 {
			opts.MTU = 1442
		}
	default:
		return fmt.Errorf("overlay: type %q: want %s or %s", opts.Type, TunnelVXLAN, TunnelGeneve)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.tunnel != nil {
		return fmt.Errorf("overlay: already enabled on %s", d.tunnel.link.Attrs().Name)
	}
	ts := &tunnelState{typ: opts.Type}
	defer func() {
		if err != nil {
			ts.close()
		}
	}()
	if l, lerr := netlink.LinkByName(opts.Device); lerr == nil {
		if !tunnelDeviceMatches(l, opts.Type) {
			port := TunnelPort
			if opts.Type == TunnelGeneve {
				port = GenevePort
			}
			return fmt.Errorf("overlay: device %s exists and is not an external %s device on port %d with MAC %s", opts.Device, opts.Type, port, TunnelMAC)
		}
		ts.link = l
	} else {
		var link netlink.Link = &netlink.Vxlan{
			LinkAttrs: netlink.LinkAttrs{Name: opts.Device, MTU: opts.MTU, HardwareAddr: TunnelMAC},
			FlowBased: true,
			Port:      TunnelPort,
		}
		if opts.Type == TunnelGeneve {
			link = &netlink.Geneve{
				LinkAttrs: netlink.LinkAttrs{Name: opts.Device, MTU: opts.MTU, HardwareAddr: TunnelMAC},
				FlowBased: true,
				Dport:     uint16(GenevePort),
			}
		}
		if err := netlink.LinkAdd(link); err != nil {
			if errors.Is(err, unix.EOPNOTSUPP) {
				return fmt.Errorf("overlay: create %s device %s: %w (the kernel has no %s devices: CONFIG_%s, or its module, is missing)",
					opts.Type, opts.Device, err, opts.Type, strings.ToUpper(opts.Type))
			}
			return fmt.Errorf("overlay: create %s device %s: %w", opts.Type, opts.Device, err)
		}
		ts.created = true
		if ts.link, err = netlink.LinkByName(opts.Device); err != nil {
			return fmt.Errorf("overlay: %s: %w", opts.Device, err)
		}
	}
	if err := netlink.LinkSetUp(ts.link); err != nil {
		return fmt.Errorf("overlay: set %s up: %w", opts.Device, err)
	}
	// Decapsulated packets come from pods whose addresses are routed
	// through the uplink: a reverse-path filter on the device would drop
	// them.
	rp := filepath.Join("/proc/sys/net/ipv4/conf", opts.Device, "rp_filter")
	if err := os.WriteFile(rp, []byte("0"), 0o644); err != nil {
		return fmt.Errorf("overlay: %s: %w", rp, err)
	}
	ts.att, err = attach.TC(attach.TCOptions{Ifindex: ts.link.Attrs().Index, Program: d.objs.FpFromTunnel, Direction: attach.Ingress,
		Mode: d.opts.AttachMode, Name: "fastpath-tunnel"})
	if err != nil {
		return fmt.Errorf("overlay: attach to %s: %w", opts.Device, err)
	}
	if err := d.objs.FpTunnel.Put(uint32(0), lxcTunnelConfig{Ifindex: uint32(ts.link.Attrs().Index), Type: uint32(typ)}); err != nil {
		return fmt.Errorf("overlay: set fp_tunnel: %w", err)
	}
	d.tunnel = ts
	return nil
}

// TunnelDeviceName is the overlay's device, "" when there is none.
func (d *Datapath) TunnelDeviceName() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.tunnel == nil {
		return ""
	}
	return d.tunnel.link.Attrs().Name
}

// TunnelType is the overlay's type (TunnelVXLAN, TunnelGeneve), "" when
// there is none.
func (d *Datapath) TunnelType() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.tunnel == nil {
		return ""
	}
	return d.tunnel.typ
}

// tunnelDeviceMatches tells whether an existing device l is the overlay
// device EnableTunnel would create for typ.
func tunnelDeviceMatches(l netlink.Link, typ string) bool {
	if l.Attrs().HardwareAddr.String() != TunnelMAC.String() {
		return false
	}
	switch dev := l.(type) {
	case *netlink.Vxlan:
		return typ == TunnelVXLAN && dev.FlowBased && dev.Port == TunnelPort
	case *netlink.Geneve:
		return typ == TunnelGeneve && dev.FlowBased && int(dev.Dport) == GenevePort
	}
	return false
}

func (ts *tunnelState) close() error {
	var errs []error
	if ts.att != nil {
		errs = append(errs, ts.att.Detach())
	}
	if ts.created && ts.link != nil {
		if err := netlink.LinkDel(ts.link); err != nil {
			errs = append(errs, fmt.Errorf("overlay: delete %s: %w", ts.link.Attrs().Name, err))
		}
	}
	return errors.Join(errs...)
}
