package model

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
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

// benchObjects is a larger state for BenchmarkResolve: pods in four
// namespaces on four nodes, NetworkPolicies and CiliumNetworkPolicies that
// select by labels and namespaces.
func benchObjects(pods, policies int) *Objects {
	objs := &Objects{}
	nss := []string{"prod", "dev", "shop", "ops"}
	for _, ns := range nss {
		objs.Namespaces = append(objs.Namespaces, corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{"env": ns}}})
	}
	for i := 1; i <= 4; i++ {
		objs.Nodes = append(objs.Nodes, corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("node%d", i)},
			Spec:   corev1.NodeSpec{PodCIDR: fmt.Sprintf("10.%d.0.0/16", i)},
			Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: fmt.Sprintf("192.0.2.%d", i)}}}})
	}
	apps := []string{"web", "api", "db", "cache", "queue"}
	for i := 0; i < pods; i++ {
		node := i%4 + 1
		objs.Pods = append(objs.Pods, corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("p%d", i), Namespace: nss[i%len(nss)],
				Labels: map[string]string{"app": apps[i%len(apps)], "shard": fmt.Sprint(i % 7)}},
			Spec:   corev1.PodSpec{NodeName: fmt.Sprintf("node%d", node)},
			Status: corev1.PodStatus{PodIP: fmt.Sprintf("10.%d.%d.%d", node, i/250, i%250+1)},
		})
	}
	for i := 0; i < policies; i++ {
		ns := nss[i%len(nss)]
		port := intstr.FromInt32(int32(8000 + i%50))
		if i%3 == 2 {
			objs.CiliumNetworkPolicies = append(objs.CiliumNetworkPolicies, CiliumNetworkPolicy{
				ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("c%d", i), Namespace: ns},
				Spec: &CiliumRule{
					EndpointSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": apps[i%len(apps)]}},
					Ingress: []CiliumIngressRule{{
						FromEndpoints: []metav1.LabelSelector{{MatchLabels: map[string]string{"app": apps[(i+1)%len(apps)]}}},
						ToPorts:       []CiliumPortRule{{Ports: []CiliumPortProtocol{{Port: fmt.Sprint(8000 + i%50), Protocol: "TCP"}}}},
					}},
				},
			})
			continue
		}
		objs.NetworkPolicies = append(objs.NetworkPolicies, networkingv1.NetworkPolicy{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("np%d", i), Namespace: ns},
			Spec: networkingv1.NetworkPolicySpec{
				PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": apps[i%len(apps)]}},
				Ingress: []networkingv1.NetworkPolicyIngressRule{{
					From: []networkingv1.NetworkPolicyPeer{
						{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": apps[(i+2)%len(apps)]}}},
						{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"env": nss[(i+1)%len(nss)]}}},
					},
					Ports: []networkingv1.NetworkPolicyPort{{Port: &port}},
				}},
			},
		})
	}
	return objs
}

// BenchmarkResolve is Resolve alone on validated objects: the bench
// suite's state (4 pods, n policies) and a larger one.
func BenchmarkResolve(b *testing.B) {
	for _, n := range []int{100, 1000} {
		dir, _ := benchState(b, n)
		objs, err := new(Loader).Load(dir)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("policies=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Resolve(objs); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	objs := benchObjects(200, 100)
	if err := objs.Validate(); err != nil {
		b.Fatal(err)
	}
	objs.validated = true
	b.Run("pods=200,policies=100", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := Resolve(objs); err != nil {
				b.Fatal(err)
			}
		}
	})
	// The same cluster in a mesh with two remote clusters of 200 pods each
	// (the same namespaces and labels).
	mesh := *objs
	mesh.Cluster = ClusterInfo{Name: "east", ID: 1}
	for k, name := range []string{"west", "north"} {
		id := uint8(k + 2)
		c := RemoteCluster{Name: name, ID: id}
		for i, p := range objs.Pods {
			l := map[string]string{LabelNamespace: p.Namespace, LabelServiceAccount: "default", LabelCluster: name,
				NamespaceLabelPrefix + "env": p.Namespace}
			for k, v := range p.Labels {
				l[k] = v
			}
			c.Endpoints = append(c.Endpoints, RemoteEndpoint{Namespace: p.Namespace, Name: p.Name,
				IP: netip.AddrFrom4([4]byte{10, byte(100 + k), byte(i / 250), byte(i%250 + 1)}), Node: "n", NodeIP: netip.AddrFrom4([4]byte{172, 16, byte(k), 1}),
				Identity: GlobalIdentity(id, FirstPodIdentity+Identity(i%140)), Labels: l}) // pod i's labels repeat every 140
		}
		mesh.Remote = append(mesh.Remote, c)
	}
	b.Run("pods=200,policies=100,remote=2x200", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := Resolve(&mesh); err != nil {
				b.Fatal(err)
			}
		}
	})
}
