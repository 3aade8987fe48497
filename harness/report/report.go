package report

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/fastpath-bench/fastpath/harness/workload"
)

// SchemaVersion is the version of report.json this package writes and
// reads. It changes whenever a field changes meaning or goes away.
const SchemaVersion = 1

// File names WriteDir writes.
const (
	// JSONFile is the machine-readable report.
	JSONFile = "report.json"
	// MarkdownFile is the human-readable report.
	MarkdownFile = "report.md"
	// HTMLFile is the human-readable report with charts, one
	// self-contained page.
	HTMLFile = "report.html"
)

// Report is the outcome of one benchmark run.
type Report struct {
	// SchemaVersion is SchemaVersion when written by this package.
	SchemaVersion int `json:"schemaVersion"`
	// Suite is the suite's metadata.name.
	Suite string `json:"suite"`
	// SuiteFile is the suite file the run read.
	SuiteFile string `json:"suiteFile"`
	// StartedAt is when the run started.
	StartedAt time.Time `json:"startedAt"`
	// FinishedAt is when the run ended.
	FinishedAt time.Time `json:"finishedAt"`
	// Environment describes the machine and the software measured.
	Environment Environment `json:"environment"`
	// Results has one entry per scenario and datapath, in suite order,
	// scenario-major: all datapaths of the first scenario, then of the
	// second, and so on.
	Results []Result `json:"results"`
	// Propagation has, per datapath and kind of change, how fast policy
	// changes took effect; empty when the suite measures none.
	Propagation []Propagation `json:"propagation,omitempty"`
	// Partition has, per datapath in a cluster mesh, what a cut of one
	// cluster's control plane did to connections across clusters.
	Partition []Partition `json:"partition,omitempty"`
}

// Environment describes where and with what a run was made.
type Environment struct {
	// Kernel is the kernel release (uname -r).
	Kernel string `json:"kernel"`
	// Hostname is the machine's host name.
	Hostname string `json:"hostname"`
	// CPUModel is the CPU's model name.
	CPUModel string `json:"cpuModel"`
	// Cores is the number of logical CPUs.
	Cores int `json:"cores"`
	// GoVersion is the Go version fastpath was built with.
	GoVersion string `json:"goVersion"`
	// FastpathVersion is fastpath's version.
	FastpathVersion string `json:"fastpathVersion"`
	// FastpathCommit is the commit fastpath was built from.
	FastpathCommit string `json:"fastpathCommit"`
	// Provider built the cluster ("netns").
	Provider string `json:"provider"`
	// Datapaths are the datapaths compared, in suite order.
	Datapaths []string `json:"datapaths"`
	// Agents is what each datapath's agent chose on this kernel (from its
	// status): attach mechanism and the kernel features it found.
	Agents []AgentInfo `json:"agents,omitempty"`
	// Kubernetes is the cluster's version (kind provider), NodeImage its
	// node image and AgentImage the agent DaemonSet's image.
	Kubernetes string `json:"kubernetes,omitempty"`
	NodeImage  string `json:"nodeImage,omitempty"`
	AgentImage string `json:"agentImage,omitempty"`
	// IptablesAgentImage is the baselines' agent image, the iptables
	// and the sidecar datapath's (kind provider: Debian, with iptables,
	// ipset and HAProxy); the JSON name is kept from when it served
	// iptables only.
	IptablesAgentImage string `json:"iptablesAgentImage,omitempty"`
	// KubeProxy is, per datapath (kind provider), the kube-proxy it ran
	// with.
	KubeProxy []KubeProxyInfo `json:"kubeProxy,omitempty"`
	// SkippedDatapaths are datapaths of the suite this provider cannot
	// run, each with the reason.
	SkippedDatapaths []string `json:"skippedDatapaths,omitempty"`
}

// Summary is "attach tc; kernel features: a, b".
func (a AgentInfo) Summary() string {
	var parts []string
	if a.AttachMode != "" {
		parts = append(parts, "attach "+a.AttachMode)
	}
	if len(a.Features) > 0 {
		parts = append(parts, "kernel features: "+strings.Join(a.Features, ", "))
	}
	if a.GoMaxProcs > 0 {
		parts = append(parts, fmt.Sprintf("GOMAXPROCS %d", a.GoMaxProcs))
	}
	return strings.Join(parts, "; ")
}

// KubeProxyInfo is the kube-proxy a datapath ran with (kind provider).
type KubeProxyInfo struct {
	Datapath string `json:"datapath"`
	// Mode is kube-proxy's mode, "none" when it did not run (the eBPF
	// datapath is the Services' load balancer; the none datapath has
	// none).
	Mode string `json:"mode"`
	// Image is kube-proxy's image when it ran.
	Image string `json:"image,omitempty"`
}

