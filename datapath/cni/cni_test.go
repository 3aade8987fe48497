package cni

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/vishvananda/netlink"

	"github.com/fastpath-bench/fastpath/datapath/ipam"
	"github.com/fastpath-bench/fastpath/datapath/model"

	"github.com/fastpath-bench/fastpath/internal/testutil"
)

// pluginConf is what the runtime gives the plugin for the conflist: the
// plugin's entry with the list's cniVersion and name.
func pluginConf(t *testing.T, list []byte, cniVersion string) []byte {
	t.Helper()
	var l struct {
		CNIVersion string           `json:"cniVersion"`
		Name       string           `json:"name"`
		Plugins    []map[string]any `json:"plugins"`
	}
	if err := json.Unmarshal(list, &l); err != nil {
		t.Fatalf("conflist is not JSON: %v\n%s", err, list)
	}
	if len(l.Plugins) != 1 {
		t.Fatalf("conflist has %d plugins", len(l.Plugins))
	}
	p := l.Plugins[0]
	p["cniVersion"] = l.CNIVersion
	if cniVersion != "" {
		p["cniVersion"] = cniVersion
	}
	p["name"] = l.Name
	data, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func cniCode(t *testing.T, err error) uint {
	t.Helper()
	var e *types.Error
	if !errors.As(err, &e) {
		t.Fatalf("not a CNI error: %v", err)
	}
	return e.Code
}

func TestConfList(t *testing.T) {
	list, err := ConfList("/run/fp/agent.sock")
	if err != nil {
		t.Fatal(err)
	}
	var l types.NetConfList
	if err := json.Unmarshal(list, &l); err != nil {
		t.Fatal(err)
	}
	if l.CNIVersion != "1.0.0" || l.Name != "fastpath" || len(l.Plugins) != 1 || l.Plugins[0].Type != PluginName {
		t.Fatalf("conflist %s", list)
	}
	conf, err := ParseConf(pluginConf(t, list, ""))
	if err != nil {
		t.Fatal(err)
	}
	if conf.AgentSocket != "/run/fp/agent.sock" || conf.Type != PluginName || conf.CNIVersion != "1.0.0" || conf.Name != "fastpath" {
		t.Fatalf("parsed %+v", conf)
	}
	list, _ = ConfList("")
	if conf, err := ParseConf(pluginConf(t, list, "")); err != nil || conf.AgentSocket != DefaultAgentSocket {
		t.Fatalf("default socket: %+v %v", conf, err)
	}
	if ConfListFile != "05-fastpath.conflist" {
		t.Fatal(ConfListFile)
	}
}

func TestBadConf(t *testing.T) {
	for _, tc := range []struct {
		conf string
		code uint
		want string
	}{
		{`{`, types.ErrDecodingFailure, "decode"},
		{`{"name":"fastpath","type":"fastpath-cni"}`, types.ErrInvalidNetworkConfig, "cniVersion"},
		{`{"cniVersion":"1.0.0","type":"fastpath-cni"}`, types.ErrInvalidNetworkConfig, "name"},
		{`{"cniVersion":"1.0.0","name":"fastpath"}`, types.ErrInvalidNetworkConfig, "type"},
		{`{"cniVersion":"1.0.0","name":"fastpath","type":"bridge"}`, types.ErrInvalidNetworkConfig, "bridge"},
	} {
		_, err := ParseConf([]byte(tc.conf))
		if err == nil || cniCode(t, err) != tc.code || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want code %d naming %q", tc.conf, err, tc.code, tc.want)
		}
		// Every command refuses it the same way.
		p := &Plugin{Stdout: buf(), Stderr: buf()}
		args := &skel.CmdArgs{ContainerID: "c", Netns: "/x", IfName: "eth0", Args: "K8S_POD_NAMESPACE=a;K8S_POD_NAME=b", StdinData: []byte(tc.conf)}
		for name, f := range map[string]func(*skel.CmdArgs) error{"ADD": p.Add, "DEL": p.Del, "CHECK": p.Check} {
			if err := f(args); err == nil || cniCode(t, err) != tc.code {
				t.Errorf("%s %s: %v, want code %d", name, tc.conf, err, tc.code)
			}
		}
	}
}

