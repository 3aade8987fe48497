package compare

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"

	"github.com/fastpath-bench/fastpath/harness/report"
)

// view is a Comparison laid out for people, shared by WriteMarkdown and
// WriteHTML: the same text, in the same order.
type view struct {
	Title     string
	Info      []infoRow
	Warnings  []string
	CILabel   string
	Scenarios []scenarioView
	OnlyOld   []string
	OnlyNew   []string
	Notes     []string
	Final     string
}

type infoRow struct{ Label, Old, New string }

type scenarioView struct {
	Name string
	// Reps says how many repetitions each datapath compares.
	Reps string
	Rows []rowView
}

type rowView struct {
	Figure, Datapath, Old, New, Change, CI, P, Verdict string
}

func (c *Comparison) view() view {
	v := view{Title: c.New.Suite, Warnings: c.Warnings, OnlyOld: c.OnlyOld, OnlyNew: c.OnlyNew}
	if c.Old.Suite != c.New.Suite {
		v.Title = orUnknown(c.Old.Suite) + " → " + orUnknown(c.New.Suite)
	}
	if v.Title == "" {
		v.Title = "(unnamed suite)"
	}
	o, n := c.Old, c.New
	rows := []infoRow{
		{"report", o.Source, n.Source},
		{"suite", report.JoinNonEmpty(" ", o.Suite, parens(o.SuiteFile)), report.JoinNonEmpty(" ", n.Suite, parens(n.SuiteFile))},
		{"started", formatTime(o), formatTime(n)},
		{"fastpath", versionCell(o), versionCell(n)},
		{"kernel", o.Kernel, n.Kernel},
		{"CPU", cpuCell(o), cpuCell(n)},
		{"host", o.Hostname, n.Hostname},
		{"Go", o.GoVersion, n.GoVersion},
	}
	for _, r := range rows {
		if r.Old != "" || r.New != "" {
			v.Info = append(v.Info, r)
		}
	}

	opts := c.Options
	v.CILabel = strconv.FormatFloat(roundSignificant(100*(1-opts.Alpha), 4), 'f', -1, 64) + "% CI"
	for _, group := range c.byScenario() {
		s := scenarioView{Name: group[0].Scenario}
		var reps []string
		for _, p := range group {
			if len(p.Figures) == 0 {
				continue
			}
			f := p.Figures[0]
			reps = append(reps, fmt.Sprintf("%s %d/%d", p.Datapath, f.OldN, f.NewN))
		}
		s.Reps = strings.Join(reps, ", ")
		// Figures in order; pairs of one scenario have the same ones
		// (propagation pairs have their own, fewer).
		nFigures := len(group[0].Figures)
		for i := 0; i < nFigures; i++ {
			for _, p := range group {
				if i >= len(p.Figures) {
					continue
				}
				f := p.Figures[i]
				s.Rows = append(s.Rows, rowView{
					Figure:   f.Name,
					Datapath: p.Datapath,
					Old:      formatValue(f.Name, f.OldMedian),
					New:      formatValue(f.Name, f.NewMedian),
					Change:   formatChange(f.ChangePct),
					CI:       formatCI(f.CILowPct, f.CIHighPct),
					P:        formatP(f.P),
					Verdict:  f.Verdict,
				})
			}
		}
		v.Scenarios = append(v.Scenarios, s)
	}

	threshold := formatPct(opts.Threshold * 100)
	alpha := strconv.FormatFloat(opts.Alpha, 'g', -1, 64)
	v.Notes = []string{
		"old, new: medians over the repetitions that completed (failed repetitions are left out); " +
			"latencies are each repetition's percentile, error rate is errors/requests.",
		fmt.Sprintf("change: new median / old median − 1; %s: percentile bootstrap interval of that change "+
			"(%d resamples, old and new resampled independently, fixed seed %d).", v.CILabel, opts.Resamples, opts.Seed),
		fmt.Sprintf("p: two-sided Mann-Whitney U test over the repetitions (exact distribution without ties and at most %d per side, "+
			"otherwise normal approximation with tie and continuity correction).", exactMaxN),
		fmt.Sprintf("verdict: worse (better) when the change is in the bad (good) direction, larger than the threshold %s, and significant: "+
			"either p < %s and the %s excludes 0, or complete separation: at least 2 repetitions on each side and "+
			"every new repetition worse (better) than every old one. "+
			"Complete separation counts because with 3 repetitions per side the smallest two-sided p is 0.1. "+
			"Lower is better for latency and error rate, higher for QPS.", threshold, alpha, v.CILabel),
	}
	if len(c.Regressions) == 0 {
		v.Final = "Result: no figure regressed."
	} else {
		v.Final = fmt.Sprintf("Result: %d %s regressed: %s.", len(c.Regressions), plural(len(c.Regressions), "figure"), strings.Join(c.Regressions, ", "))
	}
	return v
}

// byScenario groups the pairs by scenario, in the order scenarios first
// appear.
func (c *Comparison) byScenario() [][]Pair {
	var groups [][]Pair
	idx := map[string]int{}
	for _, p := range c.Pairs {
		i, ok := idx[p.Scenario]
		if !ok {
			i = len(groups)
			idx[p.Scenario] = i
			groups = append(groups, nil)
		}
		groups[i] = append(groups[i], p)
	}
	return groups
}

