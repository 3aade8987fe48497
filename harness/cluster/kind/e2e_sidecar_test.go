package kind

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/fastpath-bench/fastpath/harness/cluster"
	"github.com/fastpath-bench/fastpath/harness/probe"
)

// checkSidecarBaseline switches the agents to the sidecar baseline: each
// pod gets an HAProxy in its network namespace (found through the CNI's
// record of CNI_NETNS) with the istio-style nat rules, the proxies' host
// processes are found for CPU, a connection goes through the client's
// outbound and the server's inbound proxy, and the policy is enforced
// there. Back on eBPF the proxies are gone and the pods' nat rules with
// them (a rule left behind would redirect to a port nobody listens on).
func checkSidecarBaseline(t *testing.T, ctx context.Context, topo *Topology, policy []byte, connect func(string) probe.Result) {
	t.Helper()
	start := time.Now()
	if err := topo.StartAgents(ctx, cluster.AgentOptions{Datapath: "sidecar"}); err != nil {
		t.Fatal(err)
	}
	t.Logf("sidecar agents running in %s", time.Since(start).Round(100*time.Millisecond))
	proxies := 0
	for _, n := range []string{"node1", "node2"} {
		st, err := topo.AgentClient(n).Status(ctx)
		if err != nil || st.Datapath != "sidecar" || !strings.HasPrefix(st.SidecarProxy, "HAProxy ") || len(st.Pending) > 0 {
			t.Fatalf("%s's agent: %+v (%v)", n, st, err)
		}
		proxies += len(st.SidecarPIDs)
	}
	if proxies != 3 {
		t.Fatalf("%d proxies, want one per pod (3)", proxies)
	}
	pids := topo.SidecarHostPIDs()
	if len(pids) != 3 {
		t.Fatalf("host PIDs of the proxies: %v, want 3", pids)
	}
	for _, pid := range pids {
		if comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); err != nil || strings.TrimSpace(string(comm)) != "haproxy" {
			t.Fatalf("proxy host pid %d is %q (%v)", pid, comm, err)
		}
	}
	stats := func(node, pod string) map[string]struct{ Sessions, Denied int64 } {
		t.Helper()
		// The proxies' counters are on the agent's unix socket only.
		b, err := topo.AgentSocketClient(node).Get(ctx, "/v1/sidecar?pod="+pod)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]struct{ Sessions, Denied int64 }{}
		if err := json.Unmarshal(b, &out); err != nil {
			t.Fatalf("%s: %v", b, err)
		}
		return out
	}
	for _, from := range []string{"client", "trusted"} {
		if r := connect(from); !r.Connected {
			t.Fatalf("%s -> server through the sidecars: %v", from, r.Err)
		}
	}
	if in, out := stats("node2", "e2e/server")["inbound"], stats("node1", "e2e/client")["outbound"]; in.Sessions < 2 || out.Sessions < 1 {
		t.Fatalf("the connections did not go through the proxies: server inbound %+v, client outbound %+v", in, out)
	}

	tok, err := topo.WriteState("np.yaml", policy)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := topo.WaitProgrammed(ctx, tok, time.Now()); err != nil {
		t.Fatal(err)
	}
	if r := connect("client"); r.Connected {
		t.Fatal("client -> server connected under the trusted-only policy (sidecar)")
	}
	if in := stats("node2", "e2e/server")["inbound"]; in.Denied < 1 {
		t.Fatalf("server's inbound proxy denied nothing: %+v", in)
	}
	if r := connect("trusted"); !r.Connected {
		t.Fatalf("trusted -> server under the trusted-only policy (sidecar): %v", r.Err)
	}
	if tok, err = topo.RemoveState("np.yaml"); err != nil {
		t.Fatal(err)
	}
	if _, err := topo.WaitProgrammed(ctx, tok, time.Now()); err != nil {
		t.Fatal(err)
	}

	if err := topo.StartAgents(ctx, cluster.AgentOptions{Datapath: "ebpf"}); err != nil {
		t.Fatal(err)
	}
	for _, pid := range pids {
		if comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); err == nil && strings.TrimSpace(string(comm)) == "haproxy" {
			t.Fatalf("proxy %d still runs with eBPF", pid)
		}
	}
	for _, from := range []string{"client", "trusted"} {
		if r := connect(from); !r.Connected {
			t.Fatalf("%s -> server back on eBPF (a pod's nat rules left?): %v", from, r.Err)
		}
	}
	t.Logf("sidecar baseline, and back to eBPF, in %s", time.Since(start).Round(time.Second))
}
