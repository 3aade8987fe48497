// Package upstream runs Kubernetes' own end-to-end suites against the
// fastpath agent on kind: e2e.test and agnhost are built from the
// k8s.io/kubernetes module at the node image's version (no registry),
// agnhost becomes the image the tests ask for, and the results come from
// the suite's JUnit report.
package upstream

import (
	"bufio"
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/fastpath-bench/fastpath/harness/cluster"
	"github.com/fastpath-bench/fastpath/harness/cluster/kind"
	"github.com/fastpath-bench/fastpath/harness/cluster/netns"
	"github.com/fastpath-bench/fastpath/harness/images"
	"github.com/fastpath-bench/fastpath/harness/kindnode"
)

// NetpolFocus selects the upstream NetworkPolicy suite.
const NetpolFocus = `\[sig-network\] Netpol`

// SCTPSkip skips the SCTP tests: this kernel has no SCTP sockets.
const SCTPSkip = `SCTP`

// Options configure Run; zero values mean defaults.
type Options struct {
	// Datapath the agents run: "ebpf" (default) or "none".
	Datapath string
	// Focus and Skip are ginkgo regular expressions; Focus defaults to
	// NetpolFocus.
	Focus, Skip string
	// Workers is the number of kind workers (default 2).
	Workers int
	// Procs is how many ginkgo processes run specs at once (default 3:
	// the Netpol specs mostly wait for probes); 1 runs e2e.test alone.
	Procs int
	// ReportDir receives the JUnit report and e2e.test's log (required).
	ReportDir string
	// Timeout bounds the suite (default 3h).
	Timeout time.Duration
	// Kind are the images and --retain.
	Kind kind.RunOptions
	// Out receives progress and e2e.test's output (default os.Stderr).
	Out io.Writer
}

// Result counts the suite's tests that Focus selected.
type Result struct {
	Passed, Failed, Skipped int
	// Failures names the failed tests.
	Failures []string
	// SkippedReasons names skipped tests with the reason ginkgo gave.
	SkippedReasons []string
}

// Summary is "N passed, M failed, K skipped".
func (r *Result) Summary() string {
	return fmt.Sprintf("%d passed, %d failed, %d skipped", r.Passed, r.Failed, r.Skipped)
}

// Run builds what it needs, creates a kind cluster with the agent as its
// CNI and datapath, runs e2e.test with the focus, and deletes the cluster.
func Run(ctx context.Context, opts Options) (res *Result, err error) {
	if opts.Datapath == "" {
		opts.Datapath = "ebpf"
	}
	if opts.Focus == "" {
		opts.Focus = NetpolFocus
	}
	if opts.Workers == 0 {
		opts.Workers = 2
	}
	if opts.Procs == 0 {
		opts.Procs = 3
	}
	if opts.Timeout == 0 {
		opts.Timeout = 3 * time.Hour
	}
	if opts.Out == nil {
		opts.Out = os.Stderr
	}
	if opts.ReportDir == "" {
		return nil, errors.New("upstream: a report directory is required")
	}
	if err := os.MkdirAll(opts.ReportDir, 0o755); err != nil {
		return nil, err
	}
	logf := func(f string, a ...any) { fmt.Fprintf(opts.Out, "fastpath: "+f+"\n", a...) }
	if err := opts.Kind.Prepare(ctx, logf); err != nil {
		return nil, err
	}
	bins, err := kindnode.BuildE2E(ctx, kindnode.Options{Logf: logf})
	if err != nil {
		return nil, err
	}
	agnhost, err := agnhostImages(ctx, bins.E2ETest)
	if err != nil {
		return nil, err
	}
	// One binary under every name the tests use (they pin a few
	// versions; this build serves them all).
	for _, ref := range agnhost {
		if err := images.BuildFiles(ctx, ref, map[string]string{"agnhost": bins.Agnhost}, "/agnhost"); err != nil {
			return nil, err
		}
	}
	spec := cluster.Spec{RunID: netns.NewRunID()}
	for i := 0; i < opts.Workers; i++ {
		spec.Nodes = append(spec.Nodes, fmt.Sprintf("node%d", i+1))
	}
	topo, err := kind.Build(ctx, spec, kind.TopologyOptions{NodeImage: opts.Kind.NodeImage, AgentImage: opts.Kind.AgentImage,
		Retain: opts.Kind.Retain, Logf: logf})
	if err != nil {
		return nil, err
	}
	defer func() {
		if derr := topo.Destroy(context.Background()); derr != nil {
			err = errors.Join(err, derr)
		}
	}()
	for _, ref := range agnhost {
		if err := topo.LoadImage(ctx, ref); err != nil {
			return nil, err
		}
	}
	if err := topo.StartAgents(ctx, cluster.AgentOptions{Datapath: opts.Datapath}); err != nil {
		return nil, err
	}
	logf("running e2e.test --ginkgo.focus=%q --ginkgo.skip=%q (log: %s)", opts.Focus, opts.Skip, filepath.Join(opts.ReportDir, "e2e.log"))
	rctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()
	runErr := runE2E(rctx, bins, topo.Kubeconfig(), opts)
	res, perr := ParseJUnit(filepath.Join(opts.ReportDir, "junit_01.xml"), opts.Focus)
	if perr != nil {
		return nil, errors.Join(runErr, perr)
	}
	return res, nil
}

