package kind

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/fastpath-bench/fastpath/datapath/lxc"
	"github.com/fastpath-bench/fastpath/harness/cluster"
	"github.com/fastpath-bench/fastpath/harness/execx"
	"github.com/fastpath-bench/fastpath/harness/probe"
)

// globalEchoServices is t/echo in east and in west (ClusterIPs {{east
// ip}} and {{west ip}}, in each cluster's service CIDR), global in both,
// selecting the pods labelled app=echo: each cluster's API server makes
// the EndpointSlices from its own pods. {{affinity}} are east's extra
// annotations.
const globalEchoServices = `apiVersion: v1
kind: Service
metadata:
  name: echo
  namespace: t
  annotations: {fastpath.dev/cluster: east, service.fastpath.dev/global: "true"{{affinity}}}
spec:
  clusterIP: {{east ip}}
  selector: {app: echo}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata:
  name: echo
  namespace: t
  annotations: {fastpath.dev/cluster: west, service.fastpath.dev/global: "true"}
spec:
  clusterIP: {{west ip}}
  selector: {app: echo}
  ports: [{name: http, port: 80, targetPort: 8080}]
`

// serviceIP is the address .80 of cluster id's default service CIDR.
func serviceIP(id int) netip.Addr {
	a := cluster.DefaultServiceCIDR(id).Addr().As4()
	a[3] = 80
	return netip.AddrFrom4(a)
}

