package report

import (
	"bufio"
	"cmp"
	"fmt"
	"html/template"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/fastpath-bench/fastpath/harness/workload"
)

// htmlPage is a self-contained page: inline CSS and inline SVG, no
// scripts, no external assets. The charts are template.HTML made by the
// chart functions below, which escape every text they draw.
var htmlPage = template.Must(template.New("report").Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>fastpath benchmark: {{.Title}}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 75em; }
table { border-collapse: collapse; margin: 0.5em 0 1em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; }
th { background: #f0f0f0; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.notes { color: #555; font-size: 0.9em; }
.swatch { display: inline-block; width: 0.75em; height: 0.75em; border-radius: 2px; margin-right: 0.35em; }
.charts { display: flex; flex-wrap: wrap; gap: 16px; margin: 0.5em 0; }
figure { margin: 0; }
figcaption { font-size: 0.9em; font-weight: 600; margin-bottom: 0.25em; }
svg { display: block; max-width: 100%; height: auto; background: #fff; }
svg text { font-family: system-ui, sans-serif; font-size: 12px; fill: #222; }
svg text.val { font-size: 10px; fill: #444; }
svg text.in { font-size: 10px; }
svg text.light { fill: #fff; }
svg text.msg { fill: #777; }
svg .ax { stroke: #666; stroke-width: 1; }
svg .grid { stroke: #e4e4e4; stroke-width: 1; }
svg .frame { fill: none; stroke: #ddd; }
</style>
</head>
<body>
<h1>fastpath benchmark: {{.Title}}</h1>
<table>
{{- range .Env}}
<tr><th>{{.Label}}</th><td>{{.Value}}</td></tr>
{{- end}}
<tr><th>datapaths</th><td>{{range $i, $d := .Datapaths}}{{if $i}}, {{end}}<span class="swatch" style="{{$d.Style}}"></span><code>{{$d.Name}}</code>{{else}}–{{end}}</td></tr>
</table>
<p class="notes">Latencies are medians across completed repetitions of each repetition's percentile;
QPS is the median actual rate over the requested one; errors and requests are summed over all repetitions.
The latency CDF merges the histograms of the completed repetitions.</p>
{{- if .Scenarios}}
<p>Scenarios: {{range $i, $s := .Scenarios}}{{if $i}}, {{end}}<a href="#{{$s.ID}}">{{$s.Name}}</a>{{end}}</p>
{{- else}}
<p>No results.</p>
{{- end}}
{{- range .Scenarios}}
<section id="{{.ID}}">
<h2>{{.Name}}</h2>
<p>{{.Load}}</p>
<div class="charts">
<figure>
<figcaption>Latency percentiles (median across completed repetitions)</figcaption>
{{.Latency}}
</figure>
<figure>
<figcaption>Latency CDF (completed repetitions merged; log scale)</figcaption>
{{.CDF}}
</figure>
{{- if .CPU}}
<figure>
<figcaption>CPU milliseconds per 1,000 requests by component (median across repetitions)</figcaption>
{{.CPU}}
</figure>
{{- end}}
</div>
<table>
<tr><th>datapath</th><th>p50</th><th>p90</th><th>p99</th><th>p99.9</th><th>max</th><th>QPS actual/requested</th><th>errors</th><th>reps</th></tr>
{{- range .Rows}}
<tr><td><span class="swatch" style="{{.Style}}"></span><code>{{.Datapath}}</code></td>{{range .Cells}}<td class="num">{{.}}</td>{{end}}</tr>
{{- end}}
</table>
{{- if .Failed}}
<p>Failed repetitions (not in the medians):</p>
<ul>
{{- range .Failed}}
<li><code>{{.Datapath}}</code> repetition {{.Index}}: {{.Error}}</li>
{{- end}}
</ul>
{{- end}}
{{- if .Relative}}
<p>Relative to <code>{{.Baseline}}</code>: {{range $i, $r := .Relative}}{{if $i}}; {{end}}<code>{{$r.Datapath}}</code>: {{$r.Text}}{{end}}</p>
{{- end}}
{{- if .CPURows}}
<p>CPU milliseconds per 1,000 requests (median across repetitions):</p>
<table>
<tr><th>datapath</th>{{range .CPUHead}}<th>{{.}}</th>{{end}}</tr>
{{- range .CPURows}}
<tr><td><span class="swatch" style="{{.Style}}"></span><code>{{.Datapath}}</code></td>{{range .Cells}}<td class="num">{{.}}</td>{{end}}</tr>
{{- end}}
</table>
{{- end}}
</section>
{{- end}}
{{- if .Propagation}}
<section id="propagation">
<h2>Policy propagation</h2>
<p class="notes">Time from writing a change of the desired state to every agent acknowledging it programmed (ack),
and to the first probe connection from which on every probe saw the new verdict (enforced).</p>
{{- range .Propagation}}
<h3>{{.Title}}</h3>
<div class="charts">
<figure>
<figcaption>Acknowledged (CDF over changes; log scale)</figcaption>
{{.Ack}}
</figure>
<figure>
<figcaption>Enforced (CDF over changes; log scale)</figcaption>
{{.Enforced}}
</figure>
</div>
{{- end}}
<table>
<tr><th>datapath</th><th>change</th><th>base policies</th><th>changes</th><th>ack p50</th><th>ack p99</th><th>ack max</th><th>enforced p50</th><th>enforced p99</th><th>enforced max</th><th>program p50</th><th>probe every</th><th>failed</th></tr>
{{- range .PropagationRows}}
<tr><td><span class="swatch" style="{{.Style}}"></span><code>{{.Datapath}}</code></td>{{range .Cells}}<td class="num">{{.}}</td>{{end}}</tr>
{{- end}}
</table>
</section>
{{- end}}
{{- if .PartitionRows}}
<section id="partition">
<h2>Partition</h2>
<p class="notes">A cluster's control plane (etcd) stopped at 0 s while the client held established connections to a
server of another cluster and opened new ones; times are from the cut (recovered: from the restart).</p>
<table>
<tr><th>datapath</th><th>client → server</th><th>cut</th><th>lease TTL</th><th>new: last worked</th><th>new: failed from</th><th>new ok / tried</th><th>established kept</th><th>recovered after</th></tr>
{{- range .PartitionRows}}
<tr><td><span class="swatch" style="{{.Style}}"></span><code>{{.Datapath}}</code></td>{{range .Cells}}<td class="num">{{.}}</td>{{end}}</tr>
{{- end}}
</table>
</section>
{{- end}}
</body>
</html>
`))

// WriteHTML writes r as one self-contained HTML page (inline CSS and SVG,
// no scripts or external assets): the environment, then per scenario a
// latency percentile bar chart, a latency CDF from the merged histograms of
// the completed repetitions, CPU per component when measured, and the
// figures of WriteMarkdown. Each datapath keeps its colour in every chart.
// The output depends only on r.
func (r *Report) WriteHTML(w io.Writer) error {
	b := bufio.NewWriter(w)
	if err := htmlPage.Execute(b, r.htmlView()); err != nil {
		return fmt.Errorf("write report html: %w", err)
	}
	if err := b.Flush(); err != nil {
		return fmt.Errorf("write report html: %w", err)
	}
	return nil
}

type htmlView struct {
	Title           string
	Env             []htmlEnvRow
	Datapaths       []htmlDatapath
	Scenarios       []htmlScenario
	Propagation     []htmlPropagation
	PropagationRows []htmlRow
	PartitionRows   []htmlRow
}

type htmlPropagation struct {
	Title         string
	Ack, Enforced template.HTML
}

type htmlEnvRow struct{ Label, Value string }

type htmlDatapath struct {
	Name  string
	Style template.CSS
}

type htmlScenario struct {
	ID, Name, Load string
	Latency, CDF   template.HTML
	CPU            template.HTML
	Rows           []htmlRow
	Failed         []htmlFailed
	Baseline       string
	Relative       []htmlRelative
	CPUHead        []string
	CPURows        []htmlRow
}

type htmlRow struct {
	Datapath string
	Style    template.CSS
	Cells    []string
}

type htmlFailed struct {
	Datapath string
	Index    int
	Error    string
}

type htmlRelative struct{ Datapath, Text string }

func (r *Report) htmlView() htmlView {
	v := htmlView{Title: r.Suite}
	if v.Title == "" {
		v.Title = "(unnamed suite)"
	}
	env := r.Environment
	dash := func(s string) string {
		if s == "" {
			return "–"
		}
		return s
	}
	started, took := "", ""
	if !r.StartedAt.IsZero() {
		started = r.StartedAt.UTC().Format("2006-01-02 15:04:05 MST")
		if !r.FinishedAt.IsZero() && !r.FinishedAt.Before(r.StartedAt) {
			took = r.FinishedAt.Sub(r.StartedAt).Round(time.Second).String()
		}
	}
	cores := ""
	if env.Cores > 0 {
		cores = strconv.Itoa(env.Cores)
	}
	for _, row := range []htmlEnvRow{
		{"suite", v.Title},
		{"suite file", r.SuiteFile},
		{"started", started},
		{"took", took},
		{"host", env.Hostname},
		{"kernel", env.Kernel},
		{"CPU model", env.CPUModel},
		{"cores", cores},
		{"Go", env.GoVersion},
		{"fastpath version", env.FastpathVersion},
		{"fastpath commit", env.FastpathCommit},
		{"provider", env.Provider},
	} {
		v.Env = append(v.Env, htmlEnvRow{row.Label, dash(row.Value)})
	}
	for _, row := range []struct{ Label, Value string }{
		{"Kubernetes", env.Kubernetes}, {"node image", env.NodeImage}, {"agent image", env.AgentImage},
		{"baselines agent image", env.IptablesAgentImage},
	} {
		if row.Value != "" {
			v.Env = append(v.Env, htmlEnvRow{row.Label, row.Value})
		}
	}
	for _, k := range env.KubeProxy {
		v.Env = append(v.Env, htmlEnvRow{"kube-proxy with " + k.Datapath, k.Summary()})
	}
	for _, s := range env.SkippedDatapaths {
		v.Env = append(v.Env, htmlEnvRow{"skipped", s})
	}
	for _, a := range env.Agents {
		if s := a.Summary(); s != "" {
			v.Env = append(v.Env, htmlEnvRow{"agent " + a.Datapath, s})
		}
	}
	colors := datapathColors(r)
	for _, dp := range env.Datapaths {
		v.Datapaths = append(v.Datapaths, htmlDatapath{dp, swatchStyle(colors[dp])})
	}
	for i, group := range byScenario(r.Results) {
		v.Scenarios = append(v.Scenarios, scenarioHTML(i, group, colors))
	}
	v.Propagation, v.PropagationRows = propagationHTML(r.Propagation, colors)
	for _, p := range r.Partition {
		v.PartitionRows = append(v.PartitionRows, htmlRow{Datapath: p.Datapath, Style: swatchStyle(colors[p.Datapath]), Cells: p.cells()})
	}
	return v
}

// propagationHTML draws, per kind of change, the ack and enforced
// distributions of every datapath, and the summary table.
func propagationHTML(ps []Propagation, colors map[string]string) ([]htmlPropagation, []htmlRow) {
	var kinds []string
	byKind := map[string][]Propagation{}
	for _, p := range ps {
		k := p.Label()
		if _, ok := byKind[k]; !ok {
			kinds = append(kinds, k)
		}
		byKind[k] = append(byKind[k], p)
	}
	color := func(name string) string {
		if c, ok := colors[name]; ok {
			return c
		}
		return datapathPalette[0]
	}
	var out []htmlPropagation
	for _, k := range kinds {
		ack, enf := map[string][]float64{}, map[string][]float64{}
		for _, p := range byKind[k] {
			ack[p.Datapath] = p.AckSeconds
			enf[p.Datapath] = p.EnforcedSeconds
		}
		out = append(out, htmlPropagation{
			Title:    "Change: " + k,
			Ack:      empiricalCDFChart("acknowledged: "+k, ack, color, "seconds from the change"),
			Enforced: empiricalCDFChart("enforced: "+k, enf, color, "seconds from the change"),
		})
	}
	var rows []htmlRow
	for _, p := range ps {
		rows = append(rows, htmlRow{Datapath: p.Datapath, Style: swatchStyle(color(p.Datapath)), Cells: p.summaryCells()})
	}
	return out, rows
}

// datapathPalette colours datapaths; componentPalette colours CPU
// components, and keeps clear of the datapath colours.
var (
	datapathPalette  = []string{"#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#b07aa1", "#76b7b2", "#edc948", "#9c755f", "#ff9da7", "#bab0ac"}
	componentPalette = []string{"#263238", "#546e7a", "#90a4ae", "#b0bec5", "#cfd8dc"}
)

// datapathColors gives each datapath of r its colour: the environment's
// datapaths in order, then those only found in the results, in order of
// appearance.
func datapathColors(r *Report) map[string]string {
	m := map[string]string{}
	add := func(dp string) {
		if _, ok := m[dp]; !ok {
			m[dp] = datapathPalette[len(m)%len(datapathPalette)]
		}
	}
	for _, dp := range r.Environment.Datapaths {
		add(dp)
	}
	for _, res := range r.Results {
		add(res.Datapath)
	}
	return m
}

func swatchStyle(color string) template.CSS {
	return template.CSS("background: " + color)
}

func scenarioHTML(i int, results []Result, colors map[string]string) htmlScenario {
	first := results[0]
	sc := htmlScenario{
		ID:   "scenario-" + strconv.Itoa(i+1),
		Name: first.Scenario,
		Load: describeLoad(first.Path, first.Load) + ".",
	}
	var (
		bars  []barSeries
		lines []lineSeries
		stack []stackRow
		cpu   bool
	)
	for _, res := range results {
		color := colors[res.Datapath]
		s := res.Summary
		b := barSeries{Name: res.Datapath, Color: color}
		cells := []string{"–", "–", "–", "–", "–", "–"}
		if s.Repetitions > 0 {
			l := s.LatencySeconds
			b.Values = []float64{l.P50, l.P90, l.P99, l.P999}
			for i, v := range []float64{l.P50, l.P90, l.P99, l.P999, l.Max} {
				cells[i] = FormatSeconds(v)
			}
			cells[5] = strconv.FormatFloat(s.ActualQPS, 'f', 0, 64)
		}
		requested := "max"
		if res.Load.QPS > 0 {
			requested = strconv.FormatFloat(res.Load.QPS, 'f', -1, 64)
		}
		cells[5] += "/" + requested
		cells = append(cells, formatErrors(s.Errors, s.Count), fmt.Sprintf("%d/%d", s.Repetitions, len(res.Repetitions)))
		sc.Rows = append(sc.Rows, htmlRow{res.Datapath, swatchStyle(color), cells})
		bars = append(bars, b)
		lines = append(lines, lineSeries{Name: res.Datapath, Color: color, Points: histogramCDF(res.Repetitions)})

		row := stackRow{Name: res.Datapath, Color: color}
		cpuCells := make([]string, len(CPUComponents))
		for j, comp := range CPUComponents {
			cpuCells[j] = "–"
			if v, ok := s.CPUMillisPer1k[comp]; ok {
				cpuCells[j] = fmt.Sprintf("%.1f", v)
				if row.Values == nil {
					row.Values = make([]float64, len(CPUComponents))
				}
				row.Values[j] = v
			}
		}
		cpu = cpu || len(s.CPUMillisPer1k) > 0
		stack = append(stack, row)
		sc.CPURows = append(sc.CPURows, htmlRow{res.Datapath, swatchStyle(color), cpuCells})
		for _, rep := range res.Repetitions {
			if rep.Error != "" {
				sc.Failed = append(sc.Failed, htmlFailed{res.Datapath, rep.Index, strings.Join(strings.Fields(rep.Error), " ")})
			}
		}
	}
	sc.Latency = barChart("Latency percentiles of "+first.Scenario, []string{"p50", "p90", "p99", "p99.9"}, bars, formatTickSeconds, "latency")
	sc.CDF = cdfChart("Latency CDF of "+first.Scenario, lines, "latency (log scale)")
	if cpu {
		sc.CPU = stackedBarChart("CPU per 1,000 requests of "+first.Scenario, CPUComponents, componentPalette, stack,
			formatTickNumber, formatOneDecimal, "CPU ms per 1,000 requests")
		sc.CPUHead = CPUComponents
	} else {
		sc.CPURows = nil
	}
	sc.Baseline, sc.Relative = relativeHTML(results)
	return sc
}

// relativeHTML is relative's content for the page: each datapath's p50 and
// p99 as a ratio to BaselineDatapath's.
func relativeHTML(results []Result) (string, []htmlRelative) {
	var base *Summary
	for i := range results {
		if results[i].Datapath == BaselineDatapath {
			base = &results[i].Summary
		}
	}
	if base == nil {
		return "", nil
	}
	var out []htmlRelative
	for _, res := range results {
		if res.Datapath == BaselineDatapath {
			continue
		}
		s := res.Summary
		text := "no completed repetitions to compare"
		if base.Repetitions > 0 && s.Repetitions > 0 {
			text = "p50 " + ratio(s.LatencySeconds.P50, base.LatencySeconds.P50) + ", p99 " + ratio(s.LatencySeconds.P99, base.LatencySeconds.P99)
		}
		out = append(out, htmlRelative{res.Datapath, text})
	}
	if len(out) == 0 {
		return "", nil
	}
	return BaselineDatapath, out
}

// point is a point of a line chart, in data units.
type point struct{ X, Y float64 }

// histogramCDF is the latency CDF of the completed repetitions (those
// without Error) of reps, their histograms merged: a point at the start of
// the lowest bucket at 0, then at each bucket's end the fraction of
// requests up to it. Nil when no completed repetition has a request.
func histogramCDF(reps []Repetition) []point {
	var buckets []workload.Bucket
	var total int64
	for _, rep := range reps {
		if rep.Error != "" {
			continue
		}
		for _, b := range rep.Workload.Histogram {
			if b.Count > 0 && finite(b.Start) && finite(b.End) {
				buckets = append(buckets, b)
				total += b.Count
			}
		}
	}
	if total == 0 {
		return nil
	}
	slices.SortStableFunc(buckets, func(a, b workload.Bucket) int {
		if a.End != b.End {
			return cmp.Compare(a.End, b.End)
		}
		return cmp.Compare(a.Start, b.Start)
	})
	start := buckets[0].Start
	for _, b := range buckets {
		start = min(start, b.Start)
	}
	pts := []point{{start, 0}}
	var cum int64
	for _, b := range buckets {
		cum += b.Count
		pts = appendStep(pts, point{b.End, float64(cum) / float64(total)})
	}
	return pts
}

// sampleCDF is the empirical CDF of samples as a step line: at each
// distinct value the fraction of samples below it, then the fraction up to
// it. Values that are NaN or infinite are left out. Nil without samples.
func sampleCDF(samples []float64) []point {
	vs := make([]float64, 0, len(samples))
	for _, v := range samples {
		if finite(v) {
			vs = append(vs, v)
		}
	}
	if len(vs) == 0 {
		return nil
	}
	slices.Sort(vs)
	n := float64(len(vs))
	var pts []point
	for i := 0; i < len(vs); {
		j := i
		for j < len(vs) && vs[j] == vs[i] {
			j++
		}
		pts = append(pts, point{vs[i], float64(i) / n}, point{vs[i], float64(j) / n})
		i = j
	}
	return pts
}

// appendStep appends p, replacing the last point when it has the same x
// (merged buckets that end alike).
func appendStep(pts []point, p point) []point {
	if n := len(pts); n > 1 && pts[n-1].X == p.X {
		pts[n-1] = p
		return pts
	}
	return append(pts, p)
}

// empiricalCDFChart draws, for each series of samples (seconds), its
// empirical CDF on a log-scale x axis named xLabel, y from 0 to 1. Series
// are drawn in name order, coloured by color(name) (nil: the datapath
// palette in name order). Samples of 0 or less are counted and drawn at the
// left edge. It is meant for distributions of durations per datapath, such
// as policy propagation times.
func empiricalCDFChart(label string, samples map[string][]float64, color func(string) string, xLabel string) template.HTML {
	names := make([]string, 0, len(samples))
	for name := range samples {
		names = append(names, name)
	}
	slices.Sort(names)
	lines := make([]lineSeries, len(names))
	for i, name := range names {
		c := datapathPalette[i%len(datapathPalette)]
		if color != nil {
			c = color(name)
		}
		lines[i] = lineSeries{Name: name, Color: c, Points: sampleCDF(samples[name])}
	}
	return cdfChart(label, lines, xLabel)
}

// cdfChart draws CDF lines on a log-scale x axis of seconds named xLabel,
// y from 0 to 1.
func cdfChart(label string, lines []lineSeries, xLabel string) template.HTML {
	return lineChart(label, lines, lineOptions{
		LogX:    true,
		XFormat: formatTickSeconds,
		XLabel:  xLabel,
		YTicks:  []float64{0, 0.25, 0.5, 0.75, 1},
		YFormat: formatTickNumber,
		YLabel:  "fraction ≤ x",
	})
}

// Chart geometry, in SVG user units (CSS pixels at full size). Two charts
// side by side and one wide chart fill the page's 75em.
const (
	chartWidth    = 540.0
	chartHeight   = 320.0
	wideWidth     = chartWidth*2 + 16
	fontSize      = 12.0
	smallFontSize = 10.0
	legendSwatch  = 10.0
	legendRowGap  = 18.0
	noDataNote    = " (no data)"
	plotLeft      = 72.0
	plotRight     = 16.0
	plotBottom    = 44.0
)

// barSeries is one coloured series of a grouped bar chart: a value per
// category, or nil Values when it has no data.
type barSeries struct {
	Name   string
	Color  string
	Values []float64
}

// barChart draws a grouped vertical bar chart: one group per category, in
// each a bar per series with data; values and ticks are labelled with
// format, the y axis with yLabel.
func barChart(label string, categories []string, series []barSeries, format func(float64) string, yLabel string) template.HTML {
	var s svgBuilder
	items := make([]legendItem, len(series))
	var drawn []barSeries
	hi := 0.0
	for i, se := range series {
		items[i] = legendItem{se.Name, se.Color, len(se.Values) == 0}
		if len(se.Values) == 0 {
			continue
		}
		drawn = append(drawn, se)
		for _, v := range se.Values {
			if finite(v) {
				hi = max(hi, v)
			}
		}
	}
	top := 10 + legendHeight(items, chartWidth-20) + 10
	s.open(chartWidth, chartHeight, label)
	s.legend(10, 10, chartWidth-20, items)
	x0, x1, y0, y1 := plotLeft, chartWidth-plotRight, chartHeight-plotBottom, top
	if len(drawn) == 0 || len(categories) == 0 {
		s.message((x0+x1)/2, (y0+y1)/2, "no completed repetitions")
		return s.close()
	}
	ticks := linearTicks(hi*1.08, 5)
	ymax := ticks[len(ticks)-1]
	y := func(v float64) float64 { return y0 - clamp(v/ymax, 0, 1)*(y0-y1) }
	for _, t := range ticks {
		s.line(x0, y(t), x1, y(t), "grid")
		s.text(x0-6, y(t)+4, "end", "", format(t))
	}
	groupW := (x1 - x0) / float64(len(categories))
	barW := groupW * 0.8 / float64(len(drawn))
	for ci, cat := range categories {
		gx := x0 + groupW*float64(ci) + groupW*0.1
		for si, se := range drawn {
			v := 0.0
			if ci < len(se.Values) && finite(se.Values[ci]) {
				v = max(se.Values[ci], 0)
			}
			bx := gx + barW*float64(si)
			s.rect(bx+1, y(v), barW-2, y0-y(v), se.Color, se.Name+" "+cat+": "+format(v))
			if txt := format(v); textWidth(txt, smallFontSize) <= barW+2 {
				s.text(bx+barW/2, y(v)-4, "middle", "val", txt)
			}
		}
		s.text(x0+groupW*(float64(ci)+0.5), y0+18, "middle", "", cat)
	}
	s.line(x0, y0, x1, y0, "ax")
	s.line(x0, y0, x0, y1, "ax")
	s.vtext(14, (y0+y1)/2, yLabel)
	return s.close()
}

// lineSeries is one coloured line of a line chart; no Points: no data.
type lineSeries struct {
	Name   string
	Color  string
	Points []point
}

// lineOptions describe a line chart's axes.
type lineOptions struct {
	// LogX makes the x axis logarithmic; points at x ≤ 0 are drawn at its
	// left edge.
	LogX bool
	// XFormat labels x ticks.
	XFormat func(float64) string
	// XLabel names the x axis.
	XLabel string
	// YTicks are the y ticks, ascending; the first and last bound the y
	// axis. Empty: from 0 to a round number above the data.
	YTicks []float64
	// YFormat labels y ticks.
	YFormat func(float64) string
	// YLabel names the y axis.
	YLabel string
}

// lineChart draws lines through each series' points.
func lineChart(label string, series []lineSeries, o lineOptions) template.HTML {
	var s svgBuilder
	items := make([]legendItem, len(series))
	var xs, ys []float64
	for i, se := range series {
		items[i] = legendItem{se.Name, se.Color, len(se.Points) == 0}
		for _, p := range se.Points {
			if !finite(p.X) || !finite(p.Y) {
				continue
			}
			if !o.LogX || p.X > 0 {
				xs = append(xs, p.X)
			}
			ys = append(ys, p.Y)
		}
	}
	top := 10 + legendHeight(items, chartWidth-20) + 10
	s.open(chartWidth, chartHeight, label)
	s.legend(10, 10, chartWidth-20, items)
	x0, x1, y0, y1 := plotLeft, chartWidth-plotRight, chartHeight-plotBottom, top
	if len(ys) == 0 {
		s.message((x0+x1)/2, (y0+y1)/2, "no completed repetitions")
		return s.close()
	}
	yt := o.YTicks
	if len(yt) < 2 {
		yt = linearTicks(slices.Max(ys)*1.05, 5)
	}
	ylo, yhi := yt[0], yt[len(yt)-1]
	if !(yhi > ylo) {
		yhi = ylo + 1
	}
	y := func(v float64) float64 { return y0 - clamp((v-ylo)/(yhi-ylo), 0, 1)*(y0-y1) }

	var xt []float64
	var xpos func(float64) float64
	if o.LogX {
		lo, hi := 1e-6, 1e-3
		if len(xs) > 0 {
			lo, hi = slices.Min(xs), slices.Max(xs)
		}
		if hi <= lo*1.0001 {
			lo, hi = lo/2, hi*2
		}
		pad := math.Pow(hi/lo, 0.03)
		lo, hi = lo/pad, hi*pad
		llo, lhi := math.Log10(lo), math.Log10(hi)
		xpos = func(v float64) float64 {
			if v <= 0 {
				return x0
			}
			return x0 + clamp((math.Log10(v)-llo)/(lhi-llo), 0, 1)*(x1-x0)
		}
		xt = logTicks(lo, hi)
	} else {
		lo, hi := 0.0, 1.0
		if len(xs) > 0 {
			lo, hi = slices.Min(xs), slices.Max(xs)
		}
		if hi <= lo {
			lo, hi = lo-1, hi+1
		}
		step := niceStep(hi-lo, 5)
		lo, hi = math.Floor(lo/step)*step, math.Ceil(hi/step)*step
		for k := 0; lo+float64(k)*step <= hi+step*1e-9; k++ {
			xt = append(xt, lo+float64(k)*step)
		}
		xpos = func(v float64) float64 { return x0 + clamp((v-lo)/(hi-lo), 0, 1)*(x1-x0) }
	}
	for _, t := range yt {
		s.line(x0, y(t), x1, y(t), "grid")
		s.text(x0-6, y(t)+4, "end", "", o.YFormat(t))
	}
	s.xTicks(xt, xpos, o.XFormat, x0, x1, y0, y1)
	for _, se := range series {
		var pts []point
		for _, p := range se.Points {
			if finite(p.X) && finite(p.Y) {
				pts = append(pts, point{xpos(p.X), y(p.Y)})
			}
		}
		s.polyline(pts, se.Color, se.Name)
	}
	s.line(x0, y0, x1, y0, "ax")
	s.line(x0, y0, x0, y1, "ax")
	s.text((x0+x1)/2, chartHeight-8, "middle", "", o.XLabel)
	s.vtext(14, (y0+y1)/2, o.YLabel)
	return s.close()
}

// stackRow is one bar of a stacked bar chart: a value per part, or nil
// Values when it has no data.
type stackRow struct {
	Name   string
	Color  string
	Values []float64
}

// stackedBarChart draws a horizontal bar per row, made of its parts' values
// end to end; a row's label carries its colour, the parts take theirs from
// partColors. Ticks are labelled with tickFormat, values and totals with
// valueFormat, the x axis with xLabel.
func stackedBarChart(label string, parts, partColors []string, rows []stackRow, tickFormat, valueFormat func(float64) string, xLabel string) template.HTML {
	const rowH, barH = 30.0, 20.0
	items := make([]legendItem, len(parts))
	for i, p := range parts {
		items[i] = legendItem{p, partColors[i%len(partColors)], false}
	}
	nameW := 0.0
	hi := 0.0
	for _, r := range rows {
		nameW = max(nameW, textWidth(r.Name, fontSize))
		sum := 0.0
		for _, v := range r.Values {
			if finite(v) {
				sum += max(v, 0)
			}
		}
		hi = max(hi, sum)
	}
	top := 10 + legendHeight(items, wideWidth-20) + 10
	height := top + rowH*float64(len(rows)) + plotBottom
	x0 := min(10+legendSwatch+6+nameW+10, wideWidth/3)
	x1 := wideWidth - 60
	y0 := top + rowH*float64(len(rows))

	var s svgBuilder
	s.open(wideWidth, height, label)
	s.legend(10, 10, wideWidth-20, items)
	ticks := linearTicks(hi, 8)
	xmax := ticks[len(ticks)-1]
	x := func(v float64) float64 { return x0 + clamp(v/xmax, 0, 1)*(x1-x0) }
	s.xTicks(ticks, x, tickFormat, x0, x1, y0, top)
	for i, r := range rows {
		ry := top + rowH*float64(i) + (rowH-barH)/2
		s.rect(10, ry+(barH-legendSwatch)/2, legendSwatch, legendSwatch, r.Color, "")
		s.text(10+legendSwatch+6, ry+barH/2+4, "start", "", r.Name)
		if len(r.Values) == 0 {
			s.text(x0+6, ry+barH/2+4, "start", "msg", "no data")
			continue
		}
		at := 0.0
		for j, v := range r.Values {
			if !finite(v) || v <= 0 {
				continue
			}
			name := ""
			if j < len(parts) {
				name = parts[j]
			}
			w := x(at+v) - x(at)
			s.rect(x(at), ry, w, barH, partColors[j%len(partColors)], r.Name+" "+name+": "+valueFormat(v))
			if txt := valueFormat(v); textWidth(txt, smallFontSize)+6 <= w {
				class := "in light"
				if j%len(partColors) >= 2 {
					class = "in"
				}
				s.text(x(at)+w/2, ry+barH/2+3.5, "middle", class, txt)
			}
			at += v
		}
		s.text(x(at)+6, ry+barH/2+4, "start", "", valueFormat(at))
	}
	s.line(x0, y0, x1, y0, "ax")
	s.line(x0, y0, x0, top, "ax")
	s.text((x0+x1)/2, height-8, "middle", "", xLabel)
	return s.close()
}

// legendItem is one entry of a chart legend.
type legendItem struct {
	Name   string
	Color  string
	NoData bool
}

func (it legendItem) text() string {
	if it.NoData {
		return it.Name + noDataNote
	}
	return it.Name
}

// legendLayout places legend items left to right, wrapping at width;
// it returns each item's offset and the number of rows.
func legendLayout(items []legendItem, width float64) ([]point, int) {
	pos := make([]point, len(items))
	x, row := 0.0, 0
	for i, it := range items {
		w := legendSwatch + 5 + textWidth(it.text(), fontSize) + 16
		if x > 0 && x+w > width {
			x, row = 0, row+1
		}
		pos[i] = point{x, float64(row) * legendRowGap}
		x += w
	}
	return pos, row + 1
}

func legendHeight(items []legendItem, width float64) float64 {
	if len(items) == 0 {
		return 0
	}
	_, rows := legendLayout(items, width)
	return float64(rows) * legendRowGap
}

// svgBuilder writes an SVG element. Every text and title it writes is
// escaped, every number formatted finite.
type svgBuilder struct{ b strings.Builder }

func (s *svgBuilder) open(w, h float64, label string) {
	fmt.Fprintf(&s.b, `<svg xmlns="http://www.w3.org/2000/svg" width="%s" height="%s" viewBox="0 0 %s %s" role="img" aria-label="%s">`+"\n",
		num(w), num(h), num(w), num(h), esc(label))
	fmt.Fprintf(&s.b, `<rect class="frame" x="0.5" y="0.5" width="%s" height="%s"/>`+"\n", num(w-1), num(h-1))
}

func (s *svgBuilder) close() template.HTML {
	s.b.WriteString("</svg>")
	return template.HTML(s.b.String())
}

func (s *svgBuilder) line(x1, y1, x2, y2 float64, class string) {
	fmt.Fprintf(&s.b, `<line class="%s" x1="%s" y1="%s" x2="%s" y2="%s"/>`+"\n", class, num(x1), num(y1), num(x2), num(y2))
}

func (s *svgBuilder) rect(x, y, w, h float64, fill, title string) {
	attrs := fmt.Sprintf(`x="%s" y="%s" width="%s" height="%s" fill="%s"`, num(x), num(y), num(max(w, 0)), num(max(h, 0)), esc(fill))
	if title == "" {
		fmt.Fprintf(&s.b, "<rect %s/>\n", attrs)
		return
	}
	fmt.Fprintf(&s.b, "<rect %s><title>%s</title></rect>\n", attrs, esc(title))
}

func (s *svgBuilder) text(x, y float64, anchor, class, txt string) {
	c := ""
	if class != "" {
		c = ` class="` + esc(class) + `"`
	}
	fmt.Fprintf(&s.b, `<text x="%s" y="%s" text-anchor="%s"%s>%s</text>`+"\n", num(x), num(y), anchor, c, esc(txt))
}

// vtext writes txt centred on (x, y), reading upwards.
func (s *svgBuilder) vtext(x, y float64, txt string) {
	fmt.Fprintf(&s.b, `<text x="%s" y="%s" text-anchor="middle" transform="rotate(-90 %s %s)">%s</text>`+"\n",
		num(x), num(y), num(x), num(y), esc(txt))
}

func (s *svgBuilder) message(x, y float64, txt string) {
	s.text(x, y, "middle", "msg", txt)
}

func (s *svgBuilder) polyline(pts []point, color, title string) {
	if len(pts) == 0 {
		return
	}
	var d strings.Builder
	for i, p := range pts {
		if i == 0 {
			d.WriteString("M")
		} else {
			d.WriteString(" L")
		}
		d.WriteString(num(p.X) + " " + num(p.Y))
	}
	fmt.Fprintf(&s.b, `<path d="%s" fill="none" stroke="%s" stroke-width="2" stroke-linejoin="round"><title>%s</title></path>`+"\n",
		d.String(), esc(color), esc(title))
}

func (s *svgBuilder) legend(x, y, width float64, items []legendItem) {
	pos, _ := legendLayout(items, width)
	for i, it := range items {
		px, py := x+pos[i].X, y+pos[i].Y
		s.rect(px, py+1, legendSwatch, legendSwatch, it.Color, "")
		class := ""
		if it.NoData {
			class = "msg"
		}
		s.text(px+legendSwatch+5, py+legendSwatch, "start", class, it.text())
	}
}

// xTicks draws vertical grid lines at ticks and labels as many as fit
// without overlapping, from the left.
func (s *svgBuilder) xTicks(ticks []float64, pos func(float64) float64, format func(float64) string, x0, x1, y0, y1 float64) {
	lastEnd := math.Inf(-1)
	for _, t := range ticks {
		px := pos(t)
		if px < x0-0.5 || px > x1+0.5 {
			continue
		}
		s.line(px, y0, px, y1, "grid")
		s.line(px, y0, px, y0+4, "ax")
		txt := format(t)
		w := textWidth(txt, fontSize)
		if px-w/2 < lastEnd+8 {
			continue
		}
		s.text(px, y0+16, "middle", "", txt)
		lastEnd = px + w/2
	}
}

// linearTicks are round ticks from 0 to the first one at or above hi
// (1 when hi is not positive), about n of them.
func linearTicks(hi float64, n int) []float64 {
	if !(hi > 0) || !finite(hi) {
		hi = 1
	}
	step := niceStep(hi, n)
	k := int(math.Ceil(hi/step - 1e-9))
	ticks := make([]float64, k+1)
	for i := range ticks {
		ticks[i] = float64(i) * step
	}
	return ticks
}

// niceStep is a round step (1, 2, 2.5 or 5 times a power of ten) at least
// span/n.
func niceStep(span float64, n int) float64 {
	if !(span > 0) || !finite(span) || n < 1 {
		return 1
	}
	raw := span / float64(n)
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 2.5, 5} {
		if raw <= m*mag*(1+1e-9) {
			return m * mag
		}
	}
	return 10 * mag
}

// logTicks are ticks for a log axis from lo to hi (both positive): 1, 2
// and 5 times powers of ten, fewer over many decades, more over less than
// one, and round linear steps when even those are too few.
func logTicks(lo, hi float64) []float64 {
	k0, k1 := int(math.Floor(math.Log10(lo))), int(math.Ceil(math.Log10(hi)))
	gen := func(ms []float64, every int) []float64 {
		var ts []float64
		for k := k0; k <= k1; k++ {
			if (k-k0)%every != 0 {
				continue
			}
			for _, m := range ms {
				if v := m * math.Pow(10, float64(k)); v >= lo && v <= hi {
					ts = append(ts, v)
				}
			}
		}
		return ts
	}
	if k1-k0 > 9 {
		return gen([]float64{1}, (k1-k0+7)/8)
	}
	ts := gen([]float64{1, 2, 5}, 1)
	if len(ts) > 9 {
		return gen([]float64{1}, 1)
	}
	if len(ts) >= 3 {
		return ts
	}
	if ts = gen([]float64{1, 2, 3, 4, 5, 6, 7, 8, 9}, 1); len(ts) >= 3 {
		return ts
	}
	step := niceStep(hi-lo, 4)
	ts = nil
	for k := math.Ceil(lo / step); k*step <= hi; k++ {
		ts = append(ts, k*step)
	}
	return ts
}

// formatTickSeconds labels a tick in seconds: FormatSeconds without
// trailing zeros ("1.5ms", "200µs").
func formatTickSeconds(v float64) string {
	s := FormatSeconds(v)
	i := strings.IndexFunc(s, func(r rune) bool { return (r < '0' || r > '9') && r != '.' && r != '-' })
	if i < 0 {
		return s
	}
	n, unit := s[:i], s[i:]
	if strings.Contains(n, ".") {
		n = strings.TrimRight(strings.TrimRight(n, "0"), ".")
	}
	return n + unit
}

// formatTickNumber labels a plain number tick with up to six significant
// digits ("0.25", "40").
func formatTickNumber(v float64) string {
	if v == 0 || !finite(v) {
		return "0"
	}
	return strconv.FormatFloat(roundSignificant(v, 6), 'f', -1, 64)
}

// formatOneDecimal labels a value with one decimal ("19.8"), as the
// Markdown tables do.
func formatOneDecimal(v float64) string {
	if !finite(v) {
		return "–"
	}
	return strconv.FormatFloat(v, 'f', 1, 64)
}

// textWidth estimates the width of txt at size px.
func textWidth(txt string, size float64) float64 {
	return float64(utf8.RuneCountInString(txt)) * size * 0.6
}

// num formats a coordinate with one decimal; NaN and infinities, which
// would break the drawing, become 0.
func num(v float64) string {
	if !finite(v) {
		return "0"
	}
	v = math.Round(v*10) / 10
	if v == 0 {
		v = 0 // no "-0"
	}
	return strconv.FormatFloat(v, 'f', -1, 64)
}

func esc(s string) string { return template.HTMLEscapeString(s) }

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

func clamp(v, lo, hi float64) float64 {
	if !(v >= lo) { // NaN too
		return lo
	}
	return min(v, hi)
}
