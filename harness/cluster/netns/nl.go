package netns

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"unsafe"

	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/fastpath-bench/fastpath/harness/execx"
)

// Network namespaces and links are made with netlink from this process
// rather than with `ip`: a cluster needs about a hundred operations, and on
// a slow machine (a VM under software emulation) one fork and exec of ip
// each cost more than the whole netlink exchange. The names and mounts are
// the ones `ip netns` uses, so `ip netns` and fastpath clean see them.

const netnsRunDir = "/run/netns"

// addNetns creates the named network namespace, as `ip netns add` does:
// /run/netns is made a shared mount point, and the namespace of a new
// thread is bind-mounted on /run/netns/<name>.
func addNetns(name string) error {
	if err := os.MkdirAll(netnsRunDir, 0o755); err != nil {
		return err
	}
	if err := unix.Mount("", netnsRunDir, "none", unix.MS_SHARED|unix.MS_REC, ""); err != nil {
		if err != unix.EINVAL {
			return fmt.Errorf("netns %s: make %s shared: %w", name, netnsRunDir, err)
		}
		// Not a mount point yet: bind it on itself first.
		if err := unix.Mount(netnsRunDir, netnsRunDir, "none", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("netns %s: bind %s: %w", name, netnsRunDir, err)
		}
		if err := unix.Mount("", netnsRunDir, "none", unix.MS_SHARED|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("netns %s: make %s shared: %w", name, netnsRunDir, err)
		}
	}
	path := filepath.Join(netnsRunDir, name)
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		return fmt.Errorf("netns %s: %w", name, err)
	}
	f.Close()
	errc := make(chan error, 1)
	go func() {
		// The thread ends up in the new namespace and is never unlocked:
		// the runtime discards it when this goroutine returns.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- err
			return
		}
		errc <- unix.Mount(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()), path, "none", unix.MS_BIND, "")
	}()
	if err := <-errc; err != nil {
		os.Remove(path)
		return fmt.Errorf("netns %s: %w", name, err)
	}
	return nil
}

// delNetns removes a named namespace as `ip netns del` does; the
// namespace itself goes away with its last process.
func delNetns(name string) error {
	path := filepath.Join(netnsRunDir, name)
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && err != unix.EINVAL && err != unix.ENOENT {
		return fmt.Errorf("netns %s: unmount: %w", name, err)
	}
	if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("netns %s: %w", name, err)
	}
	return nil
}

// netnsPids returns, per named namespace, the processes in it (as `ip
// netns pids`), in one pass over /proc.
func netnsPids(names []string) map[string][]int {
	type key struct{ dev, ino uint64 }
	byKey := map[key]string{}
	for _, n := range names {
		var st unix.Stat_t
		if unix.Stat(filepath.Join(netnsRunDir, n), &st) == nil {
			byKey[key{st.Dev, st.Ino}] = n
		}
	}
	out := map[string][]int{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		var st unix.Stat_t
		if unix.Stat(filepath.Join("/proc", e.Name(), "ns", "net"), &st) != nil {
			continue
		}
		if n, ok := byKey[key{st.Dev, st.Ino}]; ok {
			out[n] = append(out[n], pid)
		}
	}
	return out
}

// nl is a netlink handle inside one named namespace.
type nl struct {
	ns     string
	nsh    vnetns.NsHandle
	handle *netlink.Handle
}

func openNL(ns string) (*nl, error) {
	nsh, err := vnetns.GetFromName(ns)
	if err != nil {
		return nil, fmt.Errorf("netns %s: %w", ns, err)
	}
	h, err := netlink.NewHandleAt(nsh, unix.NETLINK_ROUTE)
	if err != nil {
		nsh.Close()
		return nil, fmt.Errorf("netns %s: netlink: %w", ns, err)
	}
	return &nl{ns: ns, nsh: nsh, handle: h}, nil
}

func (n *nl) close() {
	n.handle.Close()
	n.nsh.Close()
}

func (n *nl) wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("netns %s: %s: %w", n.ns, op, err)
}

func (n *nl) link(name string) (netlink.Link, error) {
	l, err := n.handle.LinkByName(name)
	return l, n.wrap("link "+name, err)
}

