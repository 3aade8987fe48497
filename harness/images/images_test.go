package images

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func binDir(t *testing.T, agent string) string {
	t.Helper()
	dir := t.TempDir()
	for _, b := range Binaries {
		content := b
		if b == "fastpath-agent" {
			content = agent
		}
		if err := os.WriteFile(filepath.Join(dir, b), []byte(content), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestRefs: tags are digests of what goes in: the binaries, and for the
// iptables image its base too.
func TestRefs(t *testing.T) {
	a, b := binDir(t, "agent v1"), binDir(t, "agent v2")
	ra, err := Ref(a)
	if err != nil || !strings.HasPrefix(ra, Repository+":") {
		t.Fatalf("Ref = %q, %v", ra, err)
	}
	if rb, _ := Ref(b); rb == ra {
		t.Error("another agent binary, the same tag")
	}
	ia, err := IptablesRef(a, "fastpath/kind-rootfs:aaa")
	if err != nil || !strings.HasPrefix(ia, IptablesRepository+":") {
		t.Fatalf("IptablesRef = %q, %v", ia, err)
	}
	if ib, _ := IptablesRef(a, "fastpath/kind-rootfs:bbb"); ib == ia {
		t.Error("another base, the same tag")
	}
	if ib, _ := IptablesRef(b, "fastpath/kind-rootfs:aaa"); ib == ia {
		t.Error("another agent binary, the same iptables tag")
	}
	// Only the agent goes into the iptables image.
	os.WriteFile(filepath.Join(a, "fastpath"), []byte("other"), 0o755)
	if again, _ := IptablesRef(a, "fastpath/kind-rootfs:aaa"); again != ia {
		t.Error("the iptables tag depends on a binary it does not hold")
	}
	if _, err := IptablesRef(a, ""); err == nil {
		t.Error("no base accepted")
	}
	os.Remove(filepath.Join(a, "fastpath-agent"))
	if _, err := IptablesRef(a, "x:y"); err == nil || !strings.Contains(err.Error(), "fastpath-agent") {
		t.Errorf("missing binary: %v", err)
	}
}
