package run

import (
	"fmt"
	"sort"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/fastpath-bench/fastpath/harness/scenario"
)

// fillerBasePort is the first port generated policies allow: far from the
// ports scenarios use, so fillers add map entries without changing any
// scenario's verdict.
const fillerBasePort = 20000

// GenerateFillers returns n NetworkPolicies that select the scenarios'
// server pods and allow ingress from their client pods on ports
// fillerBasePort+i. They make the policy state as large as a real cluster's
// while leaving the verdict of scenario traffic to the suite's own policies.
func GenerateFillers(s *scenario.Suite, n int) []any {
	type target struct {
		ns     string
		labels map[string]string
	}
	var targets []target
	var clients []map[string]string
	seen := map[string]bool{}
	for _, sc := range s.Spec.Scenarios {
		to, _ := s.PodByRef(sc.To)
		from, _ := s.PodByRef(sc.From)
		key := to.Namespace + "/" + to.Name
		if !seen[key] && len(to.Labels) > 0 {
			seen[key] = true
			targets = append(targets, target{ns: to.Namespace, labels: to.Labels})
		}
		if len(from.Labels) > 0 {
			clients = append(clients, from.Labels)
		}
	}
	sort.Slice(targets, func(i, j int) bool { return targets[i].ns < targets[j].ns })
	var out []any
	if len(targets) == 0 {
		return nil
	}
	var from []networkingv1.NetworkPolicyPeer
	for _, c := range clients {
		from = append(from, networkingv1.NetworkPolicyPeer{
			PodSelector:       &metav1.LabelSelector{MatchLabels: c},
			NamespaceSelector: &metav1.LabelSelector{},
		})
	}
	for i := 0; i < n; i++ {
		t := targets[i%len(targets)]
		out = append(out, allowIngress(fmt.Sprintf("fp-filler-%04d", i), t.ns, t.labels, from, fillerBasePort+i%40000))
	}
	return out
}

// allowIngress is a NetworkPolicy that selects the pods with labels
// selects in namespace ns and admits peers from on TCP port.
func allowIngress(name, ns string, selects map[string]string, from []networkingv1.NetworkPolicyPeer, port int) *networkingv1.NetworkPolicy {
	tcp := corev1.ProtocolTCP
	p := intstr.FromInt32(int32(port))
	return &networkingv1.NetworkPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "NetworkPolicy"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: selects},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				From:  from,
				Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &p}},
			}},
		},
	}
}
