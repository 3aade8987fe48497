package model

import (
	"encoding/json"
	"fmt"
	"math/rand"
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

func writeState(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

const goodPods = `apiVersion: v1
kind: Namespace
metadata: {name: t, labels: {team: a}}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: t, labels: {app: web}}
spec:
  nodeName: n1
  containers:
  - name: c
    ports: [{name: http, containerPort: 8080}]
status: {podIP: 10.1.0.1}
---
apiVersion: v1
kind: Pod
metadata: {name: db, namespace: t, labels: {app: db}}
spec: {nodeName: n2}
status: {podIP: 10.1.0.2}
`

// cnpHTTP is a CiliumNetworkPolicy with one port rule with http rules.
func cnpHTTP(dir, port, http string) string {
	return "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: x, namespace: t}\nspec:\n  endpointSelector: {}\n  " + dir +
		":\n  - toPorts:\n    - ports: [{" + port + "}]\n      rules:\n        http: [" + http + "]\n"
}

func TestLoadDirErrorsNameFileObjectField(t *testing.T) {
	cases := []struct {
		name, content string
		want          []string
	}{
		{"malformed YAML", "kind: [", []string{"p.yaml", "malformed YAML"}},
		{"unknown kind", "apiVersion: v1\nkind: Gadget\nmetadata: {name: g}\n", []string{"p.yaml", "Gadget g", "unknown kind"}},
		{"unknown field", "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: x, namespace: t}\nspec: {podSelectr: {}}\n",
			[]string{"p.yaml", "NetworkPolicy t/x", `unknown field "spec.podSelectr"`}},
		{"port above 65535", "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: x, namespace: t}\nspec:\n  podSelector: {}\n  ingress: [{ports: [{port: 70000}]}]\n",
			[]string{"p.yaml", "NetworkPolicy t/x", "spec.ingress[0].ports[0].port", "70000"}},
		{"port 0", "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: x, namespace: t}\nspec:\n  podSelector: {}\n  egress: [{ports: [{port: 0}]}]\n",
			[]string{"spec.egress[0].ports[0].port"}},
		{"endPort below port", "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: x, namespace: t}\nspec:\n  podSelector: {}\n  ingress: [{ports: [{port: 100, endPort: 50}]}]\n",
			[]string{"spec.ingress[0].ports[0].endPort", "must be >= port 100"}},
		{"bad operator", "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: x, namespace: t}\nspec:\n  podSelector: {matchExpressions: [{key: a, operator: Near}]}\n",
			[]string{"spec.podSelector.matchExpressions[0].operator", "Near"}},
		{"ipBlock not a CIDR", "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: x, namespace: t}\nspec:\n  podSelector: {}\n  ingress: [{from: [{ipBlock: {cidr: 10.0.0.300/8}}]}]\n",
			[]string{"spec.ingress[0].from[0].ipBlock.cidr", "not a CIDR"}},
		{"except outside cidr", "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: x, namespace: t}\nspec:\n  podSelector: {}\n  ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/8, except: [11.0.0.0/16]}}]}]\n",
			[]string{"spec.ingress[0].from[0].ipBlock.except[0]", "must be inside cidr"}},
		{"bad protocol", "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: x, namespace: t}\nspec:\n  podSelector: {}\n  ingress: [{ports: [{protocol: ICMP, port: 1}]}]\n",
			[]string{"spec.ingress[0].ports[0].protocol"}},
		{"bad pod IP", "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: t}\nstatus: {podIP: 999.1.1.1}\n",
			[]string{"Pod t/p", "status.podIP"}},
		{"missing name", "apiVersion: v1\nkind: Pod\nmetadata: {namespace: t}\n", []string{"metadata.name: required"}},
		{"http rule not a regex", cnpHTTP("ingress", `port: "80", protocol: TCP`, `{method: "GET(", path: /}`),
			[]string{"CiliumNetworkPolicy t/x", "spec.ingress[0].toPorts[0].rules.http[0].method", "not a regular expression"}},
		{"http rule on UDP", cnpHTTP("ingress", `port: "53", protocol: UDP`, `{method: GET}`),
			[]string{"spec.ingress[0].toPorts[0].ports[0]", "L7 rules need protocol TCP and a port"}},
		{"http rule on egress", cnpHTTP("egress", `port: "80", protocol: TCP`, `{method: GET}`),
			[]string{"spec.egress[0].toPorts[0].rules.http", "egress L7 rules are not supported"}},
		{"http rule with headers", cnpHTTP("ingress", `port: "80", protocol: TCP`, `{method: GET, headers: [X-A]}`),
			[]string{"CiliumNetworkPolicy t/x", "unknown field", "headers"}},
		{"authz hosts", "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: a, namespace: t}\nspec:\n  rules: [{to: [{operation: {hosts: [x.example]}}]}]\n",
			[]string{"AuthorizationPolicy t/a", "spec.rules[0].to[0].operation.hosts", "not supported"}},
		{"authz bad path", "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: a, namespace: t}\nspec:\n  rules: [{to: [{operation: {paths: [/a*b]}}]}]\n",
			[]string{"spec.rules[0].to[0].operation.paths[0]", "prefix*"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := LoadDir(writeState(t, map[string]string{"p.yaml": tc.content}))
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestLoadDirSkipsHiddenAndReportsAllErrors(t *testing.T) {
	dir := writeState(t, map[string]string{
		"a.yaml":    "apiVersion: v1\nkind: Gadget\nmetadata: {name: g}\n",
		"b.yaml":    "apiVersion: v1\nkind: Widget\nmetadata: {name: w}\n",
		".tmp.yaml": "not: [valid",
		"notes.txt": "ignored",
		"pods.yaml": goodPods,
	})
	_, err := LoadDir(dir)
	if err == nil || !strings.Contains(err.Error(), "a.yaml") || !strings.Contains(err.Error(), "b.yaml") {
		t.Fatalf("want errors of both files, got %v", err)
	}
	if strings.Contains(err.Error(), ".tmp.yaml") {
		t.Fatalf("hidden file read: %v", err)
	}
}

func TestHashMatchesLoad(t *testing.T) {
	dir := writeState(t, map[string]string{"pods.yaml": goodPods})
	objs, err := LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	h, err := HashDir(dir)
	if err != nil || h != objs.Hash {
		t.Fatalf("HashDir %s (%v) != LoadDir hash %s", h, err, objs.Hash)
	}
	os.WriteFile(filepath.Join(dir, "more.yaml"), []byte("# nothing\n"), 0o644)
	if h2, _ := HashDir(dir); h2 == h {
		t.Fatal("hash did not change with a new file")
	}
}

func TestIdentities(t *testing.T) {
	dir := writeState(t, map[string]string{"pods.yaml": goodPods + `---
apiVersion: v1
kind: Pod
metadata: {name: web2, namespace: t, labels: {app: web}}
spec: {nodeName: n2}
status: {podIP: 10.1.0.3}
---
apiVersion: v1
kind: Pod
metadata: {name: pending, namespace: t, labels: {app: web}}
`})
	objs, err := LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	r, err := Resolve(objs)
	if err != nil {
		t.Fatal(err)
	}
	web, _ := r.Endpoint("t/web")
	web2, _ := r.Endpoint("t/web2")
	db, _ := r.Endpoint("t/db")
	if web.Identity != web2.Identity || web.Identity == db.Identity || web.Identity < FirstPodIdentity {
		t.Fatalf("identities web %d web2 %d db %d", web.Identity, web2.Identity, db.Identity)
	}
	if _, ok := r.Endpoint("t/pending"); ok {
		t.Fatal("pod without an address became an endpoint")
	}
	if web.Labels[NamespaceLabelPrefix+"team"] != "a" || web.Labels[LabelNamespace] != "t" {
		t.Fatalf("identity labels: %v", web.Labels)
	}
	if got := len(r.NodeEndpoints("n2")); got != 2 {
		t.Fatalf("n2 endpoints: %d", got)
	}
}

// --- differential test: resolved rules vs the reference evaluator ---

var labelPool = []map[string]string{
	{"app": "a"}, {"app": "b"}, {"app": "b", "tier": "x"}, {"app": "c", "tier": "y"}, {},
}

func randSelector(rng *rand.Rand) *metav1.LabelSelector {
	switch rng.Intn(5) {
	case 0:
		return &metav1.LabelSelector{}
	case 1:
		return &metav1.LabelSelector{MatchLabels: map[string]string{"app": []string{"a", "b", "c"}[rng.Intn(3)]}}
	case 2:
		return &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "tier", Operator: metav1.LabelSelectorOpExists}}}
	case 3:
		return &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "app", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"a"}}}}
	}
	return &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "tier", Operator: metav1.LabelSelectorOpDoesNotExist}}}
}

