package vm

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fastpath-bench/fastpath/harness/vm/plan"
	"github.com/fastpath-bench/fastpath/internal/testutil"
)

// TestBoot boots the oldest kernel of the list (fetched into the cache, or
// found there) with a small payload: one step that passes, one that
// fails, then one that outlives the VM's timeout. The VM must be killed at
// its timeout with an error that points at the kept console log, and the
// outputs of the steps before must come back.
func TestBoot(t *testing.T) {
	testutil.RequireRoot(t)
	if testing.Short() {
		t.Skip("boots a VM (-short)")
	}
	for _, tool := range []string{"qemu-system-x86_64", "dpkg-deb", "apt-get"} {
		if _, err := exec.LookPath(tool); err != nil {
			testutil.SkipOrFail(t, false, tool+" not installed (make deps-vm)")
		}
	}
	cfg, err := LoadConfig("../../vm-images/kernels.yaml")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	f, err := Fetch(ctx, cfg.Kernels[0], FetchOptions{Log: testWriter{t}})
	if err != nil {
		t.Fatal(err)
	}
	payload := t.TempDir()
	for _, d := range []string{"bin", "tests"} {
		os.MkdirAll(filepath.Join(payload, d), 0o755)
	}
	build := exec.Command("go", "build", "-o", filepath.Join(payload, "bin", "fastpath-vminit"), "github.com/fastpath-bench/fastpath/cmd/fastpath-vminit")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build init: %v: %s", err, out)
	}
	dir := t.TempDir()
	steps := []plan.Step{
		{Name: "uname", Args: []string{"/fastpath/bin/fastpath-vminit", "--version"}},
		{Name: "veth", Args: []string{"ip", "link", "add", "name", "va", "type", "veth", "peer", "name", "vb"}},
		{Name: "no-such-link", Args: []string{"ip", "link", "show", "nonexistent0"}},
		// ip monitor waits for events forever (the image has no sleep).
		{Name: "hang", Args: []string{"ip", "monitor", "link"}, Timeout: plan.Duration(time.Hour)},
	}
	initrd, err := BuildInitrd(ctx, ImageOptions{Fetched: f, Modules: cfg.Modules, Payload: Payload{Dir: payload}, Steps: steps, Path: filepath.Join(dir, "initrd")})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	res, err := Boot(ctx, BootOptions{Kernel: f.Vmlinuz(), Initrd: initrd, Dir: dir, Timeout: 45 * time.Second, MemoryMB: 512})
	took := time.Since(start)
	if err == nil || !strings.Contains(err.Error(), "VM timed out after 45s") || !strings.Contains(err.Error(), "console.log") {
		t.Fatalf("want a timeout error naming the console log, got %v", err)
	}
	if took > 75*time.Second {
		t.Errorf("the VM ran %s past a 45s timeout", took)
	}
	console, cerr := os.ReadFile(res.Console)
	if cerr != nil || !strings.Contains(string(console), "fastpath-vminit: kernel "+f.Release) {
		t.Errorf("console log %s lacks the init's banner (%v)", res.Console, cerr)
	}
	if len(res.Outputs) < 3 {
		t.Fatalf("want the 3 steps before the hang, got %d outputs", len(res.Outputs))
	}
	if o := res.Outputs[0]; strings.TrimSpace(string(o.Stdout)) != f.Release {
		t.Errorf("uname step: got %q, want %q", o.Stdout, f.Release)
	}
	if o := res.Outputs[1]; o.Name != "veth" || o.Exit != 0 {
		t.Errorf("veth (module veth loaded from the image): %+v", o)
	}
	if o := res.Outputs[2]; o.Exit == 0 {
		t.Errorf("a failing step reported exit 0: %+v", o)
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}
