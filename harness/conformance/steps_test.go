package conformance

import (
	"context"
	"testing"
	"time"

	"github.com/fastpath-bench/fastpath/harness/cluster"
	"github.com/fastpath-bench/fastpath/harness/cluster/netns"
	"github.com/fastpath-bench/fastpath/internal/testutil"
)

// TestPreparedSteps drives a case step by step, as e2e/kind's features
// do, on a netns cluster with eBPF agents: Spec, Prepare, the policies
// written and programmed, then each probe with Run. The case denies every
// probe; with its policy removed again the same probes connect, and Run
// reports them as failed against expect.yaml.
func TestPreparedSteps(t *testing.T) {
	testutil.RequireRoot(t)
	ctx := context.Background()
	cases, err := LoadCases("testdata/runner")
	if err != nil {
		t.Fatal(err)
	}
	var cs *Case
	for _, c := range cases {
		if c.Name == "002-deny" {
			cs = c
		}
	}
	if cs == nil {
		t.Fatal("no case 002-deny in testdata/runner")
	}
	spec := cs.Spec()
	if len(spec.Nodes) != 2 || len(spec.Pods) != 3 || spec.RunID != "" {
		t.Fatalf("Spec: nodes %v, %d pods, run id %q", spec.Nodes, len(spec.Pods), spec.RunID)
	}
	id := testutil.RunID("steps")
	spec.RunID, spec.LogDir = id, t.TempDir()
	c, err := netns.NewProvider(netns.Options{AgentBinary: buildAgent(t)}).Create(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := c.Destroy(context.Background()); err != nil {
			t.Error(err)
		}
		if left, _ := netns.Leftovers(id); len(left) > 0 {
			t.Errorf("left behind: %v", left)
		}
	}()
	if err := c.StartAgents(ctx, cluster.AgentOptions{Datapath: "ebpf"}); err != nil {
		t.Fatal(err)
	}
	p, err := Prepare(c, cs)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	probes := p.Probes()
	if len(probes) != len(cs.Probes) {
		t.Fatalf("Probes: %d, the case has %d", len(probes), len(cs.Probes))
	}
	for _, r := range probes {
		if r.Error != "" || r.ResolvedPort == 0 || r.Model {
			t.Fatalf("%s: port %d, model %v, error %q; want a resolved port and the model denying", r.Probe, r.ResolvedPort, r.Model, r.Error)
		}
	}
	program := func(tok string, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if _, err := c.WaitProgrammed(wctx, tok, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	program(c.WriteState(PoliciesState, cs.Policies))
	for i := range probes {
		if r := p.Run(ctx, i, time.Second); !r.Passed || r.Got || r.Error != "" || r.Skipped != "" {
			t.Errorf("with the policy: %s: passed %v, got %v, error %q, skipped %q", r.Probe, r.Passed, r.Got, r.Error, r.Skipped)
		}
	}
	program(c.RemoveState(PoliciesState))
	for i := range probes {
		if r := p.Run(ctx, i, time.Second); r.Passed || !r.Got {
			t.Errorf("without the policy: %s: passed %v, got %v; want connected and failed against expect.yaml", r.Probe, r.Passed, r.Got)
		}
	}
}
