package run

import (
	"os/exec"
	"strings"
	"testing"
)

// TestHarnessDoesNotImportEBPF keeps the layering: the harness talks to
// agents and never loads BPF itself.
func TestHarnessDoesNotImportEBPF(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "github.com/fastpath-bench/fastpath/harness/...", "github.com/fastpath-bench/fastpath/cmd/fastpath").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, "github.com/cilium/ebpf") || strings.HasPrefix(line, "github.com/fastpath-bench/fastpath/datapath/lxc") ||
			strings.HasPrefix(line, "github.com/fastpath-bench/fastpath/datapath/agent") && line != "github.com/fastpath-bench/fastpath/datapath/agentapi" {
			t.Errorf("harness depends on %s", line)
		}
	}
}
