package meshmodel

import (
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/fastpath-bench/fastpath/datapath/model"
	"github.com/fastpath-bench/fastpath/harness/cluster"
)

// state is one cluster's pods and nodes as the netns provider writes them
// (scenarios/bench/multicluster.yaml: east = e1, west = w1, w2).
func state(nodes map[string]string, pods map[string][2]string) string {
	var b strings.Builder
	b.WriteString("apiVersion: v1\nkind: Namespace\nmetadata: {name: bench, labels: {kubernetes.io/metadata.name: bench}}\n")
	for n, ip := range nodes {
		fmt.Fprintf(&b, "---\napiVersion: v1\nkind: Node\nmetadata: {name: %s}\nstatus: {addresses: [{type: InternalIP, address: %s}]}\n", n, ip)
	}
	for p, v := range pods {
		fmt.Fprintf(&b, "---\napiVersion: v1\nkind: Pod\nmetadata: {name: %s, namespace: bench, labels: {app: %s}}\nspec: {nodeName: %s, containers: [{name: main, image: fastpath}]}\nstatus: {podIP: %s, phase: Running}\n",
			p, strings.TrimRight(p, "12"), v[0], v[1])
	}
	return b.String()
}

// TestMulticlusterPolicy checks what scenarios/policies/multicluster-allow.yaml
// admits on each kind of datapath: in the mesh (ebpf) east's client by
// its cluster label, without a mesh (iptables, sidecar) by east's pod
// CIDR only; and that each of the two rules alone is what the policy's
// comment says it is.
func TestMulticlusterPolicy(t *testing.T) {
	policy, err := os.ReadFile("../../scenarios/policies/multicluster-allow.yaml")
	if err != nil {
		t.Fatal(err)
	}
	client1, server1, client2 := netip.MustParseAddr("198.19.1.11"), netip.MustParseAddr("198.19.2.11"), netip.MustParseAddr("198.19.3.11")
	states := map[string]string{
		"east": state(map[string]string{"e1": "192.168.77.1"}, map[string][2]string{"client1": {"e1", client1.String()}}),
		"west": state(map[string]string{"w1": "192.168.77.2", "w2": "192.168.77.3"}, map[string][2]string{"server1": {"w1", server1.String()}, "client2": {"w2", client2.String()}}),
	}
	build := func(t *testing.T, pol string) (mesh *Mesh, flat map[string]*model.Objects) {
		t.Helper()
		parts, err := cluster.SplitByCluster([]byte(pol), []string{"east", "west"})
		if err != nil {
			t.Fatal(err)
		}
		flat = map[string]*model.Objects{}
		var cs []Cluster
		for i, name := range []string{"east", "west"} {
			for _, into := range []*map[string]*model.Objects{nil, &flat} {
				objs := &model.Objects{}
				if err := objs.Decode(name+".yaml", []byte(states[name])); err != nil {
					t.Fatal(err)
				}
				if err := objs.Decode("policy ("+name+")", parts[name]); err != nil {
					t.Fatal(err)
				}
				if into == nil {
					cs = append(cs, Cluster{Name: name, ID: i + 1, Objects: objs})
				} else {
					(*into)[name] = objs
				}
			}
		}
		mesh, err = Build(cs)
		if err != nil {
			t.Fatal(err)
		}
		return mesh, flat
	}
	flatVerdict := func(flat map[string]*model.Objects, src, dst string, from, to netip.Addr, port uint16) bool {
		e := model.Evaluate(flat[src], from, to, model.ProtoTCP, port)
		i := model.Evaluate(flat[dst], from, to, model.ProtoTCP, port)
		return e.Allowed && i.Allowed
	}
	const (
		ipBlock = "    - ipBlock: {cidr: 198.19.1.0/24}\n"
		byLabel = "    - podSelector:\n        matchLabels: {app: client, io.cilium.k8s.policy.cluster: east}\n"
	)
	without := func(blocks ...string) string {
		out := string(policy)
		for _, b := range blocks {
			if !strings.Contains(out, b) {
				t.Fatalf("the policy has no %q", b)
			}
			out = strings.Replace(out, b, "", 1)
		}
		return out
	}
	for _, tc := range []struct {
		name                   string
		policy                 string
		meshCross, flatCross   bool
		meshWithin, flatWithin bool
	}{
		{"as shipped", string(policy), true, true, true, true},
		// In the mesh the cluster label admits east's client; without a
		// mesh only the address does.
		{"without the ipBlock", without(ipBlock), true, false, true, true},
		// This model matches ipBlocks by address for remote pods too.
		{"without the cluster-label peer", without(byLabel), true, true, true, true},
		{"neither", without(ipBlock, byLabel), false, false, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mesh, flat := build(t, tc.policy)
			if got := mesh.Verdict("east", "west", client1, server1, model.ProtoTCP, 8080); got.Allowed != tc.meshCross {
				t.Errorf("mesh east/client1 -> west/server1: %+v, want allowed %v", got, tc.meshCross)
			}
			if got := flatVerdict(flat, "east", "west", client1, server1, 8080); got != tc.flatCross {
				t.Errorf("flat east/client1 -> west/server1: allowed %v, want %v", got, tc.flatCross)
			}
			if got := mesh.Verdict("west", "west", client2, server1, model.ProtoTCP, 8080); got.Allowed != tc.meshWithin {
				t.Errorf("mesh west/client2 -> west/server1: %+v", got)
			}
			if got := flatVerdict(flat, "west", "west", client2, server1, 8080); got != tc.flatWithin {
				t.Errorf("flat west/client2 -> west/server1: allowed %v", got)
			}
			// The propagation port stays closed.
			if mesh.Verdict("east", "west", client1, server1, model.ProtoTCP, 9000).Allowed || flatVerdict(flat, "east", "west", client1, server1, 9000) {
				t.Error("TCP/9000 allowed")
			}
		})
	}
}
