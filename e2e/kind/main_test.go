//go:build e2e

package kind

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"sigs.k8s.io/e2e-framework/pkg/env"
	"sigs.k8s.io/e2e-framework/pkg/envconf"
	"sigs.k8s.io/e2e-framework/pkg/features"

	"github.com/fastpath-bench/fastpath/harness/cluster"
	clusterkind "github.com/fastpath-bench/fastpath/harness/cluster/kind"
	"github.com/fastpath-bench/fastpath/harness/execx"
)

// datapath is what the agents run throughout: the DaemonSet starts as
// the cluster's CNI with none, then every feature runs against eBPF.
const datapath = "ebpf"

var (
	testenv env.Environment
	// conformanceFeatures and benchFeatures are built once in TestMain:
	// the labels they carry decide, before anything is created, whether
	// the selection matches any, and their pods how many workers the
	// cluster needs.
	conformanceFeatures []features.Feature
	benchFeatures       []features.Feature
	// finishErr is what Finish could not clean up: e2e-framework only
	// logs a Finish error at verbosity 2, so TestMain reports it.
	finishErr error
)

// shared is the environment's state, in the context every feature gets.
type shared struct {
	topo *clusterkind.Topology
	// id is the cluster's name (its RunID).
	id string
	// self is bin/fastpath, the workload servers' and load clients'
	// command (as harness/run's Options.Self): the kind topology runs
	// its arguments as containers of the pods, from the agent image.
	self string
	// layout says whose pods the topology holds ("case <name>", "suite
	// <file>"): consecutive bench features of one suite keep them.
	layout string
}

type sharedKey struct{}

// sharedOf returns the environment's state, or fails the test when the
// environment was not set up.
func sharedOf(ctx context.Context, t *testing.T) *shared {
	t.Helper()
	s, _ := ctx.Value(sharedKey{}).(*shared)
	if s == nil || s.topo == nil {
		t.Fatal("no kind topology in the context: the environment's Setup did not run")
	}
	return s
}

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	cfg, err := envconf.NewFromFlags()
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 2
	}
	// Relative paths (bin/, scenarios/) as the fastpath command resolves
	// them: from the checkout's root.
	root, err := repoRoot()
	if err == nil {
		err = os.Chdir(root)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 2
	}
	var nodes int
	cn, err := buildConformanceFeatures()
	if err == nil {
		conformanceFeatures, nodes = cn.features, cn.nodes
		var bn built
		if bn, err = buildBenchFeatures(); err == nil {
			benchFeatures, nodes = bn.features, max(nodes, bn.nodes)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 2
	}
	if err := checkSelection(cfg, append(append([]features.Feature(nil), conformanceFeatures...), benchFeatures...)); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 2
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// Ctrl-C (or go test's timeout coming close) cancels what runs, the
	// features fail fast and Finish deletes the cluster; a second Ctrl-C
	// kills the process as usual.
	if d := deadline(); d > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d)
		defer cancel()
	}
	go func() {
		<-ctx.Done()
		stop()
	}()
	testenv, err = env.NewWithContext(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 2
	}
	testenv.Setup(createCluster(root, nodes)).Finish(destroyCluster)
	code := testenv.Run(m)
	if finishErr != nil {
		fmt.Fprintln(os.Stderr, "e2e: clean up:", finishErr)
		code = 1
	}
	return code
}

// built is a set of features and the most nodes one of them needs.
type built struct {
	features []features.Feature
	nodes    int
}

// repoRoot is the directory holding go.mod, above the working directory
// (go test runs in the package's directory).
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("no go.mod above %s", dir)
		}
	}
}

// deadline leaves Finish time before go test's -timeout panics (which
// would leave the cluster behind): the features' context ends three
// minutes before it, or at nine tenths of a short one. Zero: no timeout.
func deadline() time.Duration {
	f := flag.Lookup("test.timeout")
	if f == nil {
		return 0
	}
	d, err := time.ParseDuration(f.Value.String())
	if err != nil || d <= 0 {
		return 0
	}
	return d - min(3*time.Minute, d/10)
}

