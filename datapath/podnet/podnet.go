// Package podnet wires a pod's network namespace to its node: a veth pair
// whose node side (named model.InterfaceName(namespace, name), where the
// eBPF datapath finds it) stays in the node namespace and whose other side
// becomes the pod's eth0. The pod gets its address as a /32 and a default
// route via a link-local gateway (169.254.1.1) that only exists as a
// permanent neighbour entry pointing at the node side's MAC; the node gets
// a /32 route to the pod through the veth and a permanent neighbour entry
// for the pod. No ARP is ever needed, and the pod is IPv4-only.
//
// The CNI plugin (datapath/cni) and the netns test provider share it.
// Namespaces are addressed by netlink handles bound to them; only the
// sysctl writes run on a thread that enters a namespace.
package podnet

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// DefaultGateway is the pod's default gateway when Options.Gateway is
// zero.
var DefaultGateway = netip.MustParseAddr("169.254.1.1")

// DefaultPodIfName is the pod-side interface name when Options.PodIfName
// is empty.
const DefaultPodIfName = "eth0"

// Options say which pod to wire and how.
type Options struct {
	// NodeNetns is the path of the node's network namespace; "" is the
	// namespace of the calling thread.
	NodeNetns string
	// PodNetns is the path of the pod's network namespace, such as
	// /proc/PID/ns/net or /var/run/netns/NAME. Required (Teardown can do
	// without it).
	PodNetns string
	// HostIfName is the node side of the veth, usually
	// model.InterfaceName(namespace, name). Required.
	HostIfName string
	// PodIfName is the pod side of the veth; "" is "eth0".
	PodIfName string
	// IP is the pod's address (IPv4). Required.
	IP netip.Addr
	// Gateway is the pod's default gateway; zero is DefaultGateway.
	Gateway netip.Addr
	// HostMAC and PodMAC are the veth's addresses; nil derives them from
	// HostIfName (DeriveMACs).
	HostMAC, PodMAC net.HardwareAddr
	// MTU of the veth; 0 is the MTU of the node's default route device,
	// or 1500 when the node has no default route.
	MTU int
	// Owner (the CNI container id) is recorded as the host side's alias
	// by Setup; Teardown with an Owner leaves a host interface recorded
	// for another owner alone: a late DEL of a pod's old sandbox must not
	// remove the veth its new sandbox (same pod name, same interface
	// name) has. Empty: no record, no check.
	Owner string
}

// Result describes a wired pod.
type Result struct {
	HostIfName  string
	HostIfIndex int
	HostMAC     net.HardwareAddr
	PodIfName   string
	// PodIfIndex is the index of the pod side in the pod's namespace.
	PodIfIndex int
	PodMAC     net.HardwareAddr
	IP         netip.Addr
	Gateway    netip.Addr
	MTU        int
}

// DeriveMACs returns the MACs of the node and pod sides of a veth named
// hostIfName: locally administered unicast addresses (02:fe:… and
// 02:0a:…) from an FNV-1a hash of the name, as the netns provider did.
func DeriveMACs(hostIfName string) (host, pod net.HardwareAddr) {
	return mac(0xfe, hostIfName), mac(0x0a, hostIfName)
}

func mac(kind byte, name string) net.HardwareAddr {
	h := uint32(2166136261)
	for i := 0; i < len(name); i++ {
		h ^= uint32(name[i])
		h *= 16777619
	}
	return net.HardwareAddr{0x02, kind, byte(h >> 24), byte(h >> 16), byte(h >> 8), byte(h)}
}