func randPorts(rng *rand.Rand) []networkingv1.NetworkPolicyPort {
	var out []networkingv1.NetworkPolicyPort
	for i := rng.Intn(3); i > 0; i-- {
		proto := []corev1.Protocol{corev1.ProtocolTCP, corev1.ProtocolUDP}[rng.Intn(2)]
		p := networkingv1.NetworkPolicyPort{Protocol: &proto}
		switch rng.Intn(4) {
		case 0:
		case 1:
			v := intstr.FromInt32(int32(80 + rng.Intn(3)))
			p.Port = &v
		case 2:
			v := intstr.FromInt32(80)
			end := int32(81 + rng.Intn(2))
			p.Port, p.EndPort = &v, &end
		case 3:
			v := intstr.FromString("web")
			p.Port = &v
		}
		out = append(out, p)
	}
	return out
}

func randPeers(rng *rand.Rand) []networkingv1.NetworkPolicyPeer {
	var out []networkingv1.NetworkPolicyPeer
	for i := rng.Intn(3); i > 0; i-- {
		p := networkingv1.NetworkPolicyPeer{}
		switch rng.Intn(4) {
		case 3:
			blocks := []networkingv1.IPBlock{
				{CIDR: "10.0.0.0/24", Except: []string{"10.0.0.4/30"}},
				{CIDR: "192.0.2.0/24"},
				{CIDR: "0.0.0.0/0", Except: []string{"10.0.0.0/8"}},
				{CIDR: "10.0.0.2/32"},
				{CIDR: "192.0.2.0/25", Except: []string{"192.0.2.0/28", "192.0.2.64/26"}},
			}
			b := blocks[rng.Intn(len(blocks))]
			p.IPBlock = &b
		case 0:
			p.PodSelector = randSelector(rng)
		case 1:
			p.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"env": []string{"prod", "dev"}[rng.Intn(2)]}}
		case 2:
			p.PodSelector = randSelector(rng)
			p.NamespaceSelector = &metav1.LabelSelector{}
		}
		out = append(out, p)
	}
	return out
}

