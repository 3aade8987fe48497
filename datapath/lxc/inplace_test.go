package lxc

import (
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/cilium/ebpf"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fastpath-bench/fastpath/datapath/model"
)

// innerTrie reads endpoint trie id back from the kernel, with its map id.
func (d *Datapath) innerTrie(t *testing.T, id uint32) (trie, ebpf.MapID) {
	t.Helper()
	var inner *ebpf.Map
	if err := d.objs.FpPolicy.Lookup(id, &inner); err != nil {
		t.Fatalf("policy map of %d: %v", id, err)
	}
	defer inner.Close()
	info, err := inner.Info()
	if err != nil {
		t.Fatal(err)
	}
	mid, _ := info.ID()
	out := trie{}
	var k lxcPolicyKey
	var v lxcPolicyValue
	it := inner.Iterate()
	for it.Next(&k, &v) {
		out[k] = v
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	return out, mid
}

func (d *Datapath) applyObjs(t *testing.T, objs *model.Objects) ApplyStats {
	t.Helper()
	r, err := model.Resolve(objs)
	if err != nil {
		t.Fatal(err)
	}
	st, err := d.Apply(r, "n1")
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// TestPolicyUpdatedInPlace: a change of one entry's verdict (a port added
// to the server's policy, then removed) is made in the trie in place, the
// same trie, and flips the verdict; a change of two entries replaces the
// trie. The trie holds exactly the expected entries each time.
func TestPolicyUpdatedInPlace(t *testing.T) {
	objs := testObjects()
	d := loadServerOnLo(t, objs)
	_, to := d.Programs()
	es := d.endpoints["t/server"]
	_, first := d.innerTrie(t, es.id)
	check := func(what string, st ApplyStats, inPlace bool) {
		t.Helper()
		if st.Swapped != 1 || (st.InPlace == 1) != inPlace {
			t.Fatalf("%s: swapped %d, in place %d; want in place %v", what, st.Swapped, st.InPlace, inPlace)
		}
		got, id := d.innerTrie(t, es.id)
		if (id == first) != inPlace {
			t.Fatalf("%s: trie id %d, first %d; want the same trie %v", what, id, first, inPlace)
		}
		first = id
		ep, _ := mustResolve(t, objs).Endpoint("t/server")
		if want := trieOf(PolicyEntries(ep)); !reflect.DeepEqual(got, want) {
			t.Fatalf("%s: trie\n%v\nwant\n%v", what, got, want)
		}
	}
	rules := &objs.NetworkPolicies[0].Spec.Ingress[0]
	rules.Ports = append(rules.Ports, tcpPort(9000))
	check("one port added", d.applyObjs(t, objs), true)
	if got := run(t, to, tcpPacket(clientIP, 51000, serverIP, 9000, flagSYN)); got != actOK {
		t.Fatalf("client→server:9000 after the in-place add: %d, want pass", got)
	}
	rules.Ports = rules.Ports[:1]
	check("the port removed", d.applyObjs(t, objs), true)
	if got := run(t, to, tcpPacket(clientIP, 51001, serverIP, 9000, flagSYN)); got != actDrop {
		t.Fatalf("client→server:9000 after the in-place removal: %d, want drop", got)
	}
	rules.Ports = append(rules.Ports, tcpPort(9001), tcpPort(9002))
	check("two ports added", d.applyObjs(t, objs), false)
	// A rule before the others renumbers them (counting only) and adds one
	// verdict: still in place.
	objs.NetworkPolicies[0].Spec.Ingress = append([]networkingv1.NetworkPolicyIngressRule{{
		From:  rules.From,
		Ports: []networkingv1.NetworkPolicyPort{tcpPort(7000)},
	}}, objs.NetworkPolicies[0].Spec.Ingress...)
	check("a rule put first", d.applyObjs(t, objs), true)
	if st := d.applyObjs(t, objs); st.Swapped != 0 {
		t.Fatalf("the same state again changed %d endpoints", st.Swapped)
	}
}

func mustResolve(t *testing.T, objs *model.Objects) *model.Resolved {
	t.Helper()
	r, err := model.Resolve(objs)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestPolicyTrieMatchesEntries applies random policies one after another
// (ports, ranges, peers, deny rules, so that both the in-place path and
// swaps happen) and checks after each that the kernel's trie holds exactly
// the entries the endpoint's rules expand to.
func TestPolicyTrieMatchesEntries(t *testing.T) {
	objs := testObjects()
	d := loadServerOnLo(t, objs)
	es := d.endpoints["t/server"]
	rng := rand.New(rand.NewPCG(1, 2))
	peers := []string{"client", "other"}
	var inPlace, swapped int
	randomPort := func() networkingv1.NetworkPolicyPort {
		port := tcpPort(8000 + rng.IntN(8))
		if rng.IntN(4) == 0 {
			end := int32(8000 + rng.IntN(64))
			if end > port.Port.IntVal {
				port.EndPort = &end
			}
		}
		return port
	}
	randomRule := func() networkingv1.NetworkPolicyIngressRule {
		rule := networkingv1.NetworkPolicyIngressRule{From: []networkingv1.NetworkPolicyPeer{{
			PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": peers[rng.IntN(2)]}},
		}}}
		for p := rng.IntN(3); p >= 0; p-- {
			rule.Ports = append(rule.Ports, randomPort())
		}
		return rule
	}
	var ingress []networkingv1.NetworkPolicyIngressRule
	for i := 0; i < 300; i++ {
		// Mostly small steps (one port or rule more or less), sometimes a
		// new random policy.
		switch n := len(ingress); {
		case n == 0 || rng.IntN(10) == 0:
			ingress = nil
			for r := rng.IntN(4); r >= 0; r-- {
				ingress = append(ingress, randomRule())
			}
		case rng.IntN(2) == 0:
			r := rng.IntN(n)
			ports := append([]networkingv1.NetworkPolicyPort(nil), ingress[r].Ports...)
			if len(ports) > 1 && rng.IntN(2) == 0 {
				k := rng.IntN(len(ports))
				ports = append(ports[:k], ports[k+1:]...)
			} else {
				ports = append(ports, randomPort())
			}
			ingress = append([]networkingv1.NetworkPolicyIngressRule(nil), ingress...)
			ingress[r].Ports = ports
		case rng.IntN(2) == 0 && n > 1:
			k := rng.IntN(n)
			ingress = append(append([]networkingv1.NetworkPolicyIngressRule(nil), ingress[:k]...), ingress[k+1:]...)
		default:
			k := rng.IntN(n + 1)
			next := append([]networkingv1.NetworkPolicyIngressRule(nil), ingress[:k]...)
			next = append(next, randomRule())
			ingress = append(next, ingress[k:]...)
		}
		objs.NetworkPolicies[0].Spec.Ingress = ingress
		st := d.applyObjs(t, objs)
		inPlace += st.InPlace
		swapped += st.Swapped - st.InPlace
		got, _ := d.innerTrie(t, es.id)
		ep, _ := mustResolve(t, objs).Endpoint("t/server")
		if want := trieOf(PolicyEntries(ep)); !reflect.DeepEqual(got, want) {
			t.Fatalf("change %d: trie\n%v\nwant\n%v", i, got, want)
		}
	}
	if inPlace == 0 || swapped == 0 {
		t.Fatalf("in place %d, swapped %d: both paths must be exercised", inPlace, swapped)
	}
	t.Logf("in place %d, swapped %d", inPlace, swapped)
}
