package report

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
)

// BaselineDatapath is the datapath the others are compared to: the raw
// path, with agents running and nothing attached.
const BaselineDatapath = "none"

// WriteMarkdown writes r for people: a title, the environment, then per
// scenario a table with a row per datapath (latency percentiles, actual
// and requested QPS, errors, completed repetitions), the repetitions that
// failed, and each datapath's p50 and p99 relative to BaselineDatapath.
func (r *Report) WriteMarkdown(w io.Writer) error {
	b := bufio.NewWriter(w)
	r.writeMarkdown(b)
	if err := b.Flush(); err != nil {
		return fmt.Errorf("write report markdown: %w", err)
	}
	return nil
}

func (r *Report) writeMarkdown(b *bufio.Writer) {
	title := r.Suite
	if title == "" {
		title = "(unnamed suite)"
	}
	fmt.Fprintf(b, "# fastpath benchmark: %s\n\n", title)

	env := r.Environment
	if r.SuiteFile != "" {
		fmt.Fprintf(b, "- Suite: `%s` (%s)\n", title, r.SuiteFile)
	}
	if !r.StartedAt.IsZero() {
		line := "- Started: " + r.StartedAt.UTC().Format("2006-01-02 15:04:05 MST")
		if !r.FinishedAt.IsZero() && !r.FinishedAt.Before(r.StartedAt) {
			line += ", took " + r.FinishedAt.Sub(r.StartedAt).Round(time.Second).String()
		}
		fmt.Fprintln(b, line)
	}
	if env.Hostname != "" {
		fmt.Fprintf(b, "- Host: %s\n", env.Hostname)
	}
	if env.Kernel != "" {
		fmt.Fprintf(b, "- Kernel: Linux %s\n", env.Kernel)
	}
	if env.CPUModel != "" || env.Cores > 0 {
		fmt.Fprintf(b, "- CPU: %s\n", JoinNonEmpty(", ", env.CPUModel, plural(env.Cores, "core")))
	}
	if env.GoVersion != "" {
		fmt.Fprintf(b, "- Go: %s\n", env.GoVersion)
	}
	if env.FastpathVersion != "" || env.FastpathCommit != "" {
		v := env.FastpathVersion
		if env.FastpathCommit != "" {
			v = JoinNonEmpty(" ", v, "("+env.FastpathCommit+")")
		}
		fmt.Fprintf(b, "- fastpath: %s\n", v)
	}
	if env.Provider != "" {
		fmt.Fprintf(b, "- Provider: %s\n", env.Provider)
	}
	if env.Kubernetes != "" {
		fmt.Fprintf(b, "- Kubernetes: %s (node image `%s`, agent image `%s`)\n", env.Kubernetes, env.NodeImage, env.AgentImage)
	}
	if env.IptablesAgentImage != "" {
		fmt.Fprintf(b, "- baselines agent image: `%s`\n", env.IptablesAgentImage)
	}
	if len(env.KubeProxy) > 0 {
		var parts []string
		for _, k := range env.KubeProxy {
			parts = append(parts, fmt.Sprintf("`%s` %s", k.Datapath, k.Summary()))
		}
		fmt.Fprintf(b, "- kube-proxy: %s\n", strings.Join(parts, "; "))
	}
	for _, s := range env.SkippedDatapaths {
		fmt.Fprintf(b, "- Skipped: %s\n", s)
	}
	if len(env.Datapaths) > 0 {
		fmt.Fprintf(b, "- Datapaths: %s\n", "`"+strings.Join(env.Datapaths, "`, `")+"`")
	}
	for _, a := range env.Agents {
		if a.AttachMode != "" || len(a.Features) > 0 {
			fmt.Fprintf(b, "- Agent `%s`: %s\n", a.Datapath, a.Summary())
		}
	}
	fmt.Fprintln(b)
	fmt.Fprintln(b, "Latencies are medians across completed repetitions of each repetition's percentile;")
	fmt.Fprintln(b, "QPS is the median actual rate over the requested one; errors and requests are summed over all repetitions.")

	for _, group := range byScenario(r.Results) {
		writeScenario(b, group)
	}
	if len(r.Results) == 0 {
		fmt.Fprintln(b)
		fmt.Fprintln(b, "No results.")
	}
	writePropagationMarkdown(b, r.Propagation)
	writePartitionMarkdown(b, r.Partition)
}

// byScenario groups results by scenario, in the order scenarios first
// appear.
func byScenario(results []Result) [][]Result {
	var groups [][]Result
	index := map[string]int{}
	for _, res := range results {
		i, ok := index[res.Scenario]
		if !ok {
			i = len(groups)
			index[res.Scenario] = i
			groups = append(groups, nil)
		}
		groups[i] = append(groups[i], res)
	}
	return groups
}

