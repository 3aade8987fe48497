package netns

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fastpath-bench/fastpath/datapath/agentapi"
	"github.com/fastpath-bench/fastpath/harness/cluster"
	"github.com/fastpath-bench/fastpath/harness/probe"
	"github.com/fastpath-bench/fastpath/internal/testutil"
)

var agentBin string

func TestMain(m *testing.M) {
	code := func() int {
		if os.Geteuid() == 0 {
			dir, err := os.MkdirTemp("", "fp-test-bin")
			if err != nil {
				panic(err)
			}
			defer os.RemoveAll(dir)
			agentBin = filepath.Join(dir, "fastpath-agent")
			if _, err := exec.LookPath("go"); err != nil {
				// No toolchain (a VM of the kernel matrix): the
				// payload's agent, on PATH.
				if agentBin, err = exec.LookPath("fastpath-agent"); err != nil {
					panic("neither go nor fastpath-agent on PATH")
				}
				return m.Run()
			}
			out, err := exec.Command("go", "build", "-o", agentBin, "github.com/fastpath-bench/fastpath/cmd/fastpath-agent").CombinedOutput()
			if err != nil {
				os.Stderr.Write(out)
				panic(err)
			}
		}
		return m.Run()
	}()
	os.Exit(code)
}

func runID(t *testing.T) string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return "fp-t" + hex.EncodeToString(b[:])
}

const allowClient = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-client, namespace: t}
spec:
  podSelector: {matchLabels: {app: server}}
  policyTypes: [Ingress]
  ingress:
  - from: [{podSelector: {matchLabels: {app: client}}}]
    ports: [{protocol: TCP, port: 8080}, {protocol: UDP, port: 5353}]
`

const allowClientAndOther = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-client, namespace: t}
spec:
  podSelector: {matchLabels: {app: server}}
  policyTypes: [Ingress]
  ingress:
  - from: [{podSelector: {matchLabels: {app: client}}}, {podSelector: {matchLabels: {app: other}}}]
    ports: [{protocol: TCP, port: 8080}, {protocol: UDP, port: 5353}]
`

const badPort = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: broken, namespace: t}
spec:
  podSelector: {}
  ingress:
  - ports: [{protocol: TCP, port: 70000}]
