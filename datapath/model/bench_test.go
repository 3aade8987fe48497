package model

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// benchState writes the default bench suite's state: two nodes, four pods,
// one real policy and n-1 fillers (as the harness generates them), and a
// toggle policy in a file of its own.
func benchState(b *testing.B, n int) (dir, toggle string) {
	dir = b.TempDir()
	var cl strings.Builder
	cl.WriteString("apiVersion: v1\nkind: Namespace\nmetadata: {name: bench, labels: {team: bench, kubernetes.io/metadata.name: bench}}\n")
	for i := 1; i <= 2; i++ {
		fmt.Fprintf(&cl, "---\napiVersion: v1\nkind: Node\nmetadata: {name: node%d}\nspec: {podCIDR: 198.19.%d.0/24}\nstatus: {addresses: [{type: InternalIP, address: 198.18.0.%d}]}\n", i, i, i)
		for k, app := range []string{"client", "server"} {
			fmt.Fprintf(&cl, "---\napiVersion: v1\nkind: Pod\nmetadata: {name: %s%d, namespace: bench, labels: {app: %s}}\nspec: {nodeName: node%d, containers: [{name: c, image: x}]}\nstatus: {podIP: 198.19.%d.%d}\n",
				app, i, app, i, i, 10+k)
		}
	}
	var pol strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&pol, `---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: fp-filler-%04d, namespace: bench}
spec:
  podSelector: {matchLabels: {app: server}}
  policyTypes: [Ingress]
  ingress:
  - from:
    - {namespaceSelector: {}, podSelector: {matchLabels: {app: client}}}
    ports: [{port: %d, protocol: TCP}]
`, i, 20000+i)
	}
	write := func(name, data string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	write("00-cluster.yaml", cl.String())
	write("20-generated.yaml", pol.String())
	toggle = filepath.Join(dir, "30-toggle.yaml")
	return dir, toggle
}

// BenchmarkReconcile is an agent's work on a single-policy change, before
// the datapath: loading the state directory (one file changed) and
// resolving it.
func BenchmarkReconcile(b *testing.B) {
	for _, n := range []int{100, 1000} {
		dir, toggle := benchState(b, n)
		on := []byte(`apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: toggle, namespace: bench}
spec:
  podSelector: {matchLabels: {app: server}}
  ingress: [{from: [{podSelector: {matchLabels: {app: client}}}], ports: [{port: 9000}]}]
`)
		var l Loader
		if _, err := l.Load(dir); err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("policies=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				if i%2 == 0 {
					if err := os.WriteFile(toggle, on, 0o644); err != nil {
						b.Fatal(err)
					}
				} else if err := os.Remove(toggle); err != nil {
					b.Fatal(err)
				}
				objs, err := l.Load(dir)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := Resolve(objs); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
