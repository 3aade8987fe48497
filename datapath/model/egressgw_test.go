package model

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
)

// egressState is east's state: clients on n1, the gateway candidates n1
// and n2, and policies through a local gateway (n2), a gateway in west
// (w1) and a node nobody has.
const egressState = `apiVersion: v1
kind: Namespace
metadata: {name: a, labels: {team: a}}
---
apiVersion: v1
kind: Namespace
metadata: {name: b}
---
apiVersion: v1
kind: Node
metadata: {name: n1}
status: {addresses: [{type: InternalIP, address: 198.18.0.1}]}
---
apiVersion: v1
kind: Node
metadata: {name: n2}
status: {addresses: [{type: InternalIP, address: 198.18.0.2}]}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: a, labels: {app: client}}
spec: {nodeName: n1}
status: {podIP: 10.1.0.10}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: b, labels: {app: client}}
spec: {nodeName: n1}
status: {podIP: 10.1.0.11}
---
apiVersion: v1
kind: Pod
metadata: {name: other, namespace: a, labels: {app: other}}
spec: {nodeName: n1}
status: {podIP: 10.1.0.12}
---
apiVersion: fastpath.dev/v1alpha1
kind: EgressGatewayPolicy
metadata: {name: a-local}
spec:
  selectors: [{podSelector: {matchLabels: {app: client}}, namespaceSelector: {matchLabels: {team: a}}}]
  destinationCIDRs: [192.0.2.0/24, 203.0.113.0/24]
  excludedCIDRs: [192.0.2.128/25]
  gateway: {node: n2, egressIP: 198.18.0.200}
---
apiVersion: fastpath.dev/v1alpha1
kind: EgressGatewayPolicy
metadata: {name: b-west}
spec:
  selectors: [{podSelector: {matchLabels: {app: client}}}]
  destinationCIDRs: [192.0.2.0/24, 198.51.100.0/24]
  gateway: {cluster: west, node: w1}
---
apiVersion: fastpath.dev/v1alpha1
kind: EgressGatewayPolicy
metadata: {name: c-nowhere}
spec:
  selectors: [{podSelector: {matchLabels: {app: other}}}]
  destinationCIDRs: [0.0.0.0/0]
  gateway: {node: n9}
`

func TestEgressGatewayResolve(t *testing.T) {
	objs := &Objects{}
	if err := objs.Decode("state.yaml", []byte(egressState)); err != nil {
		t.Fatal(err)
	}
	objs.Cluster = ClusterInfo{Name: "east", ID: 1}
	westClient := GlobalIdentity(2, 0x100)
	objs.Remote = []RemoteCluster{{Name: "west", ID: 2,
		Nodes: []Node{{Name: "w1", IP: netip.MustParseAddr("172.16.0.1")}},
		Endpoints: []RemoteEndpoint{{Namespace: "a", Name: "client", IP: netip.MustParseAddr("10.2.0.10"), Node: "w1", NodeIP: netip.MustParseAddr("172.16.0.1"),
			Identity: westClient, Labels: map[string]string{"app": "client", LabelNamespace: "a", LabelServiceAccount: "default", NamespaceLabelPrefix + "team": "a", LabelCluster: "west"}}}}}
	r, err := Resolve(objs)
	if err != nil {
		t.Fatal(err)
	}
	id := func(key string) Identity {
		ep, ok := r.Endpoint(key)
		if !ok {
			t.Fatalf("no endpoint %s", key)
		}
		return ep.Identity
	}
	aClient, bClient, other := id("a/client"), id("b/client"), id("a/other")
	if len(r.EgressGateways) != 3 {
		t.Fatalf("%d egress gateways", len(r.EgressGateways))
	}
	local, west, nowhere := r.EgressGateways[0], r.EgressGateways[1], r.EgressGateways[2]
	for _, c := range []struct {
		g                           *EgressGateway
		want                        string
		cluster, nodeIP, egressIP   string
		isLocal, known              bool
		sources, remote, endpoints  string
		destinations, excludedCIDRs string
	}{
		{g: local, want: "a-local", cluster: "east", nodeIP: "198.18.0.2", egressIP: "198.18.0.200", isLocal: true, known: true,
			sources: fmt.Sprint([]Identity{aClient}), remote: fmt.Sprint([]Identity{westClient}), endpoints: "[a/client]",
			destinations: "[192.0.2.0/24 203.0.113.0/24]", excludedCIDRs: "[192.0.2.128/25]"},
		{g: west, want: "b-west", cluster: "west", nodeIP: "172.16.0.1", egressIP: "172.16.0.1", known: true,
			sources: fmt.Sprint(sorted(aClient, bClient)), remote: fmt.Sprint([]Identity{westClient}), endpoints: "[a/client b/client]",
			destinations: "[192.0.2.0/24 198.51.100.0/24]", excludedCIDRs: "[]"},
		{g: nowhere, want: "c-nowhere", cluster: "east", nodeIP: "invalid IP", egressIP: "invalid IP", isLocal: true,
			sources: fmt.Sprint([]Identity{other}), remote: "[]", endpoints: "[a/other]", destinations: "[0.0.0.0/0]", excludedCIDRs: "[]"},
	} {
		g := c.g
		got := []string{g.Name, g.Cluster, g.NodeIP.String(), g.EgressIP.String(), fmt.Sprint(g.Local, g.Known()),
			fmt.Sprint(g.Sources), fmt.Sprint(nonNil(g.RemoteSources)), fmt.Sprint(g.Endpoints), fmt.Sprint(g.Destinations), fmt.Sprint(nonNilP(g.Excluded))}
		want := []string{c.want, c.cluster, c.nodeIP, c.egressIP, fmt.Sprint(c.isLocal, c.known), c.sources, c.remote, c.endpoints, c.destinations, c.excludedCIDRs}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("resolved\n %q\nwant\n %q", got, want)
		}
	}

	// Where the traffic goes.
	for _, c := range []struct {
		src  Identity
		dst  string
		want string // policy name, "" for none
	}{
		{aClient, "192.0.2.1", "a-local"},     // a tie at /24: the first by name
		{aClient, "192.0.2.200", ""},          // excluded by a-local, though b-west's /24 holds it
		{bClient, "192.0.2.200", "b-west"},    // b/client is not selected by a-local
		{aClient, "198.51.100.7", "b-west"},   //
		{aClient, "203.0.113.9", "a-local"},   //
		{aClient, "8.8.8.8", ""},              // no CIDR
		{westClient, "192.0.2.1", "a-local"},  // a remote pod a-local selects
		{other, "8.8.8.8", "c-nowhere"},       // its gateway is not known: dropped
		{other, "10.1.0.10", ""},              // a pod of the mesh
		{other, "10.2.0.10", ""},              // a remote pod
		{other, "198.18.0.1", ""},             // a node
		{other, "172.16.0.1", ""},             // a remote node
		{Identity(0x123456), "192.0.2.1", ""}, // selected by nothing
	} {
		g := r.EgressGatewayOf(c.src, netip.MustParseAddr(c.dst))
		got := ""
		if g != nil {
			got = g.Name
		}
		if got != c.want {
			t.Errorf("EgressGatewayOf(%d, %s) = %q, want %q", c.src, c.dst, got, c.want)
		}
	}
	if g := r.EgressGatewayOf(other, netip.MustParseAddr("8.8.8.8")); g.Known() {
		t.Error("a gateway on a node nobody has is known")
	}

	// Without the peer, west's gateway is not known: fail closed.
	objs.Remote = nil
	r, err = Resolve(objs)
	if err != nil {
		t.Fatal(err)
	}
	if g := r.EgressGatewayOf(aClient, netip.MustParseAddr("198.51.100.7")); g == nil || g.Known() {
		t.Errorf("west gone: %+v, want b-west not known", g)
	}
}

