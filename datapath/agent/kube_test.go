package agent

import (
	"net/netip"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/fastpath-bench/fastpath/datapath/model"
)

func TestWantedRoutes(t *testing.T) {
	r := &model.Resolved{
		Nodes: []model.Node{
			{Name: "a", IP: netip.MustParseAddr("172.18.0.2"), PodCIDR: netip.MustParsePrefix("10.244.1.0/24")},
			{Name: "b", IP: netip.MustParseAddr("172.18.0.3"), PodCIDR: netip.MustParsePrefix("10.244.2.0/24")},
			{Name: "c", IP: netip.MustParseAddr("172.18.0.4")}, // no CIDR yet
		},
		Endpoints: []*model.Endpoint{
			{Namespace: "x", Name: "in-cidr", Node: "b", IP: netip.MustParseAddr("10.244.2.7")},
			{Namespace: "x", Name: "exact", Node: "b", IP: netip.MustParseAddr("10.244.200.7")},
			{Namespace: "x", Name: "on-c", Node: "c", IP: netip.MustParseAddr("10.9.0.1")},
			{Namespace: "x", Name: "local-exact", Node: "a", IP: netip.MustParseAddr("10.244.200.8")},
		},
	}
	got := sortedPrefixes(wantedRoutes(r, "a"))
	want := []string{"10.244.2.0/24 via 172.18.0.3", "10.244.200.7/32 via 172.18.0.3", "10.9.0.1/32 via 172.18.0.4"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("routes from a:\n got %v\nwant %v", got, want)
	}
}

func TestNewSourceValidation(t *testing.T) {
	_, err := New(Config{Node: "n", Source: "etcd", Datapath: "none"})
	if err == nil || !strings.Contains(err.Error(), `--source "etcd"`) {
		t.Fatalf("unknown source: %v", err)
	}
	_, err = New(Config{Node: "n", Source: SourceKubernetes, StateDir: t.TempDir(), Datapath: "none", Listen: "nohost"})
	if err == nil || !strings.Contains(err.Error(), "--state-dir: not used") || !strings.Contains(err.Error(), `--listen "nohost"`) {
		t.Fatalf("kubernetes source with a state dir and a bad listen address: %v", err)
	}
	if _, err := New(Config{Node: "n", Source: SourceKubernetes, Datapath: "none"}); err != nil {
		t.Fatalf("kubernetes source: %v", err)
	}
}

// sortedPrefixes lists a route set in order .
func sortedPrefixes(m map[netip.Prefix]netip.Addr) []string {
	out := make([]string, 0, len(m))
	for p, gw := range m {
		out = append(out, p.String()+" via "+gw.String())
	}
	sort.Strings(out)
	return out
}
