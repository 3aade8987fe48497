package scenario

import (
	"strings"
	"testing"
	"time"
)

func TestPartition(t *testing.T) {
	base := strings.Replace(meshSuite, "%s", `    - {name: east, id: 1, nodes: [e1]}
    - {name: west, id: 2, nodes: [w1, w2]}`, 1)
	s, err := Decode("mesh.yaml", []byte(base+"  partition: {from: b/c, to: b/s, cut: west, established: 8, duration: 30s, probeInterval: 20ms}\n"), "")
	if err != nil {
		t.Fatal(err)
	}
	if pt := s.Spec.Partition; pt.Cut != "west" || pt.Established != 8 || pt.Duration.Duration != 30*time.Second || pt.ProbeInterval.Duration != 20*time.Millisecond {
		t.Fatalf("decoded %+v", pt)
	}
	// Every problem at once, each naming its field.
	_, err = Decode("mesh.yaml", []byte(base+"  partition: {from: b/c, to: b/nope, cut: north, port: 70000, established: 65, duration: 10m, probeInterval: 1ms}\n"), "")
	checkMessages(t, err, []string{
		`mesh.yaml: spec.partition.to: no pod "b/nope" in spec.cluster.pods`,
		`mesh.yaml: spec.partition.cut: no cluster "north" in spec.cluster.clusters`,
		`mesh.yaml: spec.partition.port: must be between 1 and 65535`,
		`mesh.yaml: spec.partition.established: must be between 0 and 64`,
		`mesh.yaml: spec.partition.duration: must be between 1s and 5m`,
		`mesh.yaml: spec.partition.probeInterval: must be between 10ms and 1s`,
	})
	same := strings.Replace(base, "node: e1, labels", "node: w2, labels", 1) + "  partition: {from: b/c, to: b/s}\n"
	_, err = Decode("mesh.yaml", []byte(same), "")
	checkMessages(t, err, []string{`mesh.yaml: spec.partition.to: must be in another cluster than from (both in "west")`})
	noMesh := strings.Replace(meshSuite, "    clusters:\n%s\n", "", 1) + "  partition: {from: b/c, to: b/s}\n"
	_, err = Decode("mesh.yaml", []byte(noMesh), "")
	checkMessages(t, err, []string{`mesh.yaml: spec.partition: needs spec.cluster.clusters (a cluster mesh)`})
}
