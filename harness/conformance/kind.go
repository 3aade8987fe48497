package conformance

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
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
	runID := opts.RunID
	if runID == "" {
		runID = netns.NewRunID()
	}
	// Cases of one cluster run on one cluster, mesh cases on one mesh
	// (built after the first is gone: 2 cores); results keep the cases'
	// order.
	var plain, meshCases []int
	for i, c := range cases {
		if len(c.Mesh) > 0 {
			meshCases = append(meshCases, i)
		} else {
			plain = append(plain, i)
		}
	}
	results := make([]CaseResult, len(cases))
	done := 0
	run := func(spec cluster.Spec, idx []int, skip func(*Case) string) (err error) {
		if len(idx) == 0 {
			return nil
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
		for _, i := range idx {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if why := skip(cases[i]); why != "" {
				results[i] = skipAll(cases[i], why)
			} else {
				results[i] = runKindCase(ctx, topo, cases[i], opts)
			}
			if done++; opts.Progress != nil && done%10 == 0 {
				fmt.Fprintf(opts.Progress, "conformance (%s, kind): %d/%d cases\n", opts.Datapath, done, len(cases))
			}
		}
		return nil
	}
	defer func() {
		for i, r := range results {
			if r.Name == "" {
				results[i] = skipAll(cases[i], "not run (the run stopped)")
			}
		}
		res.Cases = append(res.Cases, results...)
	}()
	nodes := 0
	for _, i := range plain {
		nodes = max(nodes, len(topologyOf(cases[i], "").spec.Nodes))
	}
	spec := cluster.Spec{RunID: runID}
	for i := 0; i < nodes; i++ {
		spec.Nodes = append(spec.Nodes, fmt.Sprintf("node%d", i+1))
	}
	if err := run(spec, plain, func(*Case) string { return "" }); err != nil {
		return err
	}
	mspec, fits := meshSpecOf(cases, meshCases, runID)
	return run(mspec, meshCases, fits)
}

// meshSpecOf is the one mesh every mesh case runs on: the clusters of the
// first case (names, ids, service CIDRs), each with as many nodes as the
// most any case gives it. A case whose clusters differ is skipped, saying
// why (fits).
func meshSpecOf(cases []*Case, idx []int, runID string) (cluster.Spec, func(*Case) string) {
	spec := cluster.Spec{RunID: runID}
	if len(idx) == 0 {
		return spec, nil
	}
	first := cases[idx[0]].Mesh
	same := func(c *Case) bool {
		if len(c.Mesh) != len(first) {
			return false
		}
		for i, m := range c.Mesh {
			if m.Name != first[i].Name || m.ID != first[i].ID || m.ServiceCIDR != first[i].ServiceCIDR {
				return false
			}
		}
		return true
	}
	nodes := make([]int, len(first))
	for _, i := range idx {
		if same(cases[i]) {
			for j, m := range cases[i].Mesh {
				nodes[j] = max(nodes[j], len(m.Nodes))
			}
		}
	}
	for j, m := range first {
		cs := cluster.ClusterSpec{Name: m.Name, ID: m.ID}
		if m.ServiceCIDR != "" {
			cs.ServiceCIDR = netip.MustParsePrefix(m.ServiceCIDR)
		}
		for k := 0; k < nodes[j]; k++ {
			n := fmt.Sprintf("%s-%d", m.Name, k+1)
			cs.Nodes = append(cs.Nodes, n)
			spec.Nodes = append(spec.Nodes, n)
		}
		spec.Clusters = append(spec.Clusters, cs)
	}
	return spec, func(c *Case) string {
		if !same(c) {
			return fmt.Sprintf("kind builds one mesh for every mesh case: the clusters of %s (names, ids, service CIDRs), which this case's differ from", cases[idx[0]].Name)
		}
		return ""
	}
}

// runKindCase puts the case's pods on the cluster and runs its probes.
func runKindCase(ctx context.Context, topo *kind.Topology, c *Case, opts Options) CaseResult {
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
