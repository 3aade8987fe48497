package agent

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"sort"
	"strings"

	"github.com/fastpath-bench/fastpath/datapath/agentapi"
	"github.com/fastpath-bench/fastpath/datapath/lxc"
	"github.com/fastpath-bench/fastpath/datapath/model"
)

// lbFrontends reads the live load balancer maps and names each frontend's
// service and backends' states from the desired state.
func (a *Agent) lbFrontends() ([]agentapi.LBFrontend, error) {
	if a.lxc == nil {
		return nil, fmt.Errorf("the %s datapath has no eBPF load balancer to show", a.cfg.Datapath)
	}
	fronts, backends, err := a.lxc.DumpLB()
	if err != nil {
		return nil, err
	}
	a.mu.Lock()
	res := a.resolved
	a.mu.Unlock()
	var out []agentapi.LBFrontend
	for _, f := range fronts {
		lf := agentapi.LBFrontend{
			Frontend:        fmt.Sprintf("%s:%d/%s", f.VIP, f.Port, f.Protocol),
			ID:              f.ID,
			Algorithm:       lxc.LBRandom,
			AffinitySeconds: f.AffinitySeconds,
			TableSize:       len(f.Selection),
		}
		if f.Maglev {
			lf.Algorithm = lxc.LBMaglev
		}
		states := map[netip.AddrPort]string{}
		desired := map[netip.AddrPort]model.Backend{}
		if res != nil {
			if svc, port, ok := res.ServiceByFrontend(f.VIP, f.Port, f.Protocol); ok {
				lf.Service = svc.Key()
				for _, b := range port.Backends {
					states[netip.AddrPortFrom(b.Addr, b.Port)] = b.State.String()
					desired[netip.AddrPortFrom(b.Addr, b.Port)] = b
				}
			}
		}
		slots := map[uint32]int{}
		for _, id := range f.Selection {
			slots[id]++
		}
		listed := map[netip.AddrPort]bool{}
		for id, n := range slots {
			b := backends[id]
			ap := netip.AddrPortFrom(b.Addr, b.Port)
			listed[ap] = true
			lf.Backends = append(lf.Backends, agentapi.LBBackend{Address: ap.String(), ID: id, State: states[ap], Slots: n,
				Cluster: desired[ap].Cluster, Standby: desired[ap].Standby})
		}
		// Backends new flows do not go to (terminating while another is
		// active, quarantined, on standby) still serve the flows they
		// have.
		for ap, state := range states {
			if listed[ap] {
				continue
			}
			var id uint32
			for bid, b := range backends {
				if b.Addr == ap.Addr() && b.Port == ap.Port() {
					id = bid
				}
			}
			lf.Backends = append(lf.Backends, agentapi.LBBackend{Address: ap.String(), ID: id, State: state,
				Cluster: desired[ap].Cluster, Standby: desired[ap].Standby})
		}
		sort.Slice(lf.Backends, func(i, j int) bool { return lf.Backends[i].Address < lf.Backends[j].Address })
		out = append(out, lf)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Service+out[i].Frontend < out[j].Service+out[j].Frontend })
	return out, nil
}

func (a *Agent) serveLB(w http.ResponseWriter, r *http.Request) {
	fronts, err := a.lbFrontends()
	if err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	if svc := r.URL.Query().Get("service"); svc != "" {
		var only []agentapi.LBFrontend
		for _, f := range fronts {
			if f.Service == svc || (!strings.Contains(svc, "/") && strings.HasSuffix(f.Service, "/"+svc)) {
				only = append(only, f)
			}
		}
		if len(only) == 0 {
			http.Error(w, "no frontend of service "+svc+" is programmed", http.StatusNotFound)
			return
		}
		fronts = only
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(fronts)
}

func (a *Agent) servePrefilter(w http.ResponseWriter, _ *http.Request) {
	if a.prefilter == nil {
		http.Error(w, "the "+a.cfg.Datapath+" datapath has no XDP prefilter", http.StatusServiceUnavailable)
		return
	}
	out := agentapi.Prefilter{Devices: a.prefilter.Devices(), Prefixes: []string{}}
	ps, err := a.prefilter.List()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	for _, p := range ps {
		out.Prefixes = append(out.Prefixes, p.String())
	}
	if c, err := a.prefilter.Counters(); err == nil {
		out.PassedPackets, out.DroppedPackets, out.DroppedBytes = c.PassedPackets, c.DroppedPackets, c.DroppedBytes
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(out)
}