`

// TestEnforcement builds a two-node cluster, runs real agents with the eBPF
// datapath, and probes real connections between pod namespaces.
func TestEnforcement(t *testing.T) {
	testutil.RequireRoot(t)
	ctx := context.Background()
	id := runID(t)
	c, err := NewProvider(Options{AgentBinary: agentBin}).Create(ctx, cluster.Spec{
		RunID: id,
		Nodes: []string{"n1", "n2"},
		Pods: []cluster.PodSpec{
			{Namespace: "t", Name: "client", Node: "n1", Labels: map[string]string{"app": "client"}},
			{Namespace: "t", Name: "server", Node: "n1", Labels: map[string]string{"app": "server"}},
			{Namespace: "t", Name: "other", Node: "n2", Labels: map[string]string{"app": "other"}},
			{Namespace: "t", Name: "server2", Node: "n2", Labels: map[string]string{"app": "server"}},
		},
		LogDir: t.TempDir(),
	})
	if err != nil {
		t.Fatal(err)
	}
	destroyed := false
	t.Cleanup(func() {
		if !destroyed {
			c.Destroy(context.Background())
		}
	})
	ip := map[string]string{}
	for _, p := range c.Pods() {
		ip[p.Name] = p.IP.String()
	}
	for _, srv := range []string{"t/server", "t/server2"} {
		s, err := probe.Serve(c.PodNetns(srv), 8080, "TCP", "UDP")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		s2, err := probe.Serve(c.PodNetns(srv), 9090, "TCP")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s2.Close() })
		s3, err := probe.Serve(c.PodNetns(srv), 5353, "UDP")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s3.Close() })
	}
	if _, err := c.WriteState("50-policy.yaml", []byte(allowClient)); err != nil {
		t.Fatal(err)
	}
	if err := c.StartAgents(ctx, cluster.AgentOptions{Datapath: "ebpf"}); err != nil {
		t.Fatal(err)
	}
	pods := map[string]cluster.Pod{}
	for _, p := range c.Pods() {
		pods[p.Name] = p
	}
	type pr struct {
		from, to string
		port     int
		proto    string
		want     bool
	}
	check := func(t *testing.T, probes []pr) {
		t.Helper()
		for _, p := range probes {
			timeout := 2 * time.Second
			if !p.want {
				timeout = 400 * time.Millisecond
			}
			r := probe.Connect(ctx, c.PodNetns("t/"+p.from), pods[p.to].IP, p.port, p.proto, timeout)
			if r.Connected != p.want {
				t.Errorf("%s -> %s %s/%d: connected=%v (%v), want %v", p.from, p.to, p.proto, p.port, r.Connected, r.Err, p.want)
			}
		}
	}
	check(t, []pr{
		{"client", "server", 8080, "TCP", true},  // same node, allowed (reply passes too)
		{"client", "server2", 8080, "TCP", true}, // cross node, allowed
		{"client", "server", 5353, "UDP", true},  // UDP request and reply
		{"client", "server", 9090, "TCP", false}, // port not allowed
		{"other", "server", 8080, "TCP", false},  // peer not allowed, cross node
		{"other", "server2", 8080, "TCP", false}, // peer not allowed, same node
		{"server", "other", 0, "TCP", false},     // nothing listens: refused, not connected
	})

	// Debug API: the live policy map of the server, and a drop event with
	// pods and reason when a denied probe is made.
	n1 := agentapi.NewClient(c.AgentSocket("n1"))
	body, err := n1.Get(ctx, "/v1/policy/t/server")
	if err != nil || !strings.Contains(string(body), `"ports": "8080"`) || !strings.Contains(string(body), `"ingressDefaultDeny": true`) {
		t.Errorf("policy get: %v\n%s", err, body)
	}
	mctx, mcancel := context.WithTimeout(ctx, 5*time.Second)
	events := make(chan agentapi.FlowEvent, 16)
	go n1.Stream(mctx, "/v1/monitor?type=drop", func(line []byte) error {
		var ev agentapi.FlowEvent
		if err := json.Unmarshal(line, &ev); err == nil {
			events <- ev
		}
		return nil
	})
	time.Sleep(100 * time.Millisecond) // let the stream subscribe
	probe.Connect(ctx, c.PodNetns("t/other"), pods["server"].IP, 9090, "TCP", 300*time.Millisecond)
	// Wait for the probe's event (other drops may stream by).
	found := false
	for !found {
		select {
		case ev := <-events:
			if ev.Src.Pod != "t/other" || ev.DstPort != 9090 {
				continue
			}
			found = true
			if ev.Type != "drop" || ev.Dst.Pod != "t/server" || ev.Reason != "DROP_POLICY" || ev.Direction != "ingress" || ev.Protocol != "TCP" {
				t.Errorf("drop event %+v", ev)
			}
		case <-mctx.Done():
			t.Fatal("no drop event for the denied probe from monitor")
		}
	}
	mcancel()

	agentPIDs := map[string]int{}
	for n, p := range c.Agents() {
		agentPIDs[n] = p.Cmd.Process.Pid
	}

	// Flip the verdict by editing the policy file: no restart.
	start := time.Now()
	hash, err := c.WriteState("50-policy.yaml", []byte(allowClientAndOther))
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	took, err := c.WaitProgrammed(wctx, hash, start)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("policy change programmed after %v", took)
	check(t, []pr{
		{"other", "server", 8080, "TCP", true},
		{"other", "server2", 8080, "TCP", true},
		{"client", "server", 9090, "TCP", false},
	})
	for n, p := range c.Agents() {
		if p.Cmd.Process.Pid != agentPIDs[n] {
			t.Errorf("agent on %s restarted", n)
		}
	}

	// A bad file is refused with file, object and field named, and the
	// last good state stays in force.
	bad, err := c.WriteState("60-broken.yaml", []byte(badPort))
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"n1", "n2"} {
		cl := agentapi.NewClient(c.AgentSocket(n))
		st, err := cl.WaitFor(wctx, 5*time.Millisecond, func(st *agentapi.Status) bool { return st.FailedHash == bad })
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"60-broken.yaml", "NetworkPolicy t/broken", "spec.ingress[0].ports[0].port", "70000"} {
			if !strings.Contains(st.LastError, want) {
				t.Errorf("agent %s error %q does not name %q", n, st.LastError, want)
			}
		}
		if st.StateHash != hash {
			t.Errorf("agent %s state %s, want last good %s", n, st.StateHash, hash)
		}
	}
	check(t, []pr{
		{"other", "server", 8080, "TCP", true},
		{"client", "server", 9090, "TCP", false},
	})

	// Destroy leaves nothing behind.
	if err := c.Destroy(ctx); err != nil {
		t.Fatal(err)
	}
	destroyed = true
	left, err := Leftovers(id)
	if err != nil {
		t.Fatal(err)
	}
	if len(left) > 0 {
		t.Fatalf("left behind: %v", left)
	}
}

const l7Policy = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: server-http, namespace: t}
spec:
  endpointSelector: {matchLabels: {app: server}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: client}}]
    toPorts:
    - ports: [{port: "8080", protocol: TCP}]
      rules:
        http: [{method: GET, path: "/public/.*"}]
`