// Summary is "iptables mode (image)" or "none".
func (k KubeProxyInfo) Summary() string {
	if k.Mode == "none" || k.Mode == "" {
		return "none"
	}
	if k.Image == "" {
		return k.Mode + " mode"
	}
	return k.Mode + " mode (" + k.Image + ")"
}

// AgentInfo is one datapath's agent as it reported itself.
type AgentInfo struct {
	Datapath   string   `json:"datapath"`
	AttachMode string   `json:"attachMode,omitempty"`
	Features   []string `json:"features,omitempty"`
	// GoMaxProcs is the agents' GOMAXPROCS (0: not reported).
	GoMaxProcs int `json:"goMaxProcs,omitempty"`
}

// Result is the measurements of one scenario on one datapath.
type Result struct {
	// Scenario is the scenario's name.
	Scenario string `json:"scenario"`
	// Datapath is the datapath's name.
	Datapath string `json:"datapath"`
	// Path describes the route the traffic takes, e.g. "same-node" or
	// "cross-node" (free text).
	Path string `json:"path,omitempty"`
	// Load is the load requested.
	Load LoadSpec `json:"load"`
	// Repetitions are the measurements, in the order they were made.
	Repetitions []Repetition `json:"repetitions"`
	// Summary condenses Repetitions (see Summarize).
	Summary Summary `json:"summary"`
}

// LoadSpec is the load a scenario requested.
type LoadSpec struct {
	// Protocol is "http" or "tcp".
	Protocol string `json:"protocol"`
	// QPS is the target rate; 0 means as fast as possible.
	QPS float64 `json:"qps"`
	// Connections is the number of concurrent connections.
	Connections int `json:"connections"`
	// DurationSeconds is how long each measurement lasts.
	DurationSeconds float64 `json:"durationSeconds"`
	// PayloadBytes is the response (tcp: message) size; 0 for the
	// default.
	PayloadBytes int `json:"payloadBytes"`
	// ChurnPoliciesPerSecond and ChurnPodsPerSecond are the requested
	// rates of control-plane churn during the measurement; 0 for none.
	ChurnPoliciesPerSecond float64 `json:"churnPoliciesPerSecond,omitempty"`
	ChurnPodsPerSecond     float64 `json:"churnPodsPerSecond,omitempty"`
}

// Repetition is one measurement of a scenario on a datapath.
type Repetition struct {
	// Index counts repetitions from 1.
	Index int `json:"index"`
	// StartedAt is when the measurement (its warm-up included) started.
	StartedAt time.Time `json:"startedAt"`
	// Workload is what the load client measured; possibly partial when
	// Error is set.
	Workload workload.Result `json:"workload"`
	// Error says why the repetition did not complete; empty when it did.
	Error string `json:"error,omitempty"`
	// CPUSeconds is the CPU time each component used during the measured
	// load (not the warm-up), from per-process accounting: "client" (the
	// fortio load process), "server" (the fortio server), "agents" (all
	// node agents), "proxies" (the sidecar proxies of the sidecar
	// datapath, absent for others) and "softirq" (system-wide softirq time,
	// where the kernel datapath work of the packets lands).
	CPUSeconds map[string]float64 `json:"cpuSeconds,omitempty"`
	// PeakRSSBytes is, per component, the peak resident set size:
	// "client" (the load process, over its life), "server" and "agents"
	// (the largest agent) since they started.
	PeakRSSBytes map[string]int64 `json:"peakRSSBytes,omitempty"`
	// Churn counts the control-plane churn made during the measured load;
	// nil without churn.
	Churn *ChurnCount `json:"churn,omitempty"`
}

// ChurnCount is what a churned measurement changed, and what the agents
// programmed meanwhile.
type ChurnCount struct {
	// PolicyChanges and PodChanges are the state files written or
	// removed.
	PolicyChanges int `json:"policyChanges"`
	PodChanges    int `json:"podChanges"`
	// Applies is the number of states the agents programmed (summed over
	// agents): changes that arrive together are programmed as one.
	Applies int64 `json:"applies"`
	// Seconds is how long the churn ran.
	Seconds float64 `json:"seconds"`
}

// CPUComponents are the keys of Repetition.CPUSeconds, in display order.
var CPUComponents = []string{"client", "server", "agents", "proxies", "softirq"}

