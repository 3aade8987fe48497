package run

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"sync"
	"time"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fastpath-bench/fastpath/harness/cluster"
	"github.com/fastpath-bench/fastpath/harness/cluster/netns"
	"github.com/fastpath-bench/fastpath/harness/probe"
	"github.com/fastpath-bench/fastpath/harness/report"
	"github.com/fastpath-bench/fastpath/harness/scenario"
)

// State files the propagation measurement writes.
const (
	toggleFile = "30-propagation-toggle.yaml"
	bulkFile   = "31-propagation-bulk.yaml"
)

// Probe connections: a dropped SYN shows as a timeout.
const (
	attemptTimeout = 100 * time.Millisecond
	// stableAttempts is how many consecutive probes, started after the
	// acknowledgement, must see the new verdict before a change counts as
	// enforced.
	stableAttempts = 20
)

// togglePolicy allows the propagation probe's client to reach its server
// on the probe port. On a mesh it goes to the server's cluster only (the
// cluster annotation); when the client is in another cluster it also
// admits the client's address (an ipBlock /32: datapaths without a mesh
// know another cluster's pods only by address), while a meshed datapath
// matches the client by its labels and identity from the overlay.
func (r *runner) togglePolicy() *networkingv1.NetworkPolicy {
	s := r.suite
	pr := s.Spec.Propagation
	from, _ := s.PodByRef(pr.From)
	to, _ := s.PodByRef(pr.To)
	peers := []networkingv1.NetworkPolicyPeer{{
		PodSelector:       &metav1.LabelSelector{MatchLabels: from.Labels},
		NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": from.Namespace}},
	}}
	c := &s.Spec.Cluster
	toCluster := c.ClusterOfNode(to.Node)
	if toCluster != "" && c.ClusterOfNode(from.Node) != toCluster {
		if ip := r.podIP(pr.From); ip.IsValid() {
			peers = append(peers, networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: netip.PrefixFrom(ip, ip.BitLen()).String()}})
		}
	}
	np := allowIngress("fp-propagation-toggle", to.Namespace, to.Labels, peers, pr.Port)
	if toCluster != "" {
		np.Annotations = map[string]string{cluster.ClusterAnnotation: toCluster}
	}
	return np
}

// propagationSetup starts the probe's echo server and checks, with the
// reference evaluator, that the toggle policy flips the probe's verdict.
func (r *runner) propagationSetup() (stop func(), err error) {
	pr := r.suite.Spec.Propagation
	srv, err := probe.Serve(r.c.PodNetns(pr.To), pr.Port, "TCP")
	if err != nil {
		return nil, fmt.Errorf("propagation: %w", err)
	}
	check := func(want bool) error {
		sm, err := r.loadModel()
		if err != nil {
			return err
		}
		var errs []error
		for _, dp := range r.enforcing() {
			v := sm.verdict(dp, pr.From, pr.To, r.podIP(pr.From), r.podIP(pr.To), pr.Port)
			if v.Allowed != want {
				what := "deny"
				if want {
					what = "allow"
				}
				on := ""
				if sm.single == nil {
					on = " on " + dp
				}
				errs = append(errs, fmt.Errorf("%s: spec.propagation: the suite's policies must %s %s -> %s TCP/%d%s %s the toggle policy (%s)",
					r.opts.SuitePath, what, pr.From, pr.To, pr.Port, on, map[bool]string{true: "with", false: "without"}[want], v.Reason))
			}
		}
		return errors.Join(errs...)
	}
	if err := check(false); err != nil {
		srv.Close()
		return nil, err
	}
	data, err := netns.MarshalDocs([]any{r.togglePolicy()})
	if err == nil {
		_, err = r.c.WriteState(toggleFile, data)
	}
	if err == nil {
		err = check(true)
	}
	if _, rerr := r.c.RemoveState(toggleFile); rerr != nil {
		err = errors.Join(err, rerr)
	}
	if err == nil && pr.Relabel {
		for _, dp := range r.enforcing() {
			if meshed(dp) {
				err = r.checkRelabel(dp)
			}
		}
	}
	if err != nil {
		srv.Close()
		return nil, err
	}
	return func() { srv.Close() }, nil
}