func namedPortFor(l map[string]string) int32 {
	switch l["app"] {
	case "a":
		return 80
	case "b":
		if l["tier"] != "" {
			return 82
		}
		return 81
	case "c":
		return 82
	}
	return 0
}

func randomObjects(rng *rand.Rand) *Objects {
	objs := &Objects{}
	for i, ns := range []string{"prod", "dev"} {
		_ = i
		objs.Namespaces = append(objs.Namespaces, corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{"env": ns}}})
	}
	for i := 0; i < 6; i++ {
		ns := []string{"prod", "dev"}[i%2]
		pod := corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("p%d", i), Namespace: ns, Labels: labelPool[rng.Intn(len(labelPool))]},
			Spec:       corev1.PodSpec{NodeName: "n1"},
			Status:     corev1.PodStatus{PodIP: fmt.Sprintf("10.0.0.%d", i+1)},
		}
		// The number behind the name "web" depends on the labels, so pods
		// that share an identity agree on it (see egressRules).
		if port := namedPortFor(pod.Labels); port > 0 {
			pod.Spec.Containers = []corev1.Container{{Name: "c", Ports: []corev1.ContainerPort{{Name: "web", ContainerPort: port, Protocol: corev1.ProtocolTCP}}}}
		}
		objs.Pods = append(objs.Pods, pod)
	}
	objs.Nodes = []corev1.Node{
		{ObjectMeta: metav1.ObjectMeta{Name: "n1"}, Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "192.0.2.201"}}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "n2"}, Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "192.0.2.202"}}}},
	}
	for i := range objs.Pods {
		objs.Pods[i].Spec.NodeName = []string{"n1", "n2"}[i%2]
	}
	for i := rng.Intn(3); i > 0; i-- {
		objs.CiliumNetworkPolicies = append(objs.CiliumNetworkPolicies, randomCNP(rng, i))
	}
	for i := range objs.Pods {
		if rng.Intn(2) == 0 {
			objs.Pods[i].Spec.ServiceAccountName = "sa-a"
		}
	}
	for i := rng.Intn(3); i > 0; i-- {
		objs.AuthorizationPolicies = append(objs.AuthorizationPolicies, randomAuthz(rng, i))
	}
	for i := rng.Intn(4); i > 0; i-- {
		np := networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("np%d", i), Namespace: []string{"prod", "dev"}[rng.Intn(2)]}}
		np.Spec.PodSelector = *randSelector(rng)
		switch rng.Intn(3) {
		case 0:
			np.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
		case 1:
			np.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}
		case 2:
			np.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}
		}
		for j := rng.Intn(3); j > 0; j-- {
			np.Spec.Ingress = append(np.Spec.Ingress, networkingv1.NetworkPolicyIngressRule{From: randPeers(rng), Ports: randPorts(rng)})
			eg := networkingv1.NetworkPolicyEgressRule{To: randPeers(rng), Ports: randPorts(rng)}
			// A documented limit (egressRules): names in egress rules are
			// resolved for selector-matched peers only, not for pods an
			// ipBlock matches (fail closed). Keep the two apart here.
			for _, p := range eg.To {
				if p.IPBlock != nil {
					var numeric []networkingv1.NetworkPolicyPort
					for _, pp := range eg.Ports {
						if pp.Port == nil || pp.Port.Type == intstr.Int {
							numeric = append(numeric, pp)
						}
					}
					eg.Ports = numeric
					break
				}
			}
			np.Spec.Egress = append(np.Spec.Egress, eg)
		}
		objs.NetworkPolicies = append(objs.NetworkPolicies, np)
	}
	return objs
}

