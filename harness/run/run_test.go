package run

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/fastpath-bench/fastpath/harness/cluster/netns"
	"github.com/fastpath-bench/fastpath/harness/report"
	"github.com/fastpath-bench/fastpath/internal/testutil"
)

// buildBinaries builds fastpath and fastpath-agent for the end-to-end run.
func buildBinaries(t *testing.T) (self, agent string) {
	t.Helper()
	dir := t.TempDir()
	self, agent = filepath.Join(dir, "fastpath"), filepath.Join(dir, "fastpath-agent")
	for bin, pkg := range map[string]string{self: "./cmd/fastpath", agent: "./cmd/fastpath-agent"} {
		cmd := exec.Command("go", "build", "-o", bin, pkg)
		cmd.Dir = "../.."
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("build %s: %v\n%s", pkg, err, out)
		}
	}
	return self, agent
}

// TestBenchSmoke runs a small suite end to end (real namespaces, agents,
// fortio processes) and checks the report and the clean-up.
func TestBenchSmoke(t *testing.T) {
	testutil.RequireRoot(t)
	self, agent := buildBinaries(t)
	out := t.TempDir()
	id := testutil.RunID("run")
	var progress strings.Builder
	rep, dir, err := Bench(context.Background(), Options{
		SuitePath:   "testdata/smoke.yaml",
		OutRoot:     out,
		Self:        self,
		AgentBinary: agent,
		Progress:    &progress,
		RunID:       id,
	})
	if err != nil {
		t.Fatalf("bench: %v\n%s", err, progress.String())
	}
	if len(rep.Results) != 6 {
		t.Fatalf("%d results, want 3 scenarios (http same-node and cross-node, grpc) × 2 datapaths", len(rep.Results))
	}
	for _, r := range rep.Results {
		s := r.Summary
		if len(r.Repetitions) != 1 || s.Count == 0 || s.Errors != 0 {
			t.Errorf("%s/%s: reps %d count %d errors %d", r.Scenario, r.Datapath, len(r.Repetitions), s.Count, s.Errors)
		}
		l := s.LatencySeconds
		if !(l.P50 > 0 && l.P50 <= l.P90 && l.P90 <= l.P99 && l.P99 <= l.Max) {
			t.Errorf("%s/%s: latency out of order: %+v", r.Scenario, r.Datapath, l)
		}
		if rss := r.Repetitions[0].PeakRSSBytes; rss["client"] < 1<<20 || rss["server"] < 1<<20 || rss["agents"] < 1<<20 {
			t.Errorf("%s/%s: peak RSS not measured: %v", r.Scenario, r.Datapath, rss)
		}
		if s.CPUMillisPer1k["client"] <= 0 || s.CPUMillisPer1k["server"] <= 0 {
			t.Errorf("%s/%s: CPU per 1k requests not measured: %v", r.Scenario, r.Datapath, s.CPUMillisPer1k)
		}
		// The load ran at a rate near the requested one. Not a speed
		// check: on two busy cores a short gRPC run has reached only 78%.
		if s.ActualQPS < 250 {
			t.Errorf("%s/%s: actual qps %g at 500 requested", r.Scenario, r.Datapath, s.ActualQPS)
		}
	}
	// Churn on cross-node: policies and pods were created and deleted
	// during the measurement, and the agents programmed them.
	for _, r := range rep.Results {
		c := r.Repetitions[0].Churn
		if (r.Scenario == "cross-node") != (c != nil) {
			t.Errorf("%s/%s: churn %+v", r.Scenario, r.Datapath, c)
			continue
		}
		if c != nil && (c.PolicyChanges < 20 || c.PodChanges < 20 || c.Applies < 10) {
			t.Errorf("%s/%s: churn %+v: want about 40 changes of each kind in 2s, programmed", r.Scenario, r.Datapath, c)
		}
	}
	// Propagation on ebpf: 4 single changes and one bulk change, each
	// acknowledged and enforced.
	if len(rep.Propagation) != 2 {
		t.Fatalf("%d propagation results, want single and bulk for ebpf: %+v", len(rep.Propagation), rep.Propagation)
	}
	for _, p := range rep.Propagation {
		want := map[string]int{"single": 4, "bulk": 1}[p.Change]
		if p.Datapath != "ebpf" || len(p.Errors) > 0 || len(p.AckSeconds) != want || len(p.EnforcedSeconds) != want {
			t.Errorf("propagation %s/%s: %d acks, %d enforced (want %d), errors %v", p.Datapath, p.Change, len(p.AckSeconds), len(p.EnforcedSeconds), want, p.Errors)
		}
		for i := range p.AckSeconds {
			if p.AckSeconds[i] <= 0 || p.EnforcedSeconds[i] <= 0 || p.EnforcedSeconds[i] > 5 {
				t.Errorf("propagation %s change %d: ack %gs, enforced %gs", p.Change, i, p.AckSeconds[i], p.EnforcedSeconds[i])
			}
		}
	}
	// The files are there and readable, latest points at the run.
	back, err := report.ReadJSON(filepath.Join(dir, "report.json"))
	if err != nil || len(back.Results) != 6 {
		t.Fatalf("read back: %v", err)
	}
	md, err := os.ReadFile(filepath.Join(out, "latest", "report.md"))
	if err != nil || !strings.Contains(string(md), "| `ebpf` |") {
		t.Fatalf("report.md: %v\n%s", err, md)
	}
	if left, _ := netns.Leftovers(id); len(left) > 0 {
		t.Fatalf("left behind: %v", left)
	}
}

