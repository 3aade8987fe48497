package clustermesh

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/fastpath-bench/fastpath/datapath/model"
)

// Watcher timing. The probe interval and timeout are a quarter of the
// peer's lease TTL, within these bounds; expiry is checked every
// expiryTick.
const (
	minProbe       = 250 * time.Millisecond
	maxProbe       = 5 * time.Second
	maxProbeWait   = 2 * time.Second
	listTimeout    = 5 * time.Second
	expiryTick     = 100 * time.Millisecond
	minBackoff     = 200 * time.Millisecond
	maxBackoff     = 5 * time.Second
	maxProblemList = 20
)

// WatcherOptions are the optional parts of a Watcher.
type WatcherOptions struct {
	// OnChange is called with a snapshot after each change of the remote
	// state, from a single goroutine (never concurrently). Changes made
	// while it runs are coalesced: the next call gets the latest state.
	OnChange func(Snapshot)
	// Logf gets a line for each connection problem, relist and expiry
	// (nil: silent).
	Logf func(string, ...any)
}

// Snapshot is the remote state of every peer at one moment. It and
// everything it points to are read-only: the watcher shares them
// between snapshots.
type Snapshot struct {
	// Version increases with every change.
	Version uint64
	// Clusters holds every configured peer, by name.
	Clusters map[string]*RemoteState
}

// Identities returns the identities of every peer, by global identity
// (the cluster id bits keep them apart).
func (s Snapshot) Identities() map[uint32]map[string]string {
	out := map[uint32]map[string]string{}
	for _, rs := range s.Clusters {
		for id, l := range rs.Identities {
			out[id] = l
		}
	}
	return out
}

// RemoteState is what one peer publishes, as last seen, with the state of
// the connection to its etcd. Its maps are empty (not nil) while the
// peer publishes nothing usable: its cluster key is absent (lease
// expired, never published) or does not match the configuration, or the
// watcher has had no contact with its etcd for the lease TTL (Expired).
type RemoteState struct {
	Name string
	ID   uint8
	// Connected is set while the last request to the peer's etcd (list,
	// watch event or probe) succeeded; Err is the last error.
	Connected bool
	Err       string
	// LastContact is when the peer's etcd last answered.
	LastContact time.Time
	// Expired is set when the peer's etcd has not answered for its lease
	// TTL: the last state was dropped. Cleared on the next answer.
	Expired bool
	// Published is set when the peer's cluster key is present and names
	// the configured cluster; LeaseTTL is the TTL it states.
	Published bool
	LeaseTTL  time.Duration
	// Revision is the peer etcd's revision the state reflects.
	Revision int64
	// Problems lists keys that were ignored (bad key or value, address
	// outside the peer's pod CIDRs, unknown identity...).
	Problems []string

	// Endpoints by address, with their global identities.
	Endpoints map[netip.Addr]RemoteEndpoint
	// Identities by global identity; each label set also holds
	// LabelCluster=<peer name>.
	Identities map[uint32]map[string]string
	// Services by "namespace/name".
	Services map[string]GlobalService
	// Nodes by name.
	Nodes map[string]Node
}

// RemoteEndpoint is a peer's endpoint with its global identity.
type RemoteEndpoint struct {
	Endpoint
	GlobalIdentity uint32 `json:"globalIdentity"`
}

// Watcher follows the prefixes of a cluster's peers in their etcd.
type Watcher struct {
	cfg  *Config
	opts WatcherOptions

	mu      sync.Mutex
	peers   []*peerState
	version uint64
	changed chan struct{}
}

type peerState struct {
	cluster     Cluster
	prefix      string
	pods        []netip.Prefix
	podCIDRs    []string // canonical
	serviceCIDR string   // canonical

	// guarded by Watcher.mu
	kvs         map[string]string // relative key → value
	rev         int64
	lastContact time.Time
	connected   bool
	expired     bool
	err         string
	view        *RemoteState
}

