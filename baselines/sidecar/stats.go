package sidecar

import (
	"bufio"
	"encoding/csv"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Stats are a proxy's counters per frontend ("inbound", "outbound").
type Stats map[string]FrontendStats

// FrontendStats counts one listener's connections.
type FrontendStats struct {
	// Sessions is the total of connections accepted (stot).
	Sessions int64 `json:"sessions"`
	// Denied is the connections refused by the policy ACLs
	// (dcon: denied by "tcp-request connection").
	Denied   int64 `json:"denied"`
	BytesIn  int64 `json:"bytesIn"`
	BytesOut int64 `json:"bytesOut"`
}

// ProxyStats asks a proxy for its counters over its stats socket.
func ProxyStats(socket string) (Stats, error) {
	c, err := net.DialTimeout("unix", socket, time.Second)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.WriteString(c, "show stat\n"); err != nil {
		return nil, err
	}
	r := csv.NewReader(bufio.NewReader(c))
	r.FieldsPerRecord = -1
	recs, err := r.ReadAll()
	if err != nil {
		return nil, fmt.Errorf("stats from %s: %w", socket, err)
	}
	if len(recs) == 0 {
		return nil, fmt.Errorf("stats from %s: empty", socket)
	}
	col := map[string]int{}
	for i, h := range recs[0] {
		col[strings.TrimPrefix(strings.TrimSpace(h), "# ")] = i
	}
	get := func(rec []string, name string) int64 {
		i, ok := col[name]
		if !ok || i >= len(rec) {
			return 0
		}
		n, _ := strconv.ParseInt(rec[i], 10, 64)
		return n
	}
	out := Stats{}
	for _, rec := range recs[1:] {
		if len(rec) < 2 || rec[1] != "FRONTEND" {
			continue
		}
		out[rec[0]] = FrontendStats{Sessions: get(rec, "stot"), Denied: get(rec, "dcon"), BytesIn: get(rec, "bin"), BytesOut: get(rec, "bout")}
	}
	return out, nil
}

// PodStats reads the counters of the proxy of pod "namespace/name".
func (d *Datapath) PodStats(key string) (Stats, error) {
	d.mu.Lock()
	p := d.pods[key]
	d.mu.Unlock()
	if p == nil {
		return nil, fmt.Errorf("no sidecar for %s", key)
	}
	return ProxyStats(filepath.Join(p.dir, "stats.sock"))
}

// ProxyPID asks the proxy answering on socket for its process id ("show
// info"): after a reload, the new process is serving once it answers.
func ProxyPID(socket string) (int, error) {
	c, err := net.DialTimeout("unix", socket, time.Second)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.WriteString(c, "show info\n"); err != nil {
		return 0, err
	}
	sc := bufio.NewScanner(c)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "Pid: "); ok {
			return strconv.Atoi(strings.TrimSpace(v))
		}
	}
	return 0, fmt.Errorf("show info on %s: no Pid", socket)
}
