package agent

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fastpath-bench/fastpath/datapath/agentapi"
	"github.com/fastpath-bench/fastpath/datapath/model"
)

const pods = `apiVersion: v1
kind: Pod
metadata: {name: a, namespace: t, labels: {app: a}}
spec: {nodeName: n1}
status: {podIP: 10.0.0.1}
`

const policy = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p, namespace: t}
spec:
  podSelector: {}
  ingress: [{ports: [{port: 80}]}]
`

// write replaces a state file atomically (write, then rename), as state
// writers must: a reader may otherwise see the file half written.
func write(t *testing.T, dir, name, content string) string {
	t.Helper()
	tmp := filepath.Join(dir, "."+name+".tmp")
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		t.Fatal(err)
	}
	h, err := model.HashDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// TestWatchApplyRefuse runs the agent with the none datapath (no kernel
// state, no privileges): it programs changes as files change, refuses a bad
// file naming it, keeps the last good state, and recovers when fixed.
func TestWatchApplyRefuse(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(t.TempDir(), "agent.sock")
	h1 := write(t, dir, "pods.yaml", pods)
	a, err := New(Config{Node: "n1", StateDir: dir, Datapath: "none", Socket: sock, Resync: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() { cancel(); <-done }()

	cl := agentapi.NewClient(sock)
	wait := func(cond func(*agentapi.Status) bool) *agentapi.Status {
		t.Helper()
		wctx, c := context.WithTimeout(ctx, 5*time.Second)
		defer c()
		st, err := cl.WaitFor(wctx, 2*time.Millisecond, cond)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	st := wait(func(s *agentapi.Status) bool { return s.StateHash == h1 })
	if !st.Ready || st.Endpoints != 1 || st.Datapath != "none" {
		t.Fatalf("status %+v", st)
	}

	h2 := write(t, dir, "policy.yaml", policy)
	st = wait(func(s *agentapi.Status) bool { return s.StateHash == h2 })
	if st.Policies != 1 {
		t.Fatalf("policies %d", st.Policies)
	}

	bad := write(t, dir, "policy.yaml", strings.Replace(policy, "port: 80", "port: 0", 1))
	st = wait(func(s *agentapi.Status) bool { return s.FailedHash == bad })
	if st.StateHash != h2 {
		t.Fatalf("refused state replaced the good one: %+v", st)
	}
	for _, want := range []string{"policy.yaml", "NetworkPolicy t/p", "spec.ingress[0].ports[0].port"} {
		if !strings.Contains(st.LastError, want) {
			t.Errorf("error %q does not name %q", st.LastError, want)
		}
	}
	metrics, err := cl.Get(ctx, "/metrics")
	if err != nil || !strings.Contains(string(metrics), "fastpath_agent_state_refused 1") {
		t.Fatalf("metrics: %v\n%s", err, metrics)
	}

	h3 := write(t, dir, "policy.yaml", policy)
	st = wait(func(s *agentapi.Status) bool { return s.StateHash == h3 && s.LastError == "" })
	if st.Generation < 3 {
		t.Fatalf("generation %d", st.Generation)
	}
}

func TestConfigErrorsAllAtOnce(t *testing.T) {
	_, err := New(Config{Datapath: "xdp", StateDir: "/nonexistent"})
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{"--node", "--state-dir", "--datapath"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q missing from %v", want, err)
		}
	}
}

// TestIptablesSkipServicesNeedsIptables: leaving Services to kube-proxy
// means something for the iptables datapath only.
func TestIptablesSkipServicesNeedsIptables(t *testing.T) {
	_, err := New(Config{Node: "n1", StateDir: t.TempDir(), Datapath: "none", IptablesSkipServices: true})
	if err == nil || !strings.Contains(err.Error(), "--iptables-services=false needs --datapath iptables") {
		t.Fatalf("error %v", err)
	}
}