func buf() *bytes.Buffer { return new(bytes.Buffer) }

func TestMissingK8sArgs(t *testing.T) {
	list, _ := ConfList(filepath.Join(t.TempDir(), "none.sock"))
	conf := pluginConf(t, list, "")
	p := &Plugin{Stdout: buf(), Stderr: buf()}
	for _, a := range []string{"", "IgnoreUnknown=1", "K8S_POD_NAMESPACE=default", "K8S_POD_NAME=p1", "garbage"} {
		err := p.Add(&skel.CmdArgs{ContainerID: "c1", Netns: "/x", IfName: "eth0", Args: a, StdinData: conf})
		if err == nil || cniCode(t, err) != types.ErrInvalidEnvironmentVariables {
			t.Errorf("ADD with CNI_ARGS %q: %v, want code %d", a, err, types.ErrInvalidEnvironmentVariables)
		}
	}
	err := p.Add(&skel.CmdArgs{ContainerID: "c1", Netns: "/x", IfName: "eth0", Args: "K8S_POD_NAMESPACE=default", StdinData: conf})
	if err == nil || !strings.Contains(err.Error(), "K8S_POD_NAME") {
		t.Errorf("error does not name the missing argument: %v", err)
	}
}

func TestAgentUnreachable(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "agent.sock")
	list, _ := ConfList(sock)
	conf := pluginConf(t, list, "")
	stderr := buf()
	p := &Plugin{Stdout: buf(), Stderr: stderr}
	args := &skel.CmdArgs{ContainerID: "c1", Netns: "/x", IfName: "eth0", Args: "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=p1", StdinData: conf}
	err := p.Add(args)
	if err == nil || cniCode(t, err) != types.ErrTryAgainLater || !strings.Contains(err.Error(), sock) {
		t.Fatalf("ADD without agent: %v, want code %d naming the socket", err, types.ErrTryAgainLater)
	}
	// DEL still succeeds (nothing to tear down here) and says why the
	// address was not released.
	if os.Geteuid() == 0 {
		p.NodeNetns = testutil.NamedNetns(t, "cni-unreach")
		if err := p.Del(args); err != nil {
			t.Fatalf("DEL without agent: %v", err)
		}
		if !strings.Contains(stderr.String(), "not released") {
			t.Fatalf("DEL without agent: stderr %q", stderr)
		}
	}

	// An agent that cannot look the pod up yet: try again later too.
	a, err := ipam.New(ipam.Options{CIDR: netip.MustParsePrefix("10.244.3.0/24")})
	if err != nil {
		t.Fatal(err)
	}
	serve(t, sock, ipam.Handler(a, func(context.Context, string, string) (netip.Addr, error) {
		return netip.Addr{}, errors.New("no apiserver")
	}))
	err = p.Add(args)
	if err == nil || cniCode(t, err) != types.ErrTryAgainLater || !strings.Contains(err.Error(), "no apiserver") {
		t.Fatalf("ADD with a failing lookup: %v", err)
	}
}

// serve runs h on the unix socket sock until the test ends.
func serve(t *testing.T, sock string, h http.Handler) {
	t.Helper()
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
}

// TestEndToEnd runs ADD, CHECK and DEL against an agent (ipam.Handler on
// a unix socket) with real namespaces.
func TestEndToEnd(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces, veths)")
	}
	for _, v := range []string{"1.0.0", "0.3.1"} {
		t.Run(v, func(t *testing.T) { testEndToEnd(t, v) })
	}
}

