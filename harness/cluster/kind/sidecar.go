package kind

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// SidecarHostPIDs are the host PIDs of the sidecar proxies (datapath
// sidecar), for their CPU and memory. The agents report their proxies'
// PIDs as their container sees them; a proxy is the agent's child in the
// agent container's PID namespace, so it is the host process in that
// namespace (the agent's, found through agentHostPID) whose innermost
// NSpid is the reported PID.
func (t *Topology) SidecarHostPIDs() []int {
	want := map[string]map[int]bool{} // agent's PID namespace → proxies' PIDs in it
	for _, n := range t.spec.Nodes {
		st, err := t.AgentClient(n).Status(context.Background())
		if err != nil || len(st.SidecarPIDs) == 0 {
			continue
		}
		host, err := t.agentHostPID(n, st.PID, st.StartedAt)
		if err != nil {
			continue
		}
		ns, err := os.Readlink("/proc/" + strconv.Itoa(host) + "/ns/pid")
		if err != nil {
			continue
		}
		if want[ns] == nil {
			want[ns] = map[int]bool{}
		}
		for _, p := range st.SidecarPIDs {
			want[ns][p] = true
		}
	}
	if len(want) == 0 {
		return nil
	}
	return hostPIDsIn("/proc", want)
}

// hostPIDsIn scans proc for the processes of the given PID namespaces
// whose PID there (the last of NSpid) is wanted.
func hostPIDsIn(proc string, want map[string]map[int]bool) []int {
	entries, err := os.ReadDir(proc)
	if err != nil {
		return nil
	}
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		ns, err := os.Readlink(filepath.Join(proc, e.Name(), "ns/pid"))
		if err != nil || want[ns] == nil {
			continue
		}
		inner, ok := innerPID(filepath.Join(proc, e.Name(), "status"))
		if ok && want[ns][inner] {
			out = append(out, pid)
		}
	}
	return out
}

// innerPID is a process's PID in its own PID namespace: the last field
// of NSpid in its status file.
func innerPID(status string) (int, bool) {
	b, err := os.ReadFile(status)
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "NSpid:"); ok {
			f := strings.Fields(rest)
			if len(f) == 0 {
				return 0, false
			}
			p, err := strconv.Atoi(f[len(f)-1])
			return p, err == nil
		}
	}
	return 0, false
}
