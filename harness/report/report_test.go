package report

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fastpath-bench/fastpath/harness/workload"
)

var update = flag.Bool("update", false, "update golden files")

// rep is a repetition whose latencies scale with base (seconds).
func rep(index int, base, qps float64, count, errors int64, errMsg string) Repetition {
	w := workload.Result{
		RequestedQPS:      1000,
		ActualQPS:         qps,
		RequestedSeconds:  10,
		ActualSeconds:     10.001,
		Connections:       4,
		Count:             count,
		Errors:            errors,
		ResolutionSeconds: 10e-6,
		LatencySeconds: workload.Latency{
			Min: base * 0.5, Avg: base * 1.1, P50: base, P75: base * 1.2, P90: base * 1.5,
			P99: base * 3, P999: base * 6, Max: base * 10,
		},
		Histogram: []workload.Bucket{
			{Start: base * 0.5, End: base, Count: count / 2},
			{Start: base, End: base * 10, Count: count - count/2},
		},
	}
	if errors > 0 {
		w.ErrorsByKind = map[string]int64{"socket": errors / 2, "http-503": errors - errors/2}
	}
	return Repetition{
		Index:        index,
		StartedAt:    time.Date(2026, 11, 23, 10, 0, index*10, 0, time.UTC),
		Workload:     w,
		Error:        errMsg,
		PeakRSSBytes: map[string]int64{"client": 30 << 20, "server": 20<<20 + int64(index)<<20, "agents": 40 << 20},
		CPUSeconds: map[string]float64{
			"client": base * 2000, "server": base * 1500, "agents": 0.01, "proxies": base * 300, "softirq": base * 900,
		},
	}
}

func result(scenario, datapath, path string, reps ...Repetition) Result {
	return Result{
		Scenario:    scenario,
		Datapath:    datapath,
		Path:        path,
		Load:        LoadSpec{Protocol: "http", QPS: 1000, Connections: 4, DurationSeconds: 10},
		Repetitions: reps,
		Summary:     Summarize(reps),
	}
}

// fixture is the Report the golden files are made from.
func fixture() *Report {
	return &Report{
		SchemaVersion: SchemaVersion,
		Suite:         "quick",
		SuiteFile:     "scenarios/bench/quick.yaml",
		StartedAt:     time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC),
		FinishedAt:    time.Date(2026, 11, 23, 10, 3, 12, 400e6, time.UTC),
		Environment: Environment{
			Kernel:          "6.1.0-28-amd64",
			Hostname:        "bench-1",
			CPUModel:        "Intel(R) Xeon(R) CPU @ 2.20GHz",
			Cores:           2,
			GoVersion:       "go1.26.8",
			FastpathVersion: "v0.1.0",
			FastpathCommit:  "b60ae7b",
			Provider:        "netns",
			Datapaths:       []string{"none", "ebpf"},
		},
		Results: []Result{
			result("same-node", "none", "same-node",
				rep(1, 212e-6, 999.8, 10000, 0, ""),
				rep(2, 208e-6, 999.9, 10000, 0, ""),
				rep(3, 230e-6, 999.7, 10000, 0, "")),
			result("same-node", "ebpf", "same-node",
				rep(1, 221e-6, 999.8, 10000, 0, ""),
				rep(2, 219e-6, 999.6, 10000, 0, ""),
				rep(3, 1.31e-3, 640, 6400, 12, "12 of 6400 requests failed")),
			result("cross-node", "none", "cross-node",
				rep(1, 301e-6, 999.9, 10000, 0, ""),
				rep(2, 298e-6, 999.8, 10000, 0, ""),
				rep(3, 305e-6, 999.9, 10000, 0, "")),
			result("cross-node", "ebpf", "cross-node",
				rep(1, 312e-6, 999.9, 10000, 0, ""),
				rep(2, 309e-6, 999.7, 10000, 0, ""),
				rep(3, 333e-6, 999.8, 10000, 0, "")),
		},
		Propagation: []Propagation{
			propagation("ebpf", "single", 1, []float64{3.1e-3, 2.9e-3, 4.2e-3, 3.3e-3}, []float64{3.4e-3, 3.0e-3, 4.9e-3, 3.5e-3}),
			propagation("ebpf", "bulk", 1000, []float64{0.21, 0.19, 0.23}, []float64{0.22, 0.2, 0.25}),
		},
	}
}

func propagation(dp, change string, n int, ack, enforced []float64) Propagation {
	p := Propagation{Datapath: dp, Change: change, Policies: n, BasePolicies: 100, AckSeconds: ack, EnforcedSeconds: enforced, ProbeIntervalSeconds: 1e-3}
	if change == "bulk" {
		p.Errors = []string{"change 4: not enforced within 30s"}
	}
	p.Summary = SummarizePropagation(p)
	return p
}