// TestBenchRefusesSuiteThatDeniesItsTraffic: the reference evaluator checks
// the suite's own policies before anything is measured.
func TestBenchRefusesSuiteThatDeniesItsTraffic(t *testing.T) {
	testutil.RequireRoot(t)
	self, agent := buildBinaries(t)
	dir := t.TempDir()
	data, _ := os.ReadFile("testdata/smoke.yaml")
	suite := strings.Replace(string(data), "files: [../../../scenarios/policies/workloads-allow.yaml]", "files: []", 1)
	p := filepath.Join(dir, "deny.yaml")
	os.WriteFile(p, []byte(suite), 0o644)
	id := testutil.RunID("deny")
	_, _, err := Bench(context.Background(), Options{SuitePath: p, OutRoot: dir, Self: self, AgentBinary: agent, Progress: &strings.Builder{}, RunID: id})
	if err == nil || !strings.Contains(err.Error(), "policies deny") {
		t.Fatalf("want refusal, got %v", err)
	}
	if left, _ := netns.Leftovers(id); len(left) > 0 {
		t.Fatalf("left behind: %v", left)
	}
}

func TestKindDatapaths(t *testing.T) {
	var asked []bool
	istio := func(ambient bool) error {
		asked = append(asked, ambient)
		return errors.New("istio on kind: istioctl is not on PATH")
	}
	keep, skipped := kindDatapaths([]string{"none", "ebpf", "iptables", "ebpf+socket-lb", "sidecar", "istio", "istio+ambient"}, istio)
	if strings.Join(keep, ",") != "none,ebpf,iptables,ebpf+socket-lb,sidecar" {
		t.Errorf("kept %v", keep)
	}
	want := []string{"istio: not run: istio on kind: istioctl is not on PATH", "istio+ambient: not run: istio on kind: istioctl is not on PATH"}
	if !slices.Equal(skipped, want) {
		t.Errorf("skipped %q, want %q", skipped, want)
	}
	if !slices.Equal(asked, []bool{false, true}) {
		t.Errorf("preflight asked for ambient %v, want [false true]", asked)
	}
}

func TestNetnsDatapaths(t *testing.T) {
	keep, skipped := netnsDatapaths([]string{"ebpf", "istio+ambient", "iptables"})
	if strings.Join(keep, ",") != "ebpf,iptables" || len(skipped) != 1 || !strings.HasPrefix(skipped[0], "istio+ambient: on kind only") {
		t.Errorf("kept %v, skipped %q", keep, skipped)
	}
}

// TestBenchPartition runs a partition on a two-cluster mesh (netns,
// ebpf): east's etcd stopped for 11 s with a 2 s lease. New connections
// work at first and fail closed from about a lease TTL on (west dropped
// east's identities); the two connections established before the cut
// keep working to its end, past the probe server's idle timeout; new
// connections work again after the restart. Nothing is left.
func TestBenchPartition(t *testing.T) {
	testutil.RequireRoot(t)
	self, agent := buildBinaries(t)
	out := t.TempDir()
	id := testutil.RunID("part")
	var progress strings.Builder
	rep, _, err := Bench(context.Background(), Options{SuitePath: "testdata/partition.yaml", OutRoot: out, Self: self, AgentBinary: agent, Progress: &progress, RunID: id})
	if err != nil {
		t.Fatalf("bench: %v\n%s", err, progress.String())
	}
	if len(rep.Partition) != 1 {
		t.Fatalf("%d partition results, want 1 (ebpf)", len(rep.Partition))
	}
	p := rep.Partition[0]
	t.Logf("partition: new connections worked until %v s, failed from %v s, %d/%d succeeded; established kept %d/%d; recovered after %v s",
		deref(p.NewKeptWorkingSeconds), deref(p.NewFailedFromSeconds), p.NewSucceeded, p.NewAttempts, p.EstablishedKept, p.Established, deref(p.RecoveredSeconds))
	if len(p.Errors) > 0 || p.Datapath != "ebpf" || p.Cut != "east" || p.LeaseTTLSeconds != 2 || p.CutSeconds < 11 || p.CutSeconds > 14 {
		t.Fatalf("partition %+v", p)
	}
	if p.NewSucceeded == 0 || p.NewFailedFromSeconds == nil || *p.NewFailedFromSeconds < 1 || *p.NewFailedFromSeconds > 8 {
		t.Errorf("new connections: %d/%d succeeded, failing from %v s: want them to fail closed from about the 2 s lease on", p.NewSucceeded, p.NewAttempts, deref(p.NewFailedFromSeconds))
	}
	if p.Established != 2 || p.EstablishedKept != 2 {
		t.Errorf("established: %d of %d kept (failed at %v s)", p.EstablishedKept, p.Established, p.EstablishedFailedSeconds)
	}
	if p.RecoveredSeconds == nil {
		t.Error("new connections did not work again after the restart")
	}
	if left, _ := netns.Leftovers(id); len(left) > 0 {
		t.Fatalf("left behind: %v", left)
	}
}

func deref(v *float64) any {
	if v == nil {
		return "never"
	}
	return *v
}