// WriteMarkdown writes c for people: the two reports side by side,
// warnings, one table per scenario (figure, datapath, old and new medians,
// change, confidence interval, p-value, verdict), the results present in
// one report only, how to read the tables, and as the last line which
// figures regressed.
func (c *Comparison) WriteMarkdown(w io.Writer) error {
	b := bufio.NewWriter(w)
	v := c.view()
	fmt.Fprintf(b, "# fastpath compare: %s\n\n", md(v.Title))
	fmt.Fprintln(b, "| | old | new |")
	fmt.Fprintln(b, "|---|---|---|")
	for _, r := range v.Info {
		fmt.Fprintf(b, "| %s | %s | %s |\n", r.Label, mdCell(r.Old), mdCell(r.New))
	}
	if len(v.Warnings) > 0 {
		fmt.Fprintln(b)
		fmt.Fprintln(b, "**Warnings:**")
		fmt.Fprintln(b)
		for _, w := range v.Warnings {
			fmt.Fprintf(b, "- %s\n", md(w))
		}
	}
	for _, s := range v.Scenarios {
		fmt.Fprintf(b, "\n## %s\n\n", md(s.Name))
		fmt.Fprintf(b, "Repetitions compared (old/new): %s.\n\n", md(s.Reps))
		fmt.Fprintf(b, "| figure | datapath | old | new | change | %s | p | verdict |\n", v.CILabel)
		fmt.Fprintln(b, "|---|---|--:|--:|--:|--:|--:|---|")
		for _, r := range s.Rows {
			verdict := r.Verdict
			if verdict == Worse || verdict == Better {
				verdict = "**" + verdict + "**"
			}
			fmt.Fprintf(b, "| %s | `%s` | %s | %s | %s | %s | %s | %s |\n",
				r.Figure, md(r.Datapath), r.Old, r.New, r.Change, r.CI, r.P, verdict)
		}
	}
	if len(v.OnlyOld) > 0 || len(v.OnlyNew) > 0 {
		fmt.Fprintln(b, "\n## Not compared")
		fmt.Fprintln(b)
		for _, k := range v.OnlyOld {
			fmt.Fprintf(b, "- only in old: `%s`\n", md(k))
		}
		for _, k := range v.OnlyNew {
			fmt.Fprintf(b, "- only in new: `%s`\n", md(k))
		}
	}
	fmt.Fprintln(b, "\n---")
	fmt.Fprintln(b)
	for _, n := range v.Notes {
		fmt.Fprintf(b, "- %s\n", n)
	}
	fmt.Fprintln(b)
	fmt.Fprintln(b, v.Final)
	if err := b.Flush(); err != nil {
		return fmt.Errorf("write comparison markdown: %w", err)
	}
	return nil
}

// formatValue formats a median of the named figure.
func formatValue(name string, v float64) string {
	switch {
	case math.IsNaN(v):
		return "–"
	case name == "QPS":
		return strconv.FormatFloat(v, 'f', 1, 64)
	case name == "error rate":
		return formatPct(100 * v)
	}
	return report.FormatSeconds(v)
}

// formatPct formats a percentage with up to 3 significant digits: "5%",
// "0.12%".
func formatPct(pct float64) string {
	return strconv.FormatFloat(roundSignificant(pct, 3), 'f', -1, 64) + "%"
}

// formatChange formats a relative change in percent: "+20.3%", "-4.1%",
// "0.0%", "+∞".
func formatChange(pct float64) string {
	switch {
	case math.IsNaN(pct):
		return "–"
	case math.IsInf(pct, 1):
		return "+∞"
	case math.IsInf(pct, -1):
		return "-∞"
	}
	r := math.Round(pct*10) / 10
	switch {
	case r == 0: // also -0
		return "0.0%"
	case r > 0:
		return "+" + strconv.FormatFloat(r, 'f', 1, 64) + "%"
	}
	return strconv.FormatFloat(r, 'f', 1, 64) + "%"
}

func formatCI(lo, hi float64) string {
	if math.IsNaN(lo) || math.IsNaN(hi) {
		return "–"
	}
	return "[" + formatChange(lo) + ", " + formatChange(hi) + "]"
}

// formatP formats a p-value with 2 significant digits.
func formatP(p float64) string {
	switch {
	case math.IsNaN(p):
		return "–"
	case p < 0.001:
		return "<0.001"
	}
	return strconv.FormatFloat(roundSignificant(p, 2), 'f', -1, 64)
}

func roundSignificant(v float64, n int) float64 {
	if v == 0 || math.IsNaN(v) || math.IsInf(v, 0) {
		return v
	}
	p := math.Pow(10, float64(n-int(math.Floor(math.Log10(math.Abs(v))))-1))
	return math.Round(v*p) / p
}

func formatTime(i ReportInfo) string {
	if i.StartedAt.IsZero() {
		return ""
	}
	return i.StartedAt.UTC().Format("2006-01-02 15:04:05 MST")
}

// versionCell is "version (commit)", or one of them when the other is
// empty or the same.
func versionCell(i ReportInfo) string {
	if i.FastpathVersion == i.FastpathCommit {
		return i.FastpathVersion
	}
	return report.JoinNonEmpty(" ", i.FastpathVersion, parens(i.FastpathCommit))
}

func cpuCell(i ReportInfo) string {
	cores := ""
	if i.Cores > 0 {
		cores = strconv.Itoa(i.Cores) + " cores"
	}
	return report.JoinNonEmpty(", ", i.CPUModel, cores)
}

func plural(n int, word string) string {
	if n == 1 {
		return word
	}
	return word + "s"
}

func parens(s string) string {
	if s == "" {
		return ""
	}
	return "(" + s + ")"
}

// md keeps free text on one line and out of the way of table syntax.
func md(s string) string { return report.OneLine(s) }

// mdCell is md with "–" for nothing.
func mdCell(s string) string {
	if s == "" {
		return "–"
	}
	return md(s)
}
