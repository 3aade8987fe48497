//go:build e2e

package kind

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"sigs.k8s.io/e2e-framework/pkg/envconf"
	"sigs.k8s.io/e2e-framework/pkg/features"

	"github.com/fastpath-bench/fastpath/harness/conformance"
)

// corpusDir holds the conformance cases, relative to the checkout.
const corpusDir = "scenarios/conformance"

// probeTimeout bounds one probe, as conformance.Run's default: a denied
// probe waits it out.
const probeTimeout = time.Second

// smokeCases are the cases labelled tier=smoke, the default of make
// e2e-kind: every corpus, allow and deny, TCP, UDP and named ports, both
// directions, namespace selectors, deny rules, L7 through the proxy,
// identities from service accounts, Services and NodePorts. A name that
// is no longer in the corpus is an error.
var smokeCases = []string{
	"netpol/001-no-policy",
	"netpol/006-default-deny-all",
	"netpol/024-pod-and-namespace-selector-and",
	"netpol/046-port-udp-number",
	"cilium/016-deny-beats-allow-same-policy",
	"cilium/034-l7-http-method-regex",
	"istio/001-allow-principal-exact",
	"services/002-policy-after-translation",
	"services/006-nodeport-from-pods",
}

// buildConformanceFeatures makes a feature of every case of the corpus.
func buildConformanceFeatures() (built, error) {
	cases, err := conformance.LoadCases(corpusDir)
	if err != nil {
		return built{}, err
	}
	smoke := map[string]bool{}
	for _, n := range smokeCases {
		smoke[n] = true
	}
	var out built
	for _, c := range cases {
		name := filepath.ToSlash(c.Name)
		if len(c.Mesh) > 0 {
			continue // a cluster mesh: these suites share one kind cluster (conformance run --provider kind builds a mesh for such cases)
		}
		out.features = append(out.features, caseFeature(c, smoke[name]))
		out.nodes = max(out.nodes, len(c.Spec().Nodes))
		delete(smoke, name)
	}
	for n := range smoke {
		return built{}, fmt.Errorf("smoke case %s: not in %s", n, corpusDir)
	}
	return out, nil
}

// TestConformance runs the conformance corpus on the kind cluster, a
// feature per case: Setup puts the case's pods, Services and policies in
// place (Topology.Reset, WriteState) and waits until every agent has
// programmed them; each probe is an assessment comparing what the
// datapath did with expect.yaml; Teardown removes the case's state and
// waits until that is programmed too.
func TestConformance(t *testing.T) {
	testenv.Test(t, conformanceFeatures...)
}

// caseRun is a case set up by its feature's Setup: its probes started
// together, as conformance.Run makes them (a denied probe waits out its
// timeout, so one after the other a case would take seconds per denied
// probe), each assessment waiting for its own.
type caseRun struct {
	p       *conformance.Prepared
	results []chan conformance.ProbeResult
	wg      sync.WaitGroup
}

type caseRunKey struct{}

func caseFeature(c *conformance.Case, smoke bool) features.Feature {
	name := filepath.ToSlash(c.Name)
	corpus, _, _ := strings.Cut(name, "/")
	b := features.New(name).
		WithLabel("suite", "conformance").
		WithLabel("corpus", corpus).
		WithLabel("case", name)
	if smoke {
		b = b.WithLabel("tier", "smoke")
	}
	b = b.Setup(setUpCase(c))
	for i, p := range c.Probes {
		b = b.Assess(fmt.Sprintf("%02d %s", i, p), assessProbe(i))
	}
	return b.Teardown(tearDownCase(c)).Feature()
}

func setUpCase(c *conformance.Case) features.Func {
	return func(ctx context.Context, t *testing.T, _ *envconf.Config) context.Context {
		s := sharedOf(ctx, t)
		if ctx.Err() != nil {
			// Interrupted (Ctrl-C, or -timeout close): Finish deletes the
			// cluster once the remaining features have failed fast.
			t.Fatalf("not run: %v", context.Cause(ctx))
		}
		start := time.Now()
		rctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
		err := s.topo.Reset(rctx, c.Spec())
		cancel()
		if err != nil {
			t.Fatalf("case %s: set up pods: %v", c.Name, err)
		}
		s.layout = "case " + c.Name
		// Echo servers on the pods' ports, and the Services.
		p, err := conformance.Prepare(s.topo, c)
		if err != nil {
			t.Fatal(err)
		}
		since := time.Now()
		var tok string
		if len(bytes.TrimSpace(c.Policies)) == 0 {
			// Nothing to write: the token still covers the previous
			// case's deletions.
			tok, err = s.topo.RemoveState(conformance.PoliciesState)
		} else {
			tok, err = s.topo.WriteState(conformance.PoliciesState, c.Policies)
		}
		var took map[string]time.Duration
		if err == nil {
			wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			took, err = s.topo.WaitProgrammed(wctx, tok, since)
			cancel()
		}
		if err != nil {
			p.Close()
			t.Fatalf("case %s: policies: %v", c.Name, err)
		}
		t.Logf("case %s: %d pods, policies programmed (%s) after %s", c.Name, len(c.Spec().Pods), slowest(took), time.Since(start).Round(time.Millisecond))
		run := &caseRun{p: p}
		for i := range c.Probes {
			ch := make(chan conformance.ProbeResult, 1)
			run.results = append(run.results, ch)
			run.wg.Add(1)
			go func() {
				defer run.wg.Done()
				ch <- p.Run(ctx, i, probeTimeout)
			}()
		}
		return context.WithValue(ctx, caseRunKey{}, run)
	}
}

// slowest is the latest of the agents' programming times.
func slowest(took map[string]time.Duration) string {
	var m time.Duration
	for _, d := range took {
		m = max(m, d)
	}
	return "slowest agent " + m.Round(time.Millisecond).String()
}

func assessProbe(i int) features.Func {
	return func(ctx context.Context, t *testing.T, _ *envconf.Config) context.Context {
		run, _ := ctx.Value(caseRunKey{}).(*caseRun)
		if run == nil {
			t.Fatal("the case was not set up")
		}
		r := <-run.results[i]
		switch {
		case r.Skipped != "":
			t.Skip(r.Skipped)
		case !r.Passed:
			t.Errorf("%s: want connected=%v, got %v (model: %v)%s", r.Probe, r.Connected, r.Got, r.Model, note(r.Error))
		case r.Error != "":
			// The datapath did what expect.yaml says, the reference
			// evaluator does not: the case or the model is wrong.
			t.Errorf("%s: %s (model: connected=%v)", r.Probe, r.Error, r.Model)
		}
		return ctx
	}
}

func note(e string) string {
	if e == "" {
		return ""
	}
	return ": " + e
}

func tearDownCase(c *conformance.Case) features.Func {
	return func(ctx context.Context, t *testing.T, _ *envconf.Config) context.Context {
		s := sharedOf(ctx, t)
		if run, _ := ctx.Value(caseRunKey{}).(*caseRun); run != nil {
			// An assessment that stopped the feature leaves probes
			// running: they end within their timeout.
			run.wg.Wait()
			run.p.Close()
		}
		since := time.Now()
		tok, err := s.topo.RemoveState(conformance.PoliciesState)
		if err == nil {
			tok, err = s.topo.RemoveState(conformance.ServicesState)
		}
		if err == nil {
			wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			_, err = s.topo.WaitProgrammed(wctx, tok, since)
			cancel()
		}
		if err != nil {
			t.Errorf("case %s: remove its policies and Services: %v", c.Name, err)
		}
		return ctx
	}
}
