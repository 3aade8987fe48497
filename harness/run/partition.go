package run

import (
	"context"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"time"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fastpath-bench/fastpath/datapath/model"
	"github.com/fastpath-bench/fastpath/harness/cluster"
	"github.com/fastpath-bench/fastpath/harness/cluster/netns"
	"github.com/fastpath-bench/fastpath/harness/execx"
	"github.com/fastpath-bench/fastpath/harness/probe"
	"github.com/fastpath-bench/fastpath/harness/report"
	"github.com/fastpath-bench/fastpath/harness/scenario"
)

// defaultLeaseTTL is the control plane's default lease TTL
// (datapath/clustermesh.DefaultLeaseTTL) when the suite names none.
const defaultLeaseTTL = 15 * time.Second

// partitionSpec is the suite's partition with its defaults.
func (r *runner) partitionSpec() (pt scenario.Partition, ttl time.Duration) {
	pt = *r.suite.Spec.Partition
	c := &r.suite.Spec.Cluster
	ttl = c.MeshLeaseTTL.Duration
	if ttl == 0 {
		ttl = defaultLeaseTTL
	}
	if pt.Port == 0 {
		pt.Port = scenario.DefaultPartitionPort
	}
	if pt.Established == 0 {
		pt.Established = scenario.DefaultPartitionEstablished
	}
	if pt.ProbeInterval.Duration == 0 {
		pt.ProbeInterval.Duration = scenario.DefaultPartitionProbeInterval
	}
	if pt.Duration.Duration == 0 {
		pt.Duration.Duration = 3 * ttl
	}
	if pt.Cut == "" {
		from, _ := r.suite.PodByRef(pt.From)
		pt.Cut = c.ClusterOfNode(from.Node)
	}
	return pt, ttl
}

// partitionFile is the state file of the partition's policy.
const partitionFile = "32-partition.yaml"

// partitionPolicy admits the partition's client to its server on the
// port by the client's labels and cluster label, placed in the server's
// cluster.
func (r *runner) partitionPolicy(pt scenario.Partition) *networkingv1.NetworkPolicy {
	c := &r.suite.Spec.Cluster
	from, _ := r.suite.PodByRef(pt.From)
	to, _ := r.suite.PodByRef(pt.To)
	labels := map[string]string{model.LabelCluster: c.ClusterOfNode(from.Node)}
	for k, v := range from.Labels {
		labels[k] = v
	}
	np := allowIngress("fp-partition", to.Namespace, to.Labels, []networkingv1.NetworkPolicyPeer{{
		PodSelector:       &metav1.LabelSelector{MatchLabels: labels},
		NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": from.Namespace}},
	}}, pt.Port)
	np.Annotations = map[string]string{cluster.ClusterAnnotation: c.ClusterOfNode(to.Node)}
	return np
}

