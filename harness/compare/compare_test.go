package compare

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fastpath-bench/fastpath/harness/report"
	"github.com/fastpath-bench/fastpath/harness/workload"
)

var update = flag.Bool("update", false, "update golden files")

// synth describes a synthetic report: Results for every scenario and
// datapath below, reps repetitions each, latencies multiplied by latScale,
// actual QPS by qpsScale, and each value jittered by a factor drawn
// uniformly from [1−jitter, 1+jitter] with the given seed.
type synth struct {
	seed     uint64
	reps     int
	latScale float64
	qpsScale float64
	jitter   float64
	// errorRate is the share of requests that fail in every repetition.
	errorRate float64
}

// bases are the latency p50s (seconds) of the synthetic results.
var bases = []struct {
	scenario, datapath string
	p50                float64
}{
	{"same-node", "none", 200e-6},
	{"same-node", "ebpf", 220e-6},
	{"cross-node", "none", 300e-6},
	{"cross-node", "ebpf", 320e-6},
}

func (s synth) report() *report.Report {
	r := &rng{state: s.seed}
	jit := func() float64 { return 1 + s.jitter*(2*float64(r.intn(1_000_001))/1_000_000-1) }
	rep := &report.Report{
		SchemaVersion: report.SchemaVersion,
		Suite:         "quick",
		SuiteFile:     "scenarios/bench/quick.yaml",
		StartedAt:     time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC),
		FinishedAt:    time.Date(2026, 11, 23, 10, 3, 0, 0, time.UTC),
		Environment: report.Environment{
			Kernel: "6.1.0-28-amd64", Hostname: "bench-1", CPUModel: "AMD EPYC", Cores: 2,
			GoVersion: "go1.26.8", FastpathVersion: "v0.1.0", FastpathCommit: "b60ae7b",
			Provider: "netns", Datapaths: []string{"none", "ebpf"},
		},
	}
	for _, b := range bases {
		res := report.Result{
			Scenario: b.scenario, Datapath: b.datapath, Path: b.scenario,
			Load: report.LoadSpec{Protocol: "http", QPS: 1000, Connections: 4, DurationSeconds: 10},
		}
		for i := 1; i <= s.reps; i++ {
			base := b.p50 * s.latScale
			count := int64(10000)
			w := workload.Result{
				RequestedQPS: 1000, ActualQPS: 999.8 * s.qpsScale * (1 + (jit()-1)/100),
				RequestedSeconds: 10, ActualSeconds: 10.001, Connections: 4,
				Count: count, Errors: int64(math.Round(s.errorRate * float64(count))),
				LatencySeconds: workload.Latency{
					Min: base * 0.5, Avg: base * 1.1, P50: base * jit(), P75: base * 1.2 * jit(),
					P90: base * 1.5 * jit(), P99: base * 3 * jit(), P999: base * 6 * jit(), Max: base * 10,
				},
			}
			res.Repetitions = append(res.Repetitions, report.Repetition{
				Index: i, StartedAt: rep.StartedAt.Add(time.Duration(i) * time.Second), Workload: w,
			})
		}
		res.Summary = report.Summarize(res.Repetitions)
		rep.Results = append(rep.Results, res)
	}
	return rep
}

var baseline = synth{seed: 1, reps: 3, latScale: 1, qpsScale: 1, jitter: 0.03}

// with returns s with another seed (other jitter) and the given scales.
func (s synth) with(seed uint64, latScale, qpsScale float64) synth {
	s.seed, s.latScale, s.qpsScale = seed, latScale, qpsScale
	return s
}

var latencyFigures = map[string]bool{"p50": true, "p90": true, "p99": true, "p99.9": true}

