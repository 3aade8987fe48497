package model

import (
	"fmt"
	"math/rand"
	"net/netip"
	"sort"
	"strings"
	"testing"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// remoteEP is a remote endpoint of cluster with local identity local, the
// identity labels a peer publishes (pod labels, namespace, service
// account, namespace labels, cluster).
func remoteEP(cluster string, id uint8, local Identity, ns, name, ip, node, nodeIP, sa string, own, nsLabels map[string]string) RemoteEndpoint {
	l := map[string]string{LabelNamespace: ns, LabelServiceAccount: sa, LabelCluster: cluster}
	for k, v := range own {
		l[k] = v
	}
	for k, v := range nsLabels {
		l[NamespaceLabelPrefix+k] = v
	}
	return RemoteEndpoint{Namespace: ns, Name: name, IP: netip.MustParseAddr(ip), Node: node, NodeIP: netip.MustParseAddr(nodeIP),
		Identity: GlobalIdentity(id, local), Labels: l}
}

// meshObjects is testdata/mesh (the local cluster east, id 1) with the
// remote clusters west (id 2) and north (id 3).
func meshObjects(t *testing.T) *Objects {
	t.Helper()
	objs, err := LoadDir("testdata/mesh")
	if err != nil {
		t.Fatal(err)
	}
	prod := map[string]string{"env": "prod"}
	objs.Cluster = ClusterInfo{Name: "east", ID: 1}
	objs.Remote = []RemoteCluster{
		{Name: "west", ID: 2, Nodes: []Node{{Name: "w1", IP: netip.MustParseAddr("172.16.0.1")}}, Endpoints: []RemoteEndpoint{
			remoteEP("west", 2, 0x100, "prod", "a", "10.2.0.10", "w1", "172.16.0.1", "sa-a", map[string]string{"app": "a"}, prod),
			remoteEP("west", 2, 0x101, "prod", "b", "10.2.0.11", "w1", "172.16.0.1", "default", map[string]string{"app": "b"}, prod),
			// Another namespace, labelled env=prod in west.
			remoteEP("west", 2, 0x102, "staging", "a", "10.2.0.12", "w1", "172.16.0.1", "sa-a", map[string]string{"app": "a"}, prod),
			// The address of the local pod prod/a-local.
			remoteEP("west", 2, 0x103, "prod", "evil", "10.1.0.11", "w1", "172.16.0.1", "evil", map[string]string{"app": "evil"}, prod),
		}},
		{Name: "north", ID: 3, Nodes: []Node{{Name: "x1", IP: netip.MustParseAddr("172.17.0.1")}}, Endpoints: []RemoteEndpoint{
			// north labels its prod namespace env=staging.
			remoteEP("north", 3, 0x100, "prod", "a", "10.3.0.10", "x1", "172.17.0.1", "sa-a", map[string]string{"app": "a"}, map[string]string{"env": "staging"}),
		}},
	}
	return objs
}

func TestMeshVerdicts(t *testing.T) {
	objs := meshObjects(t)
	r, err := Resolve(objs)
	if err != nil {
		t.Fatal(err)
	}
	type peer struct{ cluster, ip string }
	local := func(ip string) peer { return peer{"", ip} }
	var (
		aLocal, server, api = local("10.1.0.11"), local("10.1.0.10"), local("10.1.0.20")
		westA, westB        = peer{"west", "10.2.0.10"}, peer{"west", "10.2.0.11"}
		westStaging         = peer{"west", "10.2.0.12"}
		westEvil            = peer{"west", "10.1.0.11"} // shadowed by aLocal
		northA              = peer{"north", "10.3.0.10"}
		external, westNode  = local("203.0.113.5"), local("172.16.0.1")
	)
	const (
		srvIP, dbIP, webIP, payIP, apiIP = "10.1.0.10", "10.1.0.12", "10.1.0.13", "10.1.0.14", "10.1.0.20"
	)
	cases := []struct {
		what  string
		from  peer
		to    string
		port  uint16
		allow bool
	}{
		{"app=a of any cluster: local", aLocal, srvIP, 80, true},
		{"app=a of any cluster: west", westA, srvIP, 80, true},
		{"app=a of any cluster, but north is denied by a CNP", northA, srvIP, 80, false},
		{"podSelector-only peer: namespace prod only, in every cluster", westStaging, srvIP, 80, false},
		{"app=b", westB, srvIP, 80, false},
		{"overlapping address, by identity: west's pod", westEvil, srvIP, 80, false},

		{"restricted to cluster west", westA, dbIP, 5432, true},
		{"restricted to cluster west: north", northA, dbIP, 5432, false},
		{"restricted to cluster west: local", aLocal, dbIP, 5432, false},

		{"namespaceSelector env=prod: west prod", westA, apiIP, 8080, true},
		{"namespaceSelector env=prod: west staging (env=prod in west)", westStaging, apiIP, 8080, true},
		{"namespaceSelector env=prod: north prod (env=staging in north)", northA, apiIP, 8080, false},
		{"namespaceSelector env=prod: local prod", server, apiIP, 8080, true},

		{"egress to west's pods", api, "10.2.0.10", 80, true},
		{"egress to west's pods: north", api, "10.3.0.10", 80, false},
		{"egress to west's pods: local", api, srvIP, 80, false},

		{"ipBlock of west's pod CIDR: west", westA, webIP, 9100, true},
		{"ipBlock of west's pod CIDR: west b", westB, webIP, 9100, true},
		{"ipBlock of west's pod CIDR: north", northA, webIP, 9100, false},
		{"ipBlock of west's pod CIDR: local", server, webIP, 9100, false},

		{"entity cluster: local pod", server, webIP, 9000, true},
		{"entity cluster: remote pod", westA, webIP, 9000, false},
		{"entity cluster: remote cluster's node (remote-node)", westNode, webIP, 9000, true},
		{"entity cluster: outside", external, webIP, 9000, false},
		{"entity world: outside", external, webIP, 9001, true},
		{"entity world: remote pod", westA, webIP, 9001, false},
		{"entity world: remote node", westNode, webIP, 9001, false},
		{"entity world: local pod", server, webIP, 9001, false},
		{"entity remote-node: remote cluster's node", westNode, webIP, 9002, true},
		{"entity remote-node: remote pod", westA, webIP, 9002, false},

		{"principal west.local sa-a", westA, payIP, 8443, true},
		{"principal west.local sa-a: north's sa-a", northA, payIP, 8443, false},
		{"principal cluster.local sa-a: local", aLocal, payIP, 8443, true},
		{"principal east.local default: local (the local trust domain)", server, payIP, 8443, true},
		{"principals: west's default account", westB, payIP, 8443, false},
		{"principals: the overlapping remote pod", westEvil, payIP, 8443, false},
		{"principal */ns/prod/sa/sa-a: west", westA, payIP, 8444, true},
		{"principal */ns/prod/sa/sa-a: north", northA, payIP, 8444, true},
		{"principal */ns/prod/sa/sa-a: local", aLocal, payIP, 8444, true},
		{"principal */ns/prod/sa/sa-a: west staging", westStaging, payIP, 8444, false},
		{"principal */ns/prod/sa/sa-a: local default", server, payIP, 8444, false},
	}
	for _, tc := range cases {
		from, to := netip.MustParseAddr(tc.from.ip), netip.MustParseAddr(tc.to)
		check := func(how string, v Verdict) {
			t.Helper()
			if v.Allowed != tc.allow {
				t.Errorf("%s: %s -> %s:%d: %s says %v (%s), want %v", tc.what, tc.from, tc.to, tc.port, how, v.Allowed, v.Reason, tc.allow)
			}
		}
		if tc.from.cluster == "" {
			check("Evaluate", Evaluate(objs, from, to, ProtoTCP, tc.port))
			check("Resolved.Allowed", r.Allowed(from, to, ProtoTCP, tc.port))
			continue
		}
		var ep *RemoteEndpoint
		for _, e := range r.RemoteEndpoints {
			if e.Cluster == tc.from.cluster && e.IP == from {
				ep = e
			}
		}
		if ep == nil {
			t.Fatalf("%s: no remote endpoint %v", tc.what, tc.from)
		}
		check("EvaluateFromRemote", EvaluateFromRemote(objs, tc.from.cluster, from, to, ProtoTCP, tc.port))
		check("Resolved.AllowedFromIdentity", r.AllowedFromIdentity(ep.Identity, from, to, ProtoTCP, tc.port))
		if !ep.Shadowed {
			// Its address is its own: the address-based evaluators agree.
			check("Evaluate", Evaluate(objs, from, to, ProtoTCP, tc.port))
			check("Resolved.Allowed", r.Allowed(from, to, ProtoTCP, tc.port))
		}
	}
}

// TestMeshOverlappingAddress: a remote pod with a local pod's address.
// Address lookups give the address to the local pod; the identity-based
// APIs tell the two apart.
func TestMeshOverlappingAddress(t *testing.T) {
	objs := meshObjects(t)
	r, err := Resolve(objs)
	if err != nil {
		t.Fatal(err)
	}
	ip, server := netip.MustParseAddr("10.1.0.11"), netip.MustParseAddr("10.1.0.10")
	local, _ := r.EndpointByIP(ip)
	var evil *RemoteEndpoint
	for _, e := range r.RemoteEndpoints {
		if e.IP == ip {
			evil = e
		}
	}
	if local == nil || evil == nil || local.Key() != "prod/a-local" || evil.Key() != "west/prod/evil" {
		t.Fatalf("endpoints at %s: local %v, remote %v", ip, local, evil)
	}
	if !evil.Shadowed {
		t.Error("the remote endpoint with a local pod's address is not Shadowed")
	}
	if _, ok := r.RemoteEndpointByIP(ip); ok {
		t.Error("RemoteEndpointByIP returns a shadowed endpoint")
	}
	if got := r.IdentityOf("n1", ip); got != local.Identity {
		t.Errorf("IdentityOf(%s) = %#x, want the local pod's %#x", ip, got, local.Identity)
	}
	// By address: the local pod (app=a), allowed.
	if v := Evaluate(objs, ip, server, ProtoTCP, 80); !v.Allowed {
		t.Errorf("Evaluate by address: %s", v.Reason)
	}
	if v := r.Allowed(ip, server, ProtoTCP, 80); !v.Allowed {
		t.Errorf("Allowed by address: %s", v.Reason)
	}
	// By identity: each its own verdict.
	if v := EvaluateFromRemote(objs, "west", ip, server, ProtoTCP, 80); v.Allowed {
		t.Error("EvaluateFromRemote allows west's app=evil")
	}
	if v := r.AllowedFromIdentity(evil.Identity, ip, server, ProtoTCP, 80); v.Allowed {
		t.Error("AllowedFromIdentity allows west's app=evil")
	}
	if v := r.AllowedFromIdentity(local.Identity, ip, server, ProtoTCP, 80); !v.Allowed {
		t.Errorf("AllowedFromIdentity of the local pod: %s", v.Reason)
	}
	if v := EvaluateFromRemote(objs, "west", netip.MustParseAddr("10.9.9.9"), server, ProtoTCP, 80); v.Allowed || !strings.Contains(v.Reason, "no endpoint") {
		t.Errorf("EvaluateFromRemote of an unknown endpoint: %+v", v)
	}
}

func TestMeshIdentities(t *testing.T) {
	objs := meshObjects(t)
	r, err := Resolve(objs)
	if err != nil {
		t.Fatal(err)
	}
	for _, ep := range r.Endpoints {
		if ClusterIDOf(ep.Identity) != 1 || LocalIdentity(ep.Identity) < FirstPodIdentity || ep.Identity >= 1<<24 {
			t.Errorf("%s: identity %#x is not a global identity of cluster 1", ep.Key(), ep.Identity)
		}
		if ep.Labels[LabelCluster] != "east" || r.Identities[ep.Identity][LabelCluster] != "east" {
			t.Errorf("%s: labels %v lack %s=east", ep.Key(), ep.Labels, LabelCluster)
		}
	}
	if len(r.RemoteEndpoints) != 5 {
		t.Fatalf("%d remote endpoints", len(r.RemoteEndpoints))
	}
	var keys []string
	for _, e := range r.RemoteEndpoints {
		keys = append(keys, e.Key())
		if l, ok := r.Identities[e.Identity]; !ok || l[LabelCluster] != e.Cluster {
			t.Errorf("%s: identity %#x not in Identities (%v)", e.Key(), e.Identity, l)
		}
		if local, ok := r.Endpoint(e.Namespace + "/" + e.Name); ok {
			t.Errorf("%s became a local endpoint (%s)", e.Key(), local.Key())
		}
		if want := GlobalIdentity(map[string]uint8{"west": 2, "north": 3}[e.Cluster], 0); e.Identity&^0xffff != want {
			t.Errorf("%s: identity %#x", e.Key(), e.Identity)
		}
	}
	if want := "west/prod/a west/prod/b west/prod/evil west/staging/a north/prod/a"; strings.Join(keys, " ") != want {
		t.Errorf("remote endpoints %q, want %q (by cluster id, namespace, name)", strings.Join(keys, " "), want)
	}
	if len(r.Endpoints) != 6 || len(r.NodeEndpoints("w1")) != 0 {
		t.Errorf("%d local endpoints, %d on west's node", len(r.Endpoints), len(r.NodeEndpoints("w1")))
	}
	for ip, want := range map[string]Identity{
		"10.2.0.10": GlobalIdentity(2, 0x100), "10.3.0.10": GlobalIdentity(3, 0x100),
		"172.16.0.1": IdentityRemoteNode, "172.17.0.1": IdentityRemoteNode, "192.0.2.1": IdentityHost, "203.0.113.9": IdentityWorld,
	} {
		if got := r.IdentityOf("n1", netip.MustParseAddr(ip)); got != want {
			t.Errorf("IdentityOf(%s) = %#x, want %#x", ip, got, want)
		}
	}
	if len(r.RemoteNodes) != 2 || r.RemoteNodes[0].Cluster != "west" || r.RemoteNodes[1].Name != "x1" {
		t.Errorf("remote nodes %+v", r.RemoteNodes)
	}
	// A peer's identity in a rule: db allows west's app=a only.
	db, _ := r.Endpoint("prod/db")
	if len(db.Ingress) != 1 || fmt.Sprint(db.Ingress[0].Peers) != fmt.Sprint([]Identity{GlobalIdentity(2, 0x100)}) {
		t.Errorf("db ingress %+v", db.Ingress)
	}

	// The same state without the mesh: identities as before, no cluster
	// label, no remote peers.
	plain, err := LoadDir("testdata/mesh")
	if err != nil {
		t.Fatal(err)
	}
	rp, err := Resolve(plain)
	if err != nil {
		t.Fatal(err)
	}
	for _, ep := range rp.Endpoints {
		if ep.Identity < FirstPodIdentity || ep.Identity > maxLocalIdentity {
			t.Errorf("no mesh: %s: identity %#x", ep.Key(), ep.Identity)
		}
		if _, ok := ep.Labels[LabelCluster]; ok {
			t.Errorf("no mesh: %s: labels %v", ep.Key(), ep.Labels)
		}
	}
	if len(rp.RemoteEndpoints) != 0 || len(rp.Identities) != len(rp.Endpoints) {
		t.Errorf("no mesh: %d remote endpoints, %d identities", len(rp.RemoteEndpoints), len(rp.Identities))
	}
	if got := TrustDomainOf("west"); got != "west.local" || TrustDomainOf("") != TrustDomain {
		t.Errorf("TrustDomainOf(west) = %s, TrustDomainOf(\"\") = %s", got, TrustDomainOf(""))
	}
	if id := GlobalIdentity(2, 0x1234); id != 0x21234 || ClusterIDOf(id) != 2 || LocalIdentity(id) != 0x1234 || ClusterIDOf(IdentityCIDRBase|0x21234) != 0 {
		t.Errorf("identity layout: %#x", id)
	}
}

func TestMeshValidate(t *testing.T) {
	good := func() *Objects { return meshObjects(t) }
	cases := []struct {
		name   string
		modify func(o *Objects)
		want   []string
	}{
		{"remote without the local cluster", func(o *Objects) { o.Cluster = ClusterInfo{} },
			[]string{"Cluster <unnamed>: cluster.name: Required value"}},
		{"local id 0", func(o *Objects) { o.Cluster.ID = 0 }, []string{"Cluster east: cluster.id: Invalid value: 0: must be 1..255"}},
		{"local name not a DNS label", func(o *Objects) { o.Cluster.Name = "East_1" }, []string{"cluster.name", "East_1"}},
		{"local name cluster", func(o *Objects) { o.Cluster.Name = "cluster" }, []string{"cluster.name", "trust domain would be cluster.local"}},
		{"remote id 0", func(o *Objects) { o.Remote[1].ID = 0 }, []string{"RemoteCluster north: remote[1].id: Invalid value: 0: must be 1..255"}},
		{"remote id of the local cluster", func(o *Objects) { o.Remote[1].ID = 1 }, []string{"RemoteCluster north: remote[1].id", "is the local cluster's id"}},
		{"duplicate remote id", func(o *Objects) { o.Remote[1].ID = 2 }, []string{"RemoteCluster north: remote[1].id: Duplicate value", "also remote[0] west"}},
		{"duplicate remote name", func(o *Objects) { o.Remote[1].Name = "west" }, []string{"RemoteCluster west: remote[1].name: Duplicate value", "also remote[0]"}},
		{"remote named as the local cluster", func(o *Objects) { o.Remote[1].Name = "east" }, []string{"remote[1].name", "is the local cluster's name"}},
		{"identity of another cluster", func(o *Objects) { o.Remote[0].Endpoints[1].Identity = GlobalIdentity(3, 0x101) },
			[]string{"RemoteCluster west: remote[0].endpoints[1].identity", "0x30101", "cluster bits 3 differ from the cluster's id 2", "pod prod/b"}},
		{"identity without cluster bits", func(o *Objects) { o.Remote[0].Endpoints[1].Identity = 0x101 },
			[]string{"remote[0].endpoints[1].identity", "cluster bits 0 differ"}},
		{"identity with a reserved local part", func(o *Objects) { o.Remote[0].Endpoints[1].Identity = GlobalIdentity(2, 6) },
			[]string{"remote[0].endpoints[1].identity", "local part 6 is outside 256..65535"}},
		{"CIDR identity", func(o *Objects) { o.Remote[0].Endpoints[1].Identity = IdentityCIDRBase | 2<<16 | 0x101 },
			[]string{"remote[0].endpoints[1].identity", "differ from the cluster's id 2"}},
		{"cluster label missing", func(o *Objects) { delete(o.Remote[0].Endpoints[2].Labels, LabelCluster) },
			[]string{"remote[0].endpoints[2].labels[io.cilium.k8s.policy.cluster]: Required value", "pod staging/a"}},
		{"wrong cluster label", func(o *Objects) { o.Remote[1].Endpoints[0].Labels[LabelCluster] = "west" },
			[]string{"RemoteCluster north: remote[1].endpoints[0].labels[io.cilium.k8s.policy.cluster]: Invalid value: \"west\": must be the cluster's name north"}},
		{"namespace label differs", func(o *Objects) { o.Remote[1].Endpoints[0].Labels[LabelNamespace] = "dev" },
			[]string{"remote[1].endpoints[0].labels[io.kubernetes.pod.namespace]", "must be the endpoint's namespace prod"}},
		{"service account label missing", func(o *Objects) { delete(o.Remote[1].Endpoints[0].Labels, LabelServiceAccount) },
			[]string{"remote[1].endpoints[0].labels[io.cilium.k8s.policy.serviceaccount]: Required value"}},
		{"invalid IP", func(o *Objects) { o.Remote[0].Endpoints[0].IP = netip.Addr{} },
			[]string{"remote[0].endpoints[0].ip: Invalid value: \"invalid IP\": not an IPv4 address (pod prod/a)"}},
		{"IPv6", func(o *Objects) { o.Remote[0].Endpoints[0].IP = netip.MustParseAddr("fd00::1") }, []string{"remote[0].endpoints[0].ip", "fd00::1"}},
		{"invalid node IP", func(o *Objects) { o.Remote[0].Endpoints[0].NodeIP = netip.Addr{} }, []string{"remote[0].endpoints[0].nodeIP", "tunnel endpoint"}},
		{"duplicate address in a cluster", func(o *Objects) { o.Remote[0].Endpoints[1].IP = o.Remote[0].Endpoints[0].IP },
			[]string{"remote[0].endpoints[1].ip: Duplicate value", "also endpoints[0]"}},
		{"one identity, two label sets", func(o *Objects) { o.Remote[0].Endpoints[1].Identity = o.Remote[0].Endpoints[0].Identity },
			[]string{"remote[0].endpoints[1].labels", "identity 0x20100 has other labels in endpoints[0]"}},
		{"endpoint of another cluster", func(o *Objects) { o.Remote[0].Endpoints[0].Cluster = "north" }, []string{"remote[0].endpoints[0].cluster", "differs from the cluster's name west"}},
		{"invalid label value", func(o *Objects) { o.Remote[0].Endpoints[0].Labels["app"] = "not valid!" }, []string{"remote[0].endpoints[0].labels[app]"}},
		{"remote node without an address", func(o *Objects) { o.Remote[0].Nodes[0].IP = netip.Addr{} }, []string{"remote[0].nodes[0].ip"}},
	}
	if err := good().Validate(); err != nil {
		t.Fatalf("the mesh test state is refused: %v", err)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := good()
			tc.modify(o)
			err := o.Validate()
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			// Resolve refuses it too, also for objects a Loader validated
			// (the agent sets the mesh after loading).
			if _, rerr := Resolve(o); rerr == nil {
				t.Error("Resolve accepted it")
			}
		})
	}
	// All problems at once.
	o := good()
	o.Remote[0].ID, o.Remote[1].Endpoints[0].Labels[LabelCluster] = 0, "x"
	if err := o.Validate(); err == nil || !strings.Contains(err.Error(), "remote[0].id") || !strings.Contains(err.Error(), "remote[1].endpoints[0].labels") {
		t.Errorf("want both errors, got %v", err)
	}
}

