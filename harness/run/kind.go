package run

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"github.com/fastpath-bench/fastpath/deploy"
	"github.com/fastpath-bench/fastpath/harness/cluster"
	"github.com/fastpath-bench/fastpath/harness/cluster/kind"
	"github.com/fastpath-bench/fastpath/harness/images"
	"github.com/fastpath-bench/fastpath/harness/kindnode"
	"github.com/fastpath-bench/fastpath/harness/report"
	"github.com/fastpath-bench/fastpath/harness/scenario"
)

// KindOptions configure the kind provider; zero values mean defaults.
type KindOptions struct {
	// NodeImage is the node image; empty: the offline build's tag
	// (make kind-node-image).
	NodeImage string
	// AgentImage is the agent image; empty: built from ImageBinDir.
	AgentImage string
	// ImageBinDir holds the static binaries of the agent image (make
	// image); empty: bin/image.
	ImageBinDir string
	// Retain keeps the cluster at the end (debugging; fastpath clean
	// deletes it).
	Retain bool
}

// prepareKind checks, before anything is created, what a kind run needs
// (engine, capability wrapper, node image), builds the agent image when
// missing, and drops the datapaths the DaemonSet cannot run, saying why.
func prepareKind(ctx context.Context, opts *Options, suite *scenario.Suite) (skipped []string, err error) {
	k := &opts.Kind
	if k.NodeImage == "" {
		if k.NodeImage, err = kindnode.Tag(ctx, kindnode.Options{}); err != nil {
			return nil, err
		}
	}
	if err := kind.Preflight(ctx, k.NodeImage); err != nil {
		return nil, fmt.Errorf("kind provider: %w", err)
	}
	if k.AgentImage == "" {
		dir := k.ImageBinDir
		if dir == "" {
			dir = filepath.Join("bin", "image")
		}
		if k.AgentImage, err = images.Build(ctx, dir, func(f string, a ...any) { fmt.Fprintf(opts.Progress, "fastpath: "+f+"\n", a...) }); err != nil {
			return nil, fmt.Errorf("kind provider: agent image: %w", err)
		}
	} else if !images.Exists(ctx, k.AgentImage) {
		return nil, fmt.Errorf("kind provider: agent image %s is not in Docker's image store (make image)", k.AgentImage)
	}
	var keep []string
	for _, dp := range suite.Spec.Datapaths {
		base, _, _ := strings.Cut(dp, "+")
		if slices.Contains(deploy.Datapaths, base) {
			keep = append(keep, dp)
			continue
		}
		skipped = append(skipped, fmt.Sprintf("%s: not on kind yet (the agent image is FROM scratch, without the binaries this baseline needs)", dp))
	}
	if len(keep) == 0 {
		return skipped, fmt.Errorf("kind provider: none of the suite's datapaths %v runs on kind (it runs %v)", suite.Spec.Datapaths, deploy.Datapaths)
	}
	suite.Spec.Datapaths = keep
	if pr := suite.Spec.Propagation; pr != nil && !slices.ContainsFunc(keep, func(d string) bool { return d != "none" }) {
		suite.Spec.Propagation = nil
	}
	return skipped, nil
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