// NewWatcher returns a watcher of cfg's peers.
func NewWatcher(cfg *Config, opts WatcherOptions) (*Watcher, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if opts.Logf == nil {
		opts.Logf = func(string, ...any) {}
	}
	w := &Watcher{cfg: cfg, opts: opts, changed: make(chan struct{}, 1)}
	for _, p := range cfg.Peers {
		ps := &peerState{
			cluster: p, prefix: Prefix(p.Name), kvs: map[string]string{},
			pods: p.PodPrefixes(), podCIDRs: prefixStrings(p.PodPrefixes()), serviceCIDR: p.ServicePrefix().String(),
		}
		ps.view = w.build(ps)
		w.peers = append(w.peers, ps)
	}
	return w, nil
}

// Snapshot returns the current state of every peer.
func (w *Watcher) Snapshot() Snapshot {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := Snapshot{Version: w.version, Clusters: make(map[string]*RemoteState, len(w.peers))}
	for _, ps := range w.peers {
		v := *ps.view
		v.LastContact = ps.lastContact
		s.Clusters[ps.cluster.Name] = &v
	}
	return s
}

// Run watches every peer until ctx ends; it returns nil then, or an
// error when a client cannot be created. Call it once.
func (w *Watcher) Run(ctx context.Context) error {
	clients := make([]*clientv3.Client, 0, len(w.peers))
	defer func() {
		for _, c := range clients {
			c.Close()
		}
	}()
	for _, ps := range w.peers {
		cli, err := NewClient(ps.cluster.Endpoints)
		if err != nil {
			return fmt.Errorf("etcd client for cluster %q: %w", ps.cluster.Name, err)
		}
		clients = append(clients, cli)
	}
	var wg sync.WaitGroup
	for i, ps := range w.peers {
		wg.Go(func() { w.peerLoop(ctx, ps, clients[i]) })
	}
	wg.Go(func() { w.expiryLoop(ctx) })
	for {
		select {
		case <-ctx.Done():
			wg.Wait()
			return nil
		case <-w.changed:
			if w.opts.OnChange != nil {
				w.opts.OnChange(w.Snapshot())
			}
		}
	}
}

// errReconnected ends a session whose etcd answered again after failing:
// the state is listed again rather than trusted to the resumed watch
// (the peer's etcd may have been replaced or compacted meanwhile).
var errReconnected = errors.New("etcd answers again")

func (w *Watcher) peerLoop(ctx context.Context, ps *peerState, cli *clientv3.Client) {
	backoff := minBackoff
	for ctx.Err() == nil {
		listed, err := w.session(ctx, ps, cli)
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, errReconnected) {
			w.opts.Logf("clustermesh: peer %s: %v; listing again", ps.cluster.Name, err)
			backoff = minBackoff
			continue
		}
		w.opts.Logf("clustermesh: peer %s: %v; retrying in %s", ps.cluster.Name, err, backoff)
		if listed {
			backoff = minBackoff
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		if !listed {
			backoff = min(2*backoff, maxBackoff)
		}
	}
}

// session lists the peer's prefix, then watches it from the list's
// revision and probes the peer's etcd every probe interval, until an
// error, a compaction or a reconnection (errReconnected).
func (w *Watcher) session(ctx context.Context, ps *peerState, cli *clientv3.Client) (listed bool, err error) {
	lctx, cancel := context.WithTimeout(ctx, listTimeout)
	resp, err := cli.Get(lctx, ps.prefix, clientv3.WithPrefix())
	cancel()
	if err != nil {
		w.failed(ps, err)
		return false, fmt.Errorf("list %s: %w", ps.prefix, err)
	}
	w.listed(ps, resp)

	wctx, wcancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer wcancel()
	wch := cli.Watch(wctx, ps.prefix, clientv3.WithPrefix(), clientv3.WithRev(resp.Header.Revision+1))
	interval, timeout := w.probeTiming(ps)
	probe := time.NewTimer(interval)
	defer probe.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return true, nil
		case wr, ok := <-wch:
			switch {
			case !ok:
				return true, errors.New("watch ended")
			case wr.CompactRevision != 0:
				return true, fmt.Errorf("watch: revision %d compacted", wr.CompactRevision)
			case wr.Err() != nil:
				w.failed(ps, wr.Err())
				return true, fmt.Errorf("watch: %w", wr.Err())
			}
			w.applied(ps, wr.Events, wr.Header.Revision)
		case <-probe.C:
			pctx, cancel := context.WithTimeout(ctx, timeout)
			_, err := cli.Get(pctx, ps.prefix+keyCluster, clientv3.WithCountOnly())
			cancel()
			switch {
			case err != nil && ctx.Err() == nil:
				failing = true
				w.failed(ps, err)
			case err == nil && failing:
				return true, errReconnected
			case err == nil:
				w.touched(ps)
			}
			interval, timeout = w.probeTiming(ps)
			probe.Reset(interval)
		}
	}
}

