package conformance

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/fastpath-bench/fastpath/deploy"
	"github.com/fastpath-bench/fastpath/harness/cluster"
	"github.com/fastpath-bench/fastpath/harness/cluster/kind"
	"github.com/fastpath-bench/fastpath/harness/cluster/netns"
	"github.com/fastpath-bench/fastpath/harness/scenario"
)

// KindOptions configure the kind provider.
type KindOptions = kind.RunOptions

// runKind runs every case on one kind cluster with as many workers as the
// largest case has nodes: the agents run the datapath throughout, and each
// case replaces the pods (Topology.Reset), its Services and its policies,
// which the agents pick up from the API server like any change. A kind
// cluster takes about a minute to build, so one per case (as on netns)
// would take hours.
func runKind(ctx context.Context, cases []*Case, opts Options, res *Result) (err error) {
	base, flags, err := scenario.AgentArgs(opts.Datapath)
	if err != nil {
		return err
	}
	if !slices.Contains(deploy.Datapaths, base) {
		return fmt.Errorf("--datapath %s: not on kind (the agent image runs %v)", opts.Datapath, deploy.Datapaths)
	}
	logf := func(f string, a ...any) {
		if opts.Progress != nil {
			fmt.Fprintf(opts.Progress, "fastpath: "+f+"\n", a...)
		}
	}
	if err := opts.Kind.Prepare(ctx, logf, base); err != nil {
		return err
	}
	nodes := 0
	for _, c := range cases {
		nodes = max(nodes, len(topologyOf(c, "").spec.Nodes))
	}
	runID := opts.RunID
	if runID == "" {
		runID = netns.NewRunID()
	}
	spec := cluster.Spec{RunID: runID}
	for i := 0; i < nodes; i++ {
		spec.Nodes = append(spec.Nodes, fmt.Sprintf("node%d", i+1))
	}
	topo, err := kind.Build(ctx, spec, kind.TopologyOptions{NodeImage: opts.Kind.NodeImage, AgentImage: opts.Kind.AgentImage,
		IptablesAgentImage: opts.Kind.IptablesAgentImage, Retain: opts.Kind.Retain, Logf: logf})
	if err != nil {
		return err
	}
	defer func() {
		if derr := topo.Destroy(context.Background()); derr != nil {
			err = errors.Join(err, derr)
		}
	}()
	if err := topo.StartAgents(ctx, cluster.AgentOptions{Datapath: base, ExtraArgs: flags}); err != nil {
		return err
	}
	for i, c := range cases {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		res.Cases = append(res.Cases, runKindCase(ctx, topo, c, opts))
		if opts.Progress != nil && (i+1)%10 == 0 {
			fmt.Fprintf(opts.Progress, "conformance (%s, kind): %d/%d cases\n", opts.Datapath, i+1, len(cases))
		}
	}
	return nil
}

// runKindCase puts the case's pods on the cluster and runs its probes.
func runKindCase(ctx context.Context, topo *kind.Topology, c *Case, opts Options) CaseResult {
	if len(c.Mesh) > 0 {
		return skipAll(c, "kind builds no cluster meshes yet (mesh cases: netns)")
	}
	t := topologyOf(c, "")
	rctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	err := topo.Reset(rctx, t.spec)
	cancel()
	if err != nil {
		return failAll(c, fmt.Errorf("set up pods: %w", err))
	}
	useNodeIPs(t, topo)
	stop, err := setupCluster(topo, t, c)
	if err != nil {
		return failAll(c, err)
	}
	defer stop()
	return runCase(ctx, topo, t, c, opts)
}
