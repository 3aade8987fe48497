package model

import (
	"fmt"
	"strings"
	"testing"
)

func TestPrefilter(t *testing.T) {
	objs := &Objects{}
	err := objs.Decode("pf.yaml", []byte(`apiVersion: fastpath.dev/v1alpha1
kind: Prefilter
metadata: {name: scanners}
spec:
  deny: [203.0.113.0/24, 198.51.100.7, 10.1.2.3/8]
---
apiVersion: fastpath.dev/v1alpha1
kind: Prefilter
metadata: {name: more}
spec:
  deny: [203.0.113.0/24, 192.0.2.0/25]
`))
	if err != nil {
		t.Fatal(err)
	}
	if err := objs.Validate(); err != nil {
		t.Fatal(err)
	}
	r, err := Resolve(objs)
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(r.PrefilterDeny); got != "[10.0.0.0/8 192.0.2.0/25 198.51.100.7/32 203.0.113.0/24]" {
		t.Fatalf("prefixes: %s", got)
	}

	bad := &Objects{}
	if err := bad.Decode("bad.yaml", []byte(`apiVersion: fastpath.dev/v1alpha1
kind: Prefilter
metadata: {name: bad}
spec:
  deny: [203.0.113.0/33, "2001:db8::/32", nonsense]
---
apiVersion: fastpath.dev/v1alpha1
kind: Prefilter
metadata: {name: empty}
spec:
  deny: []
`)); err != nil {
		t.Fatal(err)
	}
	err = bad.Validate()
	for _, want := range []string{
		`Prefilter bad: spec.deny[0]: Invalid value: "203.0.113.0/33"`,
		`Prefilter bad: spec.deny[1]: Invalid value: "2001:db8::/32": not an IPv4 CIDR`,
		`Prefilter bad: spec.deny[2]`,
		`Prefilter empty: spec.deny: Required value`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
	unknown := &Objects{}
	err = unknown.Decode("u.yaml", []byte("apiVersion: fastpath.dev/v1alpha1\nkind: Prefilter\nmetadata: {name: x}\nspec:\n  deny: [10.0.0.0/8]\n  allow: [10.1.0.0/16]\n"))
	if err == nil || !strings.Contains(err.Error(), "spec.allow") {
		t.Errorf("unknown field: %v", err)
	}
}