func testEndToEnd(t *testing.T, cniVersion string) {
	dir, err := os.MkdirTemp("", "fpcni")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "agent.sock")
	state := filepath.Join(dir, "ipam.json")
	a, err := ipam.New(ipam.Options{CIDR: netip.MustParsePrefix("10.244.3.0/24"), StateFile: state})
	if err != nil {
		t.Fatal(err)
	}
	requested := netip.MustParseAddr("10.77.0.9")
	serve(t, sock, ipam.Handler(a, func(_ context.Context, ns, name string) (netip.Addr, error) {
		if ns == "default" && name == "p1" {
			return requested, nil
		}
		return netip.Addr{}, nil
	}))

	nodeNs := testutil.NamedNetns(t, "cni-node")
	podNs := testutil.NamedNetns(t, "cni-pod")
	list, err := ConfList(sock)
	if err != nil {
		t.Fatal(err)
	}
	stdout, stderr := buf(), buf()
	p := &Plugin{Stdout: stdout, Stderr: stderr, NodeNetns: nodeNs}
	args := &skel.CmdArgs{
		ContainerID: "sandbox1",
		Netns:       podNs,
		IfName:      "eth0",
		Args:        "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=p1;K8S_POD_INFRA_CONTAINER_ID=sandbox1",
		StdinData:   pluginConf(t, list, cniVersion),
	}
	if err := p.Add(args); err != nil {
		t.Fatalf("ADD: %v (stderr %s)", err, stderr)
	}
	hostIf := model.InterfaceName("default", "p1")

	var res struct {
		CNIVersion string              `json:"cniVersion"`
		Interfaces []current.Interface `json:"interfaces"`
		IPs        []struct {
			Interface *int   `json:"interface"`
			Address   string `json:"address"`
			Gateway   string `json:"gateway"`
			Version   string `json:"version"`
		} `json:"ips"`
		Routes []struct {
			Dst string `json:"dst"`
			GW  string `json:"gw"`
		} `json:"routes"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		t.Fatalf("result %s: %v", stdout, err)
	}
	if res.CNIVersion != cniVersion || len(res.Interfaces) != 2 || len(res.IPs) != 1 || len(res.Routes) != 1 {
		t.Fatalf("result %s", stdout)
	}
	if res.Interfaces[0].Name != hostIf || res.Interfaces[0].Sandbox != "" ||
		res.Interfaces[1].Name != "eth0" || res.Interfaces[1].Sandbox != podNs || res.Interfaces[1].Mac == "" {
		t.Fatalf("result interfaces %+v", res.Interfaces)
	}
	ip := res.IPs[0]
	if ip.Address != "10.77.0.9/32" || ip.Gateway != "169.254.1.1" || ip.Interface == nil || *ip.Interface != 1 {
		t.Fatalf("result ips %s", stdout)
	}
	if res.Routes[0].Dst != "0.0.0.0/0" || res.Routes[0].GW != "169.254.1.1" {
		t.Fatalf("result routes %s", stdout)
	}

	node, pod := testutil.NetlinkAt(t, nodeNs), testutil.NetlinkAt(t, podNs)
	host, err := node.LinkByName(hostIf)
	if err != nil {
		t.Fatalf("host veth %s: %v", hostIf, err)
	}
	eth0, err := pod.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	if host.Attrs().ParentIndex != eth0.Attrs().Index || eth0.Attrs().HardwareAddr.String() != res.Interfaces[1].Mac {
		t.Fatalf("veth %+v / %+v", host.Attrs(), eth0.Attrs())
	}
	if addrs, _ := pod.AddrList(eth0, netlink.FAMILY_V4); len(addrs) != 1 || addrs[0].IPNet.String() != "10.77.0.9/32" {
		t.Fatalf("pod addresses %v", addrs)
	}
	if al, ok := a.Allocations()["sandbox1"]; !ok || al.IP != requested || al.Netns != podNs {
		t.Fatalf("allocations %v", a.Allocations())
	}
	// The namespace CNI_NETNS named is recorded for the sidecar baseline.
	if m, err := ipam.ReadNetns(state); err != nil || m["default/p1"] != podNs {
		t.Fatalf("ReadNetns = %v, %v; want default/p1 at %s", m, err, podNs)
	}

	// A retried ADD is idempotent.
	stdout.Reset()
	if err := p.Add(args); err != nil {
		t.Fatalf("second ADD: %v", err)
	}
	if !strings.Contains(stdout.String(), "10.77.0.9/32") {
		t.Fatalf("second ADD result %s", stdout)
	}

	// CHECK with the ADD result as prevResult.
	var confMap map[string]any
	json.Unmarshal(args.StdinData, &confMap)
	var prev map[string]any
	json.Unmarshal(stdout.Bytes(), &prev)
	confMap["prevResult"] = prev
	checkConf, _ := json.Marshal(confMap)
	checkArgs := *args
	checkArgs.StdinData = checkConf
	if err := p.Check(&checkArgs); err != nil {
		t.Fatalf("CHECK: %v", err)
	}

	// DEL, twice.
	for i := 0; i < 2; i++ {
		if err := p.Del(args); err != nil {
			t.Fatalf("DEL %d: %v", i+1, err)
		}
	}
	if _, err := node.LinkByName(hostIf); err == nil {
		t.Fatal("host veth left after DEL")
	}
	if _, err := pod.LinkByName("eth0"); err == nil {
		t.Fatal("pod eth0 left after DEL")
	}
	if n := len(a.Allocations()); n != 0 {
		t.Fatalf("allocations after DEL: %v", a.Allocations())
	}
	if err := p.Check(&checkArgs); err == nil || !strings.Contains(err.Error(), hostIf) {
		t.Fatalf("CHECK after DEL: %v", err)
	}
	if stderr.Len() > 0 {
		t.Fatalf("stderr: %s", stderr)
	}

	// A pod without a requested address, and DEL without CNI_ARGS: the
	// pod side is found in the sandbox, the address released by id.
	args2 := *args
	args2.ContainerID = "sandbox2"
	args2.Args = "K8S_POD_NAMESPACE=default;K8S_POD_NAME=p2"
	stdout.Reset()
	if err := p.Add(&args2); err != nil {
		t.Fatalf("ADD p2: %v", err)
	}
	if !strings.Contains(stdout.String(), "10.244.3.2/32") {
		t.Fatalf("ADD p2 result %s", stdout)
	}
	args2.Args = ""
	if err := p.Del(&args2); err != nil {
		t.Fatalf("DEL p2 without CNI_ARGS: %v", err)
	}
	if _, err := node.LinkByName(model.InterfaceName("default", "p2")); err == nil {
		t.Fatal("p2 host veth left after DEL without CNI_ARGS")
	}
	if n := len(a.Allocations()); n != 0 {
		t.Fatalf("allocations after DEL p2: %v", a.Allocations())
	}
}

func TestWiringFailureReleases(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	dir, err := os.MkdirTemp("", "fpcni")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "agent.sock")
	a, _ := ipam.New(ipam.Options{CIDR: netip.MustParsePrefix("10.244.4.0/24")})
	serve(t, sock, ipam.Handler(a, nil))
	list, _ := ConfList(sock)
	p := &Plugin{Stdout: buf(), Stderr: buf(), NodeNetns: testutil.NamedNetns(t, "cni-fail")}
	err = p.Add(&skel.CmdArgs{ContainerID: "c1", Netns: filepath.Join(dir, "no-such-netns"), IfName: "eth0",
		Args: "K8S_POD_NAMESPACE=default;K8S_POD_NAME=p1", StdinData: pluginConf(t, list, "")})
	if err == nil || !strings.Contains(err.Error(), "no-such-netns") {
		t.Fatalf("ADD into a missing netns: %v", err)
	}
	if n := len(a.Allocations()); n != 0 {
		t.Fatalf("address kept after a failed ADD: %v", a.Allocations())
	}
}
