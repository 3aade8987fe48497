package netns

import (
	"context"
	"encoding/json"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/fastpath-bench/fastpath/datapath/agentapi"
	"github.com/fastpath-bench/fastpath/harness/cluster"
	"github.com/fastpath-bench/fastpath/harness/probe"
	"github.com/fastpath-bench/fastpath/internal/testutil"
)

type frontendStats struct {
	Sessions int64 `json:"sessions"`
	Denied   int64 `json:"denied"`
}

// TestSidecar runs the sidecar baseline: every pod gets nat rules and a
// HAProxy process, connections go client → client's outbound listener →
// server's inbound listener → server (the proxies' own counters prove
// both hops), the L4 policy is checked in the proxies, and a policy change
// reloads them.
func TestSidecar(t *testing.T) {
	testutil.RequireRoot(t)
	if _, err := exec.LookPath("haproxy"); err != nil {
		testutil.SkipOrFail(t, false, "haproxy is not installed (make deps installs it)")
	}
	ctx := context.Background()
	c := testCluster(t, []string{"n1", "n2"},
		cluster.PodSpec{Namespace: "t", Name: "client", Node: "n1", Labels: map[string]string{"app": "client"}},
		cluster.PodSpec{Namespace: "t", Name: "server", Node: "n1", Labels: map[string]string{"app": "server"}},
		cluster.PodSpec{Namespace: "t", Name: "other", Node: "n2", Labels: map[string]string{"app": "other"}},
		cluster.PodSpec{Namespace: "t", Name: "server2", Node: "n2", Labels: map[string]string{"app": "server"}})
	pods := podsByName(c)
	serve(t, c, 8080, []string{"TCP"}, "t/client", "t/server", "t/other", "t/server2")
	if _, err := c.WriteState("50-policy.yaml", []byte(allowClient)); err != nil {
		t.Fatal(err)
	}
	if err := c.StartAgents(ctx, cluster.AgentOptions{Datapath: "sidecar"}); err != nil {
		t.Fatal(err)
	}
	st, err := agentapi.NewClient(c.AgentSocket("n1")).Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.SidecarPIDs) != 2 || st.SidecarProxy == "" {
		t.Fatalf("n1 runs sidecars %v (%q), want one per pod", st.SidecarPIDs, st.SidecarProxy)
	}
	stats := func(node, pod string) map[string]frontendStats {
		t.Helper()
		b, err := agentapi.NewClient(c.AgentSocket(node)).Get(ctx, "/v1/sidecar?pod="+pod)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]frontendStats{}
		if err := json.Unmarshal(b, &out); err != nil {
			t.Fatal(err)
		}
		return out
	}
	connect := func(from, to string, want bool) {
		t.Helper()
		timeout := 2 * time.Second
		if !want {
			timeout = 500 * time.Millisecond
		}
		if r := probe.Connect(ctx, c.PodNetns("t/"+from), pods[to].IP, 8080, "TCP", timeout); r.Connected != want {
			t.Errorf("%s -> %s: connected=%v (%v), want %v", from, to, r.Connected, r.Err, want)
		}
	}

	before := stats("n1", "t/client")["outbound"].Sessions
	beforeIn := stats("n2", "t/server2")["inbound"].Sessions
	connect("client", "server2", true)
	connect("client", "server", true)
	if got := stats("n1", "t/client")["outbound"].Sessions - before; got < 2 {
		t.Errorf("client's outbound listener took %d connections, want 2", got)
	}
	if got := stats("n2", "t/server2")["inbound"].Sessions - beforeIn; got < 1 {
		t.Errorf("server2's inbound listener took %d connections, want 1", got)
	}
	if got := stats("n1", "t/server")["inbound"].Sessions; got < 1 {
		t.Errorf("server's inbound listener took %d connections, want 1", got)
	}

	// other is not allowed: its connection is refused by server2's inbound
	// proxy (the outbound one has no egress policy to check).
	deniedBefore := stats("n2", "t/server2")["inbound"].Denied
	connect("other", "server2", false)
	if got := stats("n2", "t/server2")["inbound"].Denied - deniedBefore; got < 1 {
		t.Errorf("server2's inbound proxy denied %d connections, want 1", got)
	}

	// A policy change reloads the proxies: now other is allowed too.
	since := time.Now()
	hash, err := c.WriteState("50-policy.yaml", []byte(allowClientAndOther))
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if _, err := c.WaitProgrammed(wctx, hash, since); err != nil {
		t.Fatal(err)
	}
	connect("other", "server2", true)
	connect("client", "server2", true)

	// A policy on a port no rule named before: the proxy gets a map for
	// it and is reloaded.
	serve(t, c, 9000, []string{"TCP"}, "t/server2")
	if r := probe.Connect(ctx, c.PodNetns("t/client"), pods["server2"].IP, 9000, "TCP", 500*time.Millisecond); r.Connected {
		t.Error("client -> server2:9000 connected before a policy allowed it")
	}
	since = time.Now()
	if hash, err = c.WriteState("60-port9000.yaml", []byte(`apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-9000, namespace: t}
spec:
  podSelector: {matchLabels: {app: server}}
  policyTypes: [Ingress]
  ingress:
  - from: [{podSelector: {matchLabels: {app: client}}}]
    ports: [{protocol: TCP, port: 9000}]
`)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.WaitProgrammed(wctx, hash, since); err != nil {
		t.Fatal(err)
	}
	if r := probe.Connect(ctx, c.PodNetns("t/client"), pods["server2"].IP, 9000, "TCP", 2*time.Second); !r.Connected {
		t.Errorf("client -> server2:9000 after the policy allowed it: %v", r.Err)
	}

	// A ClusterIP: the client's proxy balances it over the backends.
	svc := strings.ReplaceAll(`apiVersion: v1
kind: Service
metadata: {name: web, namespace: t}
spec:
  clusterIP: 10.96.0.30
  ports: [{name: tcp, protocol: TCP, port: 80, targetPort: 8080}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web, namespace: t, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
endpoints:
- addresses: ["{{server2}}"]
  conditions: {ready: true}
ports: [{name: tcp, protocol: TCP, port: 8080}]
`, "{{server2}}", pods["server2"].IP.String())
	since = time.Now()
	if hash, err = c.WriteState("10-services.yaml", []byte(svc)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.WaitProgrammed(wctx, hash, since); err != nil {
		t.Fatal(err)
	}
	beforeIn = stats("n2", "t/server2")["inbound"].Sessions
	if r := probe.Connect(ctx, c.PodNetns("t/client"), netip.MustParseAddr("10.96.0.30"), 80, "TCP", 2*time.Second); !r.Connected {
		t.Errorf("client -> ClusterIP through the sidecars: %v", r.Err)
	}
	if got := stats("n2", "t/server2")["inbound"].Sessions - beforeIn; got < 1 {
		t.Errorf("the ClusterIP connection did not reach server2's inbound proxy (%d)", got)
	}
}