func randCiliumPeers(rng *rand.Rand) ciliumPeers {
	var p ciliumPeers
	switch rng.Intn(6) {
	case 0:
		p.endpoints = []metav1.LabelSelector{*randSelector(rng)}
	case 1:
		p.endpoints = []metav1.LabelSelector{{MatchLabels: map[string]string{"k8s:" + LabelNamespace: "dev", "app": "b"}}}
	case 2:
		p.blocks = []networkingv1.IPBlock{{CIDR: "192.0.2.0/24", Except: []string{"192.0.2.192/26"}}}
	case 3:
		p.entities = []string{[]string{"world", "cluster", "host", "remote-node", "all"}[rng.Intn(5)]}
	case 4:
		p.blocks = []networkingv1.IPBlock{{CIDR: "10.0.0.0/30"}}
	}
	if rng.Intn(2) == 0 {
		proto := []string{"TCP", "UDP", "ANY", ""}[rng.Intn(4)]
		pp := CiliumPortProtocol{Port: fmt.Sprint(80 + rng.Intn(3)), Protocol: proto}
		if rng.Intn(3) == 0 {
			pp.EndPort = 82
			pp.Port = "80"
		}
		p.ports = []CiliumPortRule{{Ports: []CiliumPortProtocol{pp}}}
	}
	return p
}

func randCiliumHTTP(rng *rand.Rand) CiliumHTTPRule {
	switch rng.Intn(4) {
	case 0:
		return CiliumHTTPRule{Method: "GET"}
	case 1:
		return CiliumHTTPRule{Path: "/public/.*"}
	case 2:
		return CiliumHTTPRule{Method: "GET|HEAD", Path: "/public/.*"}
	}
	return CiliumHTTPRule{}
}

// requests the differential test asks about.
var testRequests = []Request{
	{Method: "GET", Path: "/public/a"},
	{Method: "GET", Path: "/private"},
	{Method: "DELETE", Path: "/public/secret"},
	{Method: "POST", Path: "/public/b"},
}

func toIngress(p ciliumPeers) CiliumIngressRule {
	r := CiliumIngressRule{FromEndpoints: p.endpoints, FromEntities: p.entities, ToPorts: p.ports}
	for _, b := range p.blocks {
		r.FromCIDRSet = append(r.FromCIDRSet, CIDRRule{CIDR: b.CIDR, Except: b.Except})
	}
	return r
}

