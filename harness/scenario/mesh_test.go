package scenario

import (
	"slices"
	"strings"
	"testing"
	"time"
)

const meshSuite = `apiVersion: fastpath.dev/v1alpha1
kind: Suite
metadata: {name: mesh}
spec:
  datapaths: [ebpf]
  cluster:
    nodes: [e1, w1, w2]
    clusters:
%s
    pods:
    - {name: c, namespace: b, node: e1, labels: {app: client}}
    - {name: s, namespace: b, node: w1, labels: {app: server}}
  scenarios:
  - {name: x, from: b/c, to: b/s}
`

func TestMeshClusters(t *testing.T) {
	s, err := Decode("mesh.yaml", []byte(strings.Replace(meshSuite, "%s", `    - {name: east, id: 1, nodes: [e1], serviceCIDR: 10.96.0.0/16}
    - {name: west, id: 2, nodes: [w1, w2]}
    meshLeaseTTL: 5s`, 1)), "")
	if err != nil {
		t.Fatal(err)
	}
	c := s.Spec.Cluster
	if len(c.Clusters) != 2 || c.Clusters[1].Name != "west" || c.Clusters[1].ID != 2 || !slices.Equal(c.Clusters[1].Nodes, []string{"w1", "w2"}) ||
		c.Clusters[0].ServiceCIDR != "10.96.0.0/16" || c.MeshLeaseTTL.Duration != 5*time.Second {
		t.Fatalf("decoded %+v", c)
	}
	if got := c.ClusterOfNode("w2"); got != "west" {
		t.Fatalf("ClusterOfNode(w2) = %q", got)
	}

	// Every problem at once, each naming its field.
	_, err = Decode("mesh.yaml", []byte(strings.Replace(meshSuite, "%s", `    - {name: east, id: 1, nodes: [e1, w1], serviceCIDR: 10.96.0.0/16}
    - {name: East, id: 1, nodes: [w1, x9], serviceCIDR: 10.96.128.0/17, zone: a}
    - {name: east, id: 256, nodes: []}
    - {name: north, id: 0, nodes: [e1], serviceCIDR: 10.1.2.3/16}
    - {name: south, id: 5, nodes: [e1], serviceCIDR: "fd00::/64"}
    meshLeaseTTL: 10m`, 1)), "")
	want := []string{
		`mesh.yaml: spec.cluster.clusters[1].zone: unknown field (known here: id, name, nodes, serviceCIDR)`,
		`mesh.yaml: spec.cluster.meshLeaseTTL: must be between 1s and 5m0s (0 means the default), have 10m0s`,
		`mesh.yaml: spec.cluster.clusters[1].name: "East" is not a valid name`,
		`mesh.yaml: spec.cluster.clusters[1].id: duplicate cluster id 1 (also spec.cluster.clusters[0])`,
		`mesh.yaml: spec.cluster.clusters[1].nodes[0]: node "w1" is already in spec.cluster.clusters[0].nodes[1]`,
		`mesh.yaml: spec.cluster.clusters[1].nodes[1]: unknown node "x9" (nodes: e1, w1, w2)`,
		`mesh.yaml: spec.cluster.clusters[1].serviceCIDR: 10.96.128.0/17 overlaps spec.cluster.clusters[0].serviceCIDR (10.96.0.0/16)`,
		`mesh.yaml: spec.cluster.clusters[2].name: duplicate cluster "east" (also spec.cluster.clusters[0])`,
		`mesh.yaml: spec.cluster.clusters[2].id: must be between 1 and 255, have 256`,
		`mesh.yaml: spec.cluster.clusters[2].nodes: at least one node is required`,
		`mesh.yaml: spec.cluster.clusters[3].id: must be between 1 and 255, have 0`,
		`mesh.yaml: spec.cluster.clusters[3].nodes[0]: node "e1" is already in spec.cluster.clusters[0].nodes[0]`,
		`mesh.yaml: spec.cluster.clusters[3].serviceCIDR: 10.1.2.3/16 has host bits set (the range is 10.1.0.0/16)`,
		`mesh.yaml: spec.cluster.clusters[4].nodes[0]: node "e1" is already in spec.cluster.clusters[0].nodes[0]`,
		`mesh.yaml: spec.cluster.clusters[4].serviceCIDR: must be IPv4, have fd00::/64`,
		`mesh.yaml: spec.cluster.clusters: node "w2" is in no cluster (every node of spec.cluster.nodes must be in exactly one)`,
	}
	checkMessages(t, err, want)

	// One cluster is no mesh; a lease TTL without clusters is refused.
	_, err = Decode("mesh.yaml", []byte(strings.Replace(meshSuite, "%s", `    - {name: east, id: 1, nodes: [e1, w1, w2]}`, 1)), "")
	checkMessages(t, err, []string{`mesh.yaml: spec.cluster.clusters: a mesh needs at least 2 clusters, have 1`})
	_, err = Decode("mesh.yaml", []byte(strings.Replace(meshSuite, "    clusters:\n%s", `    meshLeaseTTL: 2s`, 1)), "")
	checkMessages(t, err, []string{`mesh.yaml: spec.cluster.meshLeaseTTL: needs spec.cluster.clusters (a cluster mesh)`})
}

// checkMessages compares err's messages with want, each a prefix.
func checkMessages(t *testing.T, err error, want []string) {
	t.Helper()
	got := errorMessages(err)
	if len(got) != len(want) {
		t.Fatalf("got %d errors, want %d:\n%s", len(got), len(want), strings.Join(got, "\n"))
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("error %d:\n got %s\nwant %s", i, got[i], want[i])
		}
	}
}

func TestPropagationRelabel(t *testing.T) {
	base := strings.Replace(meshSuite, "%s", `    - {name: east, id: 1, nodes: [e1]}
    - {name: west, id: 2, nodes: [w1, w2]}`, 1)
	ok := base + "  propagation: {from: b/c, to: b/s, relabel: true}\n"
	if _, err := Decode("mesh.yaml", []byte(ok), ""); err != nil {
		t.Fatal(err)
	}
	same := strings.Replace(ok, "node: e1, labels", "node: w2, labels", 1)
	_, err := Decode("mesh.yaml", []byte(same), "")
	checkMessages(t, err, []string{`mesh.yaml: spec.propagation.relabel: needs from and to in different clusters (both in "west")`})
}