// --- random cluster meshes for TestResolvedAgreesWithEvaluator ---

// meshClusterNames are the random meshes' clusters: the local one first.
var meshClusterNames = []string{"east", "west", "north"}

// addRandomMesh makes objs (randomObjects') the cluster east (id 1) of a
// mesh with one or two remote clusters whose pods share namespace names,
// labels and sometimes addresses with the local ones, and rewrites some
// selectors and principals to name clusters.
func addRandomMesh(rng *rand.Rand, objs *Objects) {
	objs.Cluster = ClusterInfo{Name: "east", ID: 1}
	for k := 1; k <= 1+rng.Intn(2); k++ {
		name, id := meshClusterNames[k], uint8(k+1)
		node := Node{Name: name + "-n1", IP: netip.MustParseAddr(fmt.Sprintf("192.0.2.%d", 210+k))}
		c := RemoteCluster{Name: name, ID: id, Nodes: []Node{node}}
		locals, used := map[string]Identity{}, map[Identity]bool{}
		for j := 0; j < 3; j++ {
			ns := []string{"prod", "dev", "shop"}[rng.Intn(3)]
			nsl := map[string]string{"env": ns}
			if rng.Intn(3) == 0 {
				// The namespace's labels in that cluster differ.
				nsl = map[string]string{"env": []string{"prod", "dev"}[rng.Intn(2)]}
			}
			sa := []string{"default", "sa-a"}[rng.Intn(2)]
			ip := fmt.Sprintf("10.0.0.%d", 16*k+j)
			switch rng.Intn(6) {
			case 0:
				ip = objs.Pods[rng.Intn(len(objs.Pods))].Status.PodIP // a local pod's address
			case 1:
				ip = fmt.Sprintf("10.0.0.%d", 16+j) // cluster west's address in north
			}
			e := remoteEP(name, id, 0, ns, fmt.Sprintf("r%d", j), ip, node.Name, node.IP.String(), sa, labelPool[rng.Intn(len(labelPool))], nsl)
			key := labelString(e.Labels)
			if _, ok := locals[key]; !ok {
				n := FirstPodIdentity + Identity(rng.Intn(0xfe00))
				for used[n] {
					n++
				}
				locals[key], used[n] = n, true
			}
			e.Identity = GlobalIdentity(id, locals[key])
			dup := false
			for _, prev := range c.Endpoints {
				dup = dup || prev.IP == e.IP
			}
			if !dup {
				c.Endpoints = append(c.Endpoints, e)
			}
		}
		objs.Remote = append(objs.Remote, c)
	}
	cluster := func() string { return meshClusterNames[rng.Intn(len(meshClusterNames))] }
	for i := range objs.NetworkPolicies {
		np := &objs.NetworkPolicies[i]
		var peers []*networkingv1.NetworkPolicyPeer
		for j := range np.Spec.Ingress {
			for k := range np.Spec.Ingress[j].From {
				peers = append(peers, &np.Spec.Ingress[j].From[k])
			}
		}
		for j := range np.Spec.Egress {
			for k := range np.Spec.Egress[j].To {
				peers = append(peers, &np.Spec.Egress[j].To[k])
			}
		}
		for _, p := range peers {
			if p.IPBlock == nil && rng.Intn(3) == 0 {
				s := metav1.LabelSelector{}
				if p.PodSelector != nil {
					s = *p.PodSelector.DeepCopy()
				}
				s.MatchLabels = copyLabels(s.MatchLabels)
				s.MatchLabels[LabelCluster] = cluster()
				p.PodSelector = &s
			}
		}
	}
	for i := range objs.CiliumNetworkPolicies {
		rule := objs.CiliumNetworkPolicies[i].Spec
		var sels []*metav1.LabelSelector
		for j := range rule.Ingress {
			for k := range rule.Ingress[j].FromEndpoints {
				sels = append(sels, &rule.Ingress[j].FromEndpoints[k])
			}
		}
		for j := range rule.IngressDeny {
			for k := range rule.IngressDeny[j].FromEndpoints {
				sels = append(sels, &rule.IngressDeny[j].FromEndpoints[k])
			}
		}
		for j := range rule.Egress {
			for k := range rule.Egress[j].ToEndpoints {
				sels = append(sels, &rule.Egress[j].ToEndpoints[k])
			}
		}
		for _, s := range sels {
			if rng.Intn(3) == 0 {
				s.MatchLabels = copyLabels(s.MatchLabels)
				s.MatchLabels["k8s:"+LabelCluster] = cluster()
			}
		}
	}
	for i := range objs.AuthorizationPolicies {
		for j := range objs.AuthorizationPolicies[i].Spec.Rules {
			for k := range objs.AuthorizationPolicies[i].Spec.Rules[j].From {
				s := &objs.AuthorizationPolicies[i].Spec.Rules[j].From[k].Source
				if len(s.Principals) > 0 && rng.Intn(2) == 0 {
					s.Principals = []string{[]string{"west.local/ns/prod/sa/sa-a", "*/ns/dev/*", "east.local/ns/prod/*", "north.local/*"}[rng.Intn(4)]}
				}
			}
		}
	}
}

