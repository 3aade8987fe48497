//go:build e2e

package kind

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/e2e-framework/pkg/envconf"
	"sigs.k8s.io/e2e-framework/pkg/features"

	"github.com/fastpath-bench/fastpath/datapath/model"
	"github.com/fastpath-bench/fastpath/harness/cluster"
	"github.com/fastpath-bench/fastpath/harness/cluster/netns"
	"github.com/fastpath-bench/fastpath/harness/probe"
	"github.com/fastpath-bench/fastpath/harness/report"
	"github.com/fastpath-bench/fastpath/harness/run"
	"github.com/fastpath-bench/fastpath/harness/scenario"
	"github.com/fastpath-bench/fastpath/harness/workload"
)

// benchSuites are the suites whose scenarios are features (suite=bench,
// tier=smoke). Their loads run once on the eBPF datapath: this checks
// that the benchmark's traffic flows through the datapath on kind with
// the suite's policies installed, and logs the latency; the comparison
// of datapaths with repetitions is `fastpath bench --provider kind`.
var benchSuites = []string{"scenarios/bench/quick.yaml"}

// State names of the suite's policies, as harness/run writes them.
const (
	benchPoliciesState  = "10-policies.yaml"
	benchGeneratedState = "20-generated.yaml"
)

// minQPSShare is the least share of a fixed rate a load must reach: far
// below it, connections stall (the 2-core machines this runs on reach
// the quick suite's 1000/s with room to spare).
const minQPSShare = 0.5

// benchSuite is a loaded suite and the cluster its pods make.
type benchSuite struct {
	path  string
	suite *scenario.Suite
	spec  cluster.Spec
}

func buildBenchFeatures() (built, error) {
	var out built
	for _, path := range benchSuites {
		s, err := scenario.LoadFile(path)
		if err != nil {
			return built{}, err
		}
		bs := &benchSuite{path: path, suite: s, spec: suiteSpec(s)}
		for _, sc := range s.Spec.Scenarios {
			// What harness/run adds around some scenarios (Services,
			// churn) is not repeated here.
			if sc.Via == "service" || sc.Services > 0 || sc.Churn != nil {
				return built{}, fmt.Errorf("%s: scenario %s: Services and churn are for fastpath bench --provider kind, not e2e/kind", path, sc.Name)
			}
			out.features = append(out.features, scenarioFeature(bs, sc))
		}
		out.nodes = max(out.nodes, len(bs.spec.Nodes))
	}
	return out, nil
}

// suiteSpec is the suite's cluster as harness/run builds it: the
// scenarios' servers have their ports.
func suiteSpec(s *scenario.Suite) cluster.Spec {
	spec := cluster.Spec{Nodes: s.Spec.Cluster.Nodes, Namespaces: map[string]map[string]string{}}
	for _, ns := range s.Spec.Cluster.Namespaces {
		spec.Namespaces[ns.Name] = ns.Labels
	}
	ports := map[string][]cluster.Port{}
	for _, sc := range s.Spec.Scenarios {
		name := "http"
		if len(ports[sc.To]) > 0 {
			name = fmt.Sprintf("http-%d", sc.Load.Port)
		}
		dup := false
		for _, p := range ports[sc.To] {
			dup = dup || p.Port == sc.Load.Port
		}
		if !dup {
			ports[sc.To] = append(ports[sc.To], cluster.Port{Name: name, Port: sc.Load.Port, Protocol: "TCP"})
		}
	}
	for _, p := range s.Spec.Cluster.Pods {
		spec.Pods = append(spec.Pods, cluster.PodSpec{Namespace: p.Namespace, Name: p.Name, Node: p.Node, Labels: p.Labels, Ports: ports[p.Ref()]})
	}
	return spec
}

// TestBench runs the benchmark scenarios on the kind cluster, a feature
// per scenario: Setup gives the topology the suite's pods (once per
// suite), writes its policies (its files and the generated fillers) and
// waits until they are programmed, checks the model allows the
// scenario's traffic, and starts the fortio server; the assessment runs
// the warm-up and the measured load from the client pod and wants every
// request to succeed; Teardown stops the server and removes the policies.
func TestBench(t *testing.T) {
	testenv.Test(t, benchFeatures...)
}

// benchRun is a scenario set up by its feature's Setup.
type benchRun struct {
	server *cluster.Process
	// log receives the server's output: as it writes on netns, once it
	// has ended when it runs as a container of its pod (kind).
	log     *os.File
	logPath string
	url     string
}

