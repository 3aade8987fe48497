package run

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// clockTicks is USER_HZ, the unit of /proc CPU times: 100 on every Linux
// architecture Go supports.
const clockTicks = 100.0

// procCPUSeconds returns user+system CPU seconds of a process (and its
// threads) from /proc/<pid>/stat.
func procCPUSeconds(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name is in parentheses and may hold spaces: fields
	// count from after the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	f := strings.Fields(s[i+1:])
	// After ')': state is field 3, utime 14, stime 15 (1-based overall).
	if len(f) < 13 {
		return 0, fmt.Errorf("parse /proc/%d/stat: %d fields", pid, len(f))
	}
	ut, err1 := strconv.ParseFloat(f[11], 64)
	st, err2 := strconv.ParseFloat(f[12], 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("parse /proc/%d/stat times", pid)
	}
	return (ut + st) / clockTicks, nil
}

// softirqSeconds returns the machine's total softirq CPU seconds from
// /proc/stat: the time the kernel spent in softirq context, where the
// network stack and TC programs of forwarded packets run.
func softirqSeconds() (float64, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 7 && f[0] == "cpu" {
			v, err := strconv.ParseFloat(f[7], 64)
			if err != nil {
				return 0, err
			}
			return v / clockTicks, nil
		}
	}
	return 0, fmt.Errorf("/proc/stat has no cpu line")
}

// procPeakRSSBytes returns a process's peak resident set size (VmHWM in
// /proc/<pid>/status).
func procPeakRSSBytes(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			f := strings.Fields(rest)
			if len(f) == 2 && f[1] == "kB" {
				kb, err := strconv.ParseInt(f[0], 10, 64)
				if err != nil {
					return 0, err
				}
				return kb << 10, nil
			}
		}
	}
	return 0, fmt.Errorf("/proc/%d/status has no VmHWM", pid)
}

// peakRSS returns the peak RSS of the server and of the agents (the
// largest agent's), so far in the processes' lives.
func (r *runner) peakRSS(serverPID int) map[string]int64 {
	out := map[string]int64{}
	if serverPID > 0 {
		if v, err := procPeakRSSBytes(serverPID); err == nil {
			out["server"] = v
		}
	}
	for _, p := range r.c.Agents() {
		if p.Cmd.Process != nil {
			if v, err := procPeakRSSBytes(p.Cmd.Process.Pid); err == nil && v > out["agents"] {
				out["agents"] = v
			}
		}
	}
	for _, pid := range r.sidecarPIDs() {
		if v, err := procPeakRSSBytes(pid); err == nil && v > out["proxies"] {
			out["proxies"] = v
		}
	}
	return out
}

// cpuSnapshot is the CPU time of the measured components at one moment.
type cpuSnapshot struct {
	server, agents, proxies, softirq float64
	// proxyPIDs are the sidecar proxies the sum is over: a proxy counts
	// only when both snapshots saw it.
	proxyCPU map[int]float64
}

// sidecarHostPIDs is a cluster whose agents report their proxies' PIDs
// in a PID namespace of their own (kind: the agent's container), and
// that maps them to the host's.
type sidecarHostPIDs interface{ SidecarHostPIDs() []int }

var _ sidecarHostPIDs = (*kindCluster)(nil)

// sidecarPIDs asks every agent for its sidecar proxies' processes (host
// PIDs).
func (r *runner) sidecarPIDs() []int {
	if m, ok := r.c.(sidecarHostPIDs); ok {
		return m.SidecarHostPIDs()
	}
	var out []int
	for _, n := range r.c.Nodes() {
		st, err := r.c.AgentClient(n).Status(context.Background())
		if err == nil {
			out = append(out, st.SidecarPIDs...)
		}
	}
	return out
}

func (r *runner) snapshot(serverPID int) cpuSnapshot {
	var s cpuSnapshot
	if serverPID > 0 {
		s.server, _ = procCPUSeconds(serverPID)
	}
	for _, p := range r.c.Agents() {
		if p.Cmd.Process != nil {
			v, _ := procCPUSeconds(p.Cmd.Process.Pid)
			s.agents += v
		}
	}
	s.proxyCPU = map[int]float64{}
	for _, pid := range r.sidecarPIDs() {
		if v, err := procCPUSeconds(pid); err == nil {
			s.proxyCPU[pid] = v
		}
	}
	s.softirq, _ = softirqSeconds()
	return s
}

// proxiesDelta is the CPU the sidecar proxies used between two snapshots.
func proxiesDelta(before, after cpuSnapshot) float64 {
	var d float64
	for pid, v := range after.proxyCPU {
		if b, ok := before.proxyCPU[pid]; ok {
			d += v - b
		}
	}
	return d
}