// TestL7Proxy runs the ebpf datapath with an HTTP rule: requests from the
// same node and from another node reach the server only when the rule
// allows them, and the proxy's own counters show that every request went
// through it.
func TestL7Proxy(t *testing.T) {
	testutil.RequireRoot(t)
	ctx := context.Background()
	c, err := NewProvider(Options{AgentBinary: agentBin}).Create(ctx, cluster.Spec{
		RunID: runID(t),
		Nodes: []string{"n1", "n2"},
		Pods: []cluster.PodSpec{
			{Namespace: "t", Name: "server", Node: "n1", Labels: map[string]string{"app": "server"}},
			{Namespace: "t", Name: "near", Node: "n1", Labels: map[string]string{"app": "client"}},
			{Namespace: "t", Name: "far", Node: "n2", Labels: map[string]string{"app": "client"}},
			{Namespace: "t", Name: "other", Node: "n2", Labels: map[string]string{"app": "other"}},
		},
		LogDir: t.TempDir(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Destroy(context.Background()) })
	s, err := probe.Serve(c.PodNetns("t/server"), 8080, "TCP")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if _, err := c.WriteState("50-policy.yaml", []byte(l7Policy)); err != nil {
		t.Fatal(err)
	}
	if err := c.StartAgents(ctx, cluster.AgentOptions{Datapath: "ebpf"}); err != nil {
		t.Fatal(err)
	}
	var server netip.Addr
	for _, p := range c.Pods() {
		if p.Name == "server" {
			server = p.IP
		}
	}
	n1 := agentapi.NewClient(c.AgentSocket("n1"))
	st0, err := n1.Status(ctx)
	if err != nil || st0.Proxy == nil {
		t.Fatalf("agent status has no proxy: %v %+v", err, st0)
	}
	if len(st0.Uplinks) != 1 || st0.Uplinks[0] != "eth0" {
		t.Errorf("uplinks %v, want [eth0]", st0.Uplinks)
	}
	type req struct {
		from, method, path string
		want               int // HTTP status; 0: no answer at all
	}
	var proxied, denied int64
	for _, r := range []req{
		{"near", "GET", "/public/a", 200},
		{"far", "GET", "/public/b", 200},
		{"near", "GET", "/private", 403},
		{"far", "POST", "/public/a", 403},
		{"other", "GET", "/public/a", 0}, // no L3 rule: dropped, never proxied
	} {
		timeout := 3 * time.Second
		if r.want == 0 {
			timeout = 500 * time.Millisecond
		}
		res := probe.HTTP(ctx, c.PodNetns("t/"+r.from), 0, server, 8080, r.method, r.path, timeout)
		if res.Status != r.want {
			t.Errorf("%s %s %s: status %d (%v), want %d", r.from, r.method, r.path, res.Status, res.Err, r.want)
		}
		if r.want != 0 {
			proxied++
		}
		if r.want == 403 {
			denied++
		}
	}
	// Raw TCP to the L7 port gets the proxy's 400, not an echo.
	if res := probe.Connect(ctx, c.PodNetns("t/near"), server, 8080, "TCP", time.Second); res.Connected {
		t.Error("raw TCP echo through the L7 port succeeded; the proxy should have refused it")
	}
	st, err := n1.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := st.Proxy.Requests - st0.Proxy.Requests; got != proxied {
		t.Errorf("proxy saw %d requests, want %d (every allowed-at-L4 request, from both nodes)", got, proxied)
	}
	if got := st.Proxy.Denied - st0.Proxy.Denied; got != denied {
		t.Errorf("proxy denied %d requests, want %d", got, denied)
	}
}

// testCluster builds a netns cluster of nodes and pods for a test (root
// required) and destroys it when the test ends.
func testCluster(t *testing.T, nodes []string, pods ...cluster.PodSpec) *Cluster {
	t.Helper()
	testutil.RequireRoot(t)
	c, err := NewProvider(Options{AgentBinary: agentBin}).Create(context.Background(), cluster.Spec{
		RunID: runID(t), Nodes: nodes, Pods: pods, LogDir: t.TempDir(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Destroy(context.Background()) })
	return c
}

// serve starts an echo server on port for protocols in each named pod
// ("namespace/name"), closed when the test ends.
func serve(t *testing.T, c *Cluster, port int, protocols []string, pods ...string) {
	t.Helper()
	for _, p := range pods {
		s, err := probe.Serve(c.PodNetns(p), port, protocols...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
	}
}

// podsByName indexes a cluster's pods by name.
func podsByName(c *Cluster) map[string]cluster.Pod {
	out := map[string]cluster.Pod{}
	for _, p := range c.Pods() {
		out[p.Name] = p
	}
	return out
}
