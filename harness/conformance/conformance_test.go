package conformance

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fastpath-bench/fastpath/harness/cluster/netns"
	"github.com/fastpath-bench/fastpath/internal/testutil"
)

func buildAgent(t *testing.T) string {
	t.Helper()
	return buildAgentTB(t)
}

func buildAgentTB(t testing.TB) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "fastpath-agent")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/fastpath-agent")
	cmd.Dir = "../.."
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build agent: %v\n%s", err, out)
	}
	return bin
}

func TestLoadCaseErrors(t *testing.T) {
	dir := t.TempDir()
	c := filepath.Join(dir, "bad")
	os.MkdirAll(c, 0o755)
	data, _ := os.ReadFile("testdata/runner/001-basic/cluster.yaml")
	os.WriteFile(filepath.Join(c, "cluster.yaml"), data, 0o644)
	os.WriteFile(filepath.Join(c, "expect.yaml"), []byte("probes:\n- {from: x/a, to: x/nope, port: 70000, protocol: ICMP, connected: true, extra: 1}\n"), 0o644)
	_, err := LoadCases(dir)
	if err == nil || !strings.Contains(err.Error(), `unknown field "extra"`) {
		t.Fatalf("unknown field: %v", err)
	}
	os.WriteFile(filepath.Join(c, "expect.yaml"), []byte("probes:\n- {from: x/a, to: x/nope, port: 70000, protocol: ICMP, connected: true}\n"), 0o644)
	_, err = LoadCases(dir)
	for _, want := range []string{"probes[0].to", "probes[0].protocol", "probes[0].port"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not name %s", err, want)
		}
	}
}

// corpora are the case directories every datapath must pass.
var corpora = []string{"testdata/runner", "../../scenarios/conformance"}

func loadAll(t *testing.T) []*Case {
	var all []*Case
	for _, dir := range corpora {
		if _, err := os.Stat(dir); err != nil {
			continue
		}
		cases, err := LoadCases(dir)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, cases...)
	}
	return all
}

func TestModelPassesCorpus(t *testing.T) {
	res, err := Run(context.Background(), loadAll(t), Options{Datapath: "model", Out: testWriter{t}})
	if err != nil {
		t.Fatal(err)
	}
	t.Log(res.Summary())
	if res.Failed > 0 || res.Passed == 0 {
		t.Fatalf("model: %s", res.Summary())
	}
}

// TestEBPFPassesCorpus runs every case on real namespaces with the eBPF
// datapath, and checks the model agrees with it on every probe.
func TestEBPFPassesCorpus(t *testing.T) { testDatapathPassesCorpus(t, "ebpf") }

// TestIptablesPassesCorpus does the same for the iptables baseline.
func TestIptablesPassesCorpus(t *testing.T) { testDatapathPassesCorpus(t, "iptables") }

func testDatapathPassesCorpus(t *testing.T, datapath string) {
	testutil.RequireRoot(t)
	id := testutil.RunID("conf")
	res, err := Run(context.Background(), loadAll(t), Options{Datapath: datapath, AgentBinary: buildAgent(t), Out: testWriter{t}, RunID: id, LogDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Log(res.Summary())
	if res.Failed > 0 || res.Passed == 0 {
		t.Fatalf("%s: %s", datapath, res.Summary())
	}
	for _, c := range res.Cases {
		for _, p := range c.Probes {
			if p.Skipped == "" && p.Got != p.Model {
				t.Errorf("%s: %s: datapath %v, model %v", c.Name, p.Probe, p.Got, p.Model)
			}
		}
	}
	if left, _ := netns.Leftovers(id); len(left) > 0 {
		t.Fatalf("left behind: %v", left)
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