// measurePropagation measures single and bulk policy changes with the
// agents of datapath dp running and the base state programmed.
func (r *runner) measurePropagation(ctx context.Context, dp string) []report.Propagation {
	// The prober opens a connection every millisecond or so while the
	// agents work: it must take as little from them as it can. Its
	// goroutines wait on the network, one CPU runs them all, and threads
	// woken across CPUs (each wake-up a cross-CPU interrupt, costly in a
	// VM) no longer stretch the agents' work. (Load generators are
	// processes of their own; none runs meanwhile.)
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	pr := r.suite.Spec.Propagation
	base := len(r.suite.Spec.Policies.Files) + r.suite.Spec.Policies.Generated
	toggle, _ := netns.MarshalDocs([]any{r.togglePolicy()})
	single := report.Propagation{Datapath: dp, Change: "single", Policies: 1, BasePolicies: base, ProbeIntervalSeconds: pr.ProbeInterval.Seconds()}
	r.logf("propagation on %s: %d single-policy changes", dp, pr.Changes)
	for i := 0; i < pr.Changes; i++ {
		allow := i%2 == 0
		write := func() (string, error) { return r.c.RemoveState(toggleFile) }
		if allow {
			write = func() (string, error) { return r.c.WriteState(toggleFile, toggle) }
		}
		ack, enf, err := r.measureChange(ctx, write, allow)
		if err != nil {
			single.Errors = append(single.Errors, fmt.Sprintf("change %d: %v", i+1, err))
			continue
		}
		single.AckSeconds = append(single.AckSeconds, ack.Seconds())
		single.EnforcedSeconds = append(single.EnforcedSeconds, enf.Seconds())
		single.ProgramSeconds = append(single.ProgramSeconds, r.programSeconds(ctx))
	}
	single.Summary = report.SummarizePropagation(single)
	out := []report.Propagation{single}
	// Back to the base state.
	if err := r.settle(ctx, func() (string, error) { return r.c.RemoveState(toggleFile) }); err != nil {
		out[0].Errors = append(out[0].Errors, "back to the base state: "+err.Error())
		return out
	}
	for _, n := range pr.Bulk {
		bulk := report.Propagation{Datapath: dp, Change: "bulk", Policies: n, BasePolicies: base, ProbeIntervalSeconds: pr.ProbeInterval.Seconds()}
		docs := append([]any{r.togglePolicy()}, generateFillers(r.suite, n-1, "fp-bulk")...)
		data, err := netns.MarshalDocs(docs)
		if err != nil {
			bulk.Errors = append(bulk.Errors, err.Error())
			out = append(out, bulk)
			continue
		}
		r.logf("propagation on %s: %d policies at once, %d times", dp, n, pr.BulkRepetitions)
		for k := 0; k < pr.BulkRepetitions; k++ {
			ack, enf, err := r.measureChange(ctx, func() (string, error) { return r.c.WriteState(bulkFile, data) }, true)
			if err != nil {
				bulk.Errors = append(bulk.Errors, fmt.Sprintf("repetition %d: %v", k+1, err))
			} else {
				bulk.AckSeconds = append(bulk.AckSeconds, ack.Seconds())
				bulk.EnforcedSeconds = append(bulk.EnforcedSeconds, enf.Seconds())
				bulk.ProgramSeconds = append(bulk.ProgramSeconds, r.programSeconds(ctx))
			}
			if err := r.settle(ctx, func() (string, error) { return r.c.RemoveState(bulkFile) }); err != nil {
				bulk.Errors = append(bulk.Errors, fmt.Sprintf("repetition %d: removing: %v", k+1, err))
				break
			}
		}
		bulk.Summary = report.SummarizePropagation(bulk)
		out = append(out, bulk)
	}
	if pr.Relabel {
		if meshed(dp) {
			out = append(out, r.measureRelabel(ctx, dp, base))
		} else {
			r.logf("propagation on %s: no relabel changes (no mesh: the server's cluster never learns the client's labels)", dp)
		}
	}
	return out
}

// programSeconds is the slowest agent's programming time of its last
// apply.
func (r *runner) programSeconds(ctx context.Context) float64 {
	var worst float64
	for _, n := range r.c.Nodes() {
		if st, err := r.c.AgentClient(n).Status(ctx); err == nil {
			worst = max(worst, st.ProgramSeconds)
		}
	}
	return worst
}

// settle applies a change and waits until every agent has programmed it.
func (r *runner) settle(ctx context.Context, write func() (string, error)) error {
	hash, err := write()
	if err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, r.suite.Spec.Propagation.Timeout.Duration)
	defer cancel()
	_, err = r.c.WaitProgrammed(wctx, hash, time.Now())
	return err
}

// attempt is one probe connection of a propagation measurement.
type attempt struct {
	start time.Time
	done  bool
	ok    bool
	err   error // why it did not connect
}