func TestVerdicts(t *testing.T) {
	withErrors := baseline.with(2, 1, 1)
	withErrors.errorRate = 0.01
	fiveReps := baseline
	fiveReps.reps = 5
	oneRep := baseline
	oneRep.reps = 1
	// With ±2% jitter, medians of the same level differ by at most
	// 1.02/0.98 − 1 < 5%: whatever the draws, nothing may be flagged.
	calm := baseline
	calm.jitter = 0.02
	tests := []struct {
		name     string
		old, new synth
		opts     Options
		// want gives the verdict per figure name; figures not named must
		// be NoChange.
		want map[string]string
	}{
		{"self", baseline, baseline, Options{}, nil},
		{"self, 5 reps", fiveReps, fiveReps, Options{}, nil},
		{"other jitter ±2%, same level", calm, calm.with(2, 1, 1), Options{}, nil},
		{"other jitter ±2%, same level, 5 reps", calm, calm.with(3, 1, 1), Options{}, nil},
		// ±3% jitter drawn independently on each side: every new value is
		// at least 1.2·0.97/1.03 = 1.13 times every old one, so the rule
		// must flag it whatever the draws.
		{"latency x1.20, 3v3", baseline, baseline.with(2, 1.2, 1), Options{},
			map[string]string{"p50": Worse, "p90": Worse, "p99": Worse, "p99.9": Worse}},
		{"latency x1.20, 5v5", fiveReps, fiveReps.with(2, 1.2, 1), Options{},
			map[string]string{"p50": Worse, "p90": Worse, "p99": Worse, "p99.9": Worse}},
		{"latency x1.20, threshold 25%", baseline, baseline.with(2, 1.2, 1), Options{Threshold: 0.25}, nil},
		{"latency x1.20, 1v1", oneRep, oneRep.with(2, 1.2, 1), Options{}, nil},
		// The same jitter, scaled (seed 1 again): a change of exactly 2%.
		{"latency x1.02, same jitter", baseline, baseline.with(1, 1.02, 1), Options{}, nil},
		// Independent jitter: medians differ by at most 1.02·1.03/0.97 − 1 =
		// 8.3%, so a 10% threshold is never crossed. (With a 5% threshold,
		// such draws can cross it: see the report of this change.)
		{"latency x1.02, other jitter, threshold 10%", baseline, baseline.with(2, 1.02, 1), Options{Threshold: 0.1}, nil},
		{"latency x1.02, other jitter, 5v5, threshold 10%", fiveReps, fiveReps.with(2, 1.02, 1), Options{Threshold: 0.1}, nil},
		{"latency x0.80", baseline, baseline.with(2, 0.8, 1), Options{},
			map[string]string{"p50": Better, "p90": Better, "p99": Better, "p99.9": Better}},
		{"QPS x0.8", baseline, baseline.with(2, 1, 0.8), Options{}, map[string]string{"QPS": Worse}},
		{"QPS x1.1", baseline, baseline.with(2, 1, 1.1), Options{}, map[string]string{"QPS": Better}},
		{"errors appear", baseline, withErrors, Options{}, map[string]string{"error rate": Worse}},
		{"errors go away", withErrors, baseline, Options{}, map[string]string{"error rate": Better}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Compare(tt.old.report(), tt.new.report(), tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			if len(c.Pairs) != len(bases) {
				t.Fatalf("%d pairs, want %d", len(c.Pairs), len(bases))
			}
			wantRegressions := 0
			for _, p := range c.Pairs {
				if len(p.Figures) != 6 {
					t.Fatalf("%s/%s: %d figures, want 6", p.Scenario, p.Datapath, len(p.Figures))
				}
				for _, f := range p.Figures {
					want := NoChange
					if v, ok := tt.want[f.Name]; ok {
						want = v
					}
					if want == Worse {
						wantRegressions++
					}
					if f.Verdict != want {
						t.Errorf("%s/%s %s: %s, want %s (change %.2f%%, CI [%.2f, %.2f], p %.3g, n %d/%d)",
							p.Scenario, p.Datapath, f.Name, f.Verdict, want, f.ChangePct, f.CILowPct, f.CIHighPct, f.P, f.OldN, f.NewN)
					}
				}
			}
			if len(c.Regressions) != wantRegressions {
				t.Errorf("regressions %q, want %d", c.Regressions, wantRegressions)
			}
		})
	}
}