func TestPercentile(t *testing.T) {
	vs := []float64{5, 1, 4, 2, 3}
	for _, tc := range []struct{ q, want float64 }{{50, 3}, {99, 5}, {100, 5}, {1, 1}, {20, 1}, {21, 2}} {
		if got := Percentile(vs, tc.q); got != tc.want {
			t.Errorf("p%g = %g, want %g", tc.q, got, tc.want)
		}
	}
	if vs[0] != 5 {
		t.Error("Percentile sorted its argument")
	}
	if Percentile(nil, 50) != 0 {
		t.Error("p50 of nothing")
	}
}

func TestGolden(t *testing.T) {
	tests := []struct {
		golden string
		write  func(r *Report, b *bytes.Buffer) error
	}{
		{"report.golden.json", func(r *Report, b *bytes.Buffer) error { return r.WriteJSON(b) }},
		{"report.golden.md", func(r *Report, b *bytes.Buffer) error { return r.WriteMarkdown(b) }},
		{"report.golden.html", func(r *Report, b *bytes.Buffer) error { return r.WriteHTML(b) }},
	}
	for _, tt := range tests {
		t.Run(tt.golden, func(t *testing.T) {
			var got bytes.Buffer
			if err := tt.write(fixture(), &got); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", tt.golden)
			if *update {
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

func TestWriteDirReadJSON(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run")
	r := fixture()
	if err := WriteDir(dir, r); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{JSONFile, MarkdownFile, HTMLFile} {
		t.Run(name, func(t *testing.T) {
			got, err := os.ReadFile(filepath.Join(dir, name))
			if err != nil {
				t.Fatal(err)
			}
			var want bytes.Buffer
			switch name {
			case JSONFile:
				err = r.WriteJSON(&want)
			case MarkdownFile:
				err = r.WriteMarkdown(&want)
			default:
				err = r.WriteHTML(&want)
			}
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want.Bytes()) {
				t.Errorf("%s differs from what the writer produces", name)
			}
		})
	}
	t.Run("read back", func(t *testing.T) {
		back, err := ReadJSON(filepath.Join(dir, JSONFile))
		if err != nil {
			t.Fatal(err)
		}
		var a, b bytes.Buffer
		if err := r.WriteJSON(&a); err != nil {
			t.Fatal(err)
		}
		if err := back.WriteJSON(&b); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a.Bytes(), b.Bytes()) {
			t.Errorf("read back report differs:\n%s", b.String())
		}
		if !back.StartedAt.Equal(r.StartedAt) || back.Results[1].Repetitions[2].Error != "12 of 6400 requests failed" {
			t.Errorf("fields lost: %+v", back)
		}
	})
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 3 {
		t.Errorf("dir holds %d entries, want report.json, report.md and report.html only", len(entries))
	}
}

func TestReadJSONRejects(t *testing.T) {
	tests := []struct {
		name string
		data string
		want []string
	}{
		{"other version", `{"schemaVersion": 2, "suite": "x"}`, []string{"report schema version 2", "reads schema version 1"}},
		{"no version", `{"suite": "x"}`, []string{"no schemaVersion"}},
		{"not json", `schemaVersion: 1`, []string{"invalid character"}},
		{"wrong type", `{"schemaVersion": 1, "results": {}}`, []string{"cannot unmarshal"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "report.json")
			if err := os.WriteFile(path, []byte(tt.data), 0o644); err != nil {
				t.Fatal(err)
			}
			r, err := ReadJSON(path)
			if err == nil {
				t.Fatalf("accepted: %+v", r)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) || !strings.Contains(err.Error(), path) {
					t.Errorf("error %q does not name the file and %q", err, w)
				}
			}
		})
	}
	if _, err := ReadJSON(filepath.Join(t.TempDir(), "missing.json")); err == nil {
		t.Error("a missing file was read")
	}
}

func TestSummarize(t *testing.T) {
	tests := []struct {
		name string
		reps []Repetition
		want Summary
	}{
		{"none", nil, Summary{}},
		{
			"odd",
			[]Repetition{rep(1, 3e-4, 900, 10, 0, ""), rep(2, 1e-4, 1000, 10, 0, ""), rep(3, 2e-4, 800, 10, 0, "")},
			Summary{Repetitions: 3, ActualQPS: 900, Count: 30, LatencySeconds: rep(0, 2e-4, 0, 0, 0, "").Workload.LatencySeconds},
		},
		{
			"even, mean of the middle two",
			[]Repetition{rep(1, 4e-4, 900, 10, 0, ""), rep(2, 1e-4, 1000, 10, 0, ""), rep(3, 2e-4, 800, 10, 0, ""), rep(4, 8e-4, 700, 10, 0, "")},
			Summary{Repetitions: 4, ActualQPS: 850, Count: 40, LatencySeconds: rep(0, 3e-4, 0, 0, 0, "").Workload.LatencySeconds},
		},
		{
			"failed repetitions count errors but not in medians",
			[]Repetition{rep(1, 1e-4, 1000, 10, 0, ""), rep(2, 9, 3, 5, 4, "4 of 5 requests failed"), rep(3, 1e-4, 1000, 10, 1, "")},
			Summary{Repetitions: 2, ActualQPS: 1000, Count: 25, Errors: 5, LatencySeconds: rep(0, 1e-4, 0, 0, 0, "").Workload.LatencySeconds},
		},
		{
			"all failed",
			[]Repetition{rep(1, 1e-4, 1000, 10, 10, "boom"), rep(2, 1e-4, 1000, 0, 0, "warm-up: refused")},
			Summary{Repetitions: 0, Count: 10, Errors: 10},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Summarize(tt.reps)
			if !closeSummary(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func closeSummary(a, b Summary) bool {
	near := func(x, y float64) bool {
		d := x - y
		if d < 0 {
			d = -d
		}
		return d <= 1e-12+1e-9*max(x, y)
	}
	la, lb := a.LatencySeconds, b.LatencySeconds
	return a.Repetitions == b.Repetitions && a.Count == b.Count && a.Errors == b.Errors && near(a.ActualQPS, b.ActualQPS) &&
		near(la.Min, lb.Min) && near(la.Avg, lb.Avg) && near(la.P50, lb.P50) && near(la.P75, lb.P75) &&
		near(la.P90, lb.P90) && near(la.P99, lb.P99) && near(la.P999, lb.P999) && near(la.Max, lb.Max)
}

func TestFormatSeconds(t *testing.T) {
	tests := []struct {
		in   float64
		want string
	}{
		{0, "0"},
		{850e-9, "850ns"},
		{1e-6, "1.00µs"},
		{21.24e-6, "21.2µs"},
		{212.4e-6, "212µs"},
		{999.7e-6, "1.00ms"},
		{1.312e-3, "1.31ms"},
		{1.3e-3, "1.30ms"},
		{10.06e-3, "10.1ms"},
		{999.96e-3, "1.00s"},
		{2, "2.00s"},
		{1500, "1500s"},
		{0.4e-9, "0.400ns"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			if got := FormatSeconds(tt.in); got != tt.want {
				t.Errorf("FormatSeconds(%g) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestWriteMarkdownRelative(t *testing.T) {
	tests := []struct {
		name    string
		results []Result
		want    string
		notWant string
	}{
		{
			name: "no baseline",
			results: []Result{
				result("s", "ebpf", "", rep(1, 1e-4, 100, 10, 0, "")),
			},
			notWant: "Relative to",
		},
		{
			name: "baseline failed",
			results: []Result{
				result("s", "none", "", rep(1, 1e-4, 100, 10, 10, "boom")),
				result("s", "ebpf", "", rep(1, 1e-4, 100, 10, 0, "")),
			},
			want: "Relative to `none`: `ebpf`: no completed repetitions to compare",
		},
		{
			name: "ratios",
			results: []Result{
				result("s", "none", "", rep(1, 1e-4, 100, 10, 0, "")),
				result("s", "ebpf", "", rep(1, 1.5e-4, 100, 10, 0, "")),
				result("s", "other", "", rep(1, 0.5e-4, 100, 10, 0, "")),
			},
			want: "Relative to `none`: `ebpf`: p50 ×1.50, p99 ×1.50; `other`: p50 ×0.50, p99 ×0.50\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			r := &Report{SchemaVersion: SchemaVersion, Suite: "t", Results: tt.results}
			if err := r.WriteMarkdown(&b); err != nil {
				t.Fatal(err)
			}
			if tt.want != "" && !strings.Contains(b.String(), tt.want) {
				t.Errorf("missing %q in:\n%s", tt.want, b.String())
			}
			if tt.notWant != "" && strings.Contains(b.String(), tt.notWant) {
				t.Errorf("unexpected %q in:\n%s", tt.notWant, b.String())
			}
		})
	}
}

// TestKubeProxyInEnvironment: a kind run says which kube-proxy each
// datapath ran with.
func TestKubeProxyInEnvironment(t *testing.T) {
	r := &Report{SchemaVersion: SchemaVersion, Suite: "t", Environment: Environment{Provider: "kind",
		IptablesAgentImage: "fastpath/agent-baselines:abc",
		KubeProxy:          []KubeProxyInfo{{Datapath: "ebpf", Mode: "none"}, {Datapath: "iptables", Mode: "iptables", Image: "registry.k8s.io/kube-proxy:v1.35.0"}}}}
	var b bytes.Buffer
	if err := r.WriteMarkdown(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"- kube-proxy: `ebpf` none; `iptables` iptables mode (registry.k8s.io/kube-proxy:v1.35.0)\n",
		"- baselines agent image: `fastpath/agent-baselines:abc`\n",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("markdown lacks %q:\n%s", want, b.String())
		}
	}
	b.Reset()
	if err := r.WriteHTML(&b); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "kube-proxy with iptables") || !strings.Contains(b.String(), "iptables mode (registry.k8s.io/kube-proxy:v1.35.0)") {
		t.Errorf("HTML lacks the kube-proxy rows")
	}
}
