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
// (engine, capability wrapper, node image), builds the agent images when
// missing (the baselines' one when the suite has iptables or sidecar), and drops
// the datapaths the DaemonSet cannot run, saying why.
func prepareKind(ctx context.Context, opts *Options, suite *scenario.Suite) (skipped []string, err error) {
	keep, skipped := kindDatapaths(suite.Spec.Datapaths, func(ambient bool) error { return kind.IstioPreflight(ctx, ambient) })
	if len(keep) == 0 {
		return skipped, fmt.Errorf("kind provider: none of the suite's datapaths %v runs on kind (it runs %v)", suite.Spec.Datapaths, deploy.Datapaths)
	}
	if err := opts.Kind.Prepare(ctx, func(f string, a ...any) { fmt.Fprintf(opts.Progress, "fastpath: "+f+"\n", a...) }, keep...); err != nil {
		return nil, err
	}
	suite.Spec.Datapaths = keep
	if pr := suite.Spec.Propagation; pr != nil && !slices.ContainsFunc(keep, func(d string) bool { return d != "none" }) {
		suite.Spec.Propagation = nil
	}
	return skipped, nil
}

// kindDatapaths splits a suite's datapaths into those the agent
// DaemonSet runs and the others, each with the reason; istio's is what
// its preflight says.
func kindDatapaths(dps []string, istio func(ambient bool) error) (keep, skipped []string) {
	for _, dp := range dps {
		base, opts, _ := strings.Cut(dp, "+")
		switch {
		case slices.Contains(deploy.Datapaths, base):
			keep = append(keep, dp)
		case base == scenario.Istio:
			skipped = append(skipped, fmt.Sprintf("%s: not run: %v", dp, istio(opts == "ambient")))
		default:
			skipped = append(skipped, fmt.Sprintf("%s: not on kind (the agent DaemonSet runs %s)", dp, strings.Join(deploy.Datapaths, ", ")))
		}
	}
	return keep, skipped
}

// netnsDatapaths drops, saying why, the datapaths the netns provider
// cannot run (Istio's: images, in Kubernetes).
func netnsDatapaths(dps []string) (keep, skipped []string) {
	for _, dp := range dps {
		if base, _, _ := strings.Cut(dp, "+"); base == scenario.Istio {
			skipped = append(skipped, dp+": on kind only (--provider kind): Istio's control plane and proxies are images that run in Kubernetes")
			continue
		}
		keep = append(keep, dp)
	}
	return keep, skipped
}

// buildKind creates the kind cluster and records its versions in the
// report; the cluster it returns records, as each datapath starts, the
// kube-proxy it runs with.
func (r *runner) buildKind(ctx context.Context, spec cluster.Spec, rep *report.Report) (cluster.Cluster, error) {
	k := r.opts.Kind
	t, err := kind.Build(ctx, spec, kind.TopologyOptions{NodeImage: k.NodeImage, AgentImage: k.AgentImage, IptablesAgentImage: k.IptablesAgentImage,
		Retain: k.Retain, Logf: func(f string, a ...any) { r.logf(f, a...) }})
	if err != nil {
		return nil, err
	}
	rep.Environment.NodeImage, rep.Environment.AgentImage, rep.Environment.IptablesAgentImage = k.NodeImage, k.AgentImage, k.IptablesAgentImage
	if v, err := t.Client().Kube.Discovery().ServerVersion(); err == nil {
		rep.Environment.Kubernetes = v.GitVersion
	}
	return &kindCluster{Topology: t, env: &rep.Environment}, nil
}

// kindCluster is the kind topology recording in the report, per
// datapath, the kube-proxy it started with (the iptables baseline's
// kube-proxy in iptables mode, none for the others).
type kindCluster struct {
	*kind.Topology
	env *report.Environment
}

func (k *kindCluster) StartAgents(ctx context.Context, opts cluster.AgentOptions) error {
	if err := k.Topology.StartAgents(ctx, opts); err != nil {
		return err
	}
	// Only the runner's starts come here (the topology's own, at build
	// and by StopAgents, do not): each datapath of the suite, once per
	// repetition.
	if slices.ContainsFunc(k.env.KubeProxy, func(i report.KubeProxyInfo) bool { return i.Datapath == opts.Datapath }) {
		return nil
	}
	mode, image := k.KubeProxy()
	k.env.KubeProxy = append(k.env.KubeProxy, report.KubeProxyInfo{Datapath: opts.Datapath, Mode: mode, Image: image})
	return nil
}