// TestSelf compares reports with themselves, failed repetitions, errors
// and all: nothing changes, and the changes and p-values say so.
func TestSelf(t *testing.T) {
	for _, s := range []synth{baseline, baseline.with(5, 3, 0.5)} {
		r := s.report()
		r.Results[1].Repetitions[2].Error = "12 of 6400 requests failed"
		r.Results[1].Repetitions[2].Workload.Errors = 12
		r.Results[2].Repetitions[0].Workload.Errors = 3
		c, err := Compare(r, r, Options{})
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range c.Pairs {
			for _, f := range p.Figures {
				if f.Verdict != NoChange || f.ChangePct != 0 || f.P != 1 || f.CILowPct > 0 || f.CIHighPct < 0 {
					t.Errorf("%s/%s %s: %s, change %v, CI [%v, %v], p %v", p.Scenario, p.Datapath, f.Name,
						f.Verdict, f.ChangePct, f.CILowPct, f.CIHighPct, f.P)
				}
			}
		}
		if len(c.Regressions) != 0 || len(c.OnlyOld) != 0 || len(c.OnlyNew) != 0 {
			t.Errorf("regressions %q, only old %q, only new %q", c.Regressions, c.OnlyOld, c.OnlyNew)
		}
		if got := c.Pairs[1].Figures[0].OldN; got != 2 {
			t.Errorf("failed repetition compared: n = %d, want 2", got)
		}
	}
}

func TestDeterministic(t *testing.T) {
	old, new := baseline.report(), baseline.with(2, 1.1, 1).report()
	a, err := Compare(old, new, Options{Seed: 42})
	if err != nil {
		t.Fatal(err)
	}
	b, err := Compare(old, new, Options{Seed: 42})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(a, b) {
		t.Error("two comparisons with the same seed differ")
	}
	var ma, mb bytes.Buffer
	if err := a.WriteMarkdown(&ma); err != nil {
		t.Fatal(err)
	}
	if err := b.WriteMarkdown(&mb); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ma.Bytes(), mb.Bytes()) {
		t.Error("markdown of two comparisons with the same seed differs")
	}
	// A figure's interval does not depend on the other results.
	one := *new
	one.Results = new.Results[2:3]
	c, err := Compare(old, &one, Options{Seed: 42})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c.Pairs[0], a.Pairs[2]) {
		t.Errorf("figures depend on the other results:\n%+v\n%+v", c.Pairs[0], a.Pairs[2])
	}
}

func TestErrors(t *testing.T) {
	r := baseline.report()
	other := baseline.report()
	for i := range other.Results {
		other.Results[i].Scenario = "elsewhere-" + other.Results[i].Scenario
	}
	dup := baseline.report()
	dup.Results = append(dup.Results, dup.Results[0])
	tests := []struct {
		name     string
		old, new *report.Report
		opts     Options
		want     string
	}{
		{"no common result", r, other, Options{}, "no scenario and datapath in common (old has same-node/none, same-node/ebpf, cross-node/none, cross-node/ebpf; new has elsewhere-same-node/none, elsewhere-same-node/ebpf, elsewhere-cross-node/none, elsewhere-cross-node/ebpf)"},
		{"empty new", r, &report.Report{SchemaVersion: 1}, Options{}, "new has no results"},
		{"duplicate", dup, r, Options{}, `old report has more than one result for scenario "same-node" on datapath "none"`},
		{"negative threshold", r, r, Options{Threshold: -1}, "threshold -1 out of range"},
		{"threshold 100%", r, r, Options{Threshold: 1}, "threshold 1 out of range"},
		{"threshold NaN", r, r, Options{Threshold: math.NaN()}, "threshold NaN out of range"},
		{"alpha 2", r, r, Options{Alpha: 2}, "alpha 2 out of range"},
		{"negative alpha", r, r, Options{Alpha: -0.05}, "alpha -0.05 out of range"},
		{"few resamples", r, r, Options{Resamples: 100}, "100 bootstrap resamples: want at least 2000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Compare(tt.old, tt.new, tt.opts)
			if err == nil {
				t.Fatalf("no error; comparison %+v", c)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q, want it to contain %q", err, tt.want)
			}
		})
	}
	if _, err := Compare(r, other, Options{}); !errors.Is(err, ErrNoCommonResult) {
		t.Errorf("error %v is not ErrNoCommonResult", err)
	}
}

