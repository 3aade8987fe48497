package attach

import (
	"os"
	"testing"

	"github.com/cilium/ebpf/rlimit"
)

// TestMain lifts RLIMIT_MEMLOCK, which kernels before 5.11 charge BPF maps
// and programs to, so the tests run on the oldest kernel of the matrix.
func TestMain(m *testing.M) {
	_ = rlimit.RemoveMemlock()
	os.Exit(m.Run())
}