// agnhostImages asks e2e.test which agnhost images its pods run.
func agnhostImages(ctx context.Context, e2eTest string) ([]string, error) {
	out, err := exec.CommandContext(ctx, e2eTest, "--list-images").Output()
	if err != nil {
		return nil, fmt.Errorf("%s --list-images: %w", e2eTest, err)
	}
	var refs []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); strings.Contains(l, "/agnhost:") {
			refs = append(refs, l)
		}
	}
	if len(refs) == 0 {
		return nil, fmt.Errorf("%s --list-images names no agnhost image", e2eTest)
	}
	return refs, nil
}

// runE2E runs e2e.test (through ginkgo with Procs > 1), its output into
// the report directory.
func runE2E(ctx context.Context, bins *kindnode.E2EBinaries, kubeconfig string, opts Options) error {
	log, err := os.Create(filepath.Join(opts.ReportDir, "e2e.log"))
	if err != nil {
		return err
	}
	defer log.Close()
	ginkgo := []string{
		"--focus=" + opts.Focus,
		"--no-color",
		"--timeout=" + opts.Timeout.String(),
	}
	if opts.Skip != "" {
		ginkgo = append(ginkgo, "--skip="+opts.Skip)
	}
	args := []string{
		"--kubeconfig=" + kubeconfig,
		"--provider=local",
		"--report-dir=" + opts.ReportDir,
		// CoreDNS does not run (no image offline): the netpol tests do not
		// resolve names.
		"--minStartupPods=0",
	}
	var cmd *exec.Cmd
	if opts.Procs > 1 {
		// ginkgo writes the JUnit report of all processes together (the
		// framework's own is per process).
		all := append([]string{"run", "--procs=" + fmt.Sprint(opts.Procs), "--output-dir=" + opts.ReportDir, "--junit-report=junit_01.xml"}, ginkgo...)
		all = append(all, bins.E2ETest, "--")
		cmd = exec.CommandContext(ctx, bins.Ginkgo, append(all, args...)...)
	} else {
		for _, g := range ginkgo {
			args = append(args, "--ginkgo."+strings.TrimPrefix(g, "--"))
		}
		cmd = exec.CommandContext(ctx, bins.E2ETest, args...)
	}
	cmd.Stdout, cmd.Stderr = io.MultiWriter(log, progressWriter{opts.Out}), log
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig)
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %w (log: %s)", filepath.Base(cmd.Path), err, log.Name())
	}
	return nil
}

// progressWriter passes on the lines that say a test ended.
type progressWriter struct{ w io.Writer }

var endLine = regexp.MustCompile(`^\s*(•|\[FAILED\]|\[SKIPPED\]|Ran \d+ of|FAIL!|SUCCESS!)`)

func (p progressWriter) Write(b []byte) (int, error) {
	for _, l := range strings.Split(string(b), "\n") {
		if endLine.MatchString(l) {
			fmt.Fprintln(p.w, strings.TrimSpace(l))
		}
	}
	return len(b), nil
}

// junit is the part of ginkgo's JUnit report Run reads.
type junit struct {
	Suites []struct {
		Cases []struct {
			Name    string `xml:"name,attr"`
			Status  string `xml:"status,attr"`
			Skipped *struct {
				Message string `xml:"message,attr"`
			} `xml:"skipped"`
			Failure *struct{} `xml:"failure"`
			Error   *struct{} `xml:"error"`
		} `xml:"testcase"`
	} `xml:"testsuite"`
}

// ParseJUnit counts the tests of a ginkgo JUnit report that focus
// matches; tests the focus filtered out are not counted.
func ParseJUnit(path, focus string) (*Result, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("JUnit report: %w", err)
	}
	re, err := regexp.Compile(focus)
	if err != nil {
		return nil, fmt.Errorf("focus %q: %w", focus, err)
	}
	var j junit
	if err := xml.Unmarshal(data, &j); err != nil {
		return nil, fmt.Errorf("JUnit report %s: %w", path, err)
	}
	res := &Result{}
	for _, s := range j.Suites {
		for _, c := range s.Cases {
			if !re.MatchString(c.Name) {
				continue
			}
			switch {
			case c.Failure != nil || c.Error != nil || c.Status == "failed":
				res.Failed++
				res.Failures = append(res.Failures, c.Name)
			case c.Skipped != nil || c.Status == "skipped" || c.Status == "pending":
				res.Skipped++
				msg := ""
				if c.Skipped != nil {
					msg = c.Skipped.Message
				}
				res.SkippedReasons = append(res.SkippedReasons, c.Name+": "+msg)
			default:
				res.Passed++
			}
		}
	}
	if res.Passed+res.Failed+res.Skipped == 0 {
		return res, fmt.Errorf("JUnit report %s: no test matches %q", path, focus)
	}
	return res, nil
}