// TestGlobalServiceOnKind: a two-cluster mesh on kind (east: node e1 with
// pods client, east-a and east-b; west: node w1 with west-a and west-b;
// 2 s lease), the Service t/echo global in both clusters with a selector
// (app=echo): the EndpointSlices are the controller manager's, made from
// each cluster's pods, and the agents read them through their informers.
// Real connections from east's client to east's ClusterIP, each answered
// with the backend pod's name:
//   - no affinity: they reach the backends of both clusters (west's
//     through the overlay);
//   - affinity local: east's only (west's on standby);
//   - east's backends leave its slice (their app label removed: the
//     controller manager empties the slice): connections fail over to
//     west's; the time from the change to the first answer by west is
//     logged;
//   - west's etcd stopped (a partition): a lease TTL later east drops
//     west's Service, the frontend has no backend and connections fail
//     (the SYN dropped: a timeout); west's etcd back: they reach west's
//     backends again.
func TestGlobalServiceOnKind(t *testing.T) {
	ctx, nodeImage, img, id := meshTestEnv(t, "g")
	echo := map[string]string{"app": "echo"}
	spec := cluster.Spec{RunID: id, Nodes: []string{"e1", "w1"}, MeshLeaseTTL: 2 * time.Second,
		Clusters: []cluster.ClusterSpec{{Name: "east", ID: 1, Nodes: []string{"e1"}}, {Name: "west", ID: 2, Nodes: []string{"w1"}}},
		Pods: []cluster.PodSpec{
			{Namespace: "t", Name: "client", Node: "e1", Labels: map[string]string{"app": "client"}},
			{Namespace: "t", Name: "east-a", Node: "e1", Labels: echo},
			{Namespace: "t", Name: "east-b", Node: "e1", Labels: echo},
			{Namespace: "t", Name: "west-a", Node: "w1", Labels: echo},
			{Namespace: "t", Name: "west-b", Node: "w1", Labels: echo},
		}}
	began := time.Now()
	start := time.Now()
	topo, err := Build(ctx, spec, TopologyOptions{NodeImage: nodeImage, AgentImage: img, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	destroyed := false
	t.Cleanup(func() {
		if !destroyed {
			_ = topo.Destroy(context.Background())
		}
	})
	t.Logf("two clusters with pods in %s", time.Since(start).Round(time.Second))
	start = time.Now()
	if err := topo.StartAgents(ctx, cluster.AgentOptions{Datapath: "ebpf"}); err != nil {
		t.Fatal(err)
	}
	t.Logf("agents on ebpf in %s", time.Since(start).Round(100*time.Millisecond))

	addrName := map[string]string{}
	for _, p := range topo.Pods() {
		addrName[p.IP.String()+":8080"] = p.Name
		if p.Name != "client" {
			srv, err := probe.ServeName(topo.PodNetns(p.Key()), 8080, p.Name)
			if err != nil {
				t.Fatalf("name server in pod %s: %v", p.Name, err)
			}
			t.Cleanup(func() { srv.Close() })
		}
	}
	eastIP, westIP := serviceIP(1), serviceIP(2)
	frontKey := netip.AddrPortFrom(eastIP, 80).String() + "/TCP"
	state := func(affinity string) []byte {
		return []byte(strings.NewReplacer("{{affinity}}", affinity, "{{east ip}}", eastIP.String(), "{{west ip}}", westIP.String()).Replace(globalEchoServices))
	}
	// apply writes the Services to both API servers and waits until both
	// clusters' agents have programmed them.
	apply := func(doc []byte) {
		t.Helper()
		since := time.Now()
		tok, err := topo.WriteState("20-echo.yaml", doc)
		if err != nil {
			t.Fatal(err)
		}
		wctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		if _, err := topo.WaitProgrammed(wctx, tok, since); err != nil {
			t.Fatal(err)
		}
	}
	// frontend waits until east's load balancer has, for the Service's
	// frontend, the backends want ("pod" per backend new flows go to,
	// "pod standby" per one on standby), and returns how long it waited.
	lb := topo.AgentSocketClient("e1")
	frontend := func(what string, timeout time.Duration, want ...string) time.Duration {
		t.Helper()
		sort.Strings(want)
		start := time.Now()
		var got []string
		name := func(addr string) string {
			if n := addrName[addr]; n != "" {
				return n
			}
			return addr
		}
		for {
			got = nil
			fronts, err := lb.LB(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range fronts {
				if f.Frontend == frontKey {
					got = f.Choices(name)
				}
			}
			if strings.Join(got, ",") == strings.Join(want, ",") {
				return time.Since(start)
			}
			if time.Since(start) > timeout {
				t.Fatalf("%s: east's frontend %s selects %v after %s, want %v", what, frontKey, got, timeout, want)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	// ask connects from east's client to east's ClusterIP and returns the
	// pod that answered.
	client := topo.PodNetns("t/client")
	ask := func(timeout time.Duration) (string, error) {
		return probe.AskName(client, netip.AddrPortFrom(eastIP, 80), timeout)
	}
	// tally makes n connections and counts the answers per cluster.
	tally := func(n int) map[string]int {
		t.Helper()
		out := map[string]int{}
		for i := 0; i < n; i++ {
			pod, err := ask(2 * time.Second)
			if err != nil {
				t.Fatalf("connection %d to %s: %v (so far %v)", i, frontKey, err, out)
			}
			c, _, _ := strings.Cut(pod, "-")
			out[c]++
		}
		return out
	}

	// No affinity: every backend of both clusters.
	start = time.Now()
	apply(state(""))
	took := frontend("merged", 30*time.Second, "east-a", "east-b", "west-a", "west-b")
	t.Logf("Services written, both clusters' slices made by their controller managers and merged on east's agent in %s (%s after the state was programmed)",
		time.Since(start).Round(10*time.Millisecond), took.Round(10*time.Millisecond))
	st, err := topo.AgentClient("e1").Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mesh == nil || len(st.Mesh.Peers) != 1 || st.Mesh.Peers[0].Name != "west" || st.Mesh.Peers[0].Services != 1 || st.Mesh.Peers[0].Backends != 2 {
		t.Fatalf("east's agent: mesh %+v, want peer west with 1 global Service and 2 backends", st.Mesh)
	}
	before := tunnelRx(t, ctx, topo, "w1")
	counts := tally(40)
	t.Logf("no affinity, 40 connections: %v", counts)
	if counts["east"] == 0 || counts["west"] == 0 {
		t.Fatalf("connections reached %v: want backends of both clusters", counts)
	}
	if after := tunnelRx(t, ctx, topo, "w1"); after <= before {
		t.Fatalf("w1's %s received %d packets before and %d after: the overlay did not carry the connections to west's backends", lxc.TunnelDevice, before, after)
	}

	// Affinity local: east's only.
	apply(state(", service.fastpath.dev/affinity: local"))
	frontend("affinity local", 30*time.Second, "east-a", "east-b", "west-a standby", "west-b standby")
	if counts := tally(20); counts["east"] != 20 {
		t.Fatalf("affinity local with ready local backends: connections reached %v", counts)
	}
	t.Logf("affinity local, 20 connections: all to east")

	// East's backends leave its slice: their label removed, the
	// controller manager takes them out of the Service's slice, and new
	// connections fail over to west. East's name servers keep answering:
	// a connection still sent to them says so.
	verdicts := agentVerdicts(t, topo, "e1")
	emptied := watchSliceEmptied(t, ctx, topo.Member("east").Client(), "t", "echo")
	pr := startProber(ask, func(pod string, err error) bool { return strings.HasPrefix(pod, "west-") })
	changed := time.Now()
	var last time.Time // the patch that leaves east without a backend
	for _, p := range []string{"t/east-a", "t/east-b"} {
		last = time.Now()
		if _, err := topo.SetPodLabel(p, "app", nil); err != nil {
			pr.end()
			t.Fatal(err)
		}
	}
	if !pr.wait(30 * time.Second) {
		t.Fatalf("no connection reached west's backends 30s after east's left their slice (%s)", pr)
	}
	failover := pr.at.Sub(last)
	var sliceEmpty time.Time
	select {
	case sliceEmpty = <-emptied:
	case <-time.After(10 * time.Second):
		t.Fatal("east's EndpointSlice of t/echo still lists a ready endpoint 10s after west answered")
	}
	if pr.n > 0 {
		t.Logf("failover: %d connections failed (%v); drops on e1 meanwhile: %v", pr.n, pr.errs, newDrops(verdicts, agentVerdicts(t, topo, "e1")))
	}
	t.Logf("failover: the first connection west answered came %s after the patch removing east's last backend's label was sent (%s after the first patch): east's controller manager emptied the slice %s after that patch, east's agent took %s from there (%s)",
		failover.Round(time.Millisecond), pr.at.Sub(changed).Round(time.Millisecond), sliceEmpty.Sub(last).Round(time.Millisecond), pr.at.Sub(sliceEmpty).Round(time.Millisecond), pr)
	frontend("failed over", 10*time.Second, "west-a", "west-b")
	if counts := tally(20); counts["west"] != 20 {
		t.Fatalf("after failover: connections reached %v", counts)
	}
	t.Logf("after failover, 20 connections: all to west")

	// Partition: west's etcd stops. A lease TTL after its last answer
	// east drops west's Service: no backend, new connections fail.
	west, err := topo.member("west")
	if err != nil {
		t.Fatal(err)
	}
	westEtcd := west.etcdURL
	drops := agentVerdicts(t, topo, "e1")
	etcdGone := make(chan time.Time, 1)
	health := &http.Client{Timeout: time.Second}
	pollEtcd, stopEtcdPoll := context.WithCancel(ctx)
	defer stopEtcdPoll()
	go func() {
		defer close(etcdGone)
		for pollEtcd.Err() == nil {
			resp, err := health.Get(westEtcd + "/health")
			if err != nil {
				etcdGone <- time.Now()
				return
			}
			resp.Body.Close()
			time.Sleep(20 * time.Millisecond)
		}
	}()
	pr = startProber(ask, func(pod string, err error) bool { return err != nil })
	cut := time.Now()
	if err := topo.StopControlPlane("west"); err != nil {
		pr.end()
		t.Fatal(err)
	}
	stopped := time.Since(cut)
	if !pr.wait(30 * time.Second) {
		t.Fatalf("connections still reach west 30s after its etcd stopped (lease TTL 2s): %s", pr)
	}
	if pr.east != 0 {
		t.Errorf("during the partition: %s, want no connection to east", pr)
	}
	silent, ok := <-etcdGone
	if !ok {
		t.Fatal("west's etcd still answered after its pod was deleted")
	}
	frontend("partitioned", 10*time.Second)
	_, err = ask(time.Second)
	var ne net.Error
	if err == nil || !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("a connection to the Service without backends: %v, want a timeout (the SYN dropped)", err)
	}
	nsb := lxc.DropNoServiceBackend.String()
	if d := newDrops(drops, agentVerdicts(t, topo, "e1")); d[nsb] == 0 {
		t.Errorf("drops on e1 during the partition: %v, no %s: the SYNs were not dropped for want of a backend", d, nsb)
	}
	reached := "never"
	if !pr.lastOK.IsZero() {
		reached = pr.lastOK.Sub(cut).Round(time.Millisecond).String()
	}
	t.Logf("partition: west's etcd stopped answering %s after its pod's deletion began (gone in %s); connections reached west until %s, failed from %s after the deletion began, %s after etcd stopped answering (lease TTL 2s), as timeouts (%s)",
		silent.Sub(cut).Round(time.Millisecond), stopped.Round(time.Millisecond), reached,
		pr.at.Sub(cut).Round(time.Millisecond), pr.at.Sub(silent).Round(time.Millisecond), pr)

	// West's etcd back: its Service and backends return.
	back := time.Now()
	if err := topo.StartControlPlane("west"); err != nil {
		t.Fatal(err)
	}
	ready := time.Since(back)
	frontend("west back", 30*time.Second, "west-a", "west-b")
	t.Logf("west's etcd back: ready in %s, its backends programmed on east %s after it was started", ready.Round(time.Millisecond), time.Since(back).Round(time.Millisecond))
	if counts := tally(10); counts["west"] != 10 {
		t.Fatalf("after west came back: connections reached %v", counts)
	}

	if err := topo.Destroy(ctx); err != nil {
		t.Fatal(err)
	}
	destroyed = true
	t.Logf("whole test in %s", time.Since(began).Round(time.Second))
}

// watchSliceEmptied watches the EndpointSlices of Service ns/name on
// cl's API server and sends the time one was seen without a ready
// endpoint (the controller manager's update that empties it).
func watchSliceEmptied(t *testing.T, ctx context.Context, cl *Client, ns, name string) <-chan time.Time {
	t.Helper()
	w, err := cl.Kube.DiscoveryV1().EndpointSlices(ns).Watch(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + name})
	if err != nil {
		t.Fatal(err)
	}
	out := make(chan time.Time, 1)
	go func() {
		defer w.Stop()
		for ev := range w.ResultChan() {
			es, ok := ev.Object.(*discoveryv1.EndpointSlice)
			if !ok || ev.Type == watch.Deleted {
				continue
			}
			ready := 0
			for _, ep := range es.Endpoints {
				if ep.Conditions.Ready == nil || *ep.Conditions.Ready {
					ready++
				}
			}
			if ready == 0 {
				out <- time.Now()
				return
			}
		}
	}()
	t.Cleanup(w.Stop)
	return out
}

// tunnelRx is the count of packets node's VXLAN device received (read in
// its node container).
func tunnelRx(t *testing.T, ctx context.Context, topo *Topology, node string) int64 {
	t.Helper()
	out, err := execx.Run(ctx, "docker", "exec", topo.KindNode(node), "cat", "/sys/class/net/"+lxc.TunnelDevice+"/statistics/rx_packets")
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
	if err != nil {
		t.Fatalf("%s's %s rx_packets: %v", node, lxc.TunnelDevice, err)
	}
	return n
}

// agentVerdicts are the datapath's packet counts by verdict reason on
// node's agent (both directions).
func agentVerdicts(t *testing.T, topo *Topology, node string) map[string]int64 {
	t.Helper()
	b, err := topo.AgentClient(node).Get(context.Background(), "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, "fastpath_datapath_packets_total{") {
			continue
		}
		_, rest, _ := strings.Cut(line, `reason="`)
		reason, _, _ := strings.Cut(rest, `"`)
		f := strings.Fields(line)
		n, err := strconv.ParseInt(f[len(f)-1], 10, 64)
		if err != nil {
			t.Fatalf("metric line %q: %v", line, err)
		}
		out[reason] += n
	}
	return out
}

// newDrops are the drop reasons whose counts grew from before to after.
func newDrops(before, after map[string]int64) map[string]int64 {
	out := map[string]int64{}
	for r, n := range after {
		if strings.HasPrefix(r, "DROP") && n > before[r] {
			out[r] = n - before[r]
		}
	}
	return out
}

// prober connects from east's client again and again (ask) until a
// result satisfies until, counting the answers before it.
type prober struct {
	stop, done chan struct{}
	once       sync.Once
	ok         bool
	// at is when the result that satisfied until came, lastOK the last
	// answered connection before it.
	at, lastOK            time.Time
	probes, east, west, n int
	errs                  []string
}

func startProber(ask func(time.Duration) (string, error), until func(pod string, err error) bool) *prober {
	p := &prober{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		for {
			select {
			case <-p.stop:
				return
			default:
			}
			pod, err := ask(300 * time.Millisecond)
			if until(pod, err) {
				p.ok, p.at = true, time.Now()
				return
			}
			p.probes++
			switch {
			case err != nil:
				p.n++
				p.errs = append(p.errs, err.Error())
			case strings.HasPrefix(pod, "west-"):
				p.west++
				p.lastOK = time.Now()
			default:
				p.east++
				p.lastOK = time.Now()
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	return p
}

// wait waits until the prober is done, at most timeout, and says whether
// until was satisfied.
func (p *prober) wait(timeout time.Duration) bool {
	select {
	case <-p.done:
	case <-time.After(timeout):
	}
	p.end()
	return p.ok
}

// end stops the prober and waits until it has.
func (p *prober) end() {
	p.once.Do(func() { close(p.stop) })
	<-p.done
}

func (p *prober) String() string {
	return fmt.Sprintf("%d connections before: %d answered by east, %d by west, %d failed", p.probes, p.east, p.west, p.n)
}