func toEgress(p ciliumPeers) CiliumEgressRule {
	r := CiliumEgressRule{ToEndpoints: p.endpoints, ToEntities: p.entities, ToPorts: p.ports}
	for _, b := range p.blocks {
		r.ToCIDRSet = append(r.ToCIDRSet, CIDRRule{CIDR: b.CIDR, Except: b.Except})
	}
	return r
}

func randomCNP(rng *rand.Rand, i int) CiliumNetworkPolicy {
	rule := CiliumRule{EndpointSelector: randSelector(rng)}
	if rng.Intn(4) == 0 {
		// Naming another namespace must not reach beyond the policy's own.
		rule.EndpointSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"k8s:" + LabelNamespace: "dev"}}
	}
	for j := rng.Intn(3); j > 0; j-- {
		switch rng.Intn(4) {
		case 0:
			in := toIngress(randCiliumPeers(rng))
			if rng.Intn(2) == 0 {
				// An L7 port rule, beside the L4 one when there is one.
				in.ToPorts = append(in.ToPorts, CiliumPortRule{
					Ports: []CiliumPortProtocol{{Port: fmt.Sprint(80 + rng.Intn(2)), Protocol: "TCP"}},
					Rules: &CiliumL7Rules{HTTP: []CiliumHTTPRule{randCiliumHTTP(rng)}},
				})
			}
			rule.Ingress = append(rule.Ingress, in)
		case 1:
			rule.IngressDeny = append(rule.IngressDeny, toIngress(randCiliumPeers(rng)))
		case 2:
			rule.Egress = append(rule.Egress, toEgress(randCiliumPeers(rng)))
		case 3:
			rule.EgressDeny = append(rule.EgressDeny, toEgress(randCiliumPeers(rng)))
		}
	}
	if rng.Intn(4) == 0 {
		f := false
		rule.EnableDefaultDeny = &DefaultDenyConfig{Ingress: &f}
	}
	return CiliumNetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("cnp%d", i), Namespace: []string{"prod", "dev"}[rng.Intn(2)]}, Spec: &rule}
}

func randomAuthz(rng *rand.Rand, i int) AuthorizationPolicy {
	a := AuthorizationPolicy{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("ap%d", i), Namespace: []string{"prod", "dev", IstioRootNamespace}[rng.Intn(3)]}}
	if rng.Intn(2) == 0 {
		a.Spec.Action = "DENY"
	}
	if rng.Intn(2) == 0 {
		a.Spec.Selector = &AuthzSelector{MatchLabels: map[string]string{"app": []string{"a", "b", "c"}[rng.Intn(3)]}}
	}
	for j := rng.Intn(3); j > 0; j-- {
		var r AuthzRule
		for k := rng.Intn(2); k > 0; k-- {
			var s AuthzSource
			switch rng.Intn(5) {
			case 0:
				s.Principals = []string{Principal("prod", "sa-a")}
			case 1:
				s.Principals = []string{"cluster.local/ns/dev/*"}
			case 2:
				s.Namespaces = []string{"prod"}
			case 3:
				s.NotNamespaces = []string{"dev"}
			case 4:
				s.IPBlocks = []string{"192.0.2.0/24"}
				if rng.Intn(2) == 0 {
					s.NotIPBlocks = []string{"192.0.2.64/26"}
				}
			}
			r.From = append(r.From, AuthzFrom{Source: s})
		}
		for k := rng.Intn(3); k > 0; k-- {
			op := AuthzOperation{Ports: []string{"80"}}
			if rng.Intn(2) == 0 {
				op = AuthzOperation{NotPorts: []string{"81"}}
			}
			switch rng.Intn(4) {
			case 0:
				op.Methods = []string{"GET"}
			case 1:
				op.Paths = []string{"/public*"}
				if rng.Intn(2) == 0 {
					op.NotPaths = []string{"/public/secret"}
				}
			case 2:
				op.NotMethods = []string{"DELETE"}
			}
			r.To = append(r.To, AuthzTo{Operation: op})
		}
		a.Spec.Rules = append(a.Spec.Rules, r)
	}
	return a
}

