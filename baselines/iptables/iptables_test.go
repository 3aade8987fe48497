package iptables

import (
	"net/netip"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/fastpath-bench/fastpath/datapath/model"
)

func objects() *model.Objects {
	pod := func(name, ip, node string, l map[string]string) corev1.Pod {
		return corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "t", Labels: l}, Spec: corev1.PodSpec{NodeName: node}, Status: corev1.PodStatus{PodIP: ip}}
	}
	tcp := corev1.ProtocolTCP
	port := intstr.FromInt32(80)
	end := int32(90)
	return &model.Objects{
		Nodes: []corev1.Node{
			{ObjectMeta: metav1.ObjectMeta{Name: "n1"}, Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "198.18.0.1"}}}},
			{ObjectMeta: metav1.ObjectMeta{Name: "n2"}, Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "198.18.0.2"}}}},
		},
		Pods: []corev1.Pod{
			pod("web", "10.0.0.1", "n1", map[string]string{"app": "web"}),
			pod("cli", "10.0.0.2", "n2", map[string]string{"app": "cli"}),
		},
		NetworkPolicies: []networkingv1.NetworkPolicy{{
			ObjectMeta: metav1.ObjectMeta{Name: "np", Namespace: "t"},
			Spec: networkingv1.NetworkPolicySpec{
				PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
				Ingress: []networkingv1.NetworkPolicyIngressRule{{
					From: []networkingv1.NetworkPolicyPeer{
						{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "cli"}}},
						{IPBlock: &networkingv1.IPBlock{CIDR: "192.0.2.0/24", Except: []string{"192.0.2.128/25"}}},
					},
					Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &port, EndPort: &end}},
				}},
			},
		}},
	}
}

func TestBuild(t *testing.T) {
	r, err := model.Resolve(objects())
	if err != nil {
		t.Fatal(err)
	}
	d := &Datapath{sets: map[string]bool{}}
	p, err := d.Build(r, "n1")
	if err != nil {
		t.Fatal(err)
	}
	web, _ := r.Endpoint("t/web")
	cli, _ := r.Endpoint("t/cli")
	lxc := model.InterfaceName("t", "web")
	for _, want := range []string{
		"-A FP-FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
		"-A FP-FORWARD -i " + lxc + " ! -s 10.0.0.1/32",
		"-A FP-FORWARD -o " + lxc + " -j FP-IN-",
		"-p tcp --dport 80:90 -m set --match-set " + setName(cli.Identity) + " src",
		"t/web: default deny\" -j DROP",
	} {
		if !strings.Contains(p.Filter, want) {
			t.Errorf("filter lacks %q:\n%s", want, p.Filter)
		}
	}
	if strings.Contains(p.Filter, model.InterfaceName("t", "cli")) {
		t.Error("a pod of another node got rules on n1")
	}
	if got := p.Sets[setName(cli.Identity)]; len(got) != 1 || got[0] != "10.0.0.2/32" {
		t.Errorf("client set %v", got)
	}
	cidrID := r.CIDRIdentityOf(netip.MustParseAddr("192.0.2.1"))
	if got := strings.Join(p.Sets[setName(cidrID)], ","); got != "192.0.2.0/24,192.0.2.128/25 nomatch" {
		t.Errorf("CIDR set %q", got)
	}
	_ = web
}

func TestDenyRulesComeFirst(t *testing.T) {
	objs := objects()
	objs.CiliumNetworkPolicies = []model.CiliumNetworkPolicy{{
		ObjectMeta: metav1.ObjectMeta{Name: "deny", Namespace: "t"},
		Spec: &model.CiliumRule{
			EndpointSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			IngressDeny:      []model.CiliumIngressRule{{ToPorts: []model.CiliumPortRule{{Ports: []model.CiliumPortProtocol{{Port: "85", Protocol: "TCP"}}}}}},
		},
	}}
	r, err := model.Resolve(objs)
	if err != nil {
		t.Fatal(err)
	}
	p, err := (&Datapath{}).Build(r, "n1")
	if err != nil {
		t.Fatal(err)
	}
	deny := strings.Index(p.Filter, "--dport 85 ")
	allow := strings.Index(p.Filter, "--dport 80:90")
	if deny < 0 || allow < 0 || deny > allow {
		t.Fatalf("deny rule must precede allow rules:\n%s", p.Filter)
	}
}