// probeTiming is the probe interval and timeout for a peer: a quarter of
// its lease TTL, bounded.
func (w *Watcher) probeTiming(ps *peerState) (interval, timeout time.Duration) {
	w.mu.Lock()
	ttl := w.ttlLocked(ps)
	w.mu.Unlock()
	q := ttl / 4
	return min(max(q, minProbe), maxProbe), min(max(q, minProbe), maxProbeWait)
}

// ttlLocked is the peer's lease TTL: the one its cluster key states, else
// this cluster's.
func (w *Watcher) ttlLocked(ps *peerState) time.Duration {
	if ps.view != nil && ps.view.LeaseTTL > 0 {
		return ps.view.LeaseTTL
	}
	return w.cfg.TTL()
}

func (w *Watcher) expiryLoop(ctx context.Context) {
	t := time.NewTicker(expiryTick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			w.mu.Lock()
			for _, ps := range w.peers {
				ttl := w.ttlLocked(ps)
				if ps.expired || ps.lastContact.IsZero() || now.Sub(ps.lastContact) <= ttl {
					continue
				}
				ps.expired = true
				if !ps.view.Published {
					w.rebuildLocked(ps)
					continue
				}
				w.opts.Logf("clustermesh: peer %s: no answer from its etcd for %s (lease TTL %s): dropping its state", ps.cluster.Name, now.Sub(ps.lastContact).Round(time.Millisecond), ttl)
				w.rebuildLocked(ps)
			}
			w.mu.Unlock()
		}
	}
}

// contactLocked records an answer from the peer's etcd; it reports
// whether the peer was disconnected or expired.
func (w *Watcher) contactLocked(ps *peerState) bool {
	ps.lastContact = time.Now()
	was := !ps.connected || ps.expired
	ps.connected, ps.expired, ps.err = true, false, ""
	return was
}

func (w *Watcher) listed(ps *peerState, resp *clientv3.GetResponse) {
	w.mu.Lock()
	defer w.mu.Unlock()
	ps.kvs = make(map[string]string, len(resp.Kvs))
	for _, e := range resp.Kvs {
		ps.kvs[strings.TrimPrefix(string(e.Key), ps.prefix)] = string(e.Value)
	}
	ps.rev = resp.Header.Revision
	w.contactLocked(ps)
	w.rebuildLocked(ps)
}

func (w *Watcher) applied(ps *peerState, events []*clientv3.Event, rev int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, ev := range events {
		k := strings.TrimPrefix(string(ev.Kv.Key), ps.prefix)
		switch ev.Type {
		case mvccpb.PUT:
			ps.kvs[k] = string(ev.Kv.Value)
		case mvccpb.DELETE:
			delete(ps.kvs, k)
		}
	}
	if rev > ps.rev {
		ps.rev = rev
	}
	w.contactLocked(ps)
	w.rebuildLocked(ps)
}

func (w *Watcher) touched(ps *peerState) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.contactLocked(ps) {
		w.rebuildLocked(ps)
	}
}

func (w *Watcher) failed(ps *peerState, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	was := ps.connected
	ps.connected, ps.err = false, err.Error()
	if was {
		w.rebuildLocked(ps)
		return
	}
	v := *ps.view // shared with snapshots: replace, do not modify
	v.Err = ps.err
	ps.view = &v
}

