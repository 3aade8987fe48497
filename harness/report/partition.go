package report

import (
	"fmt"
	"io"
	"strings"
)

// Partition is what a cut between the clusters of a mesh did on one
// datapath (issue #10): the control plane of cluster Cut stopped at time
// 0 and started again CutSeconds later, while From held Established
// connections to To and opened a new one every ProbeIntervalSeconds.
type Partition struct {
	Datapath string `json:"datapath"`
	From     string `json:"from"`
	To       string `json:"to"`
	Cut      string `json:"cut"`
	// LeaseTTLSeconds is the mesh's lease TTL: how long the peers keep a
	// silent cluster's state.
	LeaseTTLSeconds float64 `json:"leaseTTLSeconds"`
	// CutSeconds is how long the control plane stayed stopped.
	CutSeconds           float64 `json:"cutSeconds"`
	ProbeIntervalSeconds float64 `json:"probeIntervalSeconds"`
	// NewKeptWorkingSeconds is when the last new connection during the
	// cut succeeded (from the cut); NewFailedFromSeconds when the first
	// of the failures that lasted to the end of the cut began, nil when
	// new connections never stopped working (nothing failed closed).
	NewKeptWorkingSeconds *float64 `json:"newKeptWorkingSeconds,omitempty"`
	NewFailedFromSeconds  *float64 `json:"newFailedFromSeconds,omitempty"`
	// NewAttempts and NewSucceeded count the new connections during the
	// cut.
	NewAttempts  int `json:"newAttempts"`
	NewSucceeded int `json:"newSucceeded"`
	// Established connections were opened before the cut and exchanged
	// data throughout; EstablishedKept is how many still worked at its
	// end, EstablishedFailedSeconds when each that stopped first failed.
	Established              int       `json:"established"`
	EstablishedKept          int       `json:"establishedKept"`
	EstablishedFailedSeconds []float64 `json:"establishedFailedSeconds,omitempty"`
	// RecoveredSeconds is the time from starting the control plane again
	// to the first new connection that succeeded; nil when none did in
	// time.
	RecoveredSeconds *float64 `json:"recoveredSeconds,omitempty"`
	Errors           []string `json:"errors,omitempty"`
}

func optSeconds(v *float64) string {
	if v == nil {
		return "never"
	}
	return FormatSeconds(*v)
}

// cells are the summary table's cells after the datapath.
func (p Partition) cells() []string {
	return []string{p.From + " → " + p.To, p.Cut + " for " + FormatSeconds(p.CutSeconds), FormatSeconds(p.LeaseTTLSeconds),
		optSeconds(p.NewKeptWorkingSeconds), optSeconds(p.NewFailedFromSeconds), fmt.Sprintf("%d / %d", p.NewSucceeded, p.NewAttempts),
		fmt.Sprintf("%d / %d", p.EstablishedKept, p.Established), optSeconds(p.RecoveredSeconds)}
}

func writePartitionMarkdown(b io.Writer, ps []Partition) {
	if len(ps) == 0 {
		return
	}
	fmt.Fprintf(b, "\n## Partition\n\n")
	fmt.Fprintln(b, "A cluster's control plane (etcd) stopped at 0 s while the client held established connections to a")
	fmt.Fprintln(b, "server of another cluster and opened new ones; times are from the cut (recovered: from the restart).")
	fmt.Fprintln(b)
	fmt.Fprintln(b, "| datapath | client → server | cut | lease TTL | new: last worked | new: failed from | new ok / tried | established kept | recovered after |")
	fmt.Fprintln(b, "|---|---|---|---:|---:|---:|---:|---:|---:|")
	for _, p := range ps {
		fmt.Fprintf(b, "| `%s` | %s |\n", p.Datapath, strings.Join(p.cells(), " | "))
	}
	for _, p := range ps {
		for _, e := range p.Errors {
			fmt.Fprintf(b, "\n- `%s` partition: %s", p.Datapath, OneLine(e))
		}
	}
	fmt.Fprintln(b)
}
