package run

import (
	"os"
	"testing"
)

func TestProcCPUSeconds(t *testing.T) {
	before, err := procCPUSeconds(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	// Burn a little CPU; the counter must not go backwards and must parse.
	x := 0
	for i := 0; i < 50_000_000; i++ {
		x += i % 7
	}
	after, err := procCPUSeconds(os.Getpid())
	if err != nil || after < before || x == 0 {
		t.Fatalf("cpu %v -> %v (%v)", before, after, err)
	}
	if _, err := procCPUSeconds(-1); err == nil {
		t.Fatal("no error for a missing process")
	}
	if s, err := softirqSeconds(); err != nil || s < 0 {
		t.Fatalf("softirq %v %v", s, err)
	}
}
