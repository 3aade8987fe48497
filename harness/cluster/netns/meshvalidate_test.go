package netns

import (
	"context"
	"net/netip"
	"strings"
	"testing"

	"github.com/fastpath-bench/fastpath/harness/cluster"
)

// TestMeshSpecRefused: a mesh with duplicate cluster ids, overlapping
// service CIDRs or nodes outside (or in two) clusters is refused before
// anything is created, every problem named.
func TestMeshSpecRefused(t *testing.T) {
	spec := cluster.Spec{
		RunID: "fp-tvalid",
		Nodes: []string{"e1", "w1", "x1"},
		Clusters: []cluster.ClusterSpec{
			{Name: "east", ID: 7, Nodes: []string{"e1"}},
			{Name: "west", ID: 7, Nodes: []string{"w1"}, ServiceCIDR: netip.MustParsePrefix("10.96.0.0/12")},
		},
	}
	_, err := NewProvider(Options{}).Create(context.Background(), spec)
	for _, want := range []string{`node "x1" is in no cluster`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not say %q", err, want)
		}
	}
	spec.Nodes = spec.Nodes[:2]
	_, err = NewProvider(Options{}).Create(context.Background(), spec)
	for _, want := range []string{"duplicate cluster id 7", "overlaps service CIDR 10.102.0.0/16"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not say %q", err, want)
		}
	}
	spec.Clusters[1].ID = 8
	spec.Clusters[1].ServiceCIDR = netip.Prefix{}
	spec.Clusters[1].Nodes = []string{"w1", "e1"}
	_, err = NewProvider(Options{}).Create(context.Background(), spec)
	if err == nil || !strings.Contains(err.Error(), `node "e1" is also in cluster "east"`) {
		t.Errorf("node in two clusters: %v", err)
	}
	if left, _ := Leftovers("fp-tvalid"); len(left) > 0 {
		t.Fatalf("a refused spec left %v", left)
	}
}
