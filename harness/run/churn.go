package run

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fastpath-bench/fastpath/harness/cluster/netns"
	"github.com/fastpath-bench/fastpath/harness/report"
	"github.com/fastpath-bench/fastpath/harness/scenario"
)

// churnNode is the node churned pods run on: outside the cluster, so that
// every agent treats them as pods of another node (an identity and an
// ipcache entry each).
const churnNode = "churn-node"

// churnPodPrefix is where churned pods' addresses come from (outside the
// nodes' pod CIDRs).
var churnPodPrefix = netip.MustParsePrefix("198.19.200.0/22")

// churner writes and removes state files at a scenario's churn rates.
type churner struct {
	r     *runner
	sc    scenario.Scenario
	stop  chan struct{}
	wg    sync.WaitGroup
	start time.Time

	mu              sync.Mutex
	policies, pods  []string // live churn files, oldest first
	policyN, podN   int
	policyChanges   int
	podChanges      int
	errs            []error
	generationsFrom map[string]int64
}

// startChurn starts churning the desired state for scenario sc.
func (r *runner) startChurn(ctx context.Context, sc scenario.Scenario) *churner {
	ch := &churner{r: r, sc: sc, stop: make(chan struct{}), start: time.Now(), generationsFrom: r.agentGenerations(ctx)}
	// One goroutine makes every change: state files are written, removed
	// and digested one at a time.
	ticker := func(rate float64) (<-chan time.Time, func()) {
		if rate <= 0 {
			return nil, func() {}
		}
		t := time.NewTicker(time.Duration(float64(time.Second) / rate))
		return t.C, t.Stop
	}
	policyTick, stopPolicy := ticker(sc.Churn.PoliciesPerSecond)
	podTick, stopPod := ticker(sc.Churn.PodsPerSecond)
	ch.wg.Add(1)
	go func() {
		defer ch.wg.Done()
		defer stopPolicy()
		defer stopPod()
		for {
			select {
			case <-ch.stop:
				return
			case <-ctx.Done():
				return
			case <-policyTick:
				ch.policyStep()
			case <-podTick:
				ch.podStep()
			}
		}
	}()
	return ch
}

func (ch *churner) policyStep() {
	ch.step("40-churn-policy-%06d.yaml", &ch.policyN, &ch.policies, &ch.policyChanges, func(n int) any { return ch.policy(n) })
}

func (ch *churner) podStep() {
	ch.step("41-churn-pod-%06d.yaml", &ch.podN, &ch.pods, &ch.podChanges, func(n int) any { return ch.pod(n) })
}

// step writes the next object of one kind (number *next, file name from
// nameFormat) and records it in live.
func (ch *churner) step(nameFormat string, next *int, live *[]string, changes *int, object func(n int) any) {
	ch.mu.Lock()
	n := *next
	*next++
	ch.mu.Unlock()
	name := fmt.Sprintf(nameFormat, n)
	data, err := netns.MarshalDocs([]any{object(n)})
	if err == nil {
		_, err = ch.r.c.WriteState(name, data)
	}
	ch.record(err, live, name, changes)
}

// record notes a created file and deletes the oldest beyond the window.
func (ch *churner) record(err error, live *[]string, name string, changes *int) {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if err != nil {
		ch.errs = append(ch.errs, err)
		return
	}
	*changes++
	*live = append(*live, name)
	if len(*live) > ch.sc.Churn.Window {
		old := (*live)[0]
		*live = (*live)[1:]
		if _, err := ch.r.c.RemoveState(old); err != nil {
			ch.errs = append(ch.errs, err)
		} else {
			*changes++
		}
	}
}

// policy n admits the scenario's client to its server on a port of its
// own, so the server's policy map changes without changing the verdict of
// the measured traffic.
func (ch *churner) policy(n int) *networkingv1.NetworkPolicy {
	to, _ := ch.r.suite.PodByRef(ch.sc.To)
	from, _ := ch.r.suite.PodByRef(ch.sc.From)
	return allowIngress(fmt.Sprintf("fp-churn-%06d", n), to.Namespace, to.Labels,
		[]networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: from.Labels}}}, 30000+n%10000)
}

// pod n is a pod of another node with labels of its own.
func (ch *churner) pod(n int) *corev1.Pod {
	to, _ := ch.r.suite.PodByRef(ch.sc.To)
	a := churnPodPrefix.Addr().As4()
	off := n % (1 << (32 - churnPodPrefix.Bits()))
	a[2] += byte(off >> 8)
	a[3] = byte(off)
	return &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("fp-churn-%06d", n), Namespace: to.Namespace, Labels: map[string]string{"app": "fp-churn", "fp-churn-id": fmt.Sprint(n)}},
		Spec:       corev1.PodSpec{NodeName: churnNode},
		Status:     corev1.PodStatus{PodIP: netip.AddrFrom4(a).String()},
	}
}

// finish stops the churn, counts what it did, removes the churned objects
// and waits until the agents have programmed the state without them.
func (ch *churner) finish(ctx context.Context) (*report.ChurnCount, error) {
	close(ch.stop)
	ch.wg.Wait()
	c := &report.ChurnCount{Seconds: time.Since(ch.start).Seconds()}
	after := ch.r.agentGenerations(ctx)
	for node, g := range after {
		c.Applies += g - ch.generationsFrom[node]
	}
	ch.mu.Lock()
	defer ch.mu.Unlock()
	c.PolicyChanges, c.PodChanges = ch.policyChanges, ch.podChanges
	errs := ch.errs
	var hash string
	var err error
	for _, name := range append(append([]string(nil), ch.policies...), ch.pods...) {
		if hash, err = ch.r.c.RemoveState(name); err != nil && !os.IsNotExist(err) {
			errs = append(errs, err)
		}
	}
	if hash != "" {
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if _, err := ch.r.c.WaitProgrammed(wctx, hash, time.Now()); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return c, fmt.Errorf("churn: %w", errs[0])
	}
	return c, nil
}

// agentGenerations returns each agent's count of programmed states.
func (r *runner) agentGenerations(ctx context.Context) map[string]int64 {
	out := map[string]int64{}
	for _, n := range r.suite.Spec.Cluster.Nodes {
		st, err := r.c.AgentClient(n).Status(ctx)
		if err == nil {
			out[n] = st.Generation
		}
	}
	return out
}