func TestHookArgs(t *testing.T) {
	for _, tc := range []struct {
		op   string
		hook []string
		want string
	}{
		{"-I", []string{"FORWARD", "-j", "FP-FORWARD"}, "-I FORWARD 1 -j FP-FORWARD"},
		{"-C", []string{"FORWARD", "-j", "FP-FORWARD"}, "-C FORWARD -j FP-FORWARD"},
		{"-I", []string{"-t", "mangle", "PREROUTING", "-j", "FP-PROXY"}, "-t mangle -I PREROUTING 1 -j FP-PROXY"},
		{"-D", []string{"-t", "mangle", "PREROUTING", "-j", "FP-PROXY"}, "-t mangle -D PREROUTING -j FP-PROXY"},
	} {
		if got := strings.Join(hookArgs(tc.op, tc.hook), " "); got != tc.want {
			t.Errorf("hookArgs(%s, %v) = %q, want %q", tc.op, tc.hook, got, tc.want)
		}
	}
}

// TestSkipServices: next to kube-proxy, the baseline programs no Service
// rules and hooks nothing into nat.
func TestSkipServices(t *testing.T) {
	objs := objects()
	objs.Services = []corev1.Service{{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "t"},
		Spec: corev1.ServiceSpec{ClusterIP: "10.96.0.10", Selector: map[string]string{"app": "web"},
			Ports: []corev1.ServicePort{{Port: 80, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(8080)}}},
	}}
	r, err := model.Resolve(objs)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Services) != 1 {
		t.Fatalf("%d services resolved", len(r.Services))
	}
	with, err := (&Datapath{}).Build(r, "n1")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(with.Nat, "10.96.0.10") && !strings.Contains(with.Filter, "10.96.0.10") {
		t.Fatalf("the Service has no rule without SkipServices:\nnat:\n%s\nfilter:\n%s", with.Nat, with.Filter)
	}
	d := &Datapath{opts: Options{SkipServices: true}}
	p, err := d.Build(r, "n1")
	if err != nil {
		t.Fatal(err)
	}
	if p.Nat != "" || strings.Contains(p.Filter, "10.96.0.10") || strings.Contains(p.Filter, "REJECT") {
		t.Errorf("Service rules with SkipServices:\nnat:\n%s\nfilter:\n%s", p.Nat, p.Filter)
	}
	if !strings.Contains(p.Filter, "-A FP-FORWARD -o "+model.InterfaceName("t", "web")+" -j FP-IN-") {
		t.Errorf("policy rules missing with SkipServices:\n%s", p.Filter)
	}
	// kube-proxy's hairpin (in and out of the pod's own veth) passes,
	// before the pod's egress chain.
	web := model.InterfaceName("t", "web")
	hairpin := strings.Index(p.Filter, "-A FP-FORWARD -i "+web+" -o "+web+" ")
	egress := strings.Index(p.Filter, "-A FP-FORWARD -i "+web+" -j FP-EG-")
	if hairpin < 0 || egress < 0 || hairpin > egress || strings.Contains(with.Filter, "-i "+web+" -o "+web) {
		t.Errorf("hairpin rule at %d, egress jump at %d (only with SkipServices):\n%s", hairpin, egress, p.Filter)
	}
	for _, h := range d.hooks() {
		if h[0] == "-t" && h[1] == "nat" {
			t.Errorf("nat hook %v with SkipServices", h)
		}
	}
	if got := len((&Datapath{}).hooks()) - len(d.hooks()); got != 2 {
		t.Errorf("SkipServices drops %d hooks, want the 2 nat ones", got)
	}
}

func TestFirstRule(t *testing.T) {
	for _, tc := range []struct {
		listing string
		first   string
		ours    int
	}{
		{"-P FORWARD ACCEPT\n", "", 0},
		{"-P FORWARD ACCEPT\n-A FORWARD -j FP-FORWARD\n-A FORWARD -m comment --comment \"kubernetes forwarding rules\" -j KUBE-FORWARD\n", "FP-FORWARD", 1},
		{"-P FORWARD ACCEPT\n-A FORWARD -m comment --comment \"kubernetes forwarding rules\" -j KUBE-FORWARD\n-A FORWARD -j FP-FORWARD\n", "KUBE-FORWARD", 1},
		{"-P FORWARD ACCEPT\n-A FORWARD -j FP-FORWARD\n-A FORWARD -j FP-FORWARD\n", "FP-FORWARD", 2},
		{"-P INPUT ACCEPT\n-A INPUT -m mark --mark 0x200/0xf00 -j FP-FORWARD\n", "FP-FORWARD", 1},
	} {
		chain := strings.Fields(tc.listing)[1]
		first, ours := firstRule(tc.listing, chain)
		if first != tc.first || ours != tc.ours {
			t.Errorf("firstRule(%q) = %q, %d; want %q, %d", tc.listing, first, ours, tc.first, tc.ours)
		}
	}
}