// stop ends the server and closes its log.
func (br *benchRun) stop() {
	stopProcess(br.server)
	br.log.Close()
}

type benchRunKey struct{}

func scenarioFeature(bs *benchSuite, sc scenario.Scenario) features.Feature {
	return features.New("bench/"+bs.suite.Metadata.Name+"/"+sc.Name).
		WithLabel("suite", "bench").
		WithLabel("bench", bs.suite.Metadata.Name).
		WithLabel("scenario", sc.Name).
		WithLabel("tier", "smoke").
		Setup(setUpScenario(bs, sc)).
		Assess(fmt.Sprintf("%s load %s -> %s", sc.Load.Protocol, sc.From, sc.To), assessLoad(bs, sc)).
		Teardown(tearDownScenario(sc)).
		Feature()
}

// trafficPort is the server port a load goes to: fortio's HTTP port,
// its TCP echo (port+1) or gRPC ping (port+2), as harness/run has it.
func trafficPort(l scenario.Load) int {
	switch l.Protocol {
	case "tcp":
		return l.Port + 1
	case "grpc":
		return l.Port + 2
	}
	return l.Port
}

func podIP(s *shared, ref string) netip.Addr {
	for _, p := range s.topo.Pods() {
		if p.Key() == ref {
			return p.IP
		}
	}
	return netip.Addr{}
}

func setUpScenario(bs *benchSuite, sc scenario.Scenario) features.Func {
	return func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
		s := sharedOf(ctx, t)
		if ctx.Err() != nil {
			// Interrupted (Ctrl-C, or -timeout close): Finish deletes the
			// cluster once the remaining features have failed fast.
			t.Fatalf("not run: %v", context.Cause(ctx))
		}
		if layout := "suite " + bs.path; s.layout != layout {
			rctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
			err := s.topo.Reset(rctx, bs.spec)
			cancel()
			if err != nil {
				t.Fatalf("%s: set up pods: %v", bs.path, err)
			}
			s.layout = layout
		}
		to := podIP(s, sc.To)
		// The API server, asked through e2e-framework's client, has the
		// server pod running at the address the topology gave it.
		ns, name, _ := strings.Cut(sc.To, "/")
		cl, err := cfg.NewClient()
		if err != nil {
			t.Fatal(err)
		}
		var pod corev1.Pod
		if err := cl.Resources().Get(ctx, name, ns, &pod); err != nil {
			t.Fatalf("pod %s: %v", sc.To, err)
		}
		if pod.Status.Phase != corev1.PodRunning || pod.Status.PodIP != to.String() {
			t.Fatalf("pod %s: %s at %q in the API server, the topology has %s", sc.To, pod.Status.Phase, pod.Status.PodIP, to)
		}

		since := time.Now()
		n, err := writePolicies(s, bs.suite, sc)
		if err != nil {
			t.Fatalf("%s: %v", bs.path, err)
		}
		t.Logf("%d policies programmed in %s", n, time.Since(since).Round(time.Millisecond))
		if err := checkAllowed(s, sc); err != nil {
			t.Fatalf("%s: scenario %s: %v", bs.path, sc.Name, err)
		}

		port := trafficPort(sc.Load)
		logPath := filepath.Join(t.TempDir(), "server.log")
		logf, err := os.Create(logPath)
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(s.self, "workload", "serve", "--port", fmt.Sprint(sc.Load.Port), "--payload-bytes", fmt.Sprint(sc.Load.PayloadBytes))
		cmd.Stdout, cmd.Stderr = logf, logf
		server, err := s.topo.StartIn(sc.To, cmd)
		if err != nil {
			logf.Close()
			t.Fatalf("server in %s: %v", sc.To, err)
		}
		br := &benchRun{server: server, log: logf, logPath: logPath}
		// Up when it answers the client (through the policies, which
		// allow it): fortio's 200 on its HTTP port, or the echo on the
		// TCP one (probe.Connect wants its bytes back).
		ready := func() probe.Result {
			if sc.Load.Protocol == "tcp" {
				return probe.Connect(ctx, s.topo.PodNetns(sc.From), to, port, "TCP", 500*time.Millisecond)
			}
			r := probe.HTTP(ctx, s.topo.PodNetns(sc.From), 0, to, sc.Load.Port, "GET", "/", 500*time.Millisecond)
			// Connected needs the conformance probe server's header.
			r.Connected = r.Status == http.StatusOK
			return r
		}
		var last probe.Result
		for deadline := time.Now().Add(15 * time.Second); ; {
			if last = ready(); last.Connected {
				break
			}
			if time.Now().After(deadline) || ctx.Err() != nil {
				br.stop()
				t.Fatalf("server in %s on port %d: %s gets no answer (HTTP status %d): %v%s", sc.To, port, sc.From, last.Status, last.Err, tail(logPath))
			}
			time.Sleep(100 * time.Millisecond)
		}
		br.url = fmt.Sprintf("http://%s:%d/", to, port)
		switch sc.Load.Protocol {
		case "tcp":
			br.url = fmt.Sprintf("tcp://%s:%d", to, port)
		case "grpc":
			br.url = fmt.Sprintf("grpc://%s:%d", to, port)
		}
		return context.WithValue(ctx, benchRunKey{}, br)
	}
}