// normalize checks o and fills in the defaults; needPod says whether the
// pod's namespace and address are required.
func (o Options) normalize(needPod bool) (Options, error) {
	if o.HostIfName == "" {
		return o, errors.New("podnet: no host interface name")
	}
	if len(o.HostIfName) > unix.IFNAMSIZ-1 {
		return o, fmt.Errorf("podnet: host interface name %q longer than %d characters", o.HostIfName, unix.IFNAMSIZ-1)
	}
	if o.PodIfName == "" {
		o.PodIfName = DefaultPodIfName
	}
	if len(o.PodIfName) > unix.IFNAMSIZ-1 {
		return o, fmt.Errorf("podnet: pod interface name %q longer than %d characters", o.PodIfName, unix.IFNAMSIZ-1)
	}
	if needPod {
		if o.PodNetns == "" {
			return o, fmt.Errorf("podnet: %s: no pod network namespace", o.HostIfName)
		}
		if !o.IP.Unmap().Is4() {
			return o, fmt.Errorf("podnet: %s: pod address %q: want IPv4", o.HostIfName, o.IP)
		}
	}
	o.IP = o.IP.Unmap()
	if !o.Gateway.IsValid() {
		o.Gateway = DefaultGateway
	}
	if !o.Gateway.Unmap().Is4() {
		return o, fmt.Errorf("podnet: %s: gateway %s: want IPv4", o.HostIfName, o.Gateway)
	}
	o.Gateway = o.Gateway.Unmap()
	host, pod := DeriveMACs(o.HostIfName)
	if o.HostMAC == nil {
		o.HostMAC = host
	}
	if o.PodMAC == nil {
		o.PodMAC = pod
	}
	return o, nil
}

// ns is a network namespace and a netlink handle inside it.
type ns struct {
	what string // "node netns X" or "pod netns Y", for errors
	nsh  netns.NsHandle
	h    *netlink.Handle
}

// openNS opens the namespace at path ("" is the calling thread's).
func openNS(kind, path string) (*ns, error) {
	what := kind + " netns"
	if path != "" {
		what += " " + path
	}
	var nsh netns.NsHandle
	var err error
	if path == "" {
		nsh, err = netns.Get()
	} else {
		nsh, err = netns.GetFromPath(path)
	}
	if err != nil {
		return nil, fmt.Errorf("podnet: open %s: %w", what, err)
	}
	h, err := netlink.NewHandleAt(nsh, unix.NETLINK_ROUTE)
	if err != nil {
		nsh.Close()
		return nil, fmt.Errorf("podnet: %s: netlink: %w", what, err)
	}
	return &ns{what: what, nsh: nsh, h: h}, nil
}

func (n *ns) close() {
	n.h.Close()
	n.nsh.Close()
}

func (n *ns) wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("podnet: %s: %s: %w", n.what, op, err)
}

// link returns the link called name, or nil when there is none.
func (n *ns) link(name string) (netlink.Link, error) {
	l, err := n.h.LinkByName(name)
	var nf netlink.LinkNotFoundError
	if errors.As(err, &nf) {
		return nil, nil
	}
	return l, n.wrap("link "+name, err)
}

// retry runs a netlink dump again while the kernel reports it interrupted
// (a concurrent change).
func retry[T any](f func() (T, error)) (T, error) {
	var v T
	var err error
	for i := 0; i < 5; i++ {
		v, err = f()
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	return v, err
}

// inNetns runs f on a thread that has entered the namespace nsh, then
// moves the thread back (a thread that cannot go back is discarded).
func inNetns(nsh netns.NsHandle, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- err
			return // the thread is discarded: it stays locked
		}
		defer orig.Close()
		if err := netns.Set(nsh); err != nil {
			errc <- fmt.Errorf("enter netns: %w", err)
			return
		}
		err = f()
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}

// sysctls writes /proc/sys/net settings (key=value, key with slashes)
// inside the namespace; /proc/sys/net is per namespace, as seen by the
// writing thread. Keys whose file does not exist (IPv6 disabled in the
// kernel) are skipped when skipMissing.
func sysctls(n *ns, skipMissing bool, kv ...string) error {
	return n.wrap("sysctl", inNetns(n.nsh, func() error {
		var errs []error
		for _, s := range kv {
			k, v, _ := strings.Cut(s, "=")
			err := os.WriteFile(filepath.Join("/proc/sys", k), []byte(v), 0o644)
			if err != nil && !(skipMissing && errors.Is(err, os.ErrNotExist)) {
				errs = append(errs, fmt.Errorf("%s=%s: %w", k, v, err))
			}
		}
		return errors.Join(errs...)
	}))
}

func hostPrefix(a netip.Addr) *net.IPNet {
	return &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(32, 32)}
}

