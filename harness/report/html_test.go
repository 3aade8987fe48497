package report

import (
	"bytes"
	"encoding/xml"
	"io"
	"math"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/fastpath-bench/fastpath/harness/workload"
)

// degenerate is a report of everything that can go wrong: no repetitions,
// only failed ones, no requests, a single bucket, zero CPU, a bucket from
// zero, and a scenario and datapath whose names need escaping.
func degenerate() *Report {
	failed := rep(1, 2e-4, 10, 100, 100, "100 of 100 requests failed")
	empty := Repetition{Index: 1, Workload: workload.Result{}, CPUSeconds: map[string]float64{"client": 0.1}}
	single := Repetition{Index: 1, Workload: workload.Result{
		Count:          5,
		ActualQPS:      0.5,
		LatencySeconds: workload.Latency{Min: 1e-4, Avg: 1e-4, P50: 1e-4, P75: 1e-4, P90: 1e-4, P99: 1e-4, P999: 1e-4, Max: 1e-4},
		Histogram:      []workload.Bucket{{Start: 1e-4, End: 1e-4, Count: 5}},
	}, CPUSeconds: map[string]float64{"client": 0, "server": 0, "agents": 0, "proxies": 0, "softirq": 0}}
	fromZero := Repetition{Index: 1, Workload: workload.Result{
		Count:     3,
		Histogram: []workload.Bucket{{Start: 0, End: 0, Count: 1}, {Start: 0, End: 1e-3, Count: 2}},
	}, CPUSeconds: map[string]float64{"softirq": -0.001}}
	return &Report{
		SchemaVersion: SchemaVersion,
		Results: []Result{
			result("nothing", "none", ""),
			result("nothing", "ebpf", "", failed, failed),
			result("zero", "none", "", empty),
			result("zero", "ebpf", "", single),
			result("zero", "third", "", fromZero),
			result(`<script>x("1")</script>`, `a&b"<`, "", rep(1, 1e-4, 100, 10, 0, "")),
		},
	}
}