func copyLabels(l map[string]string) map[string]string {
	out := make(map[string]string, len(l)+1)
	for k, v := range l {
		out[k] = v
	}
	return out
}

// randomMeshProbes checks, for every remote endpoint (shadowed ones too),
// the identity-based decisions against EvaluateFromRemote.
func randomMeshProbes(t *testing.T, round int, objs *Objects, r *Resolved) int {
	t.Helper()
	checked := 0
	for _, e := range r.RemoteEndpoints {
		for _, p := range objs.Pods {
			to := netip.MustParseAddr(p.Status.PodIP)
			for _, proto := range []Protocol{ProtoTCP, ProtoUDP} {
				for _, port := range []uint16{80, 81, 82} {
					want := EvaluateFromRemote(objs, e.Cluster, e.IP, to, proto, port)
					got := r.AllowedFromIdentity(e.Identity, e.IP, to, proto, port)
					checked++
					if got.Allowed != want.Allowed || got.Proxied != want.Proxied {
						t.Fatalf("round %d: %s (%s, identity %#x) -> %s %s/%d: resolved %v proxied %v (%s), evaluator %v proxied %v (%s)\nremote: %+v",
							round, e.Key(), e.IP, e.Identity, to, proto, port, got.Allowed, got.Proxied, got.Reason, want.Allowed, want.Proxied, want.Reason, objs.Remote)
					}
					if proto != ProtoTCP {
						continue
					}
					for _, req := range testRequests[:2] {
						want := EvaluateRequestFromRemote(objs, e.Cluster, e.IP, to, port, req)
						got := r.AllowedRequestFromIdentity(e.Identity, e.IP, to, port, req)
						checked++
						if got.Allowed != want.Allowed {
							t.Fatalf("round %d: %s -> %s port %d %s %s: resolved %v (%s), evaluator %v (%s)",
								round, e.Key(), to, port, req.Method, req.Path, got.Allowed, got.Reason, want.Allowed, want.Reason)
						}
					}
				}
			}
		}
	}
	return checked
}

// meshAddrs are the remote endpoints' and nodes' addresses, for the
// address-based probes.
func meshAddrs(objs *Objects) []string {
	seen := map[string]bool{}
	for _, p := range objs.Pods {
		seen[p.Status.PodIP] = true
	}
	var out []string
	for _, c := range objs.Remote {
		for _, e := range c.Endpoints {
			if !seen[e.IP.String()] {
				seen[e.IP.String()] = true
				out = append(out, e.IP.String())
			}
		}
		for _, n := range c.Nodes {
			out = append(out, n.IP.String())
		}
	}
	sort.Strings(out)
	return out
}