func writeScenario(b *bufio.Writer, results []Result) {
	first := results[0]
	fmt.Fprintf(b, "\n## %s\n\n", first.Scenario)
	fmt.Fprintln(b, describeLoad(first.Path, first.Load)+".")
	fmt.Fprintln(b)
	fmt.Fprintln(b, "| datapath | p50 | p90 | p99 | p99.9 | max | QPS actual/requested | errors | reps |")
	fmt.Fprintln(b, "|---|--:|--:|--:|--:|--:|--:|--:|--:|")
	for _, res := range results {
		s := res.Summary
		lat := []string{"–", "–", "–", "–", "–"}
		qps := "–"
		if s.Repetitions > 0 {
			l := s.LatencySeconds
			for i, v := range []float64{l.P50, l.P90, l.P99, l.P999, l.Max} {
				lat[i] = FormatSeconds(v)
			}
			qps = strconv.FormatFloat(s.ActualQPS, 'f', 0, 64)
		}
		requested := "max"
		if res.Load.QPS > 0 {
			requested = strconv.FormatFloat(res.Load.QPS, 'f', -1, 64)
		}
		fmt.Fprintf(b, "| `%s` | %s | %s/%s | %s | %d/%d |\n",
			res.Datapath, strings.Join(lat, " | "), qps, requested, formatErrors(s.Errors, s.Count), s.Repetitions, len(res.Repetitions))
	}

	var failed []string
	for _, res := range results {
		for _, rep := range res.Repetitions {
			if rep.Error != "" {
				failed = append(failed, fmt.Sprintf("- `%s` repetition %d: %s", res.Datapath, rep.Index, OneLine(rep.Error)))
			}
		}
	}
	if len(failed) > 0 {
		fmt.Fprintln(b)
		fmt.Fprintln(b, "Failed repetitions (not in the medians):")
		fmt.Fprintln(b)
		for _, f := range failed {
			fmt.Fprintln(b, f)
		}
	}
	if rel := relative(results); rel != "" {
		fmt.Fprintln(b)
		fmt.Fprintf(b, "Relative to `%s`: %s\n", BaselineDatapath, rel)
	}
	writeCPU(b, results)
}

// writeCPU adds a table of CPU milliseconds per 1,000 requests by
// component, when the results carry CPU accounting.
func writeCPU(b io.Writer, results []Result) {
	have := false
	for _, res := range results {
		have = have || len(res.Summary.CPUMillisPer1k) > 0
	}
	if have {
		writeComponentTable(b, "CPU milliseconds per 1,000 requests (median across repetitions):", CPUComponents, results,
			func(res Result, comp string) (float64, bool) {
				v, ok := res.Summary.CPUMillisPer1k[comp]
				return v, ok
			})
	}
	writeRSS(b, results)
}

// rssComponents are the keys of Repetition.PeakRSSBytes, in display order.
var rssComponents = []string{"client", "server", "agents", "proxies"}

// writeRSS writes the largest peak RSS per component over the repetitions.
func writeRSS(b io.Writer, results []Result) {
	have := false
	for _, res := range results {
		for _, rep := range res.Repetitions {
			have = have || len(rep.PeakRSSBytes) > 0
		}
	}
	if !have {
		return
	}
	writeComponentTable(b, "Peak RSS in MiB (largest over repetitions; agents: the largest agent):", rssComponents, results,
		func(res Result, comp string) (float64, bool) {
			var peak int64
			for _, rep := range res.Repetitions {
				peak = max(peak, rep.PeakRSSBytes[comp])
			}
			return float64(peak) / (1 << 20), peak > 0
		})
}

// writeComponentTable writes a table with a row per datapath and a column
// per component; value gives a cell's figure (one decimal), or false for
// "–".
func writeComponentTable(b io.Writer, title string, comps []string, results []Result, value func(Result, string) (float64, bool)) {
	fmt.Fprintf(b, "\n%s\n\n", title)
	fmt.Fprintf(b, "| datapath | %s |\n|---|%s\n", strings.Join(comps, " | "), strings.Repeat("--:|", len(comps)))
	for _, res := range results {
		cells := make([]string, len(comps))
		for i, comp := range comps {
			cells[i] = "–"
			if v, ok := value(res, comp); ok {
				cells[i] = fmt.Sprintf("%.1f", v)
			}
		}
		fmt.Fprintf(b, "| `%s` | %s |\n", res.Datapath, strings.Join(cells, " | "))
	}
}

