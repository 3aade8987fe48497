package compare

import (
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"strings"
	"time"

	"github.com/fastpath-bench/fastpath/harness/report"
	"github.com/fastpath-bench/fastpath/harness/workload"
)

// Verdicts a Figure can have.
const (
	// Worse: a significant change in the bad direction beyond the
	// threshold.
	Worse = "worse"
	// Better: a significant change in the good direction beyond the
	// threshold.
	Better = "better"
	// NoChange: everything else with data on both sides.
	NoChange = "no significant change"
	// NoData: a side has no completed repetition with the figure.
	NoData = "no data"
)

// Defaults for the zero Options.
const (
	DefaultThreshold = 0.05
	DefaultAlpha     = 0.05
	DefaultResamples = 4000
	// MinResamples is the fewest bootstrap resamples Compare accepts.
	MinResamples = 2000
)

// ErrNoCommonResult is returned (wrapped) by Compare when the reports have
// no scenario and datapath in common.
var ErrNoCommonResult = errors.New("the reports have no scenario and datapath in common")

// Options tune a comparison. The zero value is usable.
type Options struct {
	// Threshold is the relative change of the medians, as a fraction
	// (0.05 for 5%), that a figure must exceed to be worse or better;
	// 0 means DefaultThreshold. It must be below 1: a figure where higher
	// is better cannot drop by 100% or more.
	Threshold float64
	// Alpha is the significance level for the Mann-Whitney p-value; the
	// bootstrap interval's confidence is 1−Alpha. 0 means DefaultAlpha;
	// otherwise it must be in (0, 1).
	Alpha float64
	// Resamples is the number of bootstrap resamples; 0 means
	// DefaultResamples, otherwise at least MinResamples.
	Resamples int
	// Seed seeds the bootstrap. Each figure's resampling is seeded from
	// Seed and the figure's scenario, datapath and name, so a figure's
	// interval does not depend on what else the reports hold.
	Seed int64
}

// withDefaults validates o and fills in its defaults.
func (o Options) withDefaults() (Options, error) {
	if o.Threshold == 0 {
		o.Threshold = DefaultThreshold
	}
	if o.Alpha == 0 {
		o.Alpha = DefaultAlpha
	}
	if o.Resamples == 0 {
		o.Resamples = DefaultResamples
	}
	switch {
	case math.IsNaN(o.Threshold) || o.Threshold < 0 || o.Threshold >= 1:
		return o, fmt.Errorf("threshold %g out of range: want at least 0 and below 1 (100%%)", o.Threshold)
	case math.IsNaN(o.Alpha) || o.Alpha <= 0 || o.Alpha >= 1:
		return o, fmt.Errorf("alpha %g out of range: want above 0 and below 1", o.Alpha)
	case o.Resamples < MinResamples:
		return o, fmt.Errorf("%d bootstrap resamples: want at least %d", o.Resamples, MinResamples)
	}
	return o, nil
}

// ReportInfo identifies a compared report.
type ReportInfo struct {
	// Source is where the report came from, e.g. its file name. Compare
	// leaves it empty; callers may set it for WriteMarkdown and WriteHTML.
	Source string
	// The report's suite and start and end times.
	Suite, SuiteFile      string
	StartedAt, FinishedAt time.Time
	// The report's environment.
	Hostname, Kernel, CPUModel                 string
	Cores                                      int
	GoVersion, FastpathVersion, FastpathCommit string
}

func infoOf(r *report.Report) ReportInfo {
	e := r.Environment
	return ReportInfo{
		Suite: r.Suite, SuiteFile: r.SuiteFile,
		StartedAt: r.StartedAt, FinishedAt: r.FinishedAt,
		Hostname: e.Hostname, Kernel: e.Kernel, CPUModel: e.CPUModel, Cores: e.Cores,
		GoVersion: e.GoVersion, FastpathVersion: e.FastpathVersion, FastpathCommit: e.FastpathCommit,
	}
}

