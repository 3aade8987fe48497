package lxc

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"github.com/vishvananda/netlink"

	"github.com/fastpath-bench/fastpath/datapath/attach"
)

// The overlay (bpf/lib/tunnel.h): pods' packets to pods of other nodes
// travel in VXLAN with the sender's identity as VNI.
const (
	// TunnelDevice is the default name of a node's VXLAN device.
	TunnelDevice = "fp_vxlan"
	// TunnelPort is the VXLAN UDP port.
	TunnelPort = int(lxcTunnelConstTUNNEL_PORT)
	// MaxTunnelIdentity is the largest identity a VNI carries.
	MaxTunnelIdentity = uint32(lxcTunnelConstTUNNEL_VNI_MASK)
)

// TunnelMAC is the MAC of every node's VXLAN device (TUNNEL_MAC in
// bpf/lib/tunnel.h): the inner destination of encapsulated frames.
var TunnelMAC = net.HardwareAddr{0x02, 0xfa, 0x57, 0x00, 0x00, 0x01}

// TunnelOptions configure the overlay; zero values mean defaults.
type TunnelOptions struct {
	// Device is the VXLAN device's name; "": TunnelDevice.
	Device string
	// MTU of the device; 0: 1450 (a 1500-byte underlay less VXLAN's 50).
	MTU int
}

// tunnelState is the overlay of a Datapath.
type tunnelState struct {
	link    netlink.Link
	att     attach.Attachment
	created bool
}

// EnableTunnel sends pods' packets to pods of other nodes through the
// overlay: it creates the VXLAN device (external mode, TunnelPort,
// TunnelMAC) in the current network namespace, or takes over one that
// has exactly that configuration, attaches the program that reads the
// sender's identity from the VNI to its tc ingress, and points the
// endpoints' egress programs at it. Close removes what it created.
func (d *Datapath) EnableTunnel(opts TunnelOptions) (err error) {
	if opts.Device == "" {
		opts.Device = TunnelDevice
	}
	if opts.MTU == 0 {
		opts.MTU = 1450
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.tunnel != nil {
		return fmt.Errorf("overlay: already enabled on %s", d.tunnel.link.Attrs().Name)
	}
	ts := &tunnelState{}
	defer func() {
		if err != nil {
			ts.close()
		}
	}()
	if l, lerr := netlink.LinkByName(opts.Device); lerr == nil {
		vx, ok := l.(*netlink.Vxlan)
		if !ok || !vx.FlowBased || vx.Port != TunnelPort || vx.HardwareAddr.String() != TunnelMAC.String() {
			return fmt.Errorf("overlay: device %s exists and is not an external VXLAN device on port %d with MAC %s", opts.Device, TunnelPort, TunnelMAC)
		}
		ts.link = l
	} else {
		vx := &netlink.Vxlan{
			LinkAttrs: netlink.LinkAttrs{Name: opts.Device, MTU: opts.MTU, HardwareAddr: TunnelMAC},
			FlowBased: true,
			Port:      TunnelPort,
		}
		if err := netlink.LinkAdd(vx); err != nil {
			return fmt.Errorf("overlay: create VXLAN device %s: %w", opts.Device, err)
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
	if err := d.objs.FpTunnel.Put(uint32(0), lxcTunnelConfig{Ifindex: uint32(ts.link.Attrs().Index)}); err != nil {
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