// defaultMTU is the MTU of the device of the namespace's default route,
// or 1500.
func defaultMTU(n *ns) int {
	routes, err := retry(func() ([]netlink.Route, error) { return n.h.RouteList(nil, netlink.FAMILY_V4) })
	if err != nil {
		return 1500
	}
	for _, r := range routes {
		if r.Dst != nil {
			if ones, _ := r.Dst.Mask.Size(); ones != 0 {
				continue
			}
		}
		idx := r.LinkIndex
		if idx == 0 && len(r.MultiPath) > 0 {
			idx = r.MultiPath[0].LinkIndex
		}
		if idx == 0 {
			continue
		}
		if l, err := n.h.LinkByIndex(idx); err == nil && l.Attrs().MTU > 0 {
			return l.Attrs().MTU
		}
	}
	return 1500
}

// Setup wires the pod as Options say and returns what it made. It is
// idempotent: when the host interface already exists with its peer in the
// pod's namespace, the right MACs and the pod's address, the rest of the
// wiring is (re)applied; a stale host interface (another peer, address or
// MAC) is deleted and made again. On failure nothing that Setup made is
// left behind.
func Setup(opts Options) (*Result, error) {
	o, err := opts.normalize(true)
	if err != nil {
		return nil, err
	}
	node, err := openNS("node", o.NodeNetns)
	if err != nil {
		return nil, err
	}
	defer node.close()
	pod, err := openNS("pod", o.PodNetns)
	if err != nil {
		return nil, err
	}
	defer pod.close()

	// The datapaths are IPv4-only: keep the pod from sending IPv6
	// (router solicitations, DAD) that would only show up as drops.
	if err := sysctls(pod, true, "net/ipv6/conf/all/disable_ipv6=1", "net/ipv6/conf/default/disable_ipv6=1"); err != nil {
		return nil, err
	}
	if o.MTU == 0 {
		o.MTU = defaultMTU(node)
	}

	host, peer, err := existing(node, pod, o)
	if err != nil {
		return nil, err
	}
	if host == nil {
		if host, peer, err = create(node, pod, o); err != nil {
			return nil, err
		}
	}
	res, err := configure(node, pod, o, host, peer)
	if err != nil {
		// No half-wired pod: the peer goes with the host side.
		if derr := node.h.LinkDel(host); derr != nil {
			err = errors.Join(err, node.wrap("delete "+o.HostIfName+" after failure", derr))
		}
		return nil, err
	}
	return res, nil
}

// existing returns the host and pod sides of the pod's veth when they are
// already there as o wants them. Anything stale in their way is deleted:
// a host interface of that name that is not o's veth, and a veth called
// PodIfName in the pod whose peer is not the host interface.
func existing(node, pod *ns, o Options) (host, peer netlink.Link, err error) {
	host, err = node.link(o.HostIfName)
	if err != nil {
		return nil, nil, err
	}
	peer, err = pod.link(o.PodIfName)
	if err != nil {
		return nil, nil, err
	}
	if host != nil && peer != nil && isPair(node, pod, host, peer) &&
		macEqual(host.Attrs().HardwareAddr, o.HostMAC) && macEqual(peer.Attrs().HardwareAddr, o.PodMAC) &&
		host.Attrs().MTU == o.MTU && hasAddr(pod, peer, o.IP) {
		return host, peer, nil
	}
	if host != nil {
		if err := node.h.LinkDel(host); err != nil {
			return nil, nil, node.wrap("delete stale "+o.HostIfName, err)
		}
	}
	if peer != nil {
		// It may have gone with the host side.
		if peer, err = pod.link(o.PodIfName); err != nil {
			return nil, nil, err
		}
	}
	if peer != nil {
		if peer.Type() != "veth" {
			return nil, nil, fmt.Errorf("podnet: %s: %s already exists (type %s)", pod.what, o.PodIfName, peer.Type())
		}
		if err := pod.h.LinkDel(peer); err != nil {
			return nil, nil, pod.wrap("delete stale "+o.PodIfName, err)
		}
	}
	return nil, nil, nil
}

// isPair says whether host (in node) and peer (in pod) are the two ends
// of one veth.
func isPair(node, pod *ns, host, peer netlink.Link) bool {
	if host.Type() != "veth" || peer.Type() != "veth" {
		return false
	}
	if host.Attrs().ParentIndex != peer.Attrs().Index || peer.Attrs().ParentIndex != host.Attrs().Index {
		return false
	}
	// The indexes could match by chance with a veth into a third
	// namespace: compare the namespace ids the node gives the pod's.
	if id, err := node.h.GetNetNsIdByFd(int(pod.nsh)); err == nil && id >= 0 && host.Attrs().NetNsID >= 0 && id != host.Attrs().NetNsID {
		return false
	}
	return true
}