// measurePartition cuts cluster pt.Cut's control plane off while the
// client holds established connections to the server and opens new ones,
// then starts it again; the agents of datapath dp are running.
func (r *runner) measurePartition(ctx context.Context, dp string) report.Partition {
	pt, ttl := r.partitionSpec()
	res := report.Partition{Datapath: dp, From: pt.From, To: pt.To, Cut: pt.Cut,
		LeaseTTLSeconds: ttl.Seconds(), ProbeIntervalSeconds: pt.ProbeInterval.Seconds(), Established: pt.Established}
	fail := func(err error) report.Partition {
		res.Errors = append(res.Errors, err.Error())
		return res
	}
	mesh, ok := r.c.(cluster.Mesh)
	if !ok {
		return fail(fmt.Errorf("the cluster is no mesh"))
	}
	// The server admits the client on the port by its labels and cluster
	// only (an identity the mesh carries), in the server's cluster.
	data, err := netns.MarshalDocs([]any{r.partitionPolicy(pt)})
	if err != nil {
		return fail(err)
	}
	token, err := r.c.WriteState(partitionFile, data)
	if err != nil {
		return fail(err)
	}
	defer func() { _, _ = r.c.RemoveState(partitionFile) }()
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	_, err = r.c.WaitProgrammed(wctx, token, time.Now())
	cancel()
	if err != nil {
		return fail(fmt.Errorf("partition policy: %w", err))
	}
	to := r.podIP(pt.To)
	fromNS := r.c.PodNetns(pt.From)
	// The probe server keeps a connection while its client talks (an
	// echo every probe interval).
	srv, err := probe.Serve(r.c.PodNetns(pt.To), pt.Port, "TCP")
	if err != nil {
		return fail(err)
	}
	defer srv.Close()
	dialer, err := probe.NewDialer(fromNS)
	if err != nil {
		return fail(err)
	}
	defer dialer.Close()
	// The connection must work before the cut.
	if p := dialer.Connect(ctx, to, pt.Port, time.Second); !p.Connected {
		return fail(fmt.Errorf("%s -> %s:%d before the cut: %v (the suite's policies must admit it)", pt.From, to, pt.Port, p.Err))
	}
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := 0; i < pt.Established; i++ {
		var c net.Conn
		err := execx.RunInNetns(fromNS, func() (err error) {
			c, err = net.DialTimeout("tcp4", net.JoinHostPort(to.String(), strconv.Itoa(pt.Port)), 2*time.Second)
			return err
		})
		if err == nil {
			err = echoOnce(c)
		}
		if err != nil {
			return fail(fmt.Errorf("established connection %d before the cut: %w", i, err))
		}
		conns = append(conns, c)
	}

	cut := time.Now()
	if err := mesh.StopControlPlane(pt.Cut); err != nil {
		return fail(fmt.Errorf("stop %s's control plane: %w", pt.Cut, err))
	}
	restarted := false
	defer func() {
		if !restarted {
			_ = mesh.StartControlPlane(pt.Cut)
		}
	}()
	end := cut.Add(pt.Duration.Duration)

	// Established connections exchange an echo every probe interval
	// until the end of the cut; the first failure of each is kept.
	failedAt := make([]time.Duration, len(conns))
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Go(func() {
			for time.Now().Before(end) && ctx.Err() == nil {
				if err := echoOnce(c); err != nil {
					failedAt[i] = time.Since(cut)
					return
				}
				time.Sleep(pt.ProbeInterval.Duration)
			}
		})
	}
	// New connections, one every probe interval.
	var lastOK, failFrom time.Duration
	failing := false
	for time.Now().Before(end) && ctx.Err() == nil {
		start := time.Since(cut)
		p := dialer.Connect(ctx, to, pt.Port, 2*pt.ProbeInterval.Duration)
		res.NewAttempts++
		if p.Connected {
			res.NewSucceeded++
			lastOK = start
			failing = false
		} else if !failing {
			failing, failFrom = true, start
		}
		time.Sleep(time.Until(cut.Add(start + pt.ProbeInterval.Duration)))
	}
	wg.Wait()
	res.CutSeconds = time.Since(cut).Seconds()
	if res.NewSucceeded > 0 {
		v := lastOK.Seconds()
		res.NewKeptWorkingSeconds = &v
	}
	if failing {
		v := failFrom.Seconds()
		res.NewFailedFromSeconds = &v
	}
	for _, f := range failedAt {
		if f == 0 {
			res.EstablishedKept++
		} else {
			res.EstablishedFailedSeconds = append(res.EstablishedFailedSeconds, f.Seconds())
		}
	}

	// Back: the time until a new connection works again.
	restart := time.Now()
	restarted = true
	if err := mesh.StartControlPlane(pt.Cut); err != nil {
		return fail(fmt.Errorf("start %s's control plane again: %w", pt.Cut, err))
	}
	deadline := restart.Add(max(60*time.Second, 4*ttl))
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if p := dialer.Connect(ctx, to, pt.Port, 2*pt.ProbeInterval.Duration); p.Connected {
			v := time.Since(restart).Seconds()
			res.RecoveredSeconds = &v
			break
		}
		time.Sleep(pt.ProbeInterval.Duration)
	}
	if res.RecoveredSeconds == nil {
		res.Errors = append(res.Errors, fmt.Sprintf("new connections did not work again within %s of the restart", time.Since(restart).Round(time.Second)))
	}
	return res
}

// echoOnce writes a line on c and reads it back from the echo server.
func echoOnce(c net.Conn) error {
	msg := []byte("fastpath-partition\n")
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write(msg); err != nil {
		return err
	}
	buf := make([]byte, len(msg))
	_, err := io.ReadFull(c, buf)
	return err
}
