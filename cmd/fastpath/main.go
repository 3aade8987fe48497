// Command fastpath is the harness: it builds clusters, runs benchmark
// suites against datapaths, writes reports, and cleans up after runs.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/fastpath-bench/fastpath/harness/cluster/kind"
	"github.com/fastpath-bench/fastpath/harness/cluster/netns"
	"github.com/fastpath-bench/fastpath/harness/conformance"
	"github.com/fastpath-bench/fastpath/harness/run"
	"github.com/fastpath-bench/fastpath/harness/workload"
)

// Set by the Makefile with -ldflags -X.
var (
	version = "dev"
	commit  = "unknown"
)

func main() {
	if calledAsWrapper() {
		runAsWrapper()
	}
	if err := newRoot().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "fastpath:", err)
		os.Exit(1)
	}
}

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:           "fastpath",
		Short:         "Benchmark and conformance harness for network datapaths",
		Version:       version + " (" + commit + ")",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newBench(), newClean(), newCompare(), newConformance(), newVMImages(), newHostSetup(), newKindNodeImage(), newImage(), newE2EUpstream(), newMesh(), workload.NewCommand())
	return root
}

// interruptible returns a context cancelled by the first SIGINT or SIGTERM;
// a second one kills the process at once (fastpath clean removes the rest).
func interruptible() (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ch
		fmt.Fprintln(os.Stderr, "fastpath: interrupted, cleaning up (interrupt again to quit now; then run `fastpath clean`)")
		cancel()
		<-ch
		os.Exit(130)
	}()
	return ctx, func() { signal.Stop(ch); cancel() }
}

func newBench() *cobra.Command {
	var opts run.Options
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Run a benchmark suite and write report.json, report.md and report.html",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := interruptible()
			defer cancel()
			opts.Version, opts.Commit = version, commit
			_, dir, err := run.Bench(ctx, opts)
			if dir != "" {
				abs, _ := filepath.Abs(dir)
				fmt.Printf("report: %s\n  %s\n  %s\n  %s\n", abs, filepath.Join(abs, "report.md"), filepath.Join(abs, "report.html"), filepath.Join(abs, "report.json"))
			}
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.SuitePath, "suite", "scenarios/bench/quick.yaml", "suite file")
	f.StringVar(&opts.OutRoot, "out", "reports/runs", "directory for run directories (<out>/<timestamp>, <out>/latest)")
	f.StringVar(&opts.OutDir, "run-dir", "", "write the run into exactly this directory instead (no timestamp, no latest link)")
	f.StringVar(&opts.AgentBinary, "agent-binary", "", "fastpath-agent executable (default: next to this one, then PATH)")
	f.StringVar(&opts.Provider, "provider", "", "cluster provider, overriding the suite's: netns (network namespaces here) or kind (a kind cluster, the agent as its CNI DaemonSet)")
	f.StringVar(&opts.Kind.NodeImage, "node-image", "", "kind node image (default: the offline build's, make kind-node-image; or e.g. kindest/node:v1.35.0 where a registry is reachable)")
	f.StringVar(&opts.Kind.AgentImage, "agent-image", "", "agent image for kind (default: built from --image-bin-dir)")
	f.StringVar(&opts.Kind.IptablesAgentImage, "iptables-agent-image", "", "agent image of the iptables and sidecar datapaths on kind (default: built from --image-bin-dir on the node image's Debian rootfs)")
	f.StringVar(&opts.Kind.ImageBinDir, "image-bin-dir", "bin/image", "static binaries the agent images are built from (make image)")
	f.BoolVar(&opts.Kind.Retain, "retain", false, "keep the kind cluster at the end, for debugging (fastpath clean deletes it)")
	return cmd
}

