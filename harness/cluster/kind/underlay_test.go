package kind

import (
	"net/netip"
	"strings"
	"testing"
)

// Every node gets a route to each node of the other clusters' pod CIDR via
// that node's address, and none to its own cluster's (the agent routes
// those).
func TestPlanUnderlay(t *testing.T) {
	n := func(c, name, ip, cidr string) underlayNode {
		return underlayNode{Cluster: c, Name: name, IP: netip.MustParseAddr(ip), PodCIDR: netip.MustParsePrefix(cidr)}
	}
	nodes := []underlayNode{
		n("east", "e-control-plane", "172.18.0.2", "10.244.0.0/24"),
		n("east", "e-worker", "172.18.0.3", "10.244.1.0/24"),
		n("west", "w-control-plane", "172.18.0.4", "10.245.0.0/24"),
		n("west", "w-worker", "172.18.0.5", "10.245.1.0/24"),
		n("west", "w-worker2", "172.18.0.6", "10.245.2.0/24"),
	}
	routes, err := planUnderlay(nodes)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range routes {
		got = append(got, r.Node+": "+r.Dst.String()+" via "+r.Via.String())
	}
	want := []string{
		"e-control-plane: 10.245.0.0/24 via 172.18.0.4",
		"e-control-plane: 10.245.1.0/24 via 172.18.0.5",
		"e-control-plane: 10.245.2.0/24 via 172.18.0.6",
		"e-worker: 10.245.0.0/24 via 172.18.0.4",
		"e-worker: 10.245.1.0/24 via 172.18.0.5",
		"e-worker: 10.245.2.0/24 via 172.18.0.6",
		"w-control-plane: 10.244.0.0/24 via 172.18.0.2",
		"w-control-plane: 10.244.1.0/24 via 172.18.0.3",
		"w-worker: 10.244.0.0/24 via 172.18.0.2",
		"w-worker: 10.244.1.0/24 via 172.18.0.3",
		"w-worker2: 10.244.0.0/24 via 172.18.0.2",
		"w-worker2: 10.244.1.0/24 via 172.18.0.3",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("routes:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	var west []underlayRoute
	for _, r := range routes {
		if r.Node == "w-worker" {
			west = append(west, r)
		}
	}
	if b := underlayBatch(west); b != "route replace 10.244.0.0/24 via 172.18.0.2 proto 251\nroute replace 10.244.1.0/24 via 172.18.0.3 proto 251\n" {
		t.Errorf("batch:\n%s", b)
	}
}

// Overlapping pod CIDRs across clusters, and nodes without an address or
// pod CIDR, are refused, naming the nodes.
func TestPlanUnderlayRefuses(t *testing.T) {
	nodes := []underlayNode{
		{Cluster: "east", Name: "e-worker", IP: netip.MustParseAddr("172.18.0.3"), PodCIDR: netip.MustParsePrefix("10.244.1.0/24")},
		{Cluster: "west", Name: "w-worker", IP: netip.MustParseAddr("172.18.0.5"), PodCIDR: netip.MustParsePrefix("10.244.0.0/16")},
		{Cluster: "west", Name: "w-worker2", IP: netip.MustParseAddr("172.18.0.6")},
	}
	_, err := planUnderlay(nodes)
	if err == nil {
		t.Fatal("no error")
	}
	for _, s := range []string{"e-worker (cluster east, 10.244.1.0/24) and node w-worker (cluster west, 10.244.0.0/16) overlap", "node w-worker2 (cluster west)"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not say %q", err, s)
		}
	}
	// The same CIDR within one cluster is no conflict of the underlay's.
	if _, err := planUnderlay(nodes[1:2]); err != nil {
		t.Errorf("one node: %v", err)
	}
}

// The label patch sets a label, or removes it with null.
func TestLabelPatch(t *testing.T) {
	on := "on"
	for _, tc := range []struct {
		v    *string
		want string
	}{{&on, `{"metadata":{"labels":{"k":"on"}}}`}, {nil, `{"metadata":{"labels":{"k":null}}}`}} {
		b, err := labelPatch("k", tc.v)
		if err != nil || string(b) != tc.want {
			t.Errorf("labelPatch(%v) = %s, %v; want %s", tc.v, b, err, tc.want)
		}
	}
}

// A low inotify instance limit is warned about, with the fix.
func TestInotifyWarning(t *testing.T) {
	if w := inotifyWarning(128); !strings.Contains(w, "is 128") || !strings.Contains(w, "sysctl -w fs.inotify.max_user_instances=512") {
		t.Errorf("128: %q", w)
	}
	for _, n := range []int{0, 512, 8192} {
		if w := inotifyWarning(n); w != "" {
			t.Errorf("%d: %q", n, w)
		}
	}
}
