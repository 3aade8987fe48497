package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/fastpath-bench/fastpath/harness/upstream"
)

func newE2EUpstream() *cobra.Command {
	var opts upstream.Options
	cmd := &cobra.Command{
		Use:   "e2e-upstream",
		Short: "Run Kubernetes' own e2e tests (default: the Netpol suite) against the agent on kind",
		Long: `Builds e2e.test and agnhost from the k8s.io/kubernetes module at the node
image's version (cached), builds the agnhost image the tests ask for FROM
scratch, creates a kind cluster with the agent as its CNI DaemonSet, runs
e2e.test with the focus, writes its JUnit report and log into --report-dir,
and prints "N passed, M failed, K skipped". Exits non-zero when a test failed.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := interruptible()
			defer cancel()
			res, err := upstream.Run(ctx, opts)
			if res != nil {
				for _, f := range res.Failures {
					fmt.Println("FAIL", f)
				}
				for _, s := range res.SkippedReasons {
					fmt.Println("SKIP", s)
				}
				fmt.Println(res.Summary())
			}
			if err != nil {
				return err
			}
			if res.Failed > 0 {
				return fmt.Errorf("%d upstream tests failed (JUnit and log in %s)", res.Failed, opts.ReportDir)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.Datapath, "datapath", "ebpf", "datapath the agents run: ebpf or none")
	f.StringVar(&opts.Focus, "focus", upstream.NetpolFocus, "ginkgo focus")
	f.StringVar(&opts.Skip, "skip", upstream.SCTPSkip, "ginkgo skip (default: the SCTP tests, which need SCTP sockets this kernel lacks)")
	f.IntVar(&opts.Workers, "workers", 2, "kind worker nodes")
	f.IntVar(&opts.Procs, "procs", 3, "ginkgo processes running specs at once (1: e2e.test alone)")
	f.StringVar(&opts.ReportDir, "report-dir", "reports/e2e-upstream", "directory for the JUnit report and e2e.test's log")
	f.DurationVar(&opts.Timeout, "timeout", 0, "bound on the suite (default 3h)")
	f.StringVar(&opts.Kind.NodeImage, "node-image", "", "kind node image (default: the offline build's)")
	f.StringVar(&opts.Kind.AgentImage, "agent-image", "", "agent image (default: built from --image-bin-dir)")
	f.StringVar(&opts.Kind.ImageBinDir, "image-bin-dir", "bin/image", "static binaries the agent image is built from (make image)")
	f.BoolVar(&opts.Kind.Retain, "retain", false, "keep the kind cluster at the end (fastpath clean deletes it)")
	return cmd
}
