package run

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/fastpath-bench/fastpath/harness/cluster"
	"github.com/fastpath-bench/fastpath/harness/cluster/netns"
	"github.com/fastpath-bench/fastpath/harness/probe"
	"github.com/fastpath-bench/fastpath/harness/report"
	"github.com/fastpath-bench/fastpath/harness/scenario"
	"github.com/fastpath-bench/fastpath/harness/workload"
)

// Options configure a benchmark run. Zero values mean defaults.
type Options struct {
	// SuitePath is the suite file; empty: scenarios/bench/quick.yaml.
	SuitePath string
	// OutRoot is where run directories are made; empty: reports/runs. The
	// report goes to OutRoot/<timestamp>, and OutRoot/latest points to it.
	OutRoot string
	// OutDir, when set, is used as the run directory as is.
	OutDir string
	// AgentBinary is the fastpath-agent executable; empty: next to this
	// executable, then PATH.
	AgentBinary string
	// Self is the fastpath executable used for workload processes; empty:
	// os.Executable().
	Self string
	// Progress receives a line as each measurement begins (with the time
	// elapsed and an estimate of the time left) and one with its result;
	// nil: os.Stderr.
	Progress io.Writer
	// Version and Commit are recorded in the report.
	Version, Commit string
	// RunID overrides the generated run id (tests).
	RunID string
	// Provider overrides the suite's spec.provider: "netns" or "kind".
	Provider string
	// Kind is the kind provider's configuration.
	Kind KindOptions
}

// Bench runs the suite and writes report.json, report.md and report.html.
// It returns the report (also when a repetition failed) and the run
// directory.
func Bench(ctx context.Context, opts Options) (*report.Report, string, error) {
	if opts.SuitePath == "" {
		opts.SuitePath = filepath.Join("scenarios", "bench", "quick.yaml")
	}
	if opts.OutRoot == "" {
		opts.OutRoot = filepath.Join("reports", "runs")
	}
	if opts.Progress == nil {
		opts.Progress = os.Stderr
	}
	if opts.Self == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, "", err
		}
		opts.Self = exe
	}
	suite, err := scenario.LoadFile(opts.SuitePath)
	if err != nil {
		return nil, "", err
	}
	if opts.Provider != "" {
		if !slices.Contains(scenario.KnownProviders, opts.Provider) {
			return nil, "", fmt.Errorf("--provider %q: want one of %s", opts.Provider, strings.Join(scenario.KnownProviders, ", "))
		}
		suite.Spec.Provider = opts.Provider
	}
	var skipped []string
	if suite.Spec.Provider == "kind" {
		// Everything kind needs is checked before anything is created.
		if skipped, err = prepareKind(ctx, &opts, suite); err != nil {
			return nil, "", err
		}
	} else {
		var keep []string
		if keep, skipped = netnsDatapaths(suite.Spec.Datapaths); len(keep) == 0 {
			return nil, "", fmt.Errorf("netns provider: none of the suite's datapaths %v runs here: %s", suite.Spec.Datapaths, strings.Join(skipped, "; "))
		}
		suite.Spec.Datapaths = keep
	}
	started := time.Now()
	outDir := opts.OutDir
	if outDir == "" {
		outDir = filepath.Join(opts.OutRoot, started.UTC().Format("20060102-150405"))
	}
	if err := os.MkdirAll(filepath.Join(outDir, "logs"), 0o755); err != nil {
		return nil, "", err
	}
	r := &runner{opts: opts, suite: suite, out: outDir}
	rep := &report.Report{
		SchemaVersion: report.SchemaVersion,
		Suite:         suite.Metadata.Name,
		SuiteFile:     opts.SuitePath,
		StartedAt:     started.UTC(),
		Environment:   environment(opts, suite),
	}
	rep.Environment.SkippedDatapaths = skipped
	runErr := r.run(ctx, rep)
	rep.FinishedAt = time.Now().UTC()
	if werr := report.WriteDir(outDir, rep); werr != nil {
		return rep, outDir, errors.Join(runErr, werr)
	}
	if opts.OutDir == "" {
		latest := filepath.Join(opts.OutRoot, "latest")
		_ = os.Remove(latest)
		_ = os.Symlink(filepath.Base(outDir), latest)
	}
	return rep, outDir, runErr
}