// rebuildLocked recomputes the peer's view and signals a change when it
// differs from the previous one in more than its error text.
func (w *Watcher) rebuildLocked(ps *peerState) {
	v := w.build(ps)
	old := *ps.view
	old.Err = v.Err
	ps.view = v
	if reflect.DeepEqual(&old, v) {
		return
	}
	w.version++
	select {
	case w.changed <- struct{}{}:
	default:
	}
}

// build computes a peer's view from its keys (see RemoteState).
func (w *Watcher) build(ps *peerState) *RemoteState {
	cl := ps.cluster
	rs := &RemoteState{
		Name: cl.Name, ID: cl.ClusterID(),
		Connected: ps.connected, Err: ps.err, Expired: ps.expired, Revision: ps.rev,
		Endpoints:  map[netip.Addr]RemoteEndpoint{},
		Identities: map[uint32]map[string]string{},
		Services:   map[string]GlobalService{},
		Nodes:      map[string]Node{},
	}
	problem := func(format string, args ...any) {
		if len(rs.Problems) < maxProblemList {
			rs.Problems = append(rs.Problems, fmt.Sprintf(format, args...))
		}
	}
	raw, ok := ps.kvs[keyCluster]
	if !ok {
		if len(ps.kvs) > 0 {
			problem("%d keys without %s%s: ignored", len(ps.kvs), ps.prefix, keyCluster)
		}
		return rs
	}
	var info ClusterInfo
	if err := decodeJSON(raw, &info); err != nil {
		problem("%s: %v", keyCluster, err)
		return rs
	}
	if info.Name != cl.Name || info.ID != cl.ClusterID() {
		problem("%s: published by cluster %q id %d, configured as %q id %d: ignoring the peer", keyCluster, info.Name, info.ID, cl.Name, cl.ID)
		return rs
	}
	rs.Published = true
	if info.PodCIDRs != nil && !slices.Equal(info.PodCIDRs, ps.podCIDRs) || info.ServiceCIDR != "" && info.ServiceCIDR != ps.serviceCIDR {
		problem("%s: the peer publishes pod CIDRs %v and service CIDR %s, configured here as %v and %s", keyCluster, info.PodCIDRs, info.ServiceCIDR, ps.podCIDRs, ps.serviceCIDR)
	}
	if info.LeaseTTLSeconds > 0 {
		// Bounded as this cluster's own: a peer cannot make its state
		// outlive contact by more than MaxLeaseTTL.
		rs.LeaseTTL = min(max(time.Duration(info.LeaseTTLSeconds)*time.Second, MinLeaseTTL), MaxLeaseTTL)
	}
	if ps.expired {
		return rs
	}

	keys := make([]string, 0, len(ps.kvs))
	for k := range ps.kvs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	locals := map[model.Identity]uint32{}
	var endpoints []string
	for _, k := range keys {
		v := ps.kvs[k]
		switch {
		case k == keyCluster:
		case strings.HasPrefix(k, dirIdentities):
			id, err := strconv.ParseUint(strings.TrimPrefix(k, dirIdentities), 10, 32)
			if err != nil {
				problem("%s: bad identity", k)
				continue
			}
			g, err := GlobalIdentity(cl.ClusterID(), model.Identity(id))
			if err != nil {
				problem("%s: %v", k, err)
				continue
			}
			var iv identityValue
			if err := decodeJSON(v, &iv); err != nil {
				problem("%s: %v", k, err)
				continue
			}
			labels := make(map[string]string, len(iv.Labels)+1)
			for lk, lv := range iv.Labels {
				labels[lk] = lv
			}
			labels[LabelCluster] = cl.Name
			rs.Identities[g] = labels
			locals[model.Identity(id)] = g
		case strings.HasPrefix(k, dirNodes):
			var n Node
			if err := decodeJSON(v, &n); err != nil || n.Name != strings.TrimPrefix(k, dirNodes) || !n.IP.IsValid() {
				problem("%s: bad node %s (%v)", k, v, err)
				continue
			}
			rs.Nodes[n.Name] = n
		case strings.HasPrefix(k, dirServices):
			var s GlobalService
			if err := decodeJSON(v, &s); err != nil || s.Key() != strings.TrimPrefix(k, dirServices) {
				problem("%s: bad service (%v)", k, err)
				continue
			}
			if cs, ok := cleanService(s, ps.pods, func(format string, args ...any) { problem(k+": "+format, args...) }); ok {
				rs.Services[s.Key()] = cs
			}
		case strings.HasPrefix(k, dirEndpoints):
			endpoints = append(endpoints, k) // after the identities
		default:
			problem("%s: unknown key", k)
		}
	}
	for _, k := range endpoints {
		var e Endpoint
		if err := decodeJSON(ps.kvs[k], &e); err != nil {
			problem("%s: %v", k, err)
			continue
		}
		if !e.IP.IsValid() || e.IP.String() != strings.TrimPrefix(k, dirEndpoints) {
			problem("%s: address %s does not match the key", k, e.IP)
			continue
		}
		if !slices.ContainsFunc(ps.pods, func(p netip.Prefix) bool { return p.Contains(e.IP) }) {
			problem("%s: address outside the peer's pod CIDRs %v", k, cl.PodCIDRs)
			continue
		}
		g, ok := locals[e.Identity]
		if !ok {
			problem("%s: identity %d not published", k, e.Identity)
			continue
		}
		rs.Endpoints[e.IP] = RemoteEndpoint{Endpoint: e, GlobalIdentity: g}
	}
	return rs
}

