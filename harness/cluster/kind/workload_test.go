package kind

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/fastpath-bench/fastpath/harness/workload"
)

// checkWorkloadContainers runs a fortio echo server in the server pod and
// a load client in the client pod as containers of those pods (ephemeral
// containers from the agent image), as a benchmark on kind does: the
// client's result comes from its log, with the CPU and memory it measured
// itself; the server's host PID is found (CPU sampling) and it ends when
// stopped.
func checkWorkloadContainers(t *testing.T, ctx context.Context, topo *Topology, serverIP string) {
	t.Helper()
	start := time.Now()
	const port = 8090
	srvCmd := exec.Command("/unused", "workload", "serve", "--port", fmt.Sprint(port))
	srv, err := topo.StartIn("e2e/server", srvCmd)
	if err != nil {
		t.Fatal(err)
	}
	if srv.Container == nil || srv.Cmd != nil {
		t.Fatalf("server: %+v, want a container", srv)
	}
	if pid := srv.PID(); pid <= 0 {
		t.Fatal("server container: no host PID")
	} else if comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); err != nil || strings.TrimSpace(string(comm)) != "fastpath" {
		t.Fatalf("server container's host PID %d is %q (%v)", pid, comm, err)
	}
	var log bytes.Buffer
	loadCmd := exec.Command("/unused", "workload", "load", "--url", fmt.Sprintf("http://%s:%d/", serverIP, port),
		"--qps", "200", "--connections", "2", "--duration", "1s")
	loadCmd.Stdout = &log
	cl, err := topo.StartIn("e2e/client", loadCmd)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-cl.Container.Done:
	case <-time.After(time.Minute):
		t.Fatal("load container did not end")
	}
	if err := cl.Container.Err(); err != nil {
		t.Fatalf("load container: %v\n%s", err, log.String())
	}
	res, err := workload.DecodeResult(log.Bytes())
	if err != nil {
		t.Fatalf("load container's log: %v\n%s", err, log.String())
	}
	if res.Count < 100 || res.Errors != 0 || res.ProcessCPUSeconds <= 0 || res.ProcessPeakRSSBytes <= 0 {
		t.Fatalf("load result %+v", res)
	}
	srv.Container.Stop()
	select {
	case <-srv.Container.Done:
	default:
		t.Fatal("server container still running after Stop")
	}
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", srv.PID())); err == nil {
		t.Fatalf("server container's process %d outlived Stop", srv.PID())
	}
	t.Logf("workload containers: %d requests, p50 %.0fµs, client %.3f CPU s, in %s",
		res.Count, res.LatencySeconds.P50*1e6, res.ProcessCPUSeconds, time.Since(start).Round(time.Second))
}