// relative describes each datapath's p50 and p99 as a ratio to the
// baseline's; empty without a baseline or other datapaths.
func relative(results []Result) string {
	var base *Summary
	for i := range results {
		if results[i].Datapath == BaselineDatapath {
			base = &results[i].Summary
		}
	}
	if base == nil {
		return ""
	}
	var parts []string
	for _, res := range results {
		if res.Datapath == BaselineDatapath {
			continue
		}
		s := res.Summary
		if base.Repetitions == 0 || s.Repetitions == 0 {
			parts = append(parts, fmt.Sprintf("`%s`: no completed repetitions to compare", res.Datapath))
			continue
		}
		parts = append(parts, fmt.Sprintf("`%s`: p50 %s, p99 %s", res.Datapath,
			ratio(s.LatencySeconds.P50, base.LatencySeconds.P50), ratio(s.LatencySeconds.P99, base.LatencySeconds.P99)))
	}
	return strings.Join(parts, "; ")
}

func ratio(v, base float64) string {
	if base <= 0 {
		return "×n/a"
	}
	return fmt.Sprintf("×%.2f", v/base)
}

// describeLoad says where a scenario's traffic goes and what its load is,
// e.g. "Path: same-node; load: http at 1000 qps over 4 connections for
// 10s".
func describeLoad(path string, l LoadSpec) string {
	load := "as fast as possible"
	if l.QPS > 0 {
		load = "at " + strconv.FormatFloat(l.QPS, 'f', -1, 64) + " qps"
	}
	if l.Protocol != "" {
		load = l.Protocol + " " + load
	}
	if l.Connections > 0 {
		load += " over " + plural(l.Connections, "connection")
	}
	if l.DurationSeconds > 0 {
		load += " for " + time.Duration(l.DurationSeconds*float64(time.Second)).String()
	}
	if l.PayloadBytes > 0 {
		unit := "response"
		if l.Protocol == "tcp" {
			unit = "message"
		}
		load += fmt.Sprintf(", %d-byte %ss", l.PayloadBytes, unit)
	}
	if l.ChurnPoliciesPerSecond > 0 || l.ChurnPodsPerSecond > 0 {
		load += fmt.Sprintf("; churn: %s policies/s and %s pods/s created and deleted meanwhile",
			strconv.FormatFloat(l.ChurnPoliciesPerSecond, 'f', -1, 64), strconv.FormatFloat(l.ChurnPodsPerSecond, 'f', -1, 64))
	}
	if path == "" {
		return "Load: " + load
	}
	return "Path: " + path + "; load: " + load
}

// formatErrors gives a count of failed requests and, when some failed,
// their share of all requests.
func formatErrors(errors, count int64) string {
	if errors == 0 || count == 0 {
		return strconv.FormatInt(errors, 10)
	}
	return fmt.Sprintf("%d (%s%%)", errors, strconv.FormatFloat(roundSignificant(100*float64(errors)/float64(count), 2), 'f', -1, 64))
}

// FormatSeconds formats a duration in seconds with three significant
// digits and a unit that keeps the number below 1000: "850ns", "21.2µs",
// "212µs", "1.31ms", "2.00s".
func FormatSeconds(v float64) string {
	if v == 0 || math.IsNaN(v) || math.IsInf(v, 0) {
		return strconv.FormatFloat(v, 'g', -1, 64)
	}
	units := []struct {
		scale float64
		name  string
	}{{1e-9, "ns"}, {1e-6, "µs"}, {1e-3, "ms"}, {1, "s"}}
	i := 0
	for i < len(units)-1 && math.Abs(v) >= units[i+1].scale {
		i++
	}
	x := roundSignificant(v/units[i].scale, 3)
	if math.Abs(x) >= 1000 && i < len(units)-1 {
		i++
		x = roundSignificant(v/units[i].scale, 3)
	}
	decimals := 3 - digitsBeforePoint(x)
	if decimals < 0 {
		decimals = 0
	}
	return strconv.FormatFloat(x, 'f', decimals, 64) + units[i].name
}

// roundSignificant rounds v to n significant digits.
func roundSignificant(v float64, n int) float64 {
	if v == 0 {
		return 0
	}
	p := math.Pow(10, float64(n-digitsBeforePoint(v)))
	return math.Round(v*p) / p
}

// digitsBeforePoint is the position of v's leading digit: 3 for 212, 1 for
// 1.31, 0 for 0.5, -1 for 0.05.
func digitsBeforePoint(v float64) int {
	return int(math.Floor(math.Log10(math.Abs(v)))) + 1
}

func plural(n int, word string) string {
	if n == 0 {
		return ""
	}
	if n == 1 {
		return "1 " + word
	}
	return strconv.Itoa(n) + " " + word + "s"
}

// JoinNonEmpty joins the non-empty parts with sep.
func JoinNonEmpty(sep string, parts ...string) string {
	var out []string
	for _, p := range parts {
		if p != "" {
			out = append(out, p)
		}
	}
	return strings.Join(out, sep)
}

// OneLine keeps free text on one line and out of the way of Markdown table
// syntax.
func OneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	return strings.ReplaceAll(s, "|", `\|`)
}
