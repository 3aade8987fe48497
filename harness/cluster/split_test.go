package cluster

import (
	"strings"
	"testing"
)

func TestSplitByCluster(t *testing.T) {
	data := []byte(`apiVersion: v1
kind: Namespace
metadata: {name: t}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: west-only
  namespace: t
  annotations: {fastpath.dev/cluster: west}
spec: {podSelector: {}}
---
`)
	parts, err := SplitByCluster(data, []string{"east", "west"})
	if err != nil {
		t.Fatal(err)
	}
	if e := string(parts["east"]); !strings.Contains(e, "kind: Namespace") || strings.Contains(e, "west-only") {
		t.Fatalf("east:\n%s", e)
	}
	if w := string(parts["west"]); !strings.Contains(w, "kind: Namespace") || !strings.Contains(w, "west-only") {
		t.Fatalf("west:\n%s", w)
	}
	_, err = SplitByCluster([]byte(strings.Replace(string(data), "cluster: west", "cluster: north", 1)), []string{"east", "west"})
	if err == nil || !strings.Contains(err.Error(), `NetworkPolicy west-only`) || !strings.Contains(err.Error(), `no cluster "north"`) {
		t.Fatalf("unknown cluster: %v", err)
	}
	if _, err := SplitByCluster([]byte("kind: [unclosed"), []string{"east"}); err == nil {
		t.Fatal("malformed YAML accepted")
	}
}
