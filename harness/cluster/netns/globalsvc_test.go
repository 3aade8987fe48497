package netns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/fastpath-bench/fastpath/datapath/lxc"
	"github.com/fastpath-bench/fastpath/harness/cluster"
	"github.com/fastpath-bench/fastpath/harness/probe"
	"github.com/fastpath-bench/fastpath/internal/testutil"
)

// echoServices is t/echo in east (ClusterIP 10.96.0.80, in east's service
// CIDR) and in west (10.97.0.80), global in both, with {{affinity}} the
// extra annotations of east's, and each cluster's backends
// ({{east}}, {{west}}: endpoint lists) on port 8080.
const echoServices = `apiVersion: v1
kind: Service
metadata:
  name: echo
  namespace: t
  annotations: {fastpath.dev/cluster: east, service.fastpath.dev/global: "true"{{affinity}}}
spec:
  clusterIP: 10.96.0.80
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: echo-east
  namespace: t
  labels: {kubernetes.io/service-name: echo}
  annotations: {fastpath.dev/cluster: east}
addressType: IPv4
endpoints: [{{east}}]
ports: [{name: http, port: 8080}]
---
apiVersion: v1
kind: Service
metadata:
  name: echo
  namespace: t
  annotations: {fastpath.dev/cluster: west, service.fastpath.dev/global: "true"}
spec:
  clusterIP: 10.97.0.80
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: echo-west
  namespace: t
  labels: {kubernetes.io/service-name: echo}
  annotations: {fastpath.dev/cluster: west}
addressType: IPv4
endpoints: [{{west}}]
ports: [{name: http, port: 8080}]
`

