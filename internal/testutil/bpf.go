package testutil

import (
	"testing"

	"github.com/cilium/ebpf/rlimit"
)

// RunWithBPF is TestMain for packages whose tests load BPF objects: it
// lifts RLIMIT_MEMLOCK (kernels before 5.11 charge BPF memory to it, the
// oldest kernel of the matrix is 5.10) and runs the tests.
func RunWithBPF(m *testing.M) int {
	_ = rlimit.RemoveMemlock()
	return m.Run()
}