type runner struct {
	opts  Options
	suite *scenario.Suite
	out   string
	c     cluster.Cluster
	// servers are the fortio server processes by "pod:port".
	servers map[string]*cluster.Process
	// services is the set of Services installed now (services.go).
	services serviceSet
	// generated is the number of filler policies installed now.
	generated int
}

func (r *runner) logf(format string, args ...any) {
	fmt.Fprintf(r.opts.Progress, "fastpath: "+format+"\n", args...)
}

func (r *runner) run(ctx context.Context, rep *report.Report) (err error) {
	s := r.suite
	id := r.opts.RunID
	if id == "" {
		id = netns.NewRunID()
	}
	spec := cluster.Spec{RunID: id, Nodes: s.Spec.Cluster.Nodes, LogDir: filepath.Join(r.out, "logs"), Namespaces: map[string]map[string]string{}}
	for _, ns := range s.Spec.Cluster.Namespaces {
		spec.Namespaces[ns.Name] = ns.Labels
	}
	spec.Clusters, spec.MeshLeaseTTL = meshSpec(s)
	ports := map[string][]cluster.Port{}
	for _, sc := range s.Spec.Scenarios {
		ports[sc.To] = append(ports[sc.To], cluster.Port{Name: "http", Port: sc.Load.Port, Protocol: "TCP"})
	}
	for _, p := range s.Spec.Cluster.Pods {
		ref := p.Ref()
		spec.Pods = append(spec.Pods, cluster.PodSpec{Namespace: p.Namespace, Name: p.Name, Node: p.Node, Labels: p.Labels, Ports: dedupPorts(ports[ref])})
	}
	r.logf("building %s cluster %s: %d nodes, %d pods", s.Spec.Provider, id, len(spec.Nodes), len(spec.Pods))
	var c cluster.Cluster
	switch s.Spec.Provider {
	case "kind":
		c, err = r.buildKind(ctx, spec, rep)
	default:
		c, err = netns.NewProvider(netns.Options{AgentBinary: r.opts.AgentBinary}).Create(ctx, spec)
	}
	if err != nil {
		return fmt.Errorf("build cluster: %w", err)
	}
	r.c = c
	defer func() {
		r.logf("removing cluster %s", id)
		if derr := c.Destroy(context.Background()); derr != nil {
			err = errors.Join(err, fmt.Errorf("clean up: %w", derr))
		}
	}()

	if err := r.writePolicies(); err != nil {
		return err
	}
	if err := r.checkScenariosAllowed(); err != nil {
		return err
	}
	if err := r.startServers(ctx); err != nil {
		return err
	}
	if s.Spec.Propagation != nil {
		stop, err := r.propagationSetup()
		if err != nil {
			return err
		}
		defer stop()
	}

	results := map[string]*report.Result{}
	for _, sc := range s.Spec.Scenarios {
		for _, dp := range s.Spec.Datapaths {
			if !applicable(sc, dp) {
				continue
			}
			res := &report.Result{
				Scenario: sc.Name,
				Datapath: dp,
				Path:     r.path(sc),
				Load: report.LoadSpec{
					Protocol:        sc.Load.Protocol,
					QPS:             sc.Load.QPS,
					Connections:     sc.Load.Connections,
					DurationSeconds: sc.Load.Duration.Seconds(),
					PayloadBytes:    sc.Load.PayloadBytes,
				},
			}
			if c := sc.Churn; c != nil {
				res.Load.ChurnPoliciesPerSecond, res.Load.ChurnPodsPerSecond = c.PoliciesPerSecond, c.PodsPerSecond
			}
			results[sc.Name+"\x00"+dp] = res
			rep.Results = append(rep.Results, *res)
		}
	}
	reps := s.Spec.Repetitions
	prog := newProgress(len(results), 1, reps, time.Now)
	var errs []error
	env := &rep.Environment
	for rep := 1; rep <= reps; rep++ {
		for _, dp := range s.Spec.Datapaths {
			if err := ctx.Err(); err != nil {
				return err
			}
			r.logf("repetition %d/%d: starting %s agents", rep, reps, dp)
			if err := startAgents(ctx, c, dp); err != nil {
				_ = c.StopAgents(context.Background())
				return fmt.Errorf("repetition %d, datapath %s: %w", rep, dp, err)
			}
			if rep == 1 {
				env.Agents = append(env.Agents, agentInfo(ctx, c, dp))
			}
			for _, sc := range s.Spec.Scenarios {
				if !applicable(sc, dp) {
					continue
				}
				r.logf("%s", prog.begin(sc.Name, dp, rep))
				res := results[sc.Name+"\x00"+dp]
				var one report.Repetition
				err := r.installPolicies(ctx, sc)
				if err == nil {
					err = r.installServices(ctx, sc)
				}
				if err != nil {
					one = report.Repetition{Index: rep, StartedAt: time.Now().UTC(), Error: err.Error()}
				} else {
					one = r.measure(ctx, sc, rep)
				}
				prog.done()
				res.Repetitions = append(res.Repetitions, one)
				l := one.Workload.LatencySeconds
				if one.Error != "" {
					errs = append(errs, fmt.Errorf("%s/%s repetition %d: %s", sc.Name, dp, rep, one.Error))
				}
				r.logf("[%d/%d] %-12s %-6s rep %d: p50 %s p99 %s qps %.0f errors %d%s", prog.step, prog.total, sc.Name, dp, rep,
					report.FormatSeconds(l.P50), report.FormatSeconds(l.P99), one.Workload.ActualQPS, one.Workload.Errors, errSuffix(one.Error))
			}
			if err := c.StopAgents(ctx); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if s.Spec.Propagation != nil {
		for _, dp := range s.Spec.Datapaths {
			if dp == "none" {
				continue // nothing is enforced: no change takes effect
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			r.logf("propagation: starting %s agents", dp)
			if err := startAgents(ctx, c, dp); err != nil {
				_ = c.StopAgents(context.Background())
				return fmt.Errorf("propagation, datapath %s: %w", dp, err)
			}
			ps := r.measurePropagation(ctx, dp)
			for _, p := range ps {
				r.logf("propagation on %s, %s: ack p50 %s p99 %s, enforced p50 %s p99 %s, %d failed", dp, p.Change,
					report.FormatSeconds(p.Summary.AckP50), report.FormatSeconds(p.Summary.AckP99),
					report.FormatSeconds(p.Summary.EnforcedP50), report.FormatSeconds(p.Summary.EnforcedP99), len(p.Errors))
				for _, e := range p.Errors {
					errs = append(errs, fmt.Errorf("propagation on %s, %s: %s", dp, p.Change, e))
				}
			}
			rep.Propagation = append(rep.Propagation, ps...)
			if err := c.StopAgents(ctx); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if s.Spec.Partition != nil {
		for _, dp := range s.Spec.Datapaths {
			if !meshed(dp) {
				r.logf("partition: %s has no cluster mesh (nothing to cut off): skipped", dp)
				continue
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			r.logf("partition: starting %s agents", dp)
			if err := startAgents(ctx, c, dp); err != nil {
				_ = c.StopAgents(context.Background())
				return fmt.Errorf("partition, datapath %s: %w", dp, err)
			}
			pt := r.measurePartition(ctx, dp)
			r.logf("partition on %s: %s cut for %s (lease TTL %s): new connections last worked at %s, failed from %s; %d/%d established kept; recovered after %s",
				dp, pt.Cut, report.FormatSeconds(pt.CutSeconds), report.FormatSeconds(pt.LeaseTTLSeconds), fmtOpt(pt.NewKeptWorkingSeconds),
				fmtOpt(pt.NewFailedFromSeconds), pt.EstablishedKept, pt.Established, fmtOpt(pt.RecoveredSeconds))
			for _, e := range pt.Errors {
				errs = append(errs, fmt.Errorf("partition on %s: %s", dp, e))
			}
			rep.Partition = append(rep.Partition, pt)
			if err := c.StopAgents(ctx); err != nil {
				errs = append(errs, err)
			}
		}
	}
	for i := range rep.Results {
		res := results[rep.Results[i].Scenario+"\x00"+rep.Results[i].Datapath]
		res.Summary = report.Summarize(res.Repetitions)
		rep.Results[i] = *res
	}
	return errors.Join(errs...)
}

func fmtOpt(v *float64) string {
	if v == nil {
		return "never"
	}
	return report.FormatSeconds(*v)
}

func errSuffix(e string) string {
	if e == "" {
		return ""
	}
	return " (" + e + ")"
}

func dedupPorts(in []cluster.Port) []cluster.Port {
	seen := map[int]bool{}
	var out []cluster.Port
	for i, p := range in {
		if seen[p.Port] {
			continue
		}
		seen[p.Port] = true
		if i > 0 {
			p.Name = fmt.Sprintf("http-%d", p.Port)
		}
		out = append(out, p)
	}
	return out
}

// path says whether a scenario crosses nodes.
func (r *runner) path(sc scenario.Scenario) string {
	from, _ := r.suite.PodByRef(sc.From)
	to, _ := r.suite.PodByRef(sc.To)
	if from.Node == to.Node {
		return "same-node"
	}
	if c := &r.suite.Spec.Cluster; c.ClusterOfNode(from.Node) != c.ClusterOfNode(to.Node) {
		return "cross-cluster"
	}
	return "cross-node"
}

func (r *runner) writePolicies() error {
	var buf bytes.Buffer
	for _, f := range r.suite.Spec.Policies.Files {
		data, err := os.ReadFile(f)
		if err != nil {
			return fmt.Errorf("policies: %w", err)
		}
		buf.WriteString("---\n")
		buf.Write(data)
		buf.WriteString("\n")
	}
	if buf.Len() > 0 {
		if _, err := r.c.WriteState("10-policies.yaml", buf.Bytes()); err != nil {
			return err
		}
	}
	if n := r.suite.Spec.Policies.Generated; n > 0 {
		data, err := netns.MarshalDocs(GenerateFillers(r.suite, n))
		if err != nil {
			return err
		}
		if _, err := r.c.WriteState(generatedStateFile, data); err != nil {
			return err
		}
	}
	r.generated = r.suite.Spec.Policies.Generated
	return nil
}

const generatedStateFile = "20-generated.yaml"

// installPolicies installs the scenario's number of filler policies
// (scenario policies, else the suite's) when it differs from what is
// installed, and waits until every agent has programmed them.
func (r *runner) installPolicies(ctx context.Context, sc scenario.Scenario) error {
	want := r.suite.Spec.Policies.Generated
	if sc.Policies != nil {
		want = *sc.Policies
	}
	if want == r.generated {
		return nil
	}
	since := time.Now()
	var hash string
	var err error
	if want == 0 {
		hash, err = r.c.RemoveState(generatedStateFile)
	} else {
		var data []byte
		data, err = netns.MarshalDocs(GenerateFillers(r.suite, want))
		if err == nil {
			hash, err = r.c.WriteState(generatedStateFile, data)
		}
	}
	if err != nil {
		return fmt.Errorf("policies for %s: %w", sc.Name, err)
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	if _, err := r.c.WaitProgrammed(wctx, hash, since); err != nil {
		return fmt.Errorf("policies for %s: %w", sc.Name, err)
	}
	r.logf("%d generated policies installed in %s", want, time.Since(since).Round(time.Millisecond))
	r.generated = want
	return nil
}

// checkScenariosAllowed refuses a suite whose own policies would deny its
// scenarios' traffic (the reference evaluator decides), before anything is
// measured.
func (r *runner) checkScenariosAllowed() error {
	sm, err := r.loadModel()
	if err != nil {
		return fmt.Errorf("desired state: %w", err)
	}
	pods := map[string]netip.Addr{}
	for _, p := range r.c.Pods() {
		pods[p.Key()] = p.IP
	}
	var errs []error
	for i, sc := range r.suite.Spec.Scenarios {
		port := trafficPort(sc.Load)
		for _, dp := range r.enforcing() {
			v := sm.verdict(dp, sc.From, sc.To, pods[sc.From], pods[sc.To], port)
			if !v.Allowed {
				on := ""
				if sm.single == nil {
					on = " on " + dp
				}
				errs = append(errs, fmt.Errorf("%s: spec.scenarios[%d] (%s): the suite's policies deny %s -> %s TCP/%d%s: %s",
					r.opts.SuitePath, i, sc.Name, sc.From, sc.To, port, on, v.Reason))
			}
		}
	}
	return errors.Join(errs...)
}

// podIP returns the address of pod ref ("namespace/name").
func (r *runner) podIP(ref string) netip.Addr {
	for _, p := range r.c.Pods() {
		if p.Key() == ref {
			return p.IP
		}
	}
	return netip.Addr{}
}

// trafficPort is the server port a scenario's load goes to: the HTTP port,
// the TCP echo server's (port+1) or the gRPC server's (port+2).
func trafficPort(l scenario.Load) int {
	switch l.Protocol {
	case "tcp":
		return l.Port + 1
	case "grpc":
		return l.Port + 2
	}
	return l.Port
}

func (r *runner) startServers(ctx context.Context) error {
	type srv struct {
		pod  string
		port int
		sc   scenario.Scenario
	}
	seen := map[string]bool{}
	var servers []srv
	for _, sc := range r.suite.Spec.Scenarios {
		key := fmt.Sprintf("%s:%d", sc.To, sc.Load.Port)
		if !seen[key] {
			seen[key] = true
			servers = append(servers, srv{sc.To, sc.Load.Port, sc})
		}
	}
	pods := map[string]cluster.Pod{}
	for _, p := range r.c.Pods() {
		pods[p.Key()] = p
	}
	for _, s := range servers {
		logPath := filepath.Join(r.out, "logs", "server-"+strings.ReplaceAll(s.pod, "/", "-")+fmt.Sprintf("-%d.log", s.port))
		logf, err := os.Create(logPath)
		if err != nil {
			return err
		}
		cmd := exec.Command(r.opts.Self, "workload", "serve", "--port", fmt.Sprint(s.port), "--payload-bytes", fmt.Sprint(s.sc.Load.PayloadBytes))
		cmd.Stdout, cmd.Stderr = logf, logf
		proc, err := r.c.StartIn(s.pod, cmd)
		logf.Close()
		if err != nil {
			return fmt.Errorf("server in %s: %w", s.pod, err)
		}
		if r.servers == nil {
			r.servers = map[string]*cluster.Process{}
		}
		r.servers[fmt.Sprintf("%s:%d", s.pod, s.port)] = proc
		// Wait until it answers (no agents run yet, so nothing filters).
		deadline := time.Now().Add(10 * time.Second)
		for {
			res := probe.Connect(ctx, r.c.PodNetns(s.sc.From), pods[s.pod].IP, s.port, "TCP", 200*time.Millisecond)
			if res.Err == nil || !strings.Contains(res.Err.Error(), "refused") {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("server in %s on port %d did not come up (see %s): %v", s.pod, s.port, logPath, res.Err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return nil
}

// measure runs a warm-up and then the measured load of one scenario, as a
// fortio client process in the client pod.
func (r *runner) measure(ctx context.Context, sc scenario.Scenario, index int) report.Repetition {
	rep := report.Repetition{Index: index, StartedAt: time.Now().UTC()}
	to := r.podIP(sc.To)
	if sc.Via == "service" {
		to = benchServiceVIP
	}
	url := fmt.Sprintf("http://%s:%d/", to, sc.Load.Port)
	switch sc.Load.Protocol {
	case "tcp":
		url = fmt.Sprintf("tcp://%s:%d", to, trafficPort(sc.Load))
	case "grpc":
		url = fmt.Sprintf("grpc://%s:%d", to, trafficPort(sc.Load))
	}
	if w := r.suite.Spec.Warmup.Duration; w > 0 {
		if _, _, _, err := r.load(ctx, sc, url, w); err != nil {
			rep.Error = "warm-up: " + err.Error()
			return rep
		}
	}
	serverPID := 0
	if p := r.servers[fmt.Sprintf("%s:%d", sc.To, sc.Load.Port)]; p != nil {
		serverPID = p.PID()
	}
	before := r.snapshot(serverPID)
	var churn *churner
	if sc.Churn != nil {
		churn = r.startChurn(ctx, sc)
	}
	res, clientCPU, clientRSS, err := r.load(ctx, sc, url, sc.Load.Duration.Duration)
	after := r.snapshot(serverPID)
	if churn != nil {
		count, cerr := churn.finish(ctx)
		rep.Churn = count
		if cerr != nil && err == nil {
			err = cerr
		}
	}
	if res != nil {
		rep.Workload = *res
	}
	rep.PeakRSSBytes = r.peakRSS(serverPID)
	if clientRSS > 0 {
		rep.PeakRSSBytes["client"] = clientRSS
	}
	rep.CPUSeconds = map[string]float64{
		"client":  clientCPU,
		"server":  after.server - before.server,
		"agents":  after.agents - before.agents,
		"softirq": after.softirq - before.softirq,
	}
	if len(after.proxyCPU) > 0 {
		rep.CPUSeconds["proxies"] = proxiesDelta(before, after)
	}
	if err != nil {
		rep.Error = err.Error()
	}
	return rep
}

// load runs one fortio client process and returns its result, the CPU
// seconds it used and its peak RSS in bytes.
func (r *runner) load(ctx context.Context, sc scenario.Scenario, url string, d time.Duration) (*workload.Result, float64, int64, error) {
	args := []string{"workload", "load",
		"--url", url,
		"--protocol", sc.Load.Protocol,
		"--qps", fmt.Sprint(sc.Load.QPS),
		"--connections", fmt.Sprint(sc.Load.Connections),
		"--duration", d.String(),
		"--payload-bytes", fmt.Sprint(sc.Load.PayloadBytes),
	}
	cmd := exec.Command(r.opts.Self, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	p, err := r.c.StartIn(sc.From, cmd)
	if err != nil {
		return nil, 0, 0, err
	}
	if p.Container != nil {
		return containerLoad(ctx, sc, p.Container, d, &stdout)
	}
	done := make(chan error, 1)
	go func() { done <- p.Cmd.Wait() }()
	var werr error
	select {
	case werr = <-done:
	case <-ctx.Done():
		_ = p.Cmd.Process.Kill()
		<-done
		return nil, 0, 0, ctx.Err()
	case <-time.After(d + 60*time.Second):
		_ = p.Cmd.Process.Kill()
		<-done
		return nil, 0, 0, fmt.Errorf("load client in %s did not finish", sc.From)
	}
	cpu := 0.0
	var rss int64
	if ps := p.Cmd.ProcessState; ps != nil {
		cpu = (ps.UserTime() + ps.SystemTime()).Seconds()
		if ru, ok := ps.SysUsage().(*syscall.Rusage); ok {
			rss = ru.Maxrss << 10 // kilobytes on Linux
		}
	}
	var res workload.Result
	if jerr := json.Unmarshal(stdout.Bytes(), &res); jerr != nil {
		return nil, cpu, rss, fmt.Errorf("load client in %s: %v: %s", sc.From, errors.Join(werr, jerr), strings.TrimSpace(stderr.String()))
	}
	if werr != nil {
		return &res, cpu, rss, fmt.Errorf("load client in %s: %v: %s", sc.From, werr, lastLine(stderr.String()))
	}
	return loadErrors(&res, cpu, rss)
}

// containerLoad waits for a load client that runs as a container of its
// pod (kind) and reads its result from its log; its CPU and peak RSS are
// the ones it measured itself.
func containerLoad(ctx context.Context, sc scenario.Scenario, c *cluster.Container, d time.Duration, log *bytes.Buffer) (*workload.Result, float64, int64, error) {
	select {
	case <-c.Done:
	case <-ctx.Done():
		c.Stop()
		return nil, 0, 0, ctx.Err()
	case <-time.After(d + 60*time.Second):
		c.Stop()
		return nil, 0, 0, fmt.Errorf("load client %s in %s did not finish", c.Name, sc.From)
	}
	werr := c.Err()
	res, jerr := workload.DecodeResult(log.Bytes())
	if jerr != nil {
		return nil, 0, 0, fmt.Errorf("load client %s in %s: %v: %s", c.Name, sc.From, errors.Join(werr, jerr), lastLine(log.String()))
	}
	if werr != nil {
		return res, res.ProcessCPUSeconds, res.ProcessPeakRSSBytes, fmt.Errorf("load client %s in %s: %v", c.Name, sc.From, werr)
	}
	return loadErrors(res, res.ProcessCPUSeconds, res.ProcessPeakRSSBytes)
}

func loadErrors(res *workload.Result, cpu float64, rss int64) (*workload.Result, float64, int64, error) {
	if res.Errors > 0 {
		return res, cpu, rss, fmt.Errorf("%d of %d requests failed", res.Errors, res.Count)
	}
	return res, cpu, rss, nil
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

func environment(opts Options, s *scenario.Suite) report.Environment {
	env := report.Environment{
		Cores:           runtime.NumCPU(),
		GoVersion:       runtime.Version(),
		FastpathVersion: opts.Version,
		FastpathCommit:  opts.Commit,
		Provider:        s.Spec.Provider,
		Datapaths:       s.Spec.Datapaths,
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		env.Kernel = strings.TrimSpace(string(b))
	}
	env.Hostname, _ = os.Hostname()
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, "model name") {
				if i := strings.IndexByte(line, ':'); i >= 0 {
					env.CPUModel = strings.TrimSpace(line[i+1:])
				}
				break
			}
		}
	}
	return env
}

// agentInfo asks one of the datapath's agents what it chose on this kernel.
func agentInfo(ctx context.Context, c cluster.Cluster, dp string) report.AgentInfo {
	info := report.AgentInfo{Datapath: dp}
	for _, n := range c.Nodes() {
		st, err := c.AgentClient(n).Status(ctx)
		if err == nil {
			info.AttachMode, info.Features, info.GoMaxProcs = st.AttachMode, st.Features, st.GoMaxProcs
			return info
		}
	}
	return info
}

// applicable says whether scenario sc can run on datapath dp: the none
// datapath (nothing attached) has no load balancer for a ClusterIP.
func applicable(sc scenario.Scenario, dp string) bool {
	base, _, _ := strings.Cut(dp, "+")
	return !(base == "none" && sc.Via == "service")
}

// startAgents starts the agents of datapath entry dp (a datapath and its
// options, "ebpf+sockmap").
func startAgents(ctx context.Context, c cluster.Cluster, dp string) error {
	base, flags, err := scenario.AgentArgs(dp)
	if err != nil {
		return err
	}
	return c.StartAgents(ctx, cluster.AgentOptions{Datapath: base, ExtraArgs: flags})
}

// meshSpec turns the suite's spec.cluster.clusters into the provider's
// (nil: one cluster). Validation has checked the service CIDRs.
func meshSpec(s *scenario.Suite) ([]cluster.ClusterSpec, time.Duration) {
	var out []cluster.ClusterSpec
	for _, mc := range s.Spec.Cluster.Clusters {
		cs := cluster.ClusterSpec{Name: mc.Name, ID: mc.ID, Nodes: mc.Nodes}
		if mc.ServiceCIDR != "" {
			cs.ServiceCIDR, _ = netip.ParsePrefix(mc.ServiceCIDR)
		}
		out = append(out, cs)
	}
	return out, s.Spec.Cluster.MeshLeaseTTL.Duration
}