// TestResolvedAgreesWithEvaluator checks the identity-based rules every
// datapath programs against the reference evaluator, on random policies.
// A quarter of the rounds make the cluster part of a random cluster mesh
// (addRandomMesh, drawn from a generator of its own so that the other
// rounds' objects stay the same): remote pods as sources and destinations
// by address, and every remote pod (also one whose address a local pod
// has) by identity.
func TestResolvedAgreesWithEvaluator(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	mrng := rand.New(rand.NewSource(2))
	checked, proxied, l7Denied := 0, 0, 0
	meshRounds, meshChecked := 0, 0
	for round := 0; round < 300; round++ {
		objs := randomObjects(rng)
		mesh := mrng.Intn(4) == 0
		if mesh {
			addRandomMesh(mrng, objs)
			meshRounds++
		}
		r, err := Resolve(objs)
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		addrs := []string{"192.0.2.7", "192.0.2.70", "198.51.100.1", "10.9.9.9", "192.0.2.201", "192.0.2.202", "192.0.2.200"}
		for _, p := range objs.Pods {
			addrs = append(addrs, p.Status.PodIP)
		}
		if mesh {
			addrs = append(addrs, meshAddrs(objs)...)
			meshChecked += randomMeshProbes(t, round, objs, r)
		}
		for _, a := range addrs {
			for _, b := range addrs {
				if a == b {
					continue
				}
				_, aPod := r.EndpointByIP(netip.MustParseAddr(a))
				_, bPod := r.EndpointByIP(netip.MustParseAddr(b))
				if !aPod && !bPod {
					continue
				}
				for _, proto := range []Protocol{ProtoTCP, ProtoUDP} {
					for _, port := range []uint16{79, 80, 81, 82} {
						from, to := netip.MustParseAddr(a), netip.MustParseAddr(b)
						want := Evaluate(objs, from, to, proto, port)
						got := r.Allowed(from, to, proto, port)
						checked++
						if got.Allowed != want.Allowed || got.Proxied != want.Proxied {
							cj, _ := json.Marshal(objs.CiliumNetworkPolicies)
							if e, ok := r.EndpointByIP(from); ok {
								t.Logf("src egress enforced=%v rules=%+v cidrs=%v dstcidr=%d", e.EgressEnforced, e.Egress, r.CIDRs, r.CIDRIdentityOf(to))
							}
							t.Fatalf("round %d: %s -> %s %s/%d: resolved %v proxied %v (%s), evaluator %v proxied %v (%s)\ncnps: %s\npolicies: %+v",
								round, a, b, proto, port, got.Allowed, got.Proxied, got.Reason, want.Allowed, want.Proxied, want.Reason, cj, objs.NetworkPolicies)
						}
						if want.Proxied {
							proxied++
						}
						if proto != ProtoTCP {
							continue
						}
						for _, req := range testRequests {
							want := EvaluateRequest(objs, from, to, port, req)
							got := r.AllowedRequest(from, to, port, req)
							checked++
							if got.Allowed != want.Allowed {
								cj, _ := json.Marshal(objs.CiliumNetworkPolicies)
								aj, _ := json.Marshal(objs.AuthorizationPolicies)
								t.Fatalf("round %d: %s -> %s port %d %s %s: resolved %v (%s), evaluator %v (%s)\ncnps: %s\nauthz: %s",
									round, a, b, port, req.Method, req.Path, got.Allowed, got.Reason, want.Allowed, want.Reason, cj, aj)
							}
							if !got.Allowed && Evaluate(objs, from, to, ProtoTCP, port).Allowed {
								l7Denied++
							}
							if dst, ok := r.EndpointByIP(to); ok && got.Allowed && want.Proxied {
								// What the proxy decides on the destination's node.
								pv := r.IngressRequest(dst, r.IdentityOf(dst.Node, from), r.CIDRIdentityOf(from), port, req)
								if !pv.Allowed {
									t.Fatalf("round %d: %s -> %s port %d %s %s: proxy denies (%s), evaluator allows", round, a, b, port, req.Method, req.Path, pv.Reason)
								}
							}
						}
					}
				}
			}
		}
	}
	t.Logf("%d probes agreed; %d connections proxied, %d requests denied at L7; %d rounds with a cluster mesh, %d probes by remote identity",
		checked, proxied, l7Denied, meshRounds, meshChecked)
	if proxied == 0 || l7Denied == 0 {
		t.Fatalf("the random policies exercised no L7 rule (proxied %d, denied at L7 %d)", proxied, l7Denied)
	}
}