// cleanService returns s without the ports and backends a consumer cannot
// use, each reported to problem: ports with another protocol than TCP,
// UDP or SCTP, number 0, a name that is not a DNS label, or a name or
// number already used for the protocol; backends without an IPv4 address
// and port, outside the peer's pod CIDRs (pods), or listed twice. A
// Service whose namespace or name is not a Kubernetes one is left out
// (ok false).
func cleanService(s GlobalService, pods []netip.Prefix, problem func(string, ...any)) (GlobalService, bool) {
	if msgs := append(validation.IsDNS1123Label(s.Namespace), validation.IsDNS1035Label(s.Name)...); len(msgs) > 0 {
		problem("service %s: not a Kubernetes namespace and name: %s", s.Key(), strings.Join(msgs, "; "))
		return GlobalService{}, false
	}
	out := s
	out.Ports = make([]ServicePort, 0, len(s.Ports))
	names, numbers := map[string]bool{}, map[string]bool{}
	for _, p := range s.Ports {
		if err := checkServicePort(p); err != nil {
			problem("%v", err)
			continue
		}
		if msgs := validation.IsDNS1123Label(p.Name); p.Name != "" && len(msgs) > 0 {
			problem("port %q: %s", p.Name, strings.Join(msgs, "; "))
			continue
		}
		byName, byNumber := p.Name+"/"+p.Protocol, fmt.Sprint(p.Port, "/", p.Protocol)
		if (p.Name != "" && names[byName]) || numbers[byNumber] {
			problem("port %q %d/%s: listed twice", p.Name, p.Port, p.Protocol)
			continue
		}
		names[byName], numbers[byNumber] = true, true
		cp := p
		cp.Backends = make([]Backend, 0, len(p.Backends))
		seen := map[netip.AddrPort]bool{}
		for _, b := range p.Backends {
			ap := netip.AddrPortFrom(b.IP, b.Port)
			switch err := checkBackend(b); {
			case err != nil:
				problem("port %d: %v", p.Port, err)
			case !slices.ContainsFunc(pods, func(pp netip.Prefix) bool { return pp.Contains(b.IP) }):
				problem("port %d: backend %s: outside the peer's pod CIDRs", p.Port, ap)
			case seen[ap]:
				problem("port %d: backend %s: listed twice", p.Port, ap)
			default:
				seen[ap] = true
				cp.Backends = append(cp.Backends, b)
			}
		}
		out.Ports = append(out.Ports, cp)
	}
	return out, true
}

// decodeJSON decodes a value; fields it does not know are ignored, so that
// a newer publisher may add some.
func decodeJSON(s string, into any) error {
	return json.Unmarshal([]byte(s), into)
}