// checkSelection fails when --labels and --skip-labels select no
// feature (a typo would otherwise build a cluster to skip everything),
// by e2e-framework's rule: a feature runs when, for every key of
// --labels, it has one of the values given, and none of --skip-labels.
func checkSelection(cfg *envconf.Config, all []features.Feature) error {
	want, skip := cfg.Labels(), cfg.SkipLabels()
	for _, f := range all {
		ok := true
		for k, vals := range want {
			if !hasAny(f.Labels(), k, vals) {
				ok = false
				break
			}
		}
		for k, vals := range skip {
			if ok && hasAny(f.Labels(), k, vals) {
				ok = false
			}
		}
		if ok {
			return nil
		}
	}
	keys := map[string]map[string]bool{}
	for _, f := range all {
		for k, vals := range f.Labels() {
			if k == "case" || k == "scenario" {
				continue // too many to list
			}
			if keys[k] == nil {
				keys[k] = map[string]bool{}
			}
			for _, v := range vals {
				keys[k][v] = true
			}
		}
	}
	var known []string
	for k, vals := range keys {
		for v := range vals {
			known = append(known, k+"="+v)
		}
	}
	sort.Strings(known)
	return fmt.Errorf("--labels %v (--skip-labels %v) select none of the %d features; labels are case=<dir below scenarios/conformance>, scenario=<bench scenario>, %s",
		want, skip, len(all), strings.Join(known, ", "))
}

func hasAny(labels features.Labels, key string, vals []string) bool {
	for _, v := range vals {
		if labels.Contains(key, v) {
			return true
		}
	}
	return false
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "e2e: %s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

// createCluster is the environment's Setup: what a kind run needs is
// checked first (kind.RunOptions.Prepare: engine, node image, the agent
// image from bin/image), then one kind cluster with a worker per node
// the largest feature needs, its agents running the eBPF datapath. A
// dry run (--dry-run, -list) builds nothing.
func createCluster(root string, nodes int) env.Func {
	return func(ctx context.Context, cfg *envconf.Config) (context.Context, error) {
		if cfg.DryRunMode() || listing() {
			return ctx, nil
		}
		self := filepath.Join(root, "bin", "fastpath")
		if _, err := os.Stat(self); err != nil {
			return ctx, fmt.Errorf("%s: the workloads' command (make build): %w", self, err)
		}
		opts := clusterkind.RunOptions{ImageBinDir: filepath.Join(root, "bin", "image")}
		if err := opts.Prepare(ctx, logf); err != nil {
			return ctx, err
		}
		spec := cluster.Spec{RunID: runID()}
		for i := range nodes {
			spec.Nodes = append(spec.Nodes, fmt.Sprintf("node%d", i+1))
		}
		start := time.Now()
		topo, err := clusterkind.Build(ctx, spec, clusterkind.TopologyOptions{NodeImage: opts.NodeImage, AgentImage: opts.AgentImage, Logf: logf})
		if err != nil {
			return ctx, err
		}
		// From here on Finish deletes the cluster, whatever fails.
		ctx = context.WithValue(ctx, sharedKey{}, &shared{topo: topo, id: spec.RunID, self: self})
		if err := topo.StartAgents(ctx, cluster.AgentOptions{Datapath: datapath}); err != nil {
			return ctx, fmt.Errorf("kind cluster %s: %w", spec.RunID, err)
		}
		// Features may use e2e-framework's own client (cfg.Client()).
		cfg.WithKubeconfigFile(topo.Kubeconfig())
		logf("kind cluster %s: %d workers, agents on %s, in %s", spec.RunID, nodes, datapath, time.Since(start).Round(time.Second))
		return ctx, nil
	}
}

// listing is true under go test -list (e2e-framework takes only "true"
// for a dry run, and -list takes a pattern).
func listing() bool {
	f := flag.Lookup("test.list")
	return f != nil && f.Value.String() != ""
}

// runID names the cluster: fp- (what the harness creates, which
// `fastpath clean` knows) and e2e- with a random suffix, so that runs of
// other people on the same Docker engine are never touched.
func runID() string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return clusterkind.NamePrefix + "e2e-" + hex.EncodeToString(b[:])
}

// destroyCluster is the environment's Finish: it deletes the cluster
// and checks that none of its node containers is left.
func destroyCluster(ctx context.Context, _ *envconf.Config) (context.Context, error) {
	s, _ := ctx.Value(sharedKey{}).(*shared)
	if s == nil || s.topo == nil {
		return ctx, nil
	}
	// The features' context may be cancelled (Ctrl-C): the clean-up is not.
	bg := context.Background()
	var errs []error
	id := s.id
	if err := s.topo.Destroy(bg); err != nil {
		errs = append(errs, err)
	}
	out, err := execx.Output(bg, "docker", "ps", "-a", "-q", "--filter", "label=io.x-k8s.kind.cluster="+id)
	switch {
	case err != nil:
		errs = append(errs, fmt.Errorf("list containers of kind cluster %s: %w", id, err))
	case strings.TrimSpace(string(out)) != "":
		errs = append(errs, fmt.Errorf("kind cluster %s: containers left: %s", id, strings.Fields(string(out))))
	default:
		logf("kind cluster %s deleted", id)
	}
	finishErr = errors.Join(errs...)
	return ctx, finishErr
}