// Comparison is the outcome of Compare.
type Comparison struct {
	// Old and New describe the two reports.
	Old, New ReportInfo
	// Pairs are the results present in both reports, in the new report's
	// order.
	Pairs []Pair
	// OnlyOld and OnlyNew name ("scenario/datapath") the results present
	// in one report only, in that report's order.
	OnlyOld, OnlyNew []string
	// Regressions names the figures whose verdict is Worse, as
	// "scenario/datapath figure change", e.g. "same-node/ebpf p99 +20.3%".
	Regressions []string
	// Warnings are things that make the comparison less meaningful:
	// different kernels, CPUs or loads, failed repetitions left out.
	Warnings []string
	// Options are the options used, defaults filled in.
	Options Options
}

// Pair compares one scenario on one datapath across the two reports.
type Pair struct {
	Scenario, Datapath string
	// Figures are, in this order: p50, p90, p99, p99.9, QPS, error rate;
	// for a policy propagation pair (Scenario "propagation: " and the
	// report's label of the change): ack and
	// enforced, the median times over the changes.
	Figures []Figure
}

// Figure compares one figure of a Pair.
type Figure struct {
	// Name is "p50", "p90", "p99", "p99.9" (latency, seconds), "QPS"
	// (actual requests per second) or "error rate" (errors/count, a
	// fraction).
	Name string
	// OldMedian and NewMedian are the medians over repetitions (NaN
	// without any).
	OldMedian, NewMedian float64
	// ChangePct is the relative change from OldMedian to NewMedian in
	// percent; 0 when both are 0 and +Inf when only OldMedian is (an error
	// rate going up from none).
	ChangePct float64
	// CILowPct and CIHighPct bound the percentile bootstrap interval for
	// ChangePct at confidence 1−Alpha.
	CILowPct, CIHighPct float64
	// P is the two-sided Mann-Whitney U p-value (see MannWhitney).
	P float64
	// OldN and NewN are the numbers of repetitions compared.
	OldN, NewN int
	// Verdict is Worse, Better, NoChange or NoData; see the package
	// documentation for the rule.
	Verdict string
	// HigherIsBetter is true for QPS, false for latency and error rate.
	HigherIsBetter bool
}

// figureDef says how to get a figure from one repetition.
type figureDef struct {
	name           string
	higherIsBetter bool
	// value returns the repetition's value and whether it has one.
	value func(w workload.Result) (float64, bool)
}

var figureDefs = []figureDef{
	{"p50", false, func(w workload.Result) (float64, bool) { return w.LatencySeconds.P50, true }},
	{"p90", false, func(w workload.Result) (float64, bool) { return w.LatencySeconds.P90, true }},
	{"p99", false, func(w workload.Result) (float64, bool) { return w.LatencySeconds.P99, true }},
	{"p99.9", false, func(w workload.Result) (float64, bool) { return w.LatencySeconds.P999, true }},
	{"QPS", true, func(w workload.Result) (float64, bool) { return w.ActualQPS, true }},
	{"error rate", false, func(w workload.Result) (float64, bool) {
		if w.Count <= 0 {
			return 0, false
		}
		return float64(w.Errors) / float64(w.Count), true
	}},
}

func key(r *report.Result) string { return r.Scenario + "/" + r.Datapath }

// index maps each result's key to it, refusing duplicates.
func index(which string, r *report.Report) (map[string]*report.Result, error) {
	m := make(map[string]*report.Result, len(r.Results))
	for i := range r.Results {
		res := &r.Results[i]
		k := key(res)
		if _, dup := m[k]; dup {
			return nil, fmt.Errorf("%s report has more than one result for scenario %q on datapath %q", which, res.Scenario, res.Datapath)
		}
		m[k] = res
	}
	return m, nil
}

