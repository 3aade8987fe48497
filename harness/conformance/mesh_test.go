package conformance

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestLoadMeshCaseErrors: mesh.yaml and spoofed probes are checked when
// the case loads, every problem named with its file and field.
func TestLoadMeshCaseErrors(t *testing.T) {
	src := "../../scenarios/conformance/mesh/006-spoofed-source-denied"
	load := func(mesh, expect string) error {
		t.Helper()
		dir := filepath.Join(t.TempDir(), "case")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, f := range []string{"cluster.yaml", "policies.yaml"} {
			b, err := os.ReadFile(filepath.Join(src, f))
			if err != nil {
				t.Fatal(err)
			}
			os.WriteFile(filepath.Join(dir, f), b, 0o644)
		}
		os.WriteFile(filepath.Join(dir, "mesh.yaml"), []byte(mesh), 0o644)
		os.WriteFile(filepath.Join(dir, "expect.yaml"), []byte(expect), 0o644)
		_, err := LoadCase(filepath.Dir(dir), dir)
		return err
	}
	good := "clusters:\n- {name: east, id: 1, nodes: [east-1]}\n- {name: west, id: 2, nodes: [west-1, west-2]}\n"
	probe := "probes:\n- {from: t/client, to: t/server, port: 5353, protocol: UDP, connected: true}\n"
	if err := load(good, probe); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		mesh, expect string
		want         []string
	}{
		{"clusters:\n- {name: east, id: 1, nodes: [east-1], color: red}\n", probe, []string{`unknown field "color"`}},
		{"clusters:\n- {name: east, id: 1, nodes: [east-1, west-1]}\n- {name: west, id: 1, nodes: [west-1, west-2]}\n", probe,
			[]string{"clusters[1].id: duplicate cluster id 1", `clusters[1].nodes: node "west-1" is also in cluster "east"`}},
		{"clusters:\n- {name: East, id: 0, nodes: [east-1]}\n- {name: west, id: 2, nodes: [west-1], serviceCIDR: 10.1.0.0/33}\n", probe,
			[]string{"clusters[0].name", "clusters[0].id: 0 not in 1-255", "clusters[1].serviceCIDR", `pod t/open: spec.nodeName "west-2" is no node of mesh.yaml`}},
		{good, "probes:\n- {from: t/mallory, spoof: t/nobody, to: t/server, port: 8080, protocol: TCP, connected: false}\n",
			[]string{`probes[0].spoof: no pod "t/nobody"`, "probes[0].spoof: a spoofed probe sends UDP to a pod"}},
		{good, "probes:\n- {from: t/mallory, spoof: t/client, spoofLayer: overlay, to: t/client, port: 5353, protocol: UDP, connected: false}\n",
			[]string{"probes[0].spoofLayer: an overlay forgery goes from one cluster to another"}},
		{good, "probes:\n- {from: t/mallory, spoof: t/client, spoofLayer: wire, to: t/server, port: 5353, protocol: UDP, connected: false}\n",
			[]string{`probes[0].spoofLayer: "wire"`}},
		{good, "probes:\n- {from: t/client, service: t/x, port: 80, protocol: TCP, connected: false}\n",
			[]string{"probes of a mesh case go from pod to pod"}},
	} {
		err := load(tc.mesh, tc.expect)
		for _, w := range tc.want {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("mesh %q expect %q: error %v does not say %q", tc.mesh, tc.expect, err, w)
			}
		}
	}
}