// measureChange makes one change with write while a prober opens a new
// connection every probe interval, and returns the time to the last
// agent's acknowledgement and to enforcement: the start of the first
// connection from which on every connection had outcome want.
func (r *runner) measureChange(ctx context.Context, write func() (string, error), want bool) (ack, enforced time.Duration, err error) {
	pr := r.suite.Spec.Propagation
	ctx, cancel := context.WithTimeout(ctx, pr.Timeout.Duration)
	defer cancel()
	to := r.podIP(pr.To)
	dialer, err := probe.NewDialer(r.c.PodNetns(pr.From))
	if err != nil {
		return 0, 0, err
	}
	defer dialer.Close()

	var mu sync.Mutex
	var attempts []*attempt
	var wg sync.WaitGroup
	stopProbes := make(chan struct{})
	proberDone := make(chan struct{})
	go func() {
		defer close(proberDone)
		tick := time.NewTicker(pr.ProbeInterval.Duration)
		defer tick.Stop()
		for {
			select {
			case <-stopProbes:
				return
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			a := &attempt{start: time.Now()}
			mu.Lock()
			attempts = append(attempts, a)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				res := dialer.Connect(ctx, to, pr.Port, attemptTimeout)
				mu.Lock()
				a.done, a.ok, a.err = true, res.Connected, res.Err
				mu.Unlock()
			}()
		}
	}()
	finish := func() {
		close(stopProbes)
		<-proberDone
		wg.Wait()
	}

	// A few probes under the old state first: wait until three have
	// completed (a fixed sleep is not enough when the machine is so busy
	// that the prober is not scheduled in time).
	for {
		mu.Lock()
		done := 0
		for _, a := range attempts {
			if a.done {
				done++
			}
		}
		mu.Unlock()
		if done >= 3 {
			break
		}
		select {
		case <-ctx.Done():
			finish()
			return 0, 0, fmt.Errorf("no probe connection completed under the old state within %s", pr.Timeout.Duration)
		case <-time.After(pr.ProbeInterval.Duration):
		}
	}
	t0 := time.Now()
	hash, err := write()
	if err != nil {
		finish()
		return 0, 0, err
	}
	acks, err := r.c.WaitProgrammed(ctx, hash, t0)
	if err != nil {
		finish()
		return 0, 0, err
	}
	for _, d := range acks {
		ack = max(ack, d)
	}
	ackedAt := t0.Add(ack)
	// Probe on until enough connections started after the acknowledgement
	// have completed with the new outcome.
	for {
		mu.Lock()
		stable := 0
		for _, a := range attempts {
			if a.start.After(ackedAt) && a.done && a.ok == want {
				stable++
			}
		}
		mu.Unlock()
		if stable >= stableAttempts {
			break
		}
		select {
		case <-ctx.Done():
			finish()
			return ack, 0, fmt.Errorf("not enforced within %s (acknowledged after %s)", pr.Timeout.Duration, ack)
		case <-time.After(5 * time.Millisecond):
		}
	}
	finish()
	// Connections started before the change show the old state was in
	// force; enforcement is the start of the first connection after the
	// change from which on every one had the new outcome. (A connection
	// started just before the change can finish under the new state; it
	// says nothing about when enforcement began.)
	sawOld := false
	var after []*attempt
	for _, a := range attempts {
		if a.start.Before(t0) {
			sawOld = sawOld || (a.done && a.ok != want)
			continue
		}
		after = append(after, a)
	}
	if !sawOld {
		return ack, 0, errors.New("no probe connection saw the old verdict: the previous state was not in force")
	}
	last := -1
	for i, a := range after {
		if !a.done || a.ok != want {
			last = i
		}
	}
	if last == len(after)-1 {
		a := after[last]
		if !want && a.ok {
			return ack, 0, fmt.Errorf("the last probe connection (started %s after the change) still connected", a.start.Sub(t0).Round(time.Microsecond))
		}
		// A connection that should have worked: say how it failed (a
		// timeout is a lost SYN or reply, a refusal a reject).
		return ack, 0, fmt.Errorf("the last probe connection (started %s after the change) still had the old verdict: %v", a.start.Sub(t0).Round(time.Microsecond), a.err)
	}
	return ack, max(time.Nanosecond, after[last+1].start.Sub(t0)), nil
}

// generateFillers is GenerateFillers with another name prefix.
func generateFillers(s *scenario.Suite, n int, prefix string) []any {
	out := GenerateFillers(s, n)
	for i, o := range out {
		np := o.(*networkingv1.NetworkPolicy)
		np.Name = fmt.Sprintf("%s-%04d", prefix, i)
	}
	return out
}