func macEqual(a, b net.HardwareAddr) bool { return a.String() == b.String() }

func hasAddr(n *ns, l netlink.Link, ip netip.Addr) bool {
	addrs, err := retry(func() ([]netlink.Addr, error) { return n.h.AddrList(l, netlink.FAMILY_V4) })
	if err != nil {
		return false
	}
	for _, a := range addrs {
		if ones, _ := a.Mask.Size(); ones == 32 && a.IP.Equal(ip.AsSlice()) {
			return true
		}
	}
	return false
}

// create makes the veth in the node's namespace with its peer made
// directly in the pod's namespace under PodIfName.
func create(node, pod *ns, o Options) (host, peer netlink.Link, err error) {
	v := &netlink.Veth{
		LinkAttrs:        netlink.LinkAttrs{Name: o.HostIfName, HardwareAddr: o.HostMAC, MTU: o.MTU},
		PeerName:         o.PodIfName,
		PeerHardwareAddr: o.PodMAC,
		PeerMTU:          uint32(o.MTU),
		PeerNamespace:    netlink.NsFd(int(pod.nsh)),
	}
	if err := node.h.LinkAdd(v); err != nil {
		return nil, nil, node.wrap(fmt.Sprintf("add veth %s (peer %s in %s)", o.HostIfName, o.PodIfName, pod.what), err)
	}
	host, err = node.h.LinkByName(o.HostIfName)
	if err == nil {
		peer, err = pod.h.LinkByName(o.PodIfName)
	}
	if err != nil {
		node.h.LinkDel(v)
		return nil, nil, fmt.Errorf("podnet: veth %s just made: %w", o.HostIfName, err)
	}
	return host, peer, nil
}

// failStep, when set (by tests), is called after every step of configure
// and can fail it.
var failStep func(op string) error

// configure applies the addresses, routes and neighbours; every step
// replaces, so that it can run again on a wired pod.
func configure(node, pod *ns, o Options, host, peer netlink.Link) (*Result, error) {
	lo, err := pod.h.LinkByName("lo")
	if err != nil {
		return nil, pod.wrap("link lo", err)
	}
	hostIdx, podIdx := host.Attrs().Index, peer.Attrs().Index
	steps := []struct {
		n  *ns
		op string
		f  func() error
	}{
		{pod, "set lo up", func() error { return pod.h.LinkSetUp(lo) }},
		{pod, fmt.Sprintf("add address %s/32 to %s", o.IP, o.PodIfName), func() error {
			return pod.h.AddrReplace(peer, &netlink.Addr{IPNet: hostPrefix(o.IP)})
		}},
		{pod, "set " + o.PodIfName + " up", func() error { return pod.h.LinkSetUp(peer) }},
		{pod, fmt.Sprintf("route %s/32 dev %s scope link", o.Gateway, o.PodIfName), func() error {
			return pod.h.RouteReplace(&netlink.Route{LinkIndex: podIdx, Dst: hostPrefix(o.Gateway), Scope: netlink.SCOPE_LINK})
		}},
		{pod, fmt.Sprintf("default route via %s dev %s", o.Gateway, o.PodIfName), func() error {
			return pod.h.RouteReplace(&netlink.Route{LinkIndex: podIdx, Dst: &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}, Gw: o.Gateway.AsSlice()})
		}},
		{pod, fmt.Sprintf("neighbour %s lladdr %s on %s", o.Gateway, o.HostMAC, o.PodIfName), func() error {
			return pod.h.NeighSet(&netlink.Neigh{LinkIndex: podIdx, Family: netlink.FAMILY_V4, State: netlink.NUD_PERMANENT, IP: o.Gateway.AsSlice(), HardwareAddr: o.HostMAC})
		}},
		{node, "sysctl", func() error {
			// Best effort: the datapath works without them where
			// the node's defaults are already right.
			_ = sysctls(node, false, "net/ipv4/conf/"+o.HostIfName+"/rp_filter=0", "net/ipv4/conf/"+o.HostIfName+"/forwarding=1")
			return nil
		}},
		{node, "record the owner of " + o.HostIfName, func() error {
			if o.Owner == "" {
				return nil
			}
			return node.h.LinkSetAlias(host, ownerAlias(o.Owner))
		}},
		{node, "set " + o.HostIfName + " up", func() error { return node.h.LinkSetUp(host) }},
		{node, fmt.Sprintf("route %s/32 dev %s scope link", o.IP, o.HostIfName), func() error {
			return node.h.RouteReplace(&netlink.Route{LinkIndex: hostIdx, Dst: hostPrefix(o.IP), Scope: netlink.SCOPE_LINK})
		}},
		{node, fmt.Sprintf("neighbour %s lladdr %s on %s", o.IP, o.PodMAC, o.HostIfName), func() error {
			return node.h.NeighSet(&netlink.Neigh{LinkIndex: hostIdx, Family: netlink.FAMILY_V4, State: netlink.NUD_PERMANENT, IP: o.IP.AsSlice(), HardwareAddr: o.PodMAC})
		}},
	}
	for _, s := range steps {
		err := s.f()
		if err == nil && failStep != nil {
			err = failStep(s.op)
		}
		if err != nil {
			return nil, s.n.wrap(s.op, err)
		}
	}
	return &Result{
		HostIfName: o.HostIfName, HostIfIndex: hostIdx, HostMAC: o.HostMAC,
		PodIfName: o.PodIfName, PodIfIndex: podIdx, PodMAC: o.PodMAC,
		IP: o.IP, Gateway: o.Gateway, MTU: o.MTU,
	}, nil
}