func (n *nl) up(name string) error {
	l, err := n.link(name)
	if err != nil {
		return err
	}
	return n.wrap("set "+name+" up", n.handle.LinkSetUp(l))
}

func (n *nl) addBridge(name string) error {
	err := n.handle.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name}})
	if err != nil {
		return n.wrap("add bridge "+name, err)
	}
	return n.up(name)
}

// addVeth creates name here with its peer, called peer, in the namespace
// peerNS; empty MACs are chosen by the kernel.
func (n *nl) addVeth(name, mac string, peer *nl, peerName, peerMAC string) error {
	v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: peerName, PeerNamespace: netlink.NsFd(int(peer.nsh))}
	if mac != "" {
		hw, err := net.ParseMAC(mac)
		if err != nil {
			return err
		}
		v.HardwareAddr = hw
	}
	if peerMAC != "" {
		hw, err := net.ParseMAC(peerMAC)
		if err != nil {
			return err
		}
		v.PeerHardwareAddr = hw
	}
	return n.wrap(fmt.Sprintf("add veth %s (peer %s in %s)", name, peerName, peer.ns), n.handle.LinkAdd(v))
}

func (n *nl) setMaster(name, master string) error {
	l, err := n.link(name)
	if err != nil {
		return err
	}
	m, err := n.link(master)
	if err != nil {
		return err
	}
	return n.wrap("set "+name+" master "+master, n.handle.LinkSetMasterByIndex(l, m.Attrs().Index))
}

func (n *nl) addAddr(dev string, p netip.Prefix) error {
	l, err := n.link(dev)
	if err != nil {
		return err
	}
	a := &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}}
	return n.wrap(fmt.Sprintf("add address %s to %s", p, dev), n.handle.AddrAdd(l, a))
}

// addRoute adds dst (nil: default) through dev, via gw when valid, else
// with link scope.
func (n *nl) addRoute(dst netip.Prefix, dev string, gw netip.Addr) error {
	l, err := n.link(dev)
	if err != nil {
		return err
	}
	r := &netlink.Route{LinkIndex: l.Attrs().Index}
	if dst.IsValid() {
		r.Dst = &net.IPNet{IP: dst.Addr().AsSlice(), Mask: net.CIDRMask(dst.Bits(), dst.Addr().BitLen())}
	}
	if gw.IsValid() {
		r.Gw = gw.AsSlice()
	} else {
		r.Scope = netlink.SCOPE_LINK
	}
	return n.wrap(fmt.Sprintf("add route %s dev %s via %s", dst, dev, gw), n.handle.RouteAdd(r))
}

// sysctls writes net.* settings inside the namespace (/proc/sys/net is
// per network namespace, as seen by the writing thread).
func sysctls(ns string, kv ...string) error {
	return execx.RunInNetns(ns, func() error {
		var errs []error
		for _, s := range kv {
			k, v, ok := strings.Cut(s, "=")
			if !ok {
				return fmt.Errorf("sysctl %q: want key=value", s)
			}
			path := filepath.Join("/proc/sys", strings.ReplaceAll(k, ".", "/"))
			if err := os.WriteFile(path, []byte(v), 0o644); err != nil {
				errs = append(errs, fmt.Errorf("netns %s: sysctl %s: %w", ns, k, err))
			}
		}
		return errors.Join(errs...)
	})
}

// Legacy ethtool ioctl commands.
const (
	ethtoolSTXCSUM = 0x17 // transmit checksum offload
)

// ethtoolSet sets a legacy ethtool value (cmd) on dev in namespace ns.
func ethtoolSet(ns, dev string, cmd, value uint32) error {
	return execx.RunInNetns(ns, func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		val := struct{ cmd, data uint32 }{cmd, value}
		var ifr [40]byte
		copy(ifr[:unix.IFNAMSIZ-1], dev)
		*(*unsafe.Pointer)(unsafe.Pointer(&ifr[unix.IFNAMSIZ])) = unsafe.Pointer(&val)
		_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&ifr)))
		runtime.KeepAlive(&val)
		if errno != 0 {
			return fmt.Errorf("ethtool 0x%x on %s: %w", cmd, dev, errno)
		}
		return nil
	})
}