// writeHTML returns r's page.
func writeHTML(t *testing.T, r *Report) string {
	t.Helper()
	var b bytes.Buffer
	if err := r.WriteHTML(&b); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

var svgRE = regexp.MustCompile(`(?s)<svg .*?</svg>`)

// checkSVGs fails when a chart of page is not well-formed XML or holds a
// number that is not one.
func checkSVGs(t *testing.T, page string) {
	t.Helper()
	svgs := svgRE.FindAllString(page, -1)
	if len(svgs) == 0 {
		t.Error("no chart")
	}
	for _, s := range svgs {
		checkXML(t, s)
	}
	for _, bad := range []string{"NaN", "Inf"} {
		if strings.Contains(page, bad) {
			t.Errorf("page contains %q", bad)
		}
	}
}

func checkXML(t *testing.T, s string) {
	t.Helper()
	d := xml.NewDecoder(strings.NewReader(s))
	for {
		_, err := d.Token()
		if err == io.EOF {
			return
		}
		if err != nil {
			t.Errorf("chart is not well-formed: %v\n%s", err, s)
			return
		}
	}
}

func TestWriteHTMLDegenerate(t *testing.T) {
	page := writeHTML(t, degenerate())
	checkSVGs(t, page)
	for _, want := range []string{
		"no completed repetitions",
		"none (no data)",
		"&lt;script&gt;x(&#34;1&#34;)&lt;/script&gt;",
		"a&amp;b&#34;&lt;",
		"fastpath benchmark: (unnamed suite)",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if strings.Contains(page, "<script") || strings.Contains(page, `a&b"`) {
		t.Error("report text reached the page unescaped")
	}
	if n := strings.Count(page, "<svg "); n != 3*2+1+1 {
		t.Errorf("%d charts, want latency and CDF for 3 scenarios, CPU for 2", n)
	}

	empty := writeHTML(t, &Report{SchemaVersion: SchemaVersion})
	if !strings.Contains(empty, "No results.") || strings.Contains(empty, "<svg") {
		t.Errorf("report without results:\n%s", empty)
	}
}

func TestWriteHTMLSelfContained(t *testing.T) {
	page := writeHTML(t, fixture())
	checkSVGs(t, page)
	rest := strings.ReplaceAll(page, `xmlns="http://www.w3.org/2000/svg"`, "")
	for _, bad := range []string{"<script", "<link", "<img", "src=", "url(", "@import", "http://", "https://"} {
		if strings.Contains(rest, bad) {
			t.Errorf("page contains %q: not self-contained", bad)
		}
	}
	// 2 scenarios × (latency, CDF, CPU), 2 kinds of change × (ack,
	// enforced).
	if n := strings.Count(page, "<svg "); n != 10 {
		t.Errorf("%d charts, want 10", n)
	}
	// Same colour for a datapath in the bars, the CDF, the tables.
	for dp, color := range map[string]string{"none": datapathPalette[0], "ebpf": datapathPalette[1]} {
		for _, want := range []string{
			`fill="` + color + `"><title>` + dp + ` p99:`,
			`stroke="` + color + `" stroke-width="2" stroke-linejoin="round"><title>` + dp + `</title>`,
			`style="background: ` + color + `"></span><code>` + dp + `</code>`,
		} {
			if c := strings.Count(page, want); c < 2 {
				t.Errorf("%q appears %d times, want once per scenario", want, c)
			}
		}
	}
	// Each component's segment, in CPUComponents order.
	last := -1
	for _, comp := range CPUComponents {
		i := strings.Index(page, "<title>none "+comp+": ")
		if i < last {
			t.Errorf("component %s out of order or missing", comp)
		}
		last = i
	}
}

func TestDatapathColors(t *testing.T) {
	r := &Report{
		Environment: Environment{Datapaths: []string{"ebpf", "none"}},
		Results:     []Result{{Datapath: "none"}, {Datapath: "extra"}, {Datapath: "ebpf"}},
	}
	got := datapathColors(r)
	want := map[string]string{"ebpf": datapathPalette[0], "none": datapathPalette[1], "extra": datapathPalette[2]}
	if len(got) != len(want) {
		t.Fatalf("got %v", got)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %s, want %s", k, got[k], v)
		}
	}
}

func TestHistogramCDF(t *testing.T) {
	reps := []Repetition{
		{Workload: workload.Result{Histogram: []workload.Bucket{{Start: 1, End: 2, Count: 1}, {Start: 2, End: 4, Count: 1}}}},
		{Workload: workload.Result{Histogram: []workload.Bucket{{Start: 0.5, End: 2, Count: 2}, {Start: 4, End: 8, Count: 0}}}},
		{Error: "failed", Workload: workload.Result{Histogram: []workload.Bucket{{Start: 0.1, End: 100, Count: 50}}}},
	}
	got := histogramCDF(reps)
	want := []point{{0.5, 0}, {2, 0.75}, {4, 1}}
	if !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	if got := histogramCDF(reps[2:]); got != nil {
		t.Errorf("failed repetitions only: %v", got)
	}
	if got := histogramCDF([]Repetition{{}}); got != nil {
		t.Errorf("no requests: %v", got)
	}
}

func TestSampleCDF(t *testing.T) {
	got := sampleCDF([]float64{3, 1, math.NaN(), 3, 2, math.Inf(1)})
	want := []point{{1, 0}, {1, 0.25}, {2, 0.25}, {2, 0.5}, {3, 0.5}, {3, 1}}
	if !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	if got := sampleCDF([]float64{math.NaN()}); got != nil {
		t.Errorf("no finite sample: %v", got)
	}
}

func TestEmpiricalCDFChart(t *testing.T) {
	samples := map[string][]float64{
		"ebpf":     {0.012, 0.015, 0.011, 0.020, 0.013},
		"iptables": {0.150, 0.210, 0.180},
		"none":     {},
		"one":      {0.005},
		"weird":    {0, -1, math.NaN(), math.Inf(-1), 0.002},
	}
	color := func(name string) string { return map[string]string{"ebpf": "#111111"}[name] }
	a := empiricalCDFChart("propagation", samples, color, "propagation time")
	b := empiricalCDFChart("propagation", samples, color, "propagation time")
	if a != b {
		t.Error("output depends on map order")
	}
	s := string(a)
	checkSVGs(t, s)
	// A line per series with samples, in name order; the empty one in the
	// legend only.
	var order []int
	for _, name := range []string{"ebpf", "iptables", "one", "weird"} {
		i := strings.Index(s, "<title>"+name+"</title></path>")
		if i < 0 {
			t.Errorf("no line for %s", name)
		}
		order = append(order, i)
	}
	if !slices.IsSorted(order) {
		t.Errorf("lines not in name order: %v", order)
	}
	if !strings.Contains(s, "none (no data)") || strings.Contains(s, "<title>none</title>") {
		t.Error("empty series not shown as no data")
	}
	if !strings.Contains(s, `stroke="#111111"`) {
		t.Error("colour function not used")
	}
	for _, tick := range []string{">10ms<", ">100ms<"} {
		if !strings.Contains(s, tick) {
			t.Errorf("no tick %s", tick)
		}
	}

	if !strings.Contains(s, ">propagation time<") {
		t.Error("no x axis label")
	}

	none := string(empiricalCDFChart("nothing", nil, nil, "t"))
	checkSVGs(t, none)
	if !strings.Contains(none, "no completed repetitions") {
		t.Errorf("empty chart:\n%s", none)
	}
}

func TestChartsSurviveBadNumbers(t *testing.T) {
	nan, inf := math.NaN(), math.Inf(1)
	charts := []string{
		string(barChart("b", []string{"a", "b"}, []barSeries{{Name: "x", Color: "#000", Values: []float64{nan, inf}}, {Name: "y", Color: "#111", Values: []float64{0, -1}}}, formatTickSeconds, "s")),
		string(barChart("b", nil, nil, formatTickSeconds, "s")),
		string(lineChart("l", []lineSeries{{Name: "x", Points: []point{{nan, 0}, {1, inf}, {2, 3}}}}, lineOptions{XFormat: formatTickNumber, YFormat: formatTickNumber})),
		string(lineChart("l", []lineSeries{{Name: "x", Points: []point{{5, 5}}}}, lineOptions{XFormat: formatTickNumber, YFormat: formatTickNumber, YTicks: []float64{1, 1}})),
		string(cdfChart("c", []lineSeries{{Name: "x", Points: []point{{0, 0}, {-1, 1}}}}, "t")),
		string(stackedBarChart("s", []string{"p"}, []string{"#000"}, []stackRow{{Name: "x", Values: []float64{nan}}, {Name: "y"}}, formatTickNumber, formatOneDecimal, "v")),
	}
	for _, c := range charts {
		checkSVGs(t, c)
	}
}

func TestTicks(t *testing.T) {
	tests := []struct {
		name string
		got  []float64
		want []float64
	}{
		{"linear", linearTicks(2.2e-3, 5), []float64{0, 5e-4, 1e-3, 1.5e-3, 2e-3, 2.5e-3}},
		{"linear none", linearTicks(0, 5), []float64{0, 0.2, 0.4, 0.6000000000000001, 0.8, 1}},
		{"log 1 2 5", logTicks(9e-5, 3e-3), []float64{1e-4, 2e-4, 5e-4, 1e-3, 2e-3}},
		{"log decades", logTicks(1e-6, 2), []float64{1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1}},
		{"log narrow", logTicks(1.5e-4, 4.5e-4), []float64{2e-4, 3e-4, 4e-4}},
		{"log very narrow", logTicks(1.01e-4, 1.05e-4), []float64{1.01e-4, 1.02e-4, 1.03e-4, 1.04e-4, 1.05e-4}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if len(tt.got) != len(tt.want) {
				t.Fatalf("got %v, want %v", tt.got, tt.want)
			}
			for i := range tt.got {
				if math.Abs(tt.got[i]-tt.want[i]) > 1e-9*tt.want[len(tt.want)-1] {
					t.Fatalf("got %v, want %v", tt.got, tt.want)
				}
			}
		})
	}
	for in, want := range map[float64]string{0: "0", 1.5e-3: "1.5ms", 2e-4: "200µs", 1: "1s", 2.5e-6: "2.5µs"} {
		if got := formatTickSeconds(in); got != want {
			t.Errorf("formatTickSeconds(%g) = %q, want %q", in, got, want)
		}
	}
}
