package vm

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fastpath-bench/fastpath/harness/vm/plan"
	"github.com/fastpath-bench/fastpath/internal/testutil"
)

func TestConfigValidation(t *testing.T) {
	dir := t.TempDir()
	write := func(s string) string {
		p := filepath.Join(dir, "k.yaml")
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	if _, err := LoadConfig("../../vm-images/kernels.yaml"); err != nil {
		t.Fatalf("the project's kernel list: %v", err)
	}
	_, err := LoadConfig(write("kernels:\n- name: x\n  suite: bullseye\n  package: linux-image-amd64\n  flavour: rt\n"))
	if err == nil || !strings.Contains(err.Error(), "flavour") {
		t.Fatalf("unknown field: got %v", err)
	}
	_, err = LoadConfig(write("kernels:\n- name: a\n  suite: Bad Suite\n  package: vim\n- name: a\n  suite: bookworm\n  package: linux-image-amd64\n  mirror: ftp://x\n- name: host\n  suite: bookworm\nmodules: [\"veth\", \"../x\"]\n"))
	if err == nil {
		t.Fatal("want errors")
	}
	for _, want := range []string{"kernels[0] (a).suite", "kernels[0] (a).package", "kernels[1] (a).name: duplicate", "kernels[1] (a).mirror", "kernels[2] (host): the host kernel takes no suite", `modules[1] "../x"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	cfg := &Config{Kernels: []Kernel{{Name: "5.10", Suite: "bullseye", Package: "linux-image-amd64"}, {Name: HostKernel}}}
	if ks, err := cfg.Select([]string{"host", "5.10"}); err != nil || len(ks) != 2 || ks[0].Name != "host" {
		t.Fatalf("Select: %v %v", ks, err)
	}
	if _, err := cfg.Select([]string{"4.19", "5.10", "3.2"}); err == nil || !strings.Contains(err.Error(), "4.19, 3.2") {
		t.Fatalf("Select unknown: %v", err)
	}
}

func TestIsImagePackage(t *testing.T) {
	for pkg, want := range map[string]bool{
		"linux-image-amd64":                false,
		"linux-image-cloud-amd64":          false,
		"linux-image-5.10.0-32-amd64":      true,
		"linux-image-6.12.117+deb13-amd64": true,
		"linux-image-6.1.0-50-cloud-amd64": true,
		"linux-image-":                     false,
	} {
		if got := isImagePackage(pkg); got != want {
			t.Errorf("%s: got %v", pkg, got)
		}
	}
}

// TestCPIO checks the archive with GNU cpio, the same newc reader the
// kernel's format follows.
func TestCPIO(t *testing.T) {
	if _, err := exec.LookPath("cpio"); err != nil {
		testutil.SkipOrFail(t, false, "cpio not installed (make deps-vm)")
	}
	var buf bytes.Buffer
	c := newCPIO(&buf)
	c.file("/a/b/c.txt", 0o644, []byte("hello"))
	c.file("/a/odd", 0o755, []byte("xyz"))
	c.symlink("/lib", "usr/lib")
	c.mkdirAll("/a/b")
	if err := c.close(); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cmd := exec.Command("cpio", "-idm", "--quiet")
	cmd.Dir = dir
	cmd.Stdin = &buf
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cpio: %v: %s", err, out)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "a/b/c.txt")); err != nil || string(b) != "hello" {
		t.Fatalf("c.txt: %q %v", b, err)
	}
	st, err := os.Stat(filepath.Join(dir, "a/odd"))
	if err != nil || st.Mode().Perm() != 0o755 || st.Size() != 3 {
		t.Fatalf("odd: %v %v", st, err)
	}
	if l, err := os.Readlink(filepath.Join(dir, "lib")); err != nil || l != "usr/lib" {
		t.Fatalf("symlink: %q %v", l, err)
	}
}

// TestResolveModules builds module-like objects with a .modinfo section
// (gcc) and checks the dependency order, built-ins, compressed modules and
// the error for a missing one.
func TestResolveModules(t *testing.T) {
	for _, tool := range []string{"gcc", "xz"} {
		if _, err := exec.LookPath(tool); err != nil {
			testutil.SkipOrFail(t, false, tool+" not installed (make deps-vm)")
		}
	}
	root := t.TempDir()
	mod := func(rel, depends string) {
		src := filepath.Join(t.TempDir(), "m.c")
		code := `__attribute__((section(".modinfo"), used)) static const char info[] = "license=GPL\0depends=` + depends + `\0name=x";` + "\n"
		if err := os.WriteFile(src, []byte(code), 0o644); err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(root, "kernel", rel)
		os.MkdirAll(filepath.Dir(out), 0o755)
		ko := strings.TrimSuffix(out, ".xz")
		if b, err := exec.Command("gcc", "-c", "-o", ko, src).CombinedOutput(); err != nil {
			t.Fatalf("gcc: %v: %s", err, b)
		}
		if strings.HasSuffix(out, ".xz") {
			if b, err := exec.Command("xz", ko).CombinedOutput(); err != nil {
				t.Fatalf("xz: %v: %s", err, b)
			}
		}
	}
	mod("drivers/net/veth.ko", "")
	mod("net/bridge/bridge.ko.xz", "stp,llc")
	mod("net/802/stp.ko", "llc")
	mod("net/802/llc.ko", "")
	mod("drivers/net/vxlan/vxlan.ko", "udp_tunnel,ip6_udp_tunnel")
	mod("net/ipv4/udp_tunnel.ko", "")
	mod("net/ipv6/ip6_udp_tunnel.ko", "")
	mod("net/sched/cls-bpf.ko", "")
	os.WriteFile(filepath.Join(root, "modules.builtin"), []byte("kernel/net/sched/sch_ingress.ko\n"), 0o644)

	mods, err := ResolveModules(context.Background(), root, []string{"bridge", "sch_ingress", "cls_bpf", "veth", "vxlan", "bridge"})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range mods {
		names = append(names, m.Name)
		if !bytes.HasPrefix(m.Data, []byte("\x7fELF")) {
			t.Errorf("%s: not an ELF (not decompressed?)", m.Name)
		}
	}
	want := "llc stp bridge cls_bpf veth udp_tunnel ip6_udp_tunnel vxlan"
	if got := strings.Join(names, " "); got != want {
		t.Fatalf("order: got %q, want %q", got, want)
	}
	if mods[2].Rel != "kernel/net/bridge/bridge.ko" {
		t.Errorf("compressed module's image path: %s", mods[2].Rel)
	}
	_, err = ResolveModules(context.Background(), root, []string{"veth", "nf_tables"})
	if err == nil || !strings.Contains(err.Error(), "module nf_tables") {
		t.Fatalf("missing module: %v", err)
	}
}

func TestPlanStream(t *testing.T) {
	var buf bytes.Buffer
	buf.WriteString("[    0.1] kernel noise before the first frame\n")
	steps := []plan.Step{
		{Name: "ok", Args: []string{"sh", "-c", "printf 'a\\nb\\0\\377'"}},
		{Name: "fails", Args: []string{"sh", "-c", "echo out; echo err >&2; exit 3"}},
		{Name: "missing", Args: []string{"/nonexistent/binary"}},
		{Name: "slow", Args: []string{"sleep", "5"}, Timeout: plan.Duration(100 * 1e6)},
	}
	var log bytes.Buffer
	if err := plan.Run(context.Background(), steps, &buf, &log); err != nil {
		t.Fatal(err)
	}
	full := buf.Bytes()
	outs, err := plan.Read(bytes.NewReader(full))
	if err != nil {
		t.Fatal(err)
	}
	if len(outs) != 4 {
		t.Fatalf("got %d outputs", len(outs))
	}
	if string(outs[0].Stdout) != "a\nb\x00\xff" || outs[0].Exit != 0 {
		t.Errorf("ok: %q %d", outs[0].Stdout, outs[0].Exit)
	}
	if string(outs[1].Stdout) != "out\n" || outs[1].Exit != 3 || !strings.Contains(log.String(), "err") || outs[1].StderrTail != "err\n" {
		t.Errorf("fails: %q %d log %q", outs[1].Stdout, outs[1].Exit, log.String())
	}
	if outs[2].Exit != -1 || outs[2].Error == "" {
		t.Errorf("missing: %+v", outs[2])
	}
	if outs[3].Exit != -1 || !strings.Contains(outs[3].Error, "timed out") {
		t.Errorf("slow: %+v", outs[3])
	}
	// A stream cut anywhere before the end is reported as truncated, with
	// the complete frames before the cut.
	cut := bytes.Index(full, []byte("FASTPATH-STEP {\"name\":\"missing\""))
	outs, err = plan.Read(bytes.NewReader(full[:cut+20]))
	if err != plan.ErrTruncated || len(outs) != 2 {
		t.Fatalf("truncated: %d outputs, %v", len(outs), err)
	}
}