// Compare compares report new with report old; see the package
// documentation. It fails on invalid options, on a report with two
// results for the same scenario and datapath, and when the reports have no
// scenario and datapath in common (ErrNoCommonResult).
func Compare(old, new *report.Report, opts Options) (*Comparison, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	oldIdx, err := index("old", old)
	if err != nil {
		return nil, err
	}
	newIdx, err := index("new", new)
	if err != nil {
		return nil, err
	}
	c := &Comparison{Old: infoOf(old), New: infoOf(new), Options: opts}
	c.Warnings = environmentWarnings(c.Old, c.New)
	for i := range new.Results {
		n := &new.Results[i]
		o, ok := oldIdx[key(n)]
		if !ok {
			c.OnlyNew = append(c.OnlyNew, key(n))
			continue
		}
		c.Pairs = append(c.Pairs, comparePair(o, n, opts))
		c.Warnings = append(c.Warnings, pairWarnings(o, n)...)
	}
	for i := range old.Results {
		if _, ok := newIdx[key(&old.Results[i])]; !ok {
			c.OnlyOld = append(c.OnlyOld, key(&old.Results[i]))
		}
	}
	if len(c.Pairs) == 0 {
		return nil, fmt.Errorf("%w (old has %s; new has %s)", ErrNoCommonResult, listOrNone(c.OnlyOld), listOrNone(c.OnlyNew))
	}
	c.Pairs = append(c.Pairs, comparePropagation(old, new, opts)...)
	for _, p := range c.Pairs {
		for _, f := range p.Figures {
			if f.Verdict == Worse {
				c.Regressions = append(c.Regressions, fmt.Sprintf("%s/%s %s %s", p.Scenario, p.Datapath, f.Name, formatChange(f.ChangePct)))
			}
		}
	}
	return c, nil
}

func listOrNone(keys []string) string {
	if len(keys) == 0 {
		return "no results"
	}
	return strings.Join(keys, ", ")
}

// samples returns the figure's values over res's completed repetitions.
func samples(res *report.Result, def figureDef) []float64 {
	var vs []float64
	for _, rep := range res.Repetitions {
		if rep.Error != "" {
			continue
		}
		if v, ok := def.value(rep.Workload); ok && !math.IsNaN(v) {
			vs = append(vs, v)
		}
	}
	return vs
}

func comparePair(o, n *report.Result, opts Options) Pair {
	p := Pair{Scenario: n.Scenario, Datapath: n.Datapath}
	for _, def := range figureDefs {
		p.Figures = append(p.Figures, compareSamples(def.name, def.higherIsBetter, samples(o, def), samples(n, def), opts, n.Scenario, n.Datapath))
	}
	return p
}

// compareSamples compares one figure given its samples on each side (one
// per repetition, or per change for propagation).
func compareSamples(name string, higherIsBetter bool, ov, nv []float64, opts Options, scenario, datapath string) Figure {
	f := Figure{
		Name:           name,
		OldMedian:      median(ov),
		NewMedian:      median(nv),
		OldN:           len(ov),
		NewN:           len(nv),
		HigherIsBetter: higherIsBetter,
		ChangePct:      math.NaN(),
		CILowPct:       math.NaN(),
		CIHighPct:      math.NaN(),
		P:              math.NaN(),
		Verdict:        NoData,
	}
	if len(ov) > 0 && len(nv) > 0 {
		f.ChangePct = relChange(f.OldMedian, f.NewMedian)
		f.CILowPct, f.CIHighPct = bootstrapCI(ov, nv, opts.Resamples, opts.Alpha, figureSeed(opts.Seed, scenario, datapath, name))
		f.P = MannWhitney(ov, nv)
		f.Verdict = verdict(f, ov, nv, opts)
	}
	return f
}

// propagationScenario names a kind of policy change as a pair's scenario.
func propagationScenario(p *report.Propagation) string { return "propagation: " + p.Label() }

// comparePropagation pairs the policy propagation measurements of the two
// reports (by datapath and kind of change) and compares the median time
// to acknowledgement and to enforcement; the samples are the changes.
func comparePropagation(old, new *report.Report, opts Options) []Pair {
	oldIdx := map[string]*report.Propagation{}
	for i := range old.Propagation {
		p := &old.Propagation[i]
		oldIdx[propagationScenario(p)+"/"+p.Datapath] = p
	}
	var out []Pair
	for i := range new.Propagation {
		n := &new.Propagation[i]
		sc := propagationScenario(n)
		o, ok := oldIdx[sc+"/"+n.Datapath]
		if !ok {
			continue
		}
		out = append(out, Pair{Scenario: sc, Datapath: n.Datapath, Figures: []Figure{
			compareSamples("ack", false, o.AckSeconds, n.AckSeconds, opts, sc, n.Datapath),
			compareSamples("enforced", false, o.EnforcedSeconds, n.EnforcedSeconds, opts, sc, n.Datapath),
		}})
	}
	return out
}

