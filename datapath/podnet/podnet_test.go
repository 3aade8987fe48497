package podnet

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/fastpath-bench/fastpath/internal/testutil"
)

// runIn runs f on a thread inside the namespace at path.
func runIn(t *testing.T, path string, f func() error) error {
	t.Helper()
	nsh, err := netns.GetFromPath(path)
	if err != nil {
		t.Fatal(err)
	}
	defer nsh.Close()
	return inNetns(nsh, f)
}

func testOptions(t *testing.T) Options {
	return Options{
		NodeNetns:  testutil.NamedNetns(t, "node"),
		PodNetns:   testutil.NamedNetns(t, "pod"),
		HostIfName: "lxctest0",
		IP:         netip.MustParseAddr("10.244.0.7"),
	}
}

func TestSetupWiresPod(t *testing.T) {
	o := testOptions(t)
	res, err := Setup(o)
	if err != nil {
		t.Fatal(err)
	}
	hostMAC, podMAC := DeriveMACs(o.HostIfName)
	if res.HostIfName != "lxctest0" || res.PodIfName != "eth0" || res.IP != o.IP || res.MTU != 1500 ||
		res.HostMAC.String() != hostMAC.String() || res.PodMAC.String() != podMAC.String() {
		t.Fatalf("result: %+v", res)
	}
	if hostMAC[0] != 0x02 || podMAC[0] != 0x02 || hostMAC.String() == podMAC.String() {
		t.Fatalf("derived MACs %s %s: want distinct locally administered unicast", hostMAC, podMAC)
	}
	node, pod := testutil.NetlinkAt(t, o.NodeNetns), testutil.NetlinkAt(t, o.PodNetns)

	host, err := node.LinkByName("lxctest0")
	if err != nil {
		t.Fatal(err)
	}
	eth0, err := pod.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	if eth0.Attrs().Index != res.PodIfIndex || host.Attrs().Index != res.HostIfIndex {
		t.Fatalf("indexes: host %d pod %d, result %+v", host.Attrs().Index, eth0.Attrs().Index, res)
	}
	if host.Attrs().Flags&net.FlagUp == 0 || eth0.Attrs().Flags&net.FlagUp == 0 {
		t.Fatal("veth not up")
	}
	if host.Attrs().HardwareAddr.String() != hostMAC.String() || eth0.Attrs().HardwareAddr.String() != podMAC.String() {
		t.Fatalf("MACs %s %s", host.Attrs().HardwareAddr, eth0.Attrs().HardwareAddr)
	}
	addrs, err := pod.AddrList(eth0, netlink.FAMILY_V4)
	if err != nil || len(addrs) != 1 || addrs[0].IPNet.String() != "10.244.0.7/32" {
		t.Fatalf("pod addresses %v %v", addrs, err)
	}
	routes, err := pod.RouteList(eth0, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range routes {
		got = append(got, fmt.Sprintf("%v via %v scope %v", r.Dst, r.Gw, r.Scope))
	}
	want := []string{"0.0.0.0/0 via 169.254.1.1 scope universe", "169.254.1.1/32 via <nil> scope link"}
	if fmt.Sprint(sortStrings(got)) != fmt.Sprint(want) {
		t.Fatalf("pod routes %q, want %q", got, want)
	}
	neighs, _ := pod.NeighList(eth0.Attrs().Index, netlink.FAMILY_V4)
	if !hasPermanent(neighs, "169.254.1.1", hostMAC) {
		t.Fatalf("pod neighbours %v", neighs)
	}
	routes, _ = node.RouteList(host, netlink.FAMILY_V4)
	if len(routes) != 1 || routes[0].Dst.String() != "10.244.0.7/32" || routes[0].Scope != netlink.SCOPE_LINK {
		t.Fatalf("node routes %v", routes)
	}
	neighs, _ = node.NeighList(host.Attrs().Index, netlink.FAMILY_V4)
	if !hasPermanent(neighs, "10.244.0.7", podMAC) {
		t.Fatalf("node neighbours %v", neighs)
	}
	lo, _ := pod.LinkByName("lo")
	if lo.Attrs().Flags&net.FlagUp == 0 {
		t.Fatal("pod lo not up")
	}
	err = runIn(t, o.PodNetns, func() error {
		for _, f := range []string{"all", "default"} {
			b, err := os.ReadFile("/proc/sys/net/ipv6/conf/" + f + "/disable_ipv6")
			if err == nil && strings.TrimSpace(string(b)) != "1" {
				return fmt.Errorf("ipv6 %s not disabled", f)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	err = runIn(t, o.NodeNetns, func() error {
		for k, want := range map[string]string{"rp_filter": "0", "forwarding": "1"} {
			b, err := os.ReadFile("/proc/sys/net/ipv4/conf/lxctest0/" + k)
			if err != nil {
				return err
			}
			if strings.TrimSpace(string(b)) != want {
				return fmt.Errorf("%s=%s, want %s", k, b, want)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := Check(o); err != nil {
		t.Fatal(err)
	}

	// Traffic: the pod reaches an address of the node through the
	// gateway neighbour, and the node answers through the /32 route.
	nodeLo, err := node.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	if err := node.LinkSetUp(nodeLo); err != nil {
		t.Fatal(err)
	}
	if err := node.AddrAdd(nodeLo, &netlink.Addr{IPNet: &net.IPNet{IP: net.IPv4(10, 99, 0, 1), Mask: net.CIDRMask(32, 32)}}); err != nil {
		t.Fatal(err)
	}
	var ln net.Listener
	if err := runIn(t, o.NodeNetns, func() (err error) { ln, err = net.Listen("tcp4", "10.99.0.1:0"); return err }); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			accepted <- err.Error()
			return
		}
		defer c.Close()
		io.WriteString(c, "hello")
		accepted <- c.RemoteAddr().String()
	}()
	var greeting []byte
	err = runIn(t, o.PodNetns, func() error {
		c, err := net.DialTimeout("tcp4", ln.Addr().String(), 5*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		greeting, err = io.ReadAll(c)
		return err
	})
	if err != nil {
		t.Fatalf("pod to node: %v", err)
	}
	if remote := <-accepted; !strings.HasPrefix(remote, "10.244.0.7:") || string(greeting) != "hello" {
		t.Fatalf("node saw %s, pod read %q", remote, greeting)
	}

	// Teardown removes the veth (both sides) and the route.
	if err := Teardown(o); err != nil {
		t.Fatal(err)
	}
	if _, err := node.LinkByName("lxctest0"); err == nil {
		t.Fatal("host veth left after teardown")
	}
	if _, err := pod.LinkByName("eth0"); err == nil {
		t.Fatal("pod eth0 left after teardown")
	}
	if routes, _ := node.RouteGet(net.IPv4(10, 244, 0, 7)); len(routes) > 0 && routes[0].LinkIndex == host.Attrs().Index {
		t.Fatalf("route to the pod left: %v", routes)
	}
	if err := Teardown(o); err != nil {
		t.Fatalf("second teardown: %v", err)
	}
	err = Check(o)
	if err == nil || !strings.Contains(err.Error(), "interface lxctest0") || !strings.Contains(err.Error(), "interface eth0") {
		t.Fatalf("check after teardown: %v", err)
	}
}

func TestSetupIdempotent(t *testing.T) {
	o := testOptions(t)
	o.PodIfName = "net1"
	o.MTU = 1400
	r1, err := Setup(o)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := Setup(o)
	if err != nil {
		t.Fatalf("second setup: %v", err)
	}
	if r1.HostIfIndex != r2.HostIfIndex || r1.PodIfIndex != r2.PodIfIndex {
		t.Fatalf("second setup made a new veth: %+v then %+v", r1, r2)
	}
	node, pod := testutil.NetlinkAt(t, o.NodeNetns), testutil.NetlinkAt(t, o.PodNetns)
	if l, err := pod.LinkByName("net1"); err != nil || l.Attrs().MTU != 1400 {
		t.Fatalf("pod net1: %v %v", l, err)
	}

	// A half-wired pod (route gone) is completed in place.
	host, _ := node.LinkByName(o.HostIfName)
	if err := node.RouteDel(&netlink.Route{LinkIndex: host.Attrs().Index, Dst: &net.IPNet{IP: net.IPv4(10, 244, 0, 7), Mask: net.CIDRMask(32, 32)}, Scope: netlink.SCOPE_LINK}); err != nil {
		t.Fatal(err)
	}
	if err := Check(o); err == nil || !strings.Contains(err.Error(), "route 10.244.0.7/32 dev lxctest0") {
		t.Fatalf("check of a half-wired pod: %v", err)
	}
	r3, err := Setup(o)
	if err != nil {
		t.Fatal(err)
	}
	if r3.HostIfIndex != r1.HostIfIndex {
		t.Fatal("half-wired pod: veth made again")
	}
	if err := Check(o); err != nil {
		t.Fatal(err)
	}

	// A stale veth (another address) is replaced.
	o.IP = netip.MustParseAddr("10.244.0.8")
	r4, err := Setup(o)
	if err != nil {
		t.Fatal(err)
	}
	if r4.HostIfIndex == r1.HostIfIndex {
		t.Fatal("stale veth kept")
	}
	if err := Check(o); err != nil {
		t.Fatal(err)
	}
	eth, _ := pod.LinkByName("net1")
	if addrs, _ := pod.AddrList(eth, netlink.FAMILY_V4); len(addrs) != 1 || !addrs[0].IP.Equal(net.IPv4(10, 244, 0, 8)) {
		t.Fatalf("pod addresses after replacement: %v", addrs)
	}

	// Teardown without the host name deletes the pod side.
	if err := Teardown(Options{PodNetns: o.PodNetns, PodIfName: "net1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := node.LinkByName(o.HostIfName); err == nil {
		t.Fatal("host veth left after teardown by pod side")
	}
}

func TestSetupFailureLeavesNothing(t *testing.T) {
	o := testOptions(t)
	node, pod := testutil.NetlinkAt(t, o.NodeNetns), testutil.NetlinkAt(t, o.PodNetns)
	gone := func(when string) {
		t.Helper()
		if _, err := node.LinkByName(o.HostIfName); err == nil {
			t.Fatalf("%s: host veth left", when)
		}
		if _, err := pod.LinkByName("eth0"); err == nil {
			t.Fatalf("%s: pod eth0 left", when)
		}
	}

	// A failure after the veth is made (the last step).
	failStep = func(op string) error {
		if strings.HasPrefix(op, "neighbour 10.244.0.7") {
			return errors.New("injected failure")
		}
		return nil
	}
	defer func() { failStep = nil }()
	_, err := Setup(o)
	if err == nil || !strings.Contains(err.Error(), "neighbour 10.244.0.7") || !strings.Contains(err.Error(), "injected failure") {
		t.Fatalf("setup with a failing step: %v", err)
	}
	gone("failed setup")
	// The same on a pod that was wired before: no half-wired pod either.
	failStep = nil
	if _, err := Setup(o); err != nil {
		t.Fatal(err)
	}
	failStep = func(op string) error {
		if strings.HasPrefix(op, "default route") {
			return errors.New("injected failure")
		}
		return nil
	}
	if _, err := Setup(o); err == nil {
		t.Fatal("setup with a failing step succeeded")
	}
	gone("failed second setup")
	failStep = nil

	// A pod interface of that name that is not a veth is left alone.
	if err := pod.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "eth0"}}); err != nil {
		t.Logf("no bridge support (%v): not testing a name clash", err)
		return
	}
	if _, err := Setup(o); err == nil || !strings.Contains(err.Error(), "eth0 already exists") {
		t.Fatalf("setup over a bridge eth0: %v", err)
	}
	if _, err := node.LinkByName(o.HostIfName); err == nil {
		t.Fatal("host veth left after a failed setup")
	}
}

func TestOptionsValidation(t *testing.T) {
	for _, o := range []Options{
		{PodNetns: "/x", IP: netip.MustParseAddr("10.0.0.1")},
		{PodNetns: "/x", HostIfName: "this-name-is-too-long", IP: netip.MustParseAddr("10.0.0.1")},
		{HostIfName: "lxc1", IP: netip.MustParseAddr("10.0.0.1")},
		{PodNetns: "/x", HostIfName: "lxc1"},
		{PodNetns: "/x", HostIfName: "lxc1", IP: netip.MustParseAddr("fd00::1")},
	} {
		if _, err := Setup(o); err == nil {
			t.Errorf("Setup(%+v) succeeded", o)
		}
	}
	if err := Teardown(Options{}); err == nil {
		t.Error("Teardown without names succeeded")
	}
	if os.Geteuid() == 0 {
		// A missing interface is not an error.
		if err := Teardown(Options{HostIfName: "lxcmissing0"}); err != nil {
			t.Errorf("teardown of a missing interface: %v", err)
		}
	}
}

func hasPermanent(neighs []netlink.Neigh, ip string, mac net.HardwareAddr) bool {
	for _, n := range neighs {
		if n.IP.String() == ip && n.HardwareAddr.String() == mac.String() && n.State&netlink.NUD_PERMANENT != 0 {
			return true
		}
	}
	return false
}

func sortStrings(s []string) []string {
	for i := range s {
		for j := i + 1; j < len(s); j++ {
			if s[j] < s[i] {
				s[i], s[j] = s[j], s[i]
			}
		}
	}
	return s
}

// TestTeardownLeavesAnotherOwnersVeth: a late DEL of a pod's old sandbox
// (same pod name, so the same host interface name) must not remove the
// veth of its new sandbox.
func TestTeardownLeavesAnotherOwnersVeth(t *testing.T) {
	o := testOptions(t)
	o.Owner = "new-sandbox"
	if _, err := Setup(o); err != nil {
		t.Fatal(err)
	}
	node := testutil.NetlinkAt(t, o.NodeNetns)
	host, err := node.LinkByName(o.HostIfName)
	if err != nil || host.Attrs().Alias != "fastpath-cni:new-sandbox" {
		t.Fatalf("host side %v alias %q", err, host.Attrs().Alias)
	}
	old := o
	old.Owner = "old-sandbox"
	old.PodNetns = ""
	if err := Teardown(old); err != nil {
		t.Fatal(err)
	}
	if _, err := node.LinkByName(o.HostIfName); err != nil {
		t.Fatalf("the old sandbox's DEL removed the new sandbox's veth: %v", err)
	}
	if err := Teardown(o); err != nil {
		t.Fatal(err)
	}
	if _, err := node.LinkByName(o.HostIfName); err == nil {
		t.Fatal("the owner's DEL left the veth")
	}
}