// Summary condenses the repetitions of a Result.
type Summary struct {
	// Repetitions is the number of repetitions that completed (without
	// Error); the medians are over those.
	Repetitions int `json:"repetitions"`
	// LatencySeconds holds, for each statistic, the median across
	// completed repetitions of that repetition's value (the median p99 is
	// the median of the repetitions' p99s).
	LatencySeconds workload.Latency `json:"latencySeconds"`
	// ActualQPS is the median achieved rate across completed
	// repetitions.
	ActualQPS float64 `json:"actualQPS"`
	// Errors is the number of failed requests over all repetitions,
	// failed repetitions included.
	Errors int64 `json:"errors"`
	// Count is the number of requests over all repetitions, failed
	// repetitions included.
	Count int64 `json:"count"`
	// CPUMillisPer1k is, per component, the median across completed
	// repetitions of CPU milliseconds per 1,000 requests.
	CPUMillisPer1k map[string]float64 `json:"cpuMillisPer1kRequests,omitempty"`
}

// Summarize condenses reps: medians over the repetitions without Error,
// and sums of requests and failed requests over all of them.
func Summarize(reps []Repetition) Summary {
	var s Summary
	var done []workload.Result
	for _, r := range reps {
		s.Errors += r.Workload.Errors
		s.Count += r.Workload.Count
		if r.Error == "" {
			done = append(done, r.Workload)
		}
	}
	s.Repetitions = len(done)
	if len(done) == 0 {
		return s
	}
	med := func(f func(workload.Result) float64) float64 {
		vs := make([]float64, len(done))
		for i, w := range done {
			vs[i] = f(w)
		}
		return median(vs)
	}
	s.LatencySeconds = workload.Latency{
		Min:  med(func(w workload.Result) float64 { return w.LatencySeconds.Min }),
		Avg:  med(func(w workload.Result) float64 { return w.LatencySeconds.Avg }),
		P50:  med(func(w workload.Result) float64 { return w.LatencySeconds.P50 }),
		P75:  med(func(w workload.Result) float64 { return w.LatencySeconds.P75 }),
		P90:  med(func(w workload.Result) float64 { return w.LatencySeconds.P90 }),
		P99:  med(func(w workload.Result) float64 { return w.LatencySeconds.P99 }),
		P999: med(func(w workload.Result) float64 { return w.LatencySeconds.P999 }),
		Max:  med(func(w workload.Result) float64 { return w.LatencySeconds.Max }),
	}
	s.ActualQPS = med(func(w workload.Result) float64 { return w.ActualQPS })
	for _, comp := range CPUComponents {
		var vs []float64
		for _, rep := range reps {
			if cpu, ok := rep.CPUSeconds[comp]; ok && rep.Error == "" && rep.Workload.Count > 0 {
				vs = append(vs, cpu*1e6/float64(rep.Workload.Count))
			}
		}
		if len(vs) > 0 {
			if s.CPUMillisPer1k == nil {
				s.CPUMillisPer1k = map[string]float64{}
			}
			s.CPUMillisPer1k[comp] = median(vs)
		}
	}
	return s
}

// median returns the median of vs (the mean of the middle two for an even
// count), which it sorts; 0 for none.
func median(vs []float64) float64 {
	if len(vs) == 0 {
		return 0
	}
	slices.Sort(vs)
	n := len(vs)
	if n%2 == 1 {
		return vs[n/2]
	}
	return (vs[n/2-1] + vs[n/2]) / 2
}

// WriteJSON writes r as indented JSON. The output depends only on r: map
// keys are sorted, fields are in declaration order.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(r); err != nil {
		return fmt.Errorf("write report json: %w", err)
	}
	return nil
}

// ReadJSON reads a report.json. A report of another schema version is
// refused, naming both versions.
func ReadJSON(path string) (*Report, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read report: %w", err)
	}
	var head struct {
		SchemaVersion *int `json:"schemaVersion"`
	}
	if err := json.Unmarshal(data, &head); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	switch {
	case head.SchemaVersion == nil:
		return nil, fmt.Errorf("%s: no schemaVersion: not a fastpath report", path)
	case *head.SchemaVersion != SchemaVersion:
		return nil, fmt.Errorf("%s: report schema version %d, this fastpath reads schema version %d",
			path, *head.SchemaVersion, SchemaVersion)
	}
	var r Report
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &r, nil
}

// WriteDir writes r as report.json, report.md and report.html into dir,
// creating it if needed. Each file is replaced atomically.
func WriteDir(dir string, r *Report) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("report directory: %w", err)
	}
	var js, md, page bytes.Buffer
	if err := r.WriteJSON(&js); err != nil {
		return err
	}
	if err := r.WriteMarkdown(&md); err != nil {
		return err
	}
	if err := r.WriteHTML(&page); err != nil {
		return err
	}
	if err := writeFileAtomic(filepath.Join(dir, JSONFile), js.Bytes()); err != nil {
		return err
	}
	if err := writeFileAtomic(filepath.Join(dir, MarkdownFile), md.Bytes()); err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, HTMLFile), page.Bytes())
}

// writeFileAtomic writes data to a temporary file next to path and renames
// it over path.
func writeFileAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp, 0o644)
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