// figureSeed derives the bootstrap seed of one figure.
func figureSeed(seed int64, parts ...string) uint64 {
	h := fnv.New64a()
	for _, s := range parts {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	return uint64(seed) ^ h.Sum64()
}

// verdict applies the rule of the package documentation to f, whose
// samples are ov and nv (both non-empty).
func verdict(f Figure, ov, nv []float64, opts Options) string {
	if !(math.Abs(f.ChangePct) > opts.Threshold*100) {
		return NoChange
	}
	up := f.ChangePct > 0
	intervalExcludesZero := (up && f.CILowPct > 0) || (!up && f.CIHighPct < 0)
	significant := (f.P < opts.Alpha && intervalExcludesZero) || separated(ov, nv, up)
	switch {
	case !significant:
		return NoChange
	case up == f.HigherIsBetter:
		return Better
	default:
		return Worse
	}
}

// separated reports complete separation: at least 2 values on each side
// and every new value strictly above (up) or below (!up) every old one.
func separated(ov, nv []float64, up bool) bool {
	if len(ov) < 2 || len(nv) < 2 {
		return false
	}
	if up {
		return minOf(nv) > maxOf(ov)
	}
	return maxOf(nv) < minOf(ov)
}

func minOf(vs []float64) float64 {
	m := vs[0]
	for _, v := range vs[1:] {
		m = math.Min(m, v)
	}
	return m
}

func maxOf(vs []float64) float64 {
	m := vs[0]
	for _, v := range vs[1:] {
		m = math.Max(m, v)
	}
	return m
}

// environmentWarnings says where the two reports' machines or suites
// differ.
func environmentWarnings(o, n ReportInfo) []string {
	var w []string
	if o.Suite != n.Suite {
		w = append(w, fmt.Sprintf("suites differ: old %q, new %q", o.Suite, n.Suite))
	}
	if o.Kernel != n.Kernel {
		w = append(w, fmt.Sprintf("kernels differ: old %s, new %s", orUnknown(o.Kernel), orUnknown(n.Kernel)))
	}
	if o.CPUModel != n.CPUModel || o.Cores != n.Cores {
		w = append(w, fmt.Sprintf("CPUs differ: old %s, new %s", describeCPU(o), describeCPU(n)))
	}
	return w
}

// pairWarnings says where a pair's loads differ and which repetitions were
// left out.
func pairWarnings(o, n *report.Result) []string {
	var w []string
	k := key(n)
	if o.Load != n.Load {
		w = append(w, fmt.Sprintf("%s: the loads differ: old %s, new %s", k, describeLoad(o.Load), describeLoad(n.Load)))
	}
	for _, side := range []struct {
		name string
		res  *report.Result
	}{{"old", o}, {"new", n}} {
		failed := 0
		for _, rep := range side.res.Repetitions {
			if rep.Error != "" {
				failed++
			}
		}
		switch {
		case len(side.res.Repetitions) == 0:
			w = append(w, fmt.Sprintf("%s: no repetitions in the %s report", k, side.name))
		case failed == len(side.res.Repetitions):
			w = append(w, fmt.Sprintf("%s: all %d repetitions failed in the %s report: nothing to compare", k, failed, side.name))
		case failed > 0:
			w = append(w, fmt.Sprintf("%s: %d of %d repetitions failed in the %s report (left out)", k, failed, len(side.res.Repetitions), side.name))
		}
	}
	return w
}

func orUnknown(s string) string {
	if s == "" {
		return "(unknown)"
	}
	return s
}

func describeCPU(i ReportInfo) string {
	s := orUnknown(i.CPUModel)
	if i.Cores > 0 {
		s += fmt.Sprintf(" (%d cores)", i.Cores)
	}
	return s
}

func describeLoad(l report.LoadSpec) string {
	rate := "max qps"
	if l.QPS > 0 {
		rate = fmt.Sprintf("%g qps", l.QPS)
	}
	return fmt.Sprintf("%s %s, %d connections, %gs, payload %d B", orUnknown(l.Protocol), rate, l.Connections, l.DurationSeconds, l.PayloadBytes)
}
