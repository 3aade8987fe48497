package agent

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/fastpath-bench/fastpath/datapath/agentapi"
	"github.com/fastpath-bench/fastpath/datapath/lxc"
	"github.com/fastpath-bench/fastpath/datapath/model"
)

// fanout copies events to every subscriber; a slow subscriber loses events
// (counted) rather than stalling the reader. The ring buffer is read, and
// the datapath writes events, only while someone subscribes: flow events
// cost nothing when nobody watches them.
type fanout struct {
	open func() (*lxc.EventReader, error)

	mu   sync.Mutex
	subs map[chan lxc.Event]struct{}
	rd   *lxc.EventReader
}

func newFanout(open func() (*lxc.EventReader, error)) *fanout {
	return &fanout{open: open, subs: map[chan lxc.Event]struct{}{}}
}

func (f *fanout) subscribe() (chan lxc.Event, error) {
	ch := make(chan lxc.Event, 1024)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.rd == nil {
		rd, err := f.open()
		if err != nil {
			return nil, err
		}
		f.rd = rd
		go f.pump(rd)
	}
	f.subs[ch] = struct{}{}
	return ch, nil
}

func (f *fanout) unsubscribe(ch chan lxc.Event) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.subs, ch)
	if len(f.subs) == 0 {
		f.closeLocked()
	}
}

// close stops reading (the agent is stopping).
func (f *fanout) close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closeLocked()
}

func (f *fanout) closeLocked() {
	if f.rd != nil {
		_ = f.rd.Close()
		f.rd = nil
	}
}

func (f *fanout) pump(rd *lxc.EventReader) {
	for {
		ev, err := rd.Read()
		if err != nil {
			if lxc.IsClosed(err) {
				return
			}
			continue
		}
		f.mu.Lock()
		for ch := range f.subs {
			select {
			case ch <- ev:
			default:
			}
		}
		f.mu.Unlock()
	}
}

// gcLoop removes expired conntrack entries every 30 seconds.
func (a *Agent) gcLoop(ctx context.Context) {
	t := time.NewTicker(30 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if removed, _, err := a.lxc.GCConntrack(); err != nil {
				a.log.Warn("conntrack gc", "error", err)
			} else if removed > 0 {
				a.log.Debug("conntrack gc", "removed", removed)
			}
		}
	}
}

func (a *Agent) describe(ip string, id model.Identity) agentapi.Peer {
	p := agentapi.Peer{Address: ip, Identity: uint32(id)}
	a.mu.Lock()
	r := a.resolved
	a.mu.Unlock()
	if r == nil {
		return p
	}
	for _, ep := range r.Endpoints {
		if ep.IP.String() == ip {
			p.Pod = ep.Key()
		}
	}
	return p
}

// serveMonitor streams flow events as JSON lines until the client leaves.
// ?type=drop or ?type=verdict filters.
func (a *Agent) serveMonitor(w http.ResponseWriter, r *http.Request) {
	if a.lxc == nil {
		http.Error(w, "the "+a.cfg.Datapath+" datapath has no flow events", http.StatusNotImplemented)
		return
	}
	filter := r.URL.Query().Get("type")
	if filter != "" && filter != "drop" && filter != "verdict" {
		http.Error(w, "type: want drop or verdict", http.StatusBadRequest)
		return
	}
	ch, err := a.events.subscribe()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	defer a.events.unsubscribe(ch)
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	flusher, _ := w.(http.Flusher)
	if flusher != nil {
		flusher.Flush()
	}
	enc := json.NewEncoder(w)
	for {
		select {
		case <-r.Context().Done():
			return
		case ev := <-ch:
			if filter != "" && ev.Type != filter {
				continue
			}
			out := agentapi.FlowEvent{
				Time:      ev.Time,
				Type:      ev.Type,
				Node:      a.cfg.Node,
				Direction: ev.Direction.String(),
				Protocol:  ev.Protocol.String(),
				Reason:    ev.Reason.String(),
				Src:       a.describe(ev.Src.String(), 0),
				Dst:       a.describe(ev.Dst.String(), 0),
				SrcPort:   ev.SrcPort,
				DstPort:   ev.DstPort,
			}
			// The endpoint is the source on egress, the destination on
			// ingress; the peer is the other end.
			if ev.Direction == model.Egress {
				out.Src.Identity, out.Dst.Identity = uint32(ev.Identity), uint32(ev.PeerIdentity)
			} else {
				out.Src.Identity, out.Dst.Identity = uint32(ev.PeerIdentity), uint32(ev.Identity)
			}
			if err := enc.Encode(out); err != nil {
				return
			}
			if flusher != nil {
				flusher.Flush()
			}
		}
	}
}

// servePolicy returns an endpoint's resolved rules and its live map.
func (a *Agent) servePolicy(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("namespace") + "/" + r.PathValue("name")
	a.mu.Lock()
	res := a.resolved
	a.mu.Unlock()
	if res == nil {
		http.Error(w, "no state programmed yet", http.StatusServiceUnavailable)
		return
	}
	ep, ok := res.Endpoint(key)
	if !ok {
		http.Error(w, "no pod "+key+" with an address in the desired state", http.StatusNotFound)
		return
	}
	out := agentapi.EndpointPolicy{
		Pod:             key,
		Node:            ep.Node,
		Address:         ep.IP.String(),
		Identity:        uint32(ep.Identity),
		Labels:          ep.Labels,
		IngressEnforced: ep.IngressEnforced,
		EgressEnforced:  ep.EgressEnforced,
	}
	for _, dir := range []struct {
		name  string
		rules []model.Rule
	}{{"ingress", ep.Ingress}, {"egress", ep.Egress}, {"mesh", ep.Mesh}} {
		for _, rule := range dir.rules {
			rr := agentapi.Rule{Direction: dir.name, Policy: rule.Policy, Deny: rule.Deny, AnyPeer: rule.AnyPeer}
			for _, id := range rule.Peers {
				rr.Peers = append(rr.Peers, uint32(id))
			}
			for _, p := range rule.Ports {
				rr.Ports = append(rr.Ports, p.String())
			}
			for _, h := range rule.HTTP {
				rr.HTTP = append(rr.HTTP, h.String())
			}
			out.Rules = append(out.Rules, rr)
		}
	}
	if a.lxc != nil && ep.Node == a.cfg.Node {
		live, err := a.lxc.DumpEndpoint(key)
		switch {
		case errors.Is(err, lxc.ErrNoEndpoint):
			out.LiveError = "not programmed yet (interface missing)"
		case err != nil:
			out.LiveError = err.Error()
		default:
			out.Live = live
		}
	} else if ep.Node != a.cfg.Node {
		out.LiveError = "the pod runs on node " + ep.Node + "; ask that node's agent"
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(out)
}