// aliasPrefix starts the alias that records a host interface's owner.
const aliasPrefix = "fastpath-cni:"

func ownerAlias(owner string) string {
	a := aliasPrefix + owner
	if len(a) > 127 {
		a = a[:127]
	}
	return a
}

// Teardown removes the pod's veth (the pod side goes with the node side)
// and the node's route to the pod. When HostIfName is not known (empty)
// the pod side PodIfName in PodNetns is deleted instead. An interface or
// namespace that is already gone is not an error.
func Teardown(opts Options) error {
	if opts.HostIfName == "" {
		return teardownFromPod(opts)
	}
	o, err := opts.normalize(false)
	if err != nil {
		return err
	}
	node, err := openNS("node", o.NodeNetns)
	if err != nil {
		return err
	}
	defer node.close()
	host, err := node.link(o.HostIfName)
	if err != nil || host == nil {
		return err
	}
	if a := host.Attrs().Alias; o.Owner != "" && strings.HasPrefix(a, aliasPrefix) && a != ownerAlias(o.Owner) {
		// Another sandbox of the pod owns the interface now.
		return nil
	}
	if o.IP.Is4() {
		// Goes with the link too; deleted first so that nothing routes
		// to a dying interface.
		_ = node.h.RouteDel(&netlink.Route{LinkIndex: host.Attrs().Index, Dst: hostPrefix(o.IP), Scope: netlink.SCOPE_LINK})
	}
	if err := node.h.LinkDel(host); err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) || errors.Is(err, unix.ENODEV) {
			return nil
		}
		return node.wrap("delete "+o.HostIfName, err)
	}
	return nil
}

func teardownFromPod(o Options) error {
	if o.PodNetns == "" {
		return errors.New("podnet: teardown: neither host interface name nor pod network namespace")
	}
	if o.PodIfName == "" {
		o.PodIfName = DefaultPodIfName
	}
	pod, err := openNS("pod", o.PodNetns)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer pod.close()
	peer, err := pod.link(o.PodIfName)
	if err != nil || peer == nil {
		return err
	}
	if peer.Type() != "veth" {
		return fmt.Errorf("podnet: %s: %s is a %s, not a veth", pod.what, o.PodIfName, peer.Type())
	}
	if err := pod.h.LinkDel(peer); err != nil {
		if errors.Is(err, unix.ENODEV) {
			return nil
		}
		return pod.wrap("delete "+o.PodIfName, err)
	}
	return nil
}