// TestGlobalServiceFailover: a cluster mesh on netns (Spec.Clusters: east
// with node e1, pods client, east-a and east-b; west with node w1, pods
// west-a and west-b; each cluster its own state, etcd and agent), the
// Service t/echo global in both with each cluster's two pods as backends.
// Real connections from east's client to east's ClusterIP, each answered
// with the backend's pod name:
//   - no affinity: they reach the backends of both clusters (west's
//     through the overlay: w1's VXLAN device counts them);
//   - affinity local: east's only (west's are on standby);
//   - east's backend pods deleted (their servers stopped, their
//     endpoints removed from east's slice, the pods from east's state):
//     connections fail over to west's; the time from the state write to
//     the first connection west answers is logged;
//   - west's etcd stopped (a partition): a lease TTL (2 s) later east
//     drops west's Service, the frontend has no backend, and connections
//     fail: the datapath drops the SYN (DROP_NO_SERVICE_BACKEND), so the
//     client's connect times out, it is not refused;
//   - west's etcd back: connections reach west's backends again.
func TestGlobalServiceFailover(t *testing.T) {
	testutil.RequireRoot(t)
	ctx := context.Background()
	logDir := agentLogDir(t)
	echo := map[string]string{"app": "echo"}
	c, err := NewProvider(Options{AgentBinary: agentBin}).Create(ctx, cluster.Spec{
		RunID: runID(t),
		Nodes: []string{"e1", "w1"},
		Pods: []cluster.PodSpec{
			{Namespace: "t", Name: "client", Node: "e1", Labels: map[string]string{"app": "client"}},
			{Namespace: "t", Name: "east-a", Node: "e1", Labels: echo},
			{Namespace: "t", Name: "east-b", Node: "e1", Labels: echo},
			{Namespace: "t", Name: "west-a", Node: "w1", Labels: echo},
			{Namespace: "t", Name: "west-b", Node: "w1", Labels: echo},
		},
		Clusters: []cluster.ClusterSpec{
			{Name: "east", ID: 1, Nodes: []string{"e1"}},
			{Name: "west", ID: 2, Nodes: []string{"w1"}},
		},
		MeshLeaseTTL: 2 * time.Second,
		LogDir:       logDir,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Destroy(context.Background()) })
	pods := podsByName(c)
	servers := map[string]*probe.NameServer{}
	for _, p := range []string{"east-a", "east-b", "west-a", "west-b"} {
		srv, err := probe.ServeName(c.PodNetns("t/"+p), 8080, p)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { srv.Close() })
		servers[p] = srv
	}
	if err := c.StartAgents(ctx, cluster.AgentOptions{Datapath: "ebpf"}); err != nil {
		t.Fatal(err)
	}

	endpoints := func(names ...string) string {
		var eps []string
		for _, n := range names {
			eps = append(eps, fmt.Sprintf("{addresses: [%s], conditions: {ready: true}, targetRef: {kind: Pod, name: %s}}", pods[n].IP, n))
		}
		return strings.Join(eps, ", ")
	}
	state := func(affinity string, east ...string) string {
		return strings.NewReplacer("{{affinity}}", affinity, "{{east}}", endpoints(east...), "{{west}}", endpoints("west-a", "west-b")).Replace(echoServices)
	}
	// apply writes the Services and waits until both agents program them;
	// it returns when east's agent did, after the write.
	apply := func(doc string) time.Duration {
		t.Helper()
		start := time.Now()
		token, err := c.WriteState("20-echo.yaml", []byte(doc))
		if err != nil {
			t.Fatal(err)
		}
		wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		took, err := c.WaitProgrammed(wctx, token, start)
		if err != nil {
			t.Fatal(err)
		}
		return took["e1"]
	}
	// frontend waits until east's load balancer has, for 10.96.0.80:80,
	// the backends want ("pod" per backend new flows go to, "pod
	// standby" per one on standby).
	addrName := map[string]string{}
	for n, p := range pods {
		addrName[p.IP.String()+":8080"] = n
	}
	frontend := func(what string, want ...string) {
		t.Helper()
		sort.Strings(want)
		deadline := time.Now().Add(15 * time.Second)
		var got []string
		for {
			got = nil
			fronts, err := c.AgentClient("e1").LB(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range fronts {
				if f.Frontend == "10.96.0.80:80/TCP" {
					got = f.Choices(func(addr string) string { return addrName[addr] })
				}
			}
			if strings.Join(got, ",") == strings.Join(want, ",") {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: east's frontend 10.96.0.80:80 selects %v, want %v", what, got, want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	// ask connects from east's client to east's ClusterIP and returns the
	// pod that answered.
	ask := func(timeout time.Duration) (string, error) {
		return probe.AskName(c.PodNetns("t/client"), netip.MustParseAddrPort("10.96.0.80:80"), timeout)
	}
	// tally makes n connections and counts the answering pods.
	tally := func(n int) map[string]int {
		t.Helper()
		out := map[string]int{}
		for i := 0; i < n; i++ {
			pod, err := ask(2 * time.Second)
			if err != nil {
				t.Fatalf("connection %d to 10.96.0.80:80: %v (so far %v)", i, err, out)
			}
			out[pod]++
		}
		return out
	}
	ofCluster := func(counts map[string]int, prefix string) int {
		n := 0
		for pod, k := range counts {
			if strings.HasPrefix(pod, prefix) {
				n += k
			}
		}
		return n
	}

	// No affinity: every backend of both clusters.
	apply(state("", "east-a", "east-b"))
	frontend("merged", "east-a", "east-b", "west-a", "west-b")
	w1 := NodeNS(c.spec.RunID, "w1")
	before := rxPackets(t, w1)
	counts := tally(40)
	t.Logf("no affinity, 40 connections: %v", counts)
	if ofCluster(counts, "east-") == 0 || ofCluster(counts, "west-") == 0 {
		t.Fatalf("connections reached %v: want backends of both clusters", counts)
	}
	if after := rxPackets(t, w1); after <= before {
		t.Fatalf("w1's %s received %d packets before and %d after: the overlay did not carry the connections to west's backends", lxc.TunnelDevice, before, after)
	}

	// Affinity local: east's only.
	apply(state(", service.fastpath.dev/affinity: local", "east-a", "east-b"))
	frontend("affinity local", "east-a", "east-b", "west-a standby", "west-b standby")
	if counts := tally(20); ofCluster(counts, "west-") != 0 {
		t.Fatalf("affinity local with ready local backends: connections reached %v", counts)
	}

	// East's backend pods deleted: their processes go, then their
	// endpoints leave east's slice; new connections fail over to west.
	stop := make(chan struct{})
	firstWest := make(chan time.Time, 1)
	var probes, failed int
	go func() {
		defer close(firstWest)
		for {
			select {
			case <-stop:
				return
			default:
			}
			probes++
			pod, err := ask(200 * time.Millisecond)
			if err != nil {
				failed++
			}
			if strings.HasPrefix(pod, "west-") {
				firstWest <- time.Now()
				return
			}
			time.Sleep(time.Millisecond)
		}
	}()
	servers["east-a"].Close()
	servers["east-b"].Close()
	written := time.Now()
	programmed := apply(state(", service.fastpath.dev/affinity: local"))
	var failover time.Duration
	select {
	case at, ok := <-firstWest:
		if !ok {
			t.Fatal("the probe stopped")
		}
		failover = at.Sub(written)
	case <-time.After(15 * time.Second):
		close(stop)
		t.Fatal("no connection reached west's backends 15s after east's were removed")
	}
	st, err := c.AgentClient("e1").Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("failover: the first connection west answered %s after the state write (%d probes, %d failed: east's servers were already gone); east's agent reported the state programmed %s after the write (its reconcile: %.1f ms, of which load %.1f, resolve %.1f, datapath %.1f)",
		failover.Round(100*time.Microsecond), probes, failed, programmed.Round(100*time.Microsecond),
		1e3*st.ApplySeconds, 1e3*st.LoadSeconds, 1e3*st.ResolveSeconds, 1e3*st.DatapathSeconds)
	removePods(t, c.ClusterStateDir("east"), "east-a", "east-b")
	frontend("failed over", "west-a", "west-b")
	if counts := tally(20); ofCluster(counts, "west-") != 20 {
		t.Fatalf("after failover: connections reached %v", counts)
	}

	// Partition: west's etcd stops. A lease TTL later east drops west's
	// Service: no backend, new connections fail.
	drops := (&sockCluster{c: c}).metric(t, "e1", lxc.DropNoServiceBackend.String())
	cut := time.Now()
	if err := c.StopControlPlane("west"); err != nil {
		t.Fatal(err)
	}
	var lastOK time.Duration
	for {
		if time.Since(cut) > 15*time.Second {
			t.Fatal("connections still reach west 15s after its etcd stopped (lease TTL 2s)")
		}
		if _, err := ask(300 * time.Millisecond); err != nil {
			break
		}
		lastOK = time.Since(cut)
		time.Sleep(20 * time.Millisecond)
	}
	gone := time.Since(cut)
	frontend("partitioned")
	start := time.Now()
	_, err = ask(time.Second)
	var ne net.Error
	if err == nil || !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("a connection to the Service without backends: %v, want a timeout (the SYN dropped)", err)
	}
	if got := (&sockCluster{c: c}).metric(t, "e1", lxc.DropNoServiceBackend.String()); got <= drops {
		t.Errorf("%s: %d before the partition, %d after: the SYNs were not dropped for want of a backend", lxc.DropNoServiceBackend, drops, got)
	}
	t.Logf("partition: connections reached west until %s after its etcd stopped, failed from %s (lease TTL 2s); a connect to the Service without backends times out (%s, %s), no RST",
		lastOK.Round(time.Millisecond), gone.Round(time.Millisecond), time.Since(start).Round(time.Millisecond), err)

	// West's etcd back: its Service and backends return.
	back := time.Now()
	if err := c.StartControlPlane("west"); err != nil {
		t.Fatal(err)
	}
	frontend("west back", "west-a", "west-b")
	t.Logf("west's etcd back: its backends programmed on east %s after it started", time.Since(back).Round(time.Millisecond))
	if counts := tally(10); ofCluster(counts, "west-") != 10 {
		t.Fatalf("after west came back: connections reached %v", counts)
	}
}

// removePods rewrites the cluster state file 00-cluster.yaml of a
// cluster's state directory without the Pods named (the provider writes
// one document per object).
func removePods(t *testing.T, dir string, names ...string) {
	t.Helper()
	path := filepath.Join(dir, "00-cluster.yaml")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	docs := strings.Split(string(b), "\n---\n")
	var keep []string
	removed := 0
	for _, d := range docs {
		drop := false
		for _, n := range names {
			if strings.Contains(d, "kind: Pod") && strings.Contains(d, "\n  name: "+n+"\n") {
				drop = true
			}
		}
		if drop {
			removed++
			continue
		}
		keep = append(keep, d)
	}
	if removed != len(names) {
		t.Fatalf("%s: found %d of the pods %v:\n%s", path, removed, names, b)
	}
	if err := writeFileAtomic(path, []byte(strings.Join(keep, "\n---\n"))); err != nil {
		t.Fatal(err)
	}
}