// writePolicies writes the suite's policy files and its generated
// fillers (the scenario's number when it sets one) as harness/run does,
// waits until every agent has programmed them, and returns how many
// policies that is.
func writePolicies(s *shared, suite *scenario.Suite, sc scenario.Scenario) (int, error) {
	var buf bytes.Buffer
	for _, f := range suite.Spec.Policies.Files {
		data, err := os.ReadFile(f)
		if err != nil {
			return 0, fmt.Errorf("policies: %w", err)
		}
		buf.WriteString("---\n")
		buf.Write(data)
		buf.WriteString("\n")
	}
	tok, err := s.topo.RemoveState(benchPoliciesState)
	if buf.Len() > 0 {
		tok, err = s.topo.WriteState(benchPoliciesState, buf.Bytes())
	}
	if err != nil {
		return 0, err
	}
	n := suite.Spec.Policies.Generated
	if sc.Policies != nil {
		n = *sc.Policies
	}
	if n > 0 {
		data, err := netns.MarshalDocs(run.GenerateFillers(suite, n))
		if err == nil {
			tok, err = s.topo.WriteState(benchGeneratedState, data)
		}
		if err != nil {
			return 0, fmt.Errorf("generated policies: %w", err)
		}
	}
	wctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if _, err := s.topo.WaitProgrammed(wctx, tok, time.Now()); err != nil {
		return 0, err
	}
	objs, err := model.LoadDir(s.topo.StateDir())
	if err != nil {
		return 0, err
	}
	return len(objs.NetworkPolicies), nil
}

// checkAllowed refuses a scenario whose traffic the installed policies
// deny (the reference evaluator decides): its load could only fail.
func checkAllowed(s *shared, sc scenario.Scenario) error {
	objs, err := model.LoadDir(s.topo.StateDir())
	if err != nil {
		return fmt.Errorf("desired state: %w", err)
	}
	if _, err := model.Resolve(objs); err != nil {
		return fmt.Errorf("desired state: %w", err)
	}
	port := trafficPort(sc.Load)
	if v := model.Evaluate(objs, podIP(s, sc.From), podIP(s, sc.To), model.ProtoTCP, uint16(port)); !v.Allowed {
		return fmt.Errorf("the policies deny %s -> %s TCP/%d: %s", sc.From, sc.To, port, v.Reason)
	}
	return nil
}

func assessLoad(bs *benchSuite, sc scenario.Scenario) features.Func {
	return func(ctx context.Context, t *testing.T, _ *envconf.Config) context.Context {
		s := sharedOf(ctx, t)
		br, _ := ctx.Value(benchRunKey{}).(*benchRun)
		if br == nil {
			t.Fatal("the scenario was not set up")
		}
		if w := bs.suite.Spec.Warmup.Duration; w > 0 {
			if _, err := load(ctx, s, sc, br.url, w); err != nil {
				t.Fatalf("warm-up: %v%s", err, tail(br.logPath))
			}
		}
		res, err := load(ctx, s, sc, br.url, sc.Load.Duration.Duration)
		if err != nil {
			t.Fatalf("%v%s", err, tail(br.logPath))
		}
		l := res.LatencySeconds
		t.Logf("%s %s -> %s on %s: %.0f/s (asked %.0f/s) over %d connections, %d requests, %d errors; latency p50 %s p90 %s p99 %s max %s",
			sc.Load.Protocol, sc.From, sc.To, datapath, res.ActualQPS, sc.Load.QPS, res.Connections, res.Count, res.Errors,
			report.FormatSeconds(l.P50), report.FormatSeconds(l.P90), report.FormatSeconds(l.P99), report.FormatSeconds(l.Max))
		if res.Count == 0 {
			t.Error("no request was made")
		}
		if res.Errors > 0 {
			t.Errorf("%d of %d requests failed: %v", res.Errors, res.Count, res.ErrorsByKind)
		}
		if sc.Load.QPS > 0 && res.ActualQPS < minQPSShare*sc.Load.QPS {
			t.Errorf("%.0f requests/s, asked %.0f/s: below %.0f%% of the rate", res.ActualQPS, sc.Load.QPS, 100*minQPSShare)
		}
		return ctx
	}
}

