package agentapi

import (
	"reflect"
	"testing"
)

func TestRevisionToken(t *testing.T) {
	tok := RevisionToken(map[string]int64{"pods": 5, "networkpolicies": 123})
	if tok != "rv:networkpolicies=123,pods=5" {
		t.Fatalf("token %q", tok)
	}
	got, ok := ParseRevisionToken(tok)
	if !ok || !reflect.DeepEqual(got, map[string]int64{"pods": 5, "networkpolicies": 123}) {
		t.Fatalf("parse %q = %v, %v", tok, got, ok)
	}
	for _, bad := range []string{"0123abcd", "rv:pods", "rv:pods=x", "rv:=3"} {
		if _, ok := ParseRevisionToken(bad); ok {
			t.Errorf("ParseRevisionToken(%q) accepted", bad)
		}
	}
}

func TestProgrammedRevisions(t *testing.T) {
	want := RevisionToken(map[string]int64{"networkpolicies": 100})
	cases := []struct {
		name string
		st   Status
		prog bool
		ref  bool
	}{
		{"older", Status{Revisions: map[string]int64{"networkpolicies": 99, "pods": 500}}, false, false},
		{"equal", Status{Revisions: map[string]int64{"networkpolicies": 100}}, true, false},
		{"newer", Status{Revisions: map[string]int64{"networkpolicies": 130}}, true, false},
		{"missing resource", Status{Revisions: map[string]int64{"pods": 500}}, false, false},
		{"pending", Status{Revisions: map[string]int64{"networkpolicies": 100}, Pending: []string{"a/b"}}, false, false},
		{"refused", Status{Revisions: map[string]int64{"networkpolicies": 90}, FailedRevisions: map[string]int64{"networkpolicies": 100}, LastError: "bad"}, true, true},
		{"refused older", Status{FailedRevisions: map[string]int64{"networkpolicies": 90}, LastError: "bad"}, false, false},
	}
	for _, c := range cases {
		if got := Programmed(&c.st, want); got != c.prog {
			t.Errorf("%s: Programmed = %v, want %v", c.name, got, c.prog)
		}
		if got := Refused(&c.st, want); got != c.ref {
			t.Errorf("%s: Refused = %v, want %v", c.name, got, c.ref)
		}
	}
	// Directory digests keep their meaning.
	st := Status{StateHash: "abc"}
	if !Programmed(&st, "abc") || Programmed(&st, "abd") {
		t.Error("digest comparison broken")
	}
}
