package report

import (
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
)

// Propagation is how fast one kind of policy change took effect on one
// datapath: a distribution over the changes made.
type Propagation struct {
	// Datapath is the datapath's name.
	Datapath string `json:"datapath"`
	// Change is "single" (one policy added or removed), "bulk" (Policies
	// policies added at once) or "relabel" (on a cluster mesh, the probe
	// client's labels changed in its cluster, enforced by a policy of the
	// server's cluster).
	Change string `json:"change"`
	// Policies is the number of policies each change added or removed.
	Policies int `json:"policies"`
	// BasePolicies is the number of policies installed besides.
	BasePolicies int `json:"basePolicies"`
	// AckSeconds are, per change, the time from writing the change to the
	// last agent reporting it programmed.
	AckSeconds []float64 `json:"ackSeconds"`
	// EnforcedSeconds are, per change, the time from writing the change
	// to the start of the first probe connection from which on every
	// probe saw the new verdict.
	EnforcedSeconds []float64 `json:"enforcedSeconds"`
	// ProgramSeconds are, per change, the part of the slowest agent's
	// apply spent programming the datapath (eBPF map builds and swaps,
	// ipset and iptables-restore, proxy configuration and reload), from
	// its status after the ack.
	ProgramSeconds []float64 `json:"programSeconds,omitempty"`
	// ProbeIntervalSeconds is the time between probe connections: the
	// resolution of EnforcedSeconds.
	ProbeIntervalSeconds float64 `json:"probeIntervalSeconds"`
	// Errors are the changes that did not complete (not acknowledged or
	// not enforced in time), with why; they are not in the distributions.
	Errors []string `json:"errors,omitempty"`
	// Summary condenses the distributions.
	Summary PropagationSummary `json:"summary"`
}

// PropagationSummary gives percentiles of a Propagation's distributions
// (nearest rank), in seconds.
type PropagationSummary struct {
	Changes     int     `json:"changes"`
	AckP50      float64 `json:"ackP50"`
	AckP99      float64 `json:"ackP99"`
	AckMax      float64 `json:"ackMax"`
	EnforcedP50 float64 `json:"enforcedP50"`
	EnforcedP99 float64 `json:"enforcedP99"`
	EnforcedMax float64 `json:"enforcedMax"`
	ProgramP50  float64 `json:"programP50"`
}

// SummarizePropagation computes p's summary from its samples.
func SummarizePropagation(p Propagation) PropagationSummary {
	return PropagationSummary{
		Changes:     len(p.AckSeconds),
		AckP50:      Percentile(p.AckSeconds, 50),
		AckP99:      Percentile(p.AckSeconds, 99),
		AckMax:      Percentile(p.AckSeconds, 100),
		EnforcedP50: Percentile(p.EnforcedSeconds, 50),
		EnforcedP99: Percentile(p.EnforcedSeconds, 99),
		EnforcedMax: Percentile(p.EnforcedSeconds, 100),
		ProgramP50:  Percentile(p.ProgramSeconds, 50),
	}
}

// Percentile returns the nearest-rank q-th percentile of vs (0 for none);
// vs is not changed.
func Percentile(vs []float64, q float64) float64 {
	if len(vs) == 0 {
		return 0
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	rank := int(q/100*float64(len(s))+0.999999999) - 1
	rank = max(0, min(rank, len(s)-1))
	return s[rank]
}

// Label names a Propagation's kind of change for tables, charts and
// comparisons: "1 policy" or "N policies at once".
func (p Propagation) Label() string {
	switch p.Change {
	case "single":
		return "1 policy"
	case "relabel":
		return "1 pod relabeled in its cluster"
	}
	return fmt.Sprintf("%d policies at once", p.Policies)
}

// summaryCells are the table cells after the datapath: change, base
// policies, changes, ack and enforced p50/p99/max, program p50, probe
// interval, failed.
func (p Propagation) summaryCells() []string {
	s := p.Summary
	return []string{
		p.Label(), strconv.Itoa(p.BasePolicies), strconv.Itoa(s.Changes),
		FormatSeconds(s.AckP50), FormatSeconds(s.AckP99), FormatSeconds(s.AckMax),
		FormatSeconds(s.EnforcedP50), FormatSeconds(s.EnforcedP99), FormatSeconds(s.EnforcedMax),
		FormatSeconds(s.ProgramP50), FormatSeconds(p.ProbeIntervalSeconds), strconv.Itoa(len(p.Errors)),
	}
}

func writePropagationMarkdown(b io.Writer, ps []Propagation) {
	if len(ps) == 0 {
		return
	}
	fmt.Fprintf(b, "\n## Policy propagation\n\n")
	fmt.Fprintln(b, "Time from writing a change of the desired state to every agent acknowledging it programmed (ack),")
	fmt.Fprintln(b, "and to the first probe connection from which on every probe saw the new verdict (enforced);")
	fmt.Fprintln(b, "program: the part of the slowest agent's apply spent programming the datapath (map swaps, iptables-restore, proxy reload).")
	fmt.Fprintln(b)
	fmt.Fprintln(b, "| datapath | change | base policies | changes | ack p50 | ack p99 | ack max | enforced p50 | enforced p99 | enforced max | program p50 | probe every | failed |")
	fmt.Fprintln(b, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, p := range ps {
		fmt.Fprintf(b, "| `%s` | %s |\n", p.Datapath, strings.Join(p.summaryCells(), " | "))
	}
	for _, p := range ps {
		for _, e := range p.Errors {
			fmt.Fprintf(b, "\n- `%s` %s: %s", p.Datapath, p.Label(), OneLine(e))
		}
	}
	fmt.Fprintln(b)
}
