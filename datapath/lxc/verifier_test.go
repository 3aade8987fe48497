package lxc

import (
	"testing"

	"github.com/cilium/ebpf"

	"github.com/fastpath-bench/fastpath/internal/testutil"
)

func TestVerifierStats(t *testing.T) {
	testutil.RequireRoot(t)
	stats, err := VerifierStats()
	if err != nil {
		t.Fatal(err)
	}
	programs := 0
	for _, load := range []func() (*ebpf.CollectionSpec, error){loadLxc, loadSock} {
		spec, err := load()
		if err != nil {
			t.Fatal(err)
		}
		programs += len(spec.Programs)
	}
	if len(stats) != programs {
		t.Fatalf("%d programs, %d stats", programs, len(stats))
	}
	for _, s := range stats {
		// The verifier walks every instruction at least once.
		if s.Instructions == 0 || s.Processed < s.Instructions/2 || s.Error != "" {
			t.Errorf("%s: %+v", s.Name, s)
		}
	}
}
