package netns

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/fastpath-bench/fastpath/datapath/agentapi"
	"github.com/fastpath-bench/fastpath/harness/cluster"
	"github.com/fastpath-bench/fastpath/harness/probe"
)

// TestPrefilter: a Prefilter object makes every agent drop packets from
// the denied prefix with XDP on its uplink. Node n2 drops connections from
// n1's pod CIDR; same-node traffic on n1 is not affected; removing the
// object lifts the drop.
// The iptables baseline does the same with a raw-table DROP by ipset.
func TestPrefilter(t *testing.T) {
	for _, dp := range []string{"ebpf", "iptables"} {
		t.Run(dp, func(t *testing.T) { testPrefilter(t, dp) })
	}
}

func testPrefilter(t *testing.T, datapath string) {
	ctx := context.Background()
	c := testCluster(t, []string{"n1", "n2"},
		cluster.PodSpec{Namespace: "t", Name: "client", Node: "n1"},
		cluster.PodSpec{Namespace: "t", Name: "local", Node: "n1"},
		cluster.PodSpec{Namespace: "t", Name: "remote", Node: "n2"})
	pods := podsByName(c)
	serve(t, c, 8080, []string{"TCP"}, "t/local", "t/remote")
	if err := c.StartAgents(ctx, cluster.AgentOptions{Datapath: datapath}); err != nil {
		t.Fatal(err)
	}
	connect := func(to string, want bool) {
		t.Helper()
		timeout := 2 * time.Second
		if !want {
			timeout = 400 * time.Millisecond
		}
		if r := probe.Connect(ctx, c.PodNetns("t/client"), pods[to].IP, 8080, "TCP", timeout); r.Connected != want {
			t.Errorf("client -> %s: connected=%v (%v), want %v", to, r.Connected, r.Err, want)
		}
	}
	connect("remote", true)
	if datapath == "ebpf" {
		// Nothing to drop yet: no XDP program on the uplink.
		st, err := agentapi.NewClient(c.AgentSocket("n2")).Status(ctx)
		if err != nil || len(st.PrefilterDevices) != 0 {
			t.Errorf("prefilter attached with no prefix to drop: %v %v", st.PrefilterDevices, err)
		}
	}
	since := time.Now()
	hash, err := c.WriteState("40-prefilter.yaml", []byte(fmt.Sprintf("apiVersion: fastpath.dev/v1alpha1\nkind: Prefilter\nmetadata: {name: n1-pods}\nspec:\n  deny: [%s]\n", PodCIDR(0))))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.WaitProgrammed(ctx, hash, since); err != nil {
		t.Fatal(err)
	}
	connect("remote", false)
	connect("local", true)
	if datapath == "ebpf" {
		n2 := agentapi.NewClient(c.AgentSocket("n2"))
		body, err := n2.Get(ctx, "/v1/prefilter")
		var pf agentapi.Prefilter
		if err != nil || json.Unmarshal(body, &pf) != nil {
			t.Fatalf("prefilter API: %v %s", err, body)
		}
		if len(pf.Devices) != 1 || len(pf.Prefixes) != 1 || pf.Prefixes[0] != PodCIDR(0).String() || pf.DroppedPackets == 0 {
			t.Errorf("prefilter on n2: %+v", pf)
		}
	}
	since = time.Now()
	hash, err = c.RemoveState("40-prefilter.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.WaitProgrammed(ctx, hash, since); err != nil {
		t.Fatal(err)
	}
	connect("remote", true)
	if datapath == "ebpf" {
		// With nothing to drop, the program is off the uplink.
		st, err := agentapi.NewClient(c.AgentSocket("n2")).Status(ctx)
		if err != nil || len(st.PrefilterDevices) != 0 {
			t.Errorf("prefilter still attached with no prefix to drop: %v %v", st.PrefilterDevices, err)
		}
	}
}
