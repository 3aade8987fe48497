package kube

import (
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/fastpath-bench/fastpath/datapath/model"
)

// TestEgressGatewayPolicyCustom: an EgressGatewayPolicy from the API
// server is decoded strictly (a misspelt field names the object and the
// field) and translated cluster-scoped, sorted by name.
func TestEgressGatewayPolicyCustom(t *testing.T) {
	var kind crdKind
	for _, c := range crdKinds {
		if c.kind == "EgressGatewayPolicy" {
			kind = c
		}
	}
	if kind.gvr.Resource != ResourceEgressGatewayPolicies || kind.apiVersion() != "fastpath.dev/v1alpha1" {
		t.Fatalf("crd kind %+v", kind)
	}
	obj := func(name string, gateway map[string]any) *unstructured.Unstructured {
		return &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "fastpath.dev/v1alpha1", "kind": "EgressGatewayPolicy",
			"metadata": map[string]any{"name": name, "resourceVersion": "4"},
			"spec": map[string]any{
				"selectors":        []any{map[string]any{"podSelector": map[string]any{"matchLabels": map[string]any{"app": "client"}}}},
				"destinationCIDRs": []any{"192.0.2.0/24"},
				"gateway":          gateway,
			},
		}}
	}
	var custom model.Objects
	for _, u := range []*unstructured.Unstructured{obj("b", map[string]any{"node": "n2"}), obj("a", map[string]any{"cluster": "west", "node": "w1"})} {
		if err := decodeCustom(&custom, kind, u); err != nil {
			t.Fatal(err)
		}
	}
	out := Translate(Input{EgressGatewayPolicies: custom.EgressGatewayPolicies})
	if len(out.EgressGatewayPolicies) != 2 || out.EgressGatewayPolicies[0].Name != "a" || out.EgressGatewayPolicies[0].Spec.Gateway.Cluster != "west" ||
		out.Source[model.ObjectKey("EgressGatewayPolicy", "", "b")] != SourceName {
		t.Fatalf("translated %+v, sources %v", out.EgressGatewayPolicies, out.Source)
	}
	if err := out.Validate(); err != nil {
		t.Fatal(err)
	}
	// A namespace on a cluster-scoped object is dropped.
	in := Input{EgressGatewayPolicies: []model.EgressGatewayPolicy{{ObjectMeta: metav1.ObjectMeta{Name: "x", Namespace: "default"}}}}
	if got := Translate(in).EgressGatewayPolicies[0].Namespace; got != "" || in.EgressGatewayPolicies[0].Namespace != "default" {
		t.Fatalf("namespace %q (input %q)", got, in.EgressGatewayPolicies[0].Namespace)
	}

	bad := obj("typo", map[string]any{"nodes": "n2"})
	err := decodeCustom(&model.Objects{}, kind, bad)
	if err == nil || !strings.Contains(err.Error(), "EgressGatewayPolicy typo") || !strings.Contains(err.Error(), "spec.gateway.nodes") {
		t.Fatalf("decode: error %v, want one naming the object and the field", err)
	}
}
