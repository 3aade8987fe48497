package lxc

import (
	"testing"

	"github.com/fastpath-bench/fastpath/internal/testutil"
)

func TestVerifierStats(t *testing.T) {
	testutil.RequireRoot(t)
	stats, err := VerifierStats()
	if err != nil {
		t.Fatal(err)
	}
	spec, err := loadLxc()
	if err != nil {
		t.Fatal(err)
	}
	if len(stats) != len(spec.Programs) {
		t.Fatalf("%d programs, %d stats", len(spec.Programs), len(stats))
	}
	for _, s := range stats {
		// The verifier walks every instruction at least once.
		if s.Instructions == 0 || s.Processed < s.Instructions/2 || s.Error != "" {
			t.Errorf("%s: %+v", s.Name, s)
		}
	}
}