// load runs one fortio client (fastpath workload load) in the
// scenario's client pod for d and returns its result.
func load(ctx context.Context, s *shared, sc scenario.Scenario, url string, d time.Duration) (*workload.Result, error) {
	cmd := exec.Command(s.self, "workload", "load",
		"--url", url,
		"--protocol", sc.Load.Protocol,
		"--qps", fmt.Sprint(sc.Load.QPS),
		"--connections", fmt.Sprint(sc.Load.Connections),
		"--duration", d.String(),
		"--payload-bytes", fmt.Sprint(sc.Load.PayloadBytes))
	// One buffer for both: a container's log merges them, and the result
	// is found among the other lines (workload.DecodeResult).
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	p, err := s.topo.StartIn(sc.From, cmd)
	if err != nil {
		return nil, fmt.Errorf("load client in %s: %w", sc.From, err)
	}
	werr := waitProcess(ctx, p, d+time.Minute)
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	res, jerr := workload.DecodeResult(out.Bytes())
	if jerr != nil {
		return nil, fmt.Errorf("load client in %s: %v: %s", sc.From, errors.Join(werr, jerr), lastLines(out.String()))
	}
	if werr != nil {
		return res, fmt.Errorf("load client in %s: %v: %s", sc.From, werr, lastLines(out.String()))
	}
	return res, nil
}

// waitProcess waits until a workload ends, within timeout (then it is
// stopped), and says how it ended: on kind it is a container of its pod
// (its output is written once it has ended), elsewhere a host process.
func waitProcess(ctx context.Context, p *cluster.Process, timeout time.Duration) error {
	done := make(chan struct{})
	var err error
	if c := p.Container; c != nil {
		go func() {
			<-c.Done
			err = c.Err()
			close(done)
		}()
	} else {
		go func() {
			err = p.Cmd.Wait()
			close(done)
		}()
	}
	select {
	case <-done:
		return err
	case <-ctx.Done():
	case <-time.After(timeout):
	}
	stopProcess(p)
	<-done
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return fmt.Errorf("%s did not finish within %s", p.Name, timeout)
}

// stopProcess ends a workload (SIGTERM, then SIGKILL) and waits for it,
// so that Destroy finds nothing left to stop.
func stopProcess(p *cluster.Process) {
	if c := p.Container; c != nil {
		c.Stop()
		return
	}
	done := make(chan struct{})
	go func() { _ = p.Cmd.Wait(); close(done) }()
	_ = p.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = p.Cmd.Process.Kill()
		<-done
	}
}

func tearDownScenario(sc scenario.Scenario) features.Func {
	return func(ctx context.Context, t *testing.T, _ *envconf.Config) context.Context {
		s := sharedOf(ctx, t)
		if br, _ := ctx.Value(benchRunKey{}).(*benchRun); br != nil {
			br.stop()
		}
		tok, err := s.topo.RemoveState(benchGeneratedState)
		if err == nil {
			tok, err = s.topo.RemoveState(benchPoliciesState)
		}
		if err == nil {
			wctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
			_, err = s.topo.WaitProgrammed(wctx, tok, time.Now())
			cancel()
		}
		if err != nil {
			t.Errorf("scenario %s: remove the policies: %v", sc.Name, err)
		}
		return ctx
	}
}

// tail is the end of a log file, for error messages.
func tail(path string) string {
	data, err := os.ReadFile(path)
	if err != nil || len(bytes.TrimSpace(data)) == 0 {
		return ""
	}
	return "\n" + path + ":\n  " + strings.ReplaceAll(lastLines(string(data)), "\n", "\n  ")
}

// lastLines are the last five lines of output.
func lastLines(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-5):], "\n")
}