// TestNoData: a side whose repetitions all failed gives "no data", not a
// verdict, and a warning.
func TestNoData(t *testing.T) {
	old, new := baseline.report(), baseline.with(2, 1.5, 1).report()
	for i := range new.Results[0].Repetitions {
		new.Results[0].Repetitions[i].Error = "agent crashed"
	}
	c, err := Compare(old, new, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range c.Pairs[0].Figures {
		if f.Verdict != NoData || f.NewN != 0 || f.OldN != 3 || !math.IsNaN(f.NewMedian) || !math.IsNaN(f.P) {
			t.Errorf("%s: %+v", f.Name, f)
		}
	}
	if want := "same-node/none: all 3 repetitions failed in the new report: nothing to compare"; !slices.Contains(c.Warnings, want) {
		t.Errorf("warnings %q lack %q", c.Warnings, want)
	}
	var md bytes.Buffer
	if err := c.WriteMarkdown(&md); err != nil {
		t.Fatal(err)
	}
	if want := "| p50 | `none` | 200µs | – | – | – | – | no data |"; !strings.Contains(md.String(), want) {
		t.Errorf("markdown lacks %q:\n%s", want, md.String())
	}
}

// goldenPair is the comparison the golden files show: a newer kernel,
// ebpf 20% slower on same-node, cross-node/none faster, a failed
// repetition, errors appearing, and results present in one report only.
func goldenPair() *Comparison {
	old := baseline.report()
	newSynth := baseline.with(2, 1, 1)
	new := newSynth.report()
	slow := baseline.with(3, 1.2, 1).report()
	fast := baseline.with(4, 0.8, 1).report()
	new.Results[1] = slow.Results[1]
	new.Results[2] = fast.Results[2]
	new.Environment.Kernel = "6.12.0-1-amd64"
	new.Environment.FastpathCommit = "c0ffee1"
	new.StartedAt = new.StartedAt.Add(24 * time.Hour)
	new.Results[3].Repetitions[1].Error = "agent did not report the state programmed"
	for i := range new.Results[3].Repetitions {
		new.Results[3].Repetitions[i].Workload.Errors = int64(10 + i)
	}
	old.Results = append(old.Results, report.Result{Scenario: "many-policies", Datapath: "ebpf"})
	new.Results = append(new.Results, report.Result{Scenario: "udp", Datapath: "ebpf"})
	c, err := Compare(old, new, Options{})
	if err != nil {
		panic(err)
	}
	c.Old.Source, c.New.Source = "reports/runs/20261123-100000/report.json", "reports/runs/20261124-100000/report.json"
	return c
}

func TestGolden(t *testing.T) {
	c := goldenPair()
	tests := []struct {
		golden string
		write  func(b *bytes.Buffer) error
	}{
		{"compare.golden.md", func(b *bytes.Buffer) error { return c.WriteMarkdown(b) }},
		{"compare.golden.html", func(b *bytes.Buffer) error { return c.WriteHTML(b) }},
	}
	for _, tt := range tests {
		t.Run(tt.golden, func(t *testing.T) {
			var got bytes.Buffer
			if err := tt.write(&got); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", tt.golden)
			if *update {
				if err := os.MkdirAll("testdata", 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, got.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if !bytes.Equal(got.Bytes(), want) {
				t.Errorf("output differs from %s (go test -update rewrites it):\n--- got\n%s", path, got.String())
			}
		})
	}
}

func TestGoldenContent(t *testing.T) {
	c := goldenPair()
	want := []string{
		"same-node/ebpf p50", "same-node/ebpf p90", "same-node/ebpf p99", "same-node/ebpf p99.9",
		"cross-node/ebpf error rate +∞",
	}
	if got := strings.Join(c.Regressions, "; "); len(c.Regressions) != len(want) {
		t.Fatalf("regressions %s, want %d: %q", got, len(want), want)
	}
	for i, w := range want {
		if !strings.HasPrefix(c.Regressions[i], w) {
			t.Errorf("regression %d is %q, want %q…", i, c.Regressions[i], w)
		}
	}
	if !reflect.DeepEqual(c.OnlyOld, []string{"many-policies/ebpf"}) || !reflect.DeepEqual(c.OnlyNew, []string{"udp/ebpf"}) {
		t.Errorf("only old %q, only new %q", c.OnlyOld, c.OnlyNew)
	}
	var md, html bytes.Buffer
	if err := c.WriteMarkdown(&md); err != nil {
		t.Fatal(err)
	}
	if err := c.WriteHTML(&html); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(md.String()), "\n")
	if last := lines[len(lines)-1]; !strings.HasPrefix(last, fmt.Sprintf("Result: %d figures regressed: same-node/ebpf p50 +", len(want))) {
		t.Errorf("last markdown line %q", last)
	}
	for _, s := range []string{"kernels differ: old 6.1.0-28-amd64, new 6.12.0-1-amd64", "complete separation", "| `ebpf` | "} {
		if !strings.Contains(md.String(), s) {
			t.Errorf("markdown lacks %q", s)
		}
	}
	h := html.String()
	for _, s := range []string{`<tr class="worse">`, `<tr class="better">`, "<style>", "kernels differ"} {
		if !strings.Contains(h, s) {
			t.Errorf("html lacks %q", s)
		}
	}
	for _, s := range []string{"<script", "<link", "src=", "http://", "https://", "url("} {
		if strings.Contains(h, s) {
			t.Errorf("html is not self-contained: has %q", s)
		}
	}
}

// withPropagation adds single-change propagation samples to a report:
// ack and enforced times of 20 changes around base seconds.
func withPropagation(r *report.Report, seed uint64, base float64) *report.Report {
	g := &rng{state: seed}
	p := report.Propagation{Datapath: "ebpf", Change: "single", Policies: 1, BasePolicies: 100, ProbeIntervalSeconds: 1e-3}
	for i := 0; i < 20; i++ {
		v := base * (0.9 + 0.2*float64(g.intn(1001))/1000)
		p.AckSeconds = append(p.AckSeconds, v)
		p.EnforcedSeconds = append(p.EnforcedSeconds, v*0.9)
	}
	p.Summary = report.SummarizePropagation(p)
	r.Propagation = []report.Propagation{p}
	return r
}

// TestPropagationFigures: propagation is compared per datapath and kind of
// change; a doubled acknowledgement time is a regression, the same
// distribution is not.
func TestPropagationFigures(t *testing.T) {
	old := withPropagation(baseline.report(), 7, 10e-3)
	for _, tc := range []struct {
		name  string
		new   *report.Report
		worse bool
	}{
		{"same", withPropagation(baseline.with(2, 1, 1).report(), 8, 10e-3), false},
		{"twice as slow", withPropagation(baseline.with(2, 1, 1).report(), 8, 20e-3), true},
	} {
		c, err := Compare(old, tc.new, Options{})
		if err != nil {
			t.Fatal(err)
		}
		var found bool
		for _, p := range c.Pairs {
			if p.Scenario != "propagation: 1 policy" || p.Datapath != "ebpf" {
				continue
			}
			found = true
			for _, f := range p.Figures {
				if (f.Verdict == Worse) != tc.worse || f.OldN != 20 {
					t.Errorf("%s: %s verdict %s (n %d, change %.1f%%)", tc.name, f.Name, f.Verdict, f.OldN, f.ChangePct)
				}
			}
		}
		if !found {
			t.Fatalf("%s: no propagation pair", tc.name)
		}
		// Both outputs render the propagation pairs.
		var md, page bytes.Buffer
		if err := c.WriteMarkdown(&md); err != nil {
			t.Fatal(err)
		}
		if err := c.WriteHTML(&page); err != nil {
			t.Fatal(err)
		}
		for _, out := range []string{md.String(), page.String()} {
			if !strings.Contains(out, "propagation: 1 policy") || !strings.Contains(out, "enforced") {
				t.Errorf("%s: output lacks the propagation figures:\n%s", tc.name, out)
			}
		}
	}
}