func newClean() *cobra.Command {
	return &cobra.Command{
		Use:   "clean",
		Short: "Remove everything fastpath runs left behind (fp-* namespaces, processes in them, pinned maps, run state, kind clusters)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			clusters, err := kind.Clean(cmd.Context())
			if len(clusters) > 0 {
				fmt.Printf("deleted kind clusters: %v\n", clusters)
			}
			if err != nil {
				return err
			}
			before, _ := netns.Leftovers(netns.Prefix)
			if err := netns.Clean(cmd.Context()); err != nil {
				return err
			}
			after, err := netns.Leftovers(netns.Prefix)
			if err != nil {
				return err
			}
			fmt.Printf("removed %d objects\n", len(before)-len(after))
			if len(after) > 0 {
				return fmt.Errorf("still left: %v", after)
			}
			return nil
		},
	}
}

func newConformance() *cobra.Command {
	root := &cobra.Command{Use: "conformance", Short: "Policy conformance: run cases against a datapath or the model"}
	var opts conformance.Options
	var dir string
	var asJSON bool
	var match string
	var progress bool
	run := &cobra.Command{
		Use:   "run",
		Short: "Run every case below --cases; prints failing probes and `N passed, M failed`",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := interruptible()
			defer cancel()
			cases, err := conformance.LoadCases(dir)
			if err != nil {
				return err
			}
			if match != "" {
				re, err := regexp.Compile(match)
				if err != nil {
					return fmt.Errorf("--match: %w", err)
				}
				cases = slices.DeleteFunc(cases, func(c *conformance.Case) bool { return !re.MatchString(c.Name) })
				if len(cases) == 0 {
					return fmt.Errorf("--match %q: no case under %s matches", match, dir)
				}
			}
			if !asJSON {
				opts.Out = os.Stdout
			}
			if progress {
				opts.Progress = os.Stderr
			}
			res, err := conformance.Run(ctx, cases, opts)
			if res != nil {
				if asJSON {
					if jerr := res.WriteJSON(os.Stdout); jerr != nil {
						return jerr
					}
				} else {
					fmt.Println(res.Summary())
				}
			}
			if err != nil {
				return err
			}
			if res.Failed > 0 {
				return fmt.Errorf("%d probes failed", res.Failed)
			}
			return nil
		},
	}
	f := run.Flags()
	f.StringVar(&dir, "cases", "scenarios/conformance", "directory of cases (walked recursively)")
	f.StringVar(&opts.Datapath, "datapath", "ebpf", "ebpf, iptables, or model (the reference evaluator alone)")
	f.BoolVar(&asJSON, "json", false, "print per-case and per-probe results as JSON")
	f.DurationVar(&opts.Timeout, "timeout", 0, "probe timeout (default 1s)")
	f.BoolVar(&progress, "progress", false, "print a line to standard error as cases finish")
	f.StringVar(&match, "match", "", "run only the cases whose name matches this regular expression")
	f.IntVar(&opts.Clusters, "clusters", 0, "clusters to run at once (default 4)")
	f.StringVar(&opts.Provider, "provider", "netns", "cluster provider: netns (a cluster per case) or kind (one kind cluster for every case, the agent as its CNI DaemonSet)")
	f.StringVar(&opts.Kind.NodeImage, "node-image", "", "kind node image (default: the offline build's, make kind-node-image)")
	f.StringVar(&opts.Kind.AgentImage, "agent-image", "", "agent image for kind (default: built from --image-bin-dir)")
	f.StringVar(&opts.Kind.IptablesAgentImage, "iptables-agent-image", "", "agent image of the iptables and sidecar datapaths on kind (default: built from --image-bin-dir on the node image's Debian rootfs)")
	f.StringVar(&opts.Kind.ImageBinDir, "image-bin-dir", "bin/image", "static binaries the agent images are built from (make image)")
	f.BoolVar(&opts.Kind.Retain, "retain", false, "keep the kind cluster at the end, for debugging (fastpath clean deletes it)")
	f.StringVar(&opts.AgentBinary, "agent-binary", "", "fastpath-agent executable (default: next to this one, then PATH)")
	root.AddCommand(run, newMatrix())
	return root
}
