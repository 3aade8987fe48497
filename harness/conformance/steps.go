package conformance

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/fastpath-bench/fastpath/harness/cluster"
)

// State names the runner writes a case's objects under (cluster.Cluster's
// WriteState): the Services and their EndpointSlices first, then the
// policies.
const (
	ServicesState = "05-services.yaml"
	PoliciesState = "10-policies.yaml"
)

// Spec is the cluster a case runs on: its namespaces and pods (at the
// addresses cluster.yaml gives them), on the nodes its pods name (node1
// and node2 when none does). RunID is the caller's to set.
func (c *Case) Spec() cluster.Spec { return topologyOf(c, "").spec }

// Prepared is a case on a cluster that holds the case's pods (built from
// Spec, or a kind Topology Reset to it), for callers that drive a case's
// steps themselves, as the e2e-framework suites of e2e/kind do: Prepare
// starts the echo servers and writes the Services, the caller writes
// the policies (Case.Policies, as PoliciesState) and waits until they are
// programmed, then Run makes each probe, and Close stops the servers.
type Prepared struct {
	Case   *Case
	c      cluster.Cluster
	t      *topology
	probes []ProbeResult
	stop   func()
}

// nodeAddrs is a cluster that chose its nodes' addresses itself (kind).
type nodeAddrs interface{ NodeIP(node string) netip.Addr }

// Prepare takes the pods' addresses from c, starts echo servers on every
// container port of every pod, writes the case's Services
// (ServicesState), and resolves every probe's port and the model's
// verdict on it in this cluster.
func Prepare(c cluster.Cluster, cs *Case) (*Prepared, error) {
	t := topologyOf(cs, "")
	useNodeIPs(t, c)
	stop, err := setupCluster(c, t, cs)
	if err != nil {
		return nil, fmt.Errorf("case %s: %w", cs.Name, err)
	}
	probes, err := modelVerdicts(cs, t)
	if err != nil {
		stop()
		return nil, fmt.Errorf("case %s: model: %w", cs.Name, err)
	}
	return &Prepared{Case: cs, c: c, t: t, probes: probes, stop: stop}, nil
}

// useNodeIPs takes the nodes' addresses from a cluster that chose them
// (kind); the netns provider's follow from the node's index.
func useNodeIPs(t *topology, c cluster.Cluster) {
	n, ok := c.(nodeAddrs)
	if !ok {
		return
	}
	t.nodeIPs = map[string]netip.Addr{}
	for _, name := range t.spec.Nodes {
		t.nodeIPs[name] = n.NodeIP(name)
	}
}

// Probes are the case's probes, each with its resolved port and the
// model's verdict (Error set when the model could not give one).
func (p *Prepared) Probes() []ProbeResult { return append([]ProbeResult(nil), p.probes...) }

// Run makes probe i with timeout and returns its result: Passed when
// what it got is what expect.yaml wants; Skipped (with the reason) when
// the cluster cannot make it; Error set when it failed, or when it passed
// but the model disagrees with expect.yaml (ModelDisagrees).
func (p *Prepared) Run(ctx context.Context, i int, timeout time.Duration) ProbeResult {
	r := p.probes[i]
	if r.Error != "" {
		return r
	}
	if r.Skipped = skipReason(p.c, p.Case, r.Probe); r.Skipped != "" {
		return r
	}
	runProbe(ctx, p.c, p.t, p.Case, &r, timeout)
	return r
}

// Close stops the echo servers (the Services stay until the caller
// removes ServicesState).
func (p *Prepared) Close() { p.stop() }