// Check verifies that the pod is wired as Setup wires it: both sides of
// the veth up and paired, the pod's address, routes and gateway
// neighbour, the node's route and neighbour. The error names everything
// missing.
func Check(opts Options) error {
	o, err := opts.normalize(true)
	if err != nil {
		return err
	}
	node, err := openNS("node", o.NodeNetns)
	if err != nil {
		return err
	}
	defer node.close()
	pod, err := openNS("pod", o.PodNetns)
	if err != nil {
		return err
	}
	defer pod.close()

	var missing []string
	miss := func(n *ns, format string, args ...any) {
		missing = append(missing, n.what+": "+fmt.Sprintf(format, args...))
	}
	host, err := node.link(o.HostIfName)
	if err != nil {
		return err
	}
	peer, err := pod.link(o.PodIfName)
	if err != nil {
		return err
	}
	if host == nil {
		miss(node, "interface %s", o.HostIfName)
	}
	if peer == nil {
		miss(pod, "interface %s", o.PodIfName)
	}
	if host != nil && peer != nil && !isPair(node, pod, host, peer) {
		missing = append(missing, fmt.Sprintf("veth pair %s (%s) - %s (%s)", o.HostIfName, node.what, o.PodIfName, pod.what))
	}
	if peer != nil {
		if peer.Attrs().Flags&net.FlagUp == 0 {
			miss(pod, "%s up", o.PodIfName)
		}
		if !hasAddr(pod, peer, o.IP) {
			miss(pod, "address %s/32 on %s", o.IP, o.PodIfName)
		}
		idx := peer.Attrs().Index
		if !hasRoute(pod, idx, netip.PrefixFrom(o.Gateway, 32), netip.Addr{}) {
			miss(pod, "route %s/32 dev %s", o.Gateway, o.PodIfName)
		}
		if !hasRoute(pod, idx, netip.PrefixFrom(netip.IPv4Unspecified(), 0), o.Gateway) {
			miss(pod, "default route via %s dev %s", o.Gateway, o.PodIfName)
		}
		var want net.HardwareAddr
		if host != nil {
			want = host.Attrs().HardwareAddr
		}
		if !hasNeigh(pod, idx, o.Gateway, want) {
			miss(pod, "neighbour %s on %s", o.Gateway, o.PodIfName)
		}
	}
	if host != nil {
		if host.Attrs().Flags&net.FlagUp == 0 {
			miss(node, "%s up", o.HostIfName)
		}
		idx := host.Attrs().Index
		if !hasRoute(node, idx, netip.PrefixFrom(o.IP, 32), netip.Addr{}) {
			miss(node, "route %s/32 dev %s", o.IP, o.HostIfName)
		}
		var want net.HardwareAddr
		if peer != nil {
			want = peer.Attrs().HardwareAddr
		}
		if !hasNeigh(node, idx, o.IP, want) {
			miss(node, "neighbour %s on %s", o.IP, o.HostIfName)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("podnet: pod %s (%s): missing %s", o.IP, o.HostIfName, strings.Join(missing, "; "))
	}
	return nil
}

// hasRoute says whether the main table has dst through link idx (via gw
// when valid).
func hasRoute(n *ns, idx int, dst netip.Prefix, gw netip.Addr) bool {
	routes, err := retry(func() ([]netlink.Route, error) {
		return n.h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{LinkIndex: idx}, netlink.RT_FILTER_OIF)
	})
	if err != nil {
		return false
	}
	for _, r := range routes {
		rd := netip.PrefixFrom(netip.IPv4Unspecified(), 0)
		if r.Dst != nil {
			a, _ := netip.AddrFromSlice(r.Dst.IP.To4())
			ones, _ := r.Dst.Mask.Size()
			rd = netip.PrefixFrom(a, ones)
		}
		if rd != dst {
			continue
		}
		if gw.IsValid() {
			g, _ := netip.AddrFromSlice(r.Gw.To4())
			if g != gw {
				continue
			}
		}
		return true
	}
	return false
}

// hasNeigh says whether link idx has a neighbour entry for ip (with
// lladdr mac when mac is not nil).
func hasNeigh(n *ns, idx int, ip netip.Addr, mac net.HardwareAddr) bool {
	neighs, err := retry(func() ([]netlink.Neigh, error) { return n.h.NeighList(idx, netlink.FAMILY_V4) })
	if err != nil {
		return false
	}
	for _, ne := range neighs {
		if ne.IP.Equal(ip.AsSlice()) && ne.State&netlink.NUD_PERMANENT != 0 && (mac == nil || macEqual(ne.HardwareAddr, mac)) {
			return true
		}
	}
	return false
}