func sorted(ids ...Identity) []Identity {
	sortIdentities(ids)
	return ids
}

func nonNil(ids []Identity) []Identity {
	if ids == nil {
		return []Identity{}
	}
	return ids
}

func nonNilP(ps []netip.Prefix) []netip.Prefix {
	if ps == nil {
		return []netip.Prefix{}
	}
	return ps
}

func TestEgressGatewayValidation(t *testing.T) {
	bad := &Objects{}
	if err := bad.Decode("egw.yaml", []byte(`apiVersion: fastpath.dev/v1alpha1
kind: EgressGatewayPolicy
metadata: {name: bad}
spec:
  selectors:
  - namespaceSelector: {matchExpressions: [{key: team, operator: Is}]}
  destinationCIDRs: [192.0.2.1/24, "2001:db8::/32", 198.51.100.0/24, 198.51.100.0/24]
  excludedCIDRs: [203.0.113.0/24, nonsense]
  gateway: {cluster: Bad_Name, egressIP: 224.0.0.1}
---
apiVersion: fastpath.dev/v1alpha1
kind: EgressGatewayPolicy
metadata: {name: empty}
spec:
  selectors: []
  destinationCIDRs: []
  gateway: {node: "n_1"}
`)); err != nil {
		t.Fatal(err)
	}
	err := bad.Validate()
	for _, want := range []string{
		`EgressGatewayPolicy bad: spec.selectors[0].podSelector: Required value`,
		`EgressGatewayPolicy bad: spec.selectors[0].namespaceSelector.matchExpressions[0].operator: Unsupported value: "Is"`,
		`EgressGatewayPolicy bad: spec.destinationCIDRs[0]: Invalid value: "192.0.2.1/24": host bits set (the CIDR is 192.0.2.0/24)`,
		`EgressGatewayPolicy bad: spec.destinationCIDRs[1]: Invalid value: "2001:db8::/32": not an IPv4 CIDR`,
		`EgressGatewayPolicy bad: spec.destinationCIDRs[3]: Duplicate value`,
		`EgressGatewayPolicy bad: spec.excludedCIDRs[0]: Invalid value: "203.0.113.0/24": not inside any of destinationCIDRs`,
		`EgressGatewayPolicy bad: spec.excludedCIDRs[1]: Invalid value: "nonsense"`,
		`EgressGatewayPolicy bad: spec.gateway.node: Required value`,
		`EgressGatewayPolicy bad: spec.gateway.cluster: Invalid value: "Bad_Name"`,
		`EgressGatewayPolicy bad: spec.gateway.egressIP: Invalid value: "224.0.0.1": not a unicast IPv4 address`,
		`EgressGatewayPolicy empty: spec.selectors: Required value`,
		`EgressGatewayPolicy empty: spec.destinationCIDRs: Required value`,
		`EgressGatewayPolicy empty: spec.gateway.node: Invalid value: "n_1"`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}

	for _, c := range []struct{ doc, want string }{
		{"spec:\n  selectors: [{podSelector: {}}]\n  destinationCIDRs: [10.0.0.0/8]\n  gateway: {node: n1, nod: n2}\n", "spec.gateway.nod"},
		{"spec:\n  selector: [{podSelector: {}}]\n  destinationCIDRs: [10.0.0.0/8]\n  gateway: {node: n1}\n", "spec.selector"},
	} {
		o := &Objects{}
		err := o.Decode("u.yaml", []byte("apiVersion: fastpath.dev/v1alpha1\nkind: EgressGatewayPolicy\nmetadata: {name: x}\n"+c.doc))
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "u.yaml") {
			t.Errorf("strict decode of %q: %v, want an error naming %s", c.doc, err, c.want)
		}
	}
}
