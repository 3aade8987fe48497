package upstream

import (
	"strings"
	"testing"
)

func TestParseJUnit(t *testing.T) {
	res, err := ParseJUnit("testdata/junit_01.xml", NetpolFocus)
	if err != nil {
		t.Fatal(err)
	}
	if res.Passed != 1 || res.Failed != 1 || res.Skipped != 1 {
		t.Fatalf("got %s", res.Summary())
	}
	if len(res.Failures) != 1 || !strings.Contains(res.Failures[0], "egress policy") {
		t.Errorf("failures %v", res.Failures)
	}
	if len(res.SkippedReasons) != 1 || !strings.Contains(res.SkippedReasons[0], "SCTP") {
		t.Errorf("skipped %v", res.SkippedReasons)
	}
	if _, err := ParseJUnit("testdata/junit_01.xml", `\[sig-apps\]`); err == nil {
		t.Error("a focus that matches nothing is not an error")
	}
	if _, err := ParseJUnit("testdata/missing.xml", NetpolFocus); err == nil {
		t.Error("a missing report is not an error")
	}
}
