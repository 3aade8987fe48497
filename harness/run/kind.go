package run

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/fastpath-bench/fastpath/deploy"
	"github.com/fastpath-bench/fastpath/harness/cluster"
	"github.com/fastpath-bench/fastpath/harness/cluster/kind"
	"github.com/fastpath-bench/fastpath/harness/report"
	"github.com/fastpath-bench/fastpath/harness/scenario"
)

// KindOptions configure the kind provider.
type KindOptions = kind.RunOptions

// prepareKind checks, before anything is created, what a kind run needs
// (engine, capability wrapper, node image), builds the agent image when
// missing, and drops the datapaths the DaemonSet cannot run, saying why.
func prepareKind(ctx context.Context, opts *Options, suite *scenario.Suite) (skipped []string, err error) {
	if err := opts.Kind.Prepare(ctx, func(f string, a ...any) { fmt.Fprintf(opts.Progress, "fastpath: "+f+"\n", a...) }); err != nil {
		return nil, err
	}
	keep, skipped := kindDatapaths(suite.Spec.Datapaths)
	if len(keep) == 0 {
		return skipped, fmt.Errorf("kind provider: none of the suite's datapaths %v runs on kind (it runs %v)", suite.Spec.Datapaths, deploy.Datapaths)
	}
	suite.Spec.Datapaths = keep
	if pr := suite.Spec.Propagation; pr != nil && !slices.ContainsFunc(keep, func(d string) bool { return d != "none" }) {
		suite.Spec.Propagation = nil
	}
	return skipped, nil
}

// kindDatapaths splits a suite's datapaths into those the agent
// DaemonSet runs and the others, each with the reason.
func kindDatapaths(dps []string) (keep, skipped []string) {
	for _, dp := range dps {
		base, _, _ := strings.Cut(dp, "+")
		if slices.Contains(deploy.Datapaths, base) {
			keep = append(keep, dp)
			continue
		}
		skipped = append(skipped, fmt.Sprintf("%s: not on kind yet (the agent image is FROM scratch, without the binaries this baseline needs)", dp))
	}
	return keep, skipped
}

// buildKind creates the kind cluster and records its versions in the
// report.
func (r *runner) buildKind(ctx context.Context, spec cluster.Spec, rep *report.Report) (cluster.Cluster, error) {
	k := r.opts.Kind
	t, err := kind.Build(ctx, spec, kind.TopologyOptions{NodeImage: k.NodeImage, AgentImage: k.AgentImage, Retain: k.Retain,
		Logf: func(f string, a ...any) { r.logf(f, a...) }})
	if err != nil {
		return nil, err
	}
	rep.Environment.NodeImage, rep.Environment.AgentImage = k.NodeImage, k.AgentImage
	if v, err := t.Client().Kube.Discovery().ServerVersion(); err == nil {
		rep.Environment.Kubernetes = v.GitVersion
	}
	return t, nil
}
