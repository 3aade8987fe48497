package clustermesh

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/fastpath-bench/fastpath/datapath/clustermesh/embedetcd"
	"github.com/fastpath-bench/fastpath/datapath/model"
)

// etcdServer is an embedded etcd on 127.0.0.1 with free ports, data under
// t.TempDir(); stop and restart it to simulate a partition.
type etcdServer struct {
	t    *testing.T
	opts embedetcd.Options
	mu   sync.Mutex
	s    *embedetcd.Server
	ep   string
}

func startEtcd(t *testing.T, name string) *etcdServer {
	t.Helper()
	dir := t.TempDir()
	e := &etcdServer{t: t, opts: embedetcd.Options{
		Name: name, Dir: filepath.Join(dir, "data"), LogFile: filepath.Join(dir, "etcd.log"), NoFsync: true,
	}}
	e.start()
	t.Cleanup(e.stop)
	return e
}

func (e *etcdServer) start() {
	e.t.Helper()
	s, err := embedetcd.Start(e.opts)
	if err != nil {
		e.t.Fatal(err)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.s, e.ep = s, s.Endpoint()
	// Again on the same ports.
	e.opts.ClientURL, e.opts.PeerURL = s.Endpoint(), s.PeerURL()
}

func (e *etcdServer) stop() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.s != nil {
		e.s.Close()
		e.s = nil
	}
}

func (e *etcdServer) client() *clientv3.Client {
	e.t.Helper()
	cli, err := NewClient([]string{e.ep})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { cli.Close() })
	return cli
}

// meshConfigs are the two clusters' views of a mesh of east (id 1) and
// west (id 2).
func meshConfigs(t *testing.T, eastEP, westEP, ttl string) (east, west *Config) {
	t.Helper()
	ce := Cluster{Name: "east", ID: 1, PodCIDRs: []string{"10.1.0.0/16"}, ServiceCIDR: "10.96.0.0/16", Endpoints: []string{eastEP}}
	cw := Cluster{Name: "west", ID: 2, PodCIDRs: []string{"10.2.0.0/16"}, ServiceCIDR: "10.97.0.0/16", Endpoints: []string{westEP}}
	east = &Config{Cluster: ce, LeaseTTL: ttl, Peers: []Cluster{cw}}
	west = &Config{Cluster: cw, LeaseTTL: ttl, Peers: []Cluster{ce}}
	for _, c := range []*Config{east, west} {
		if err := c.Validate(); err != nil {
			t.Fatal(err)
		}
	}
	return east, west
}

// watch runs a watcher of cfg's peers until the test ends; the returned
// function waits for a snapshot delivered through OnChange to satisfy
// cond.
func watch(t *testing.T, cfg *Config) (*Watcher, func(what string, timeout time.Duration, cond func(Snapshot) bool) Snapshot) {
	t.Helper()
	var last atomic.Pointer[Snapshot]
	w, err := NewWatcher(cfg, WatcherOptions{
		OnChange: func(s Snapshot) { last.Store(&s) },
		Logf:     func(f string, a ...any) { t.Logf("%s: "+f, append([]any{cfg.Name}, a...)...) },
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	wait := func(what string, timeout time.Duration, cond func(Snapshot) bool) Snapshot {
		t.Helper()
		deadline := time.Now().Add(timeout)
		for {
			if s := last.Load(); s != nil && cond(*s) {
				return *s
			}
			if time.Now().After(deadline) {
				s := w.Snapshot()
				for name, rs := range s.Clusters {
					t.Logf("%s: %+v", name, *rs)
				}
				t.Fatalf("%s: not within %s", what, timeout)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return w, wait
}

func publisher(t *testing.T, cfg *Config, cli *clientv3.Client) *Publisher {
	t.Helper()
	p, err := NewPublisher(cfg, cli, func(f string, a ...any) { t.Logf(f, a...) })
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	return p
}

func ip(s string) netip.Addr { return netip.MustParseAddr(s) }

// eastState is a cluster with two pods of two identities on two nodes and
// one global Service.
func eastState() State {
	return State{
		Identities: map[model.Identity]map[string]string{
			1000: {"app": "web", model.LabelNamespace: "shop"},
			2000: {"app": "db", model.LabelNamespace: "shop"},
		},
		Endpoints: []Endpoint{
			{IP: ip("10.1.0.10"), Namespace: "shop", Name: "web-1", Labels: map[string]string{"app": "web"}, Node: "e1", NodeIP: ip("172.18.0.2"), Identity: 1000},
			{IP: ip("10.1.1.20"), Namespace: "shop", Name: "db-1", Labels: map[string]string{"app": "db"}, Node: "e2", NodeIP: ip("172.18.0.3"), Identity: 2000},
		},
		Nodes: []Node{{Name: "e1", IP: ip("172.18.0.2")}, {Name: "e2", IP: ip("172.18.0.3")}},
		Services: []GlobalService{{
			Namespace: "shop", Name: "web", Affinity: AffinityLocal,
			Ports: []ServicePort{{Name: "http", Protocol: "TCP", Port: 80, Backends: []Backend{{IP: ip("10.1.0.10"), Port: 8080, Node: "e1", Pod: "shop/web-1"}}}},
		}},
	}
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// TestPublishWatchRoundTrip: two clusters, each with its etcd, publish and
// watch each other; changes and deletions propagate; Revoke removes a
// cluster at once; a peer whose cluster key does not match the
// configuration is ignored.
func TestPublishWatchRoundTrip(t *testing.T) {
	t.Parallel()
	ee, we := startEtcd(t, "east"), startEtcd(t, "west")
	eastCfg, westCfg := meshConfigs(t, ee.ep, we.ep, "5s")
	eastCli := ee.client()
	pe := publisher(t, eastCfg, eastCli)
	pw := publisher(t, westCfg, we.client())
	_, waitWest := watch(t, westCfg) // west watches east
	_, waitEast := watch(t, eastCfg) // east watches west

	start := time.Now()
	if err := pe.Publish(ctxT(t, 5*time.Second), eastState()); err != nil {
		t.Fatal(err)
	}
	westState := State{
		Identities: map[model.Identity]map[string]string{1000: {"app": "web", model.LabelNamespace: "shop"}},
		Endpoints:  []Endpoint{{IP: ip("10.2.0.5"), Namespace: "shop", Name: "web-1", Node: "w1", NodeIP: ip("172.19.0.2"), Identity: 1000}},
		Nodes:      []Node{{Name: "w1", IP: ip("172.19.0.2")}},
	}
	if err := pw.Publish(ctxT(t, 5*time.Second), westState); err != nil {
		t.Fatal(err)
	}

	s := waitWest("east's state at west", 5*time.Second, func(s Snapshot) bool { return len(s.Clusters["east"].Endpoints) == 2 })
	t.Logf("round trip east → west: %s", time.Since(start))
	rs := s.Clusters["east"]
	if !rs.Published || !rs.Connected || rs.Expired || rs.ID != 1 || rs.LeaseTTL != 5*time.Second || len(rs.Problems) > 0 {
		t.Errorf("east at west: %+v", *rs)
	}
	web, db := uint32(1<<16|1000), uint32(1<<16|2000)
	if got := rs.Endpoints[ip("10.1.0.10")]; got.GlobalIdentity != web || got.Name != "web-1" || got.NodeIP != ip("172.18.0.2") || got.Identity != 1000 {
		t.Errorf("web-1: %+v", got)
	}
	if got := rs.Endpoints[ip("10.1.1.20")]; got.GlobalIdentity != db || got.Node != "e2" {
		t.Errorf("db-1: %+v", got)
	}
	if l := rs.Identities[web]; l["app"] != "web" || l[LabelCluster] != "east" || len(rs.Identities) != 2 {
		t.Errorf("identities: %v", rs.Identities)
	}
	if svc := rs.Services["shop/web"]; svc.Affinity != AffinityLocal || len(svc.Ports) != 1 || svc.Ports[0].Backends[0].Port != 8080 || svc.Ports[0].Backends[0].Pod != "shop/web-1" {
		t.Errorf("services: %+v", rs.Services)
	}
	if len(rs.Nodes) != 2 || rs.Nodes["e2"].IP != ip("172.18.0.3") {
		t.Errorf("nodes: %+v", rs.Nodes)
	}
	s = waitEast("west's state at east", 5*time.Second, func(s Snapshot) bool { return len(s.Clusters["west"].Endpoints) == 1 })
	// The same local identity in both clusters: distinct global ones.
	if _, ok := s.Clusters["west"].Identities[2<<16|1000]; !ok || len(s.Identities()) != 1 {
		t.Errorf("west's identities at east: %v", s.Identities())
	}

	// A watcher configured with another pod CIDR for west reports the
	// difference and ignores west's endpoint outside it.
	narrow := *eastCfg
	narrow.Peers = []Cluster{westCfg.Cluster}
	narrow.Peers[0].PodCIDRs = []string{"10.2.1.0/24"}
	_, waitNarrow := watch(t, &narrow)
	s = waitNarrow("west at a misconfigured east", 5*time.Second, func(s Snapshot) bool { return len(s.Clusters["west"].Problems) == 2 })
	if rs := s.Clusters["west"]; len(rs.Endpoints) != 0 || len(rs.Identities) != 1 ||
		!strings.Contains(rs.Problems[0], "publishes pod CIDRs [10.2.0.0/16] and service CIDR 10.97.0.0/16, configured here as [10.2.1.0/24]") ||
		!strings.Contains(rs.Problems[1], "endpoints/10.2.0.5: address outside the peer's pod CIDRs") {
		t.Errorf("west at a misconfigured east: %+v", *rs)
	}

	// Unchanged keys are not written again.
	before, err := eastCli.Get(ctxT(t, 5*time.Second), Prefix("east")+"identities/1000")
	if err != nil {
		t.Fatal(err)
	}
	// Deletion: db-1, its identity and the Service go; web-1 moves node.
	st := eastState()
	st.Endpoints = st.Endpoints[:1]
	st.Endpoints[0].Node, st.Endpoints[0].NodeIP = "e2", ip("172.18.0.3")
	delete(st.Identities, 2000)
	st.Services = nil
	start = time.Now()
	if err := pe.Publish(ctxT(t, 5*time.Second), st); err != nil {
		t.Fatal(err)
	}
	s = waitWest("deletion at west", 5*time.Second, func(s Snapshot) bool {
		rs := s.Clusters["east"]
		return len(rs.Endpoints) == 1 && len(rs.Identities) == 1 && len(rs.Services) == 0 && rs.Endpoints[ip("10.1.0.10")].Node == "e2"
	})
	t.Logf("deletion east → west: %s", time.Since(start))
	after, err := eastCli.Get(ctxT(t, 5*time.Second), Prefix("east")+"identities/1000")
	if err != nil {
		t.Fatal(err)
	}
	if before.Kvs[0].ModRevision != after.Kvs[0].ModRevision {
		t.Errorf("unchanged identity rewritten: mod revision %d → %d", before.Kvs[0].ModRevision, after.Kvs[0].ModRevision)
	}
	if after.Kvs[0].Lease != int64(pe.Lease()) {
		t.Errorf("identity key on lease %x, publisher's lease %x", after.Kvs[0].Lease, pe.Lease())
	}

	// An invalid state is refused and nothing changes.
	bad := eastState()
	bad.Endpoints[0].IP = ip("10.2.0.99")   // west's range
	bad.Endpoints[1].Identity = 3000        // unknown
	bad.Identities[5] = map[string]string{} // reserved
	bad.Services[0].Affinity = "nearest"
	bad.Services[0].Ports[0].Backends[0].IP = ip("fd00::1")
	err = pe.Publish(ctxT(t, 5*time.Second), bad)
	for _, want := range []string{"outside the cluster's pod CIDRs", "identity 3000 is not in the published identities", "identity 5: global identity: local identity 5 is reserved",
		`service shop/web: affinity "nearest"`, "service shop/web: port 80: backend fd00::1:8080: want an IPv4 address and a port"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Publish(bad) = %v, want %q", err, want)
		}
	}
	// cluster, nodes/e1, nodes/e2, identities/1000, endpoints/10.1.0.10
	if resp, err := eastCli.Get(ctxT(t, 5*time.Second), Prefix("east"), clientv3.WithPrefix(), clientv3.WithCountOnly()); err != nil || resp.Count != 5 {
		t.Errorf("keys after a refused Publish: %v, %v", resp, err)
	}

	// Revoke: every key goes at once.
	start = time.Now()
	if err := pe.Revoke(ctxT(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	s = waitWest("revocation at west", 5*time.Second, func(s Snapshot) bool { return !s.Clusters["east"].Published })
	t.Logf("revocation east → west: %s", time.Since(start))
	if rs := s.Clusters["east"]; len(rs.Endpoints)+len(rs.Identities)+len(rs.Nodes) != 0 || rs.Expired || !rs.Connected {
		t.Errorf("east after revocation: %+v", *rs)
	}

	// Someone else writes east's prefix claiming id 9: ignored.
	if _, err := eastCli.Put(ctxT(t, 5*time.Second), Prefix("east")+"cluster", `{"name":"east","id":9,"leaseTTLSeconds":5}`); err != nil {
		t.Fatal(err)
	}
	if _, err := eastCli.Put(ctxT(t, 5*time.Second), Prefix("east")+"identities/1000", `{"labels":{"app":"evil"}}`); err != nil {
		t.Fatal(err)
	}
	s = waitWest("mismatch at west", 5*time.Second, func(s Snapshot) bool { return len(s.Clusters["east"].Problems) > 0 })
	if rs := s.Clusters["east"]; rs.Published || len(rs.Identities) != 0 || !strings.Contains(rs.Problems[0], "id 9") {
		t.Errorf("east with a wrong cluster key: %+v", *rs)
	}
}

// TestLeaseExpiry: a publisher whose lease is revoked publishes again
// under a new one. Then it stops keeping its lease alive (a crash);
// etcd deletes the keys when the lease expires and the watcher, still
// connected, drops the remote identities.
func TestLeaseExpiry(t *testing.T) {
	t.Parallel()
	ee, we := startEtcd(t, "east"), startEtcd(t, "west")
	eastCfg, westCfg := meshConfigs(t, ee.ep, we.ep, "2s")
	pe := publisher(t, eastCfg, ee.client())
	if err := pe.Publish(ctxT(t, 5*time.Second), eastState()); err != nil {
		t.Fatal(err)
	}
	_, waitWest := watch(t, westCfg)
	waitWest("east's state at west", 5*time.Second, func(s Snapshot) bool { return len(s.Clusters["east"].Identities) == 2 })

	// The lease is lost behind the publisher's back (revoked): etcd
	// deletes the keys, the publisher grants a new lease and writes them
	// again.
	old := pe.Lease()
	if _, err := ee.client().Revoke(ctxT(t, 5*time.Second), old); err != nil {
		t.Fatal(err)
	}
	revoked := time.Now()
	for pe.Lease() == old || pe.Lease() == 0 {
		if time.Since(revoked) > 5*time.Second {
			t.Fatal("no new lease within 5s of the revocation")
		}
		time.Sleep(20 * time.Millisecond)
	}
	waitWest("republished state at west", 5*time.Second, func(s Snapshot) bool { return len(s.Clusters["east"].Identities) == 2 })
	t.Logf("republished under a new lease %s after the revocation", time.Since(revoked))

	pe.Stop()
	stopped := time.Now()
	s := waitWest("expiry at west", 6*time.Second, func(s Snapshot) bool { return len(s.Clusters["east"].Identities) == 0 })
	took := time.Since(stopped)
	t.Logf("identities gone %s after the keep-alives stopped (TTL 2s)", took)
	rs := s.Clusters["east"]
	if rs.Published || rs.Expired || !rs.Connected || len(rs.Endpoints)+len(rs.Nodes)+len(rs.Services) != 0 {
		t.Errorf("east after lease expiry: %+v", *rs)
	}
	if took < time.Second {
		t.Errorf("keys gone after %s: before the lease could expire", took)
	}
	if err := pe.Publish(ctxT(t, time.Second), eastState()); err == nil {
		t.Error("Publish after Stop: no error")
	}
}

// proxy forwards TCP connections from its own address to target until
// cut, which closes the listener and every connection: a partition
// between the clients using it and target.
type proxy struct {
	t      *testing.T
	target string
	addr   string
	mu     sync.Mutex
	l      net.Listener
	conns  []net.Conn
}

func newProxy(t *testing.T, target string) *proxy {
	p := &proxy{t: t, target: strings.TrimPrefix(target, "http://"), addr: "127.0.0.1:0"}
	p.listen()
	t.Cleanup(p.cut)
	return p
}

func (p *proxy) endpoint() string { return "http://" + p.addr }

func (p *proxy) listen() {
	l, err := net.Listen("tcp", p.addr)
	if err != nil {
		p.t.Fatal(err)
	}
	p.mu.Lock()
	p.l, p.addr = l, l.Addr().String()
	p.mu.Unlock()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", p.target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, u)
			p.mu.Unlock()
			go func() { io.Copy(u, c); u.Close() }()
			go func() { io.Copy(c, u); c.Close() }()
		}
	}()
}

func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.l != nil {
		p.l.Close()
		p.l = nil
	}
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// TestPartition: the watcher loses its peer's etcd while the peer keeps
// its lease alive; the watcher keeps the last state for the peer's lease
// TTL after the last answer, then drops it (fail closed), and lists it
// again when the etcd answers again.
func TestPartition(t *testing.T) {
	t.Parallel()
	ee, we := startEtcd(t, "east"), startEtcd(t, "west")
	px := newProxy(t, ee.ep)
	eastCfg, westCfg := meshConfigs(t, px.endpoint(), we.ep, "2s")
	pe := publisher(t, eastCfg, ee.client()) // directly, not through the proxy
	if err := pe.Publish(ctxT(t, 5*time.Second), eastState()); err != nil {
		t.Fatal(err)
	}
	w, waitWest := watch(t, westCfg)
	waitWest("east's state at west", 5*time.Second, func(s Snapshot) bool { return len(s.Clusters["east"].Identities) == 2 })

	px.cut()
	cut := time.Now()
	time.Sleep(time.Second)
	// (Connected may still be set: a probe fails when its timeout ends.)
	if rs := w.Snapshot().Clusters["east"]; len(rs.Identities) != 2 || rs.Expired {
		t.Errorf("east 1s into the partition: %+v", *rs)
	}
	s := waitWest("drop at west", 5*time.Second, func(s Snapshot) bool { return s.Clusters["east"].Expired })
	took := time.Since(cut)
	rs := s.Clusters["east"]
	sinceContact := time.Since(rs.LastContact)
	t.Logf("east dropped %s after the partition, %s after its etcd last answered (TTL 2s)", took, sinceContact)
	if len(rs.Endpoints)+len(rs.Identities)+len(rs.Nodes)+len(rs.Services) != 0 || rs.Connected || rs.Err == "" || !rs.Published {
		t.Errorf("east dropped: %+v", *rs)
	}
	if sinceContact < 2*time.Second || took > 3*time.Second {
		t.Errorf("dropped %s after the partition, %s after the last answer: want the 2s TTL after the last answer", took, sinceContact)
	}

	px.listen() // same address
	healed := time.Now()
	waitWest("recovery at west", 5*time.Second, func(s Snapshot) bool {
		rs := s.Clusters["east"]
		return !rs.Expired && rs.Connected && len(rs.Identities) == 2 && len(rs.Endpoints) == 2
	})
	t.Logf("east back at west %s after the partition healed", time.Since(healed))
}

// TestPeerEtcdStopped: the peer's etcd stops; the watcher drops the peer a
// TTL after the last answer. When the etcd is back (same data), the
// publisher keeps (or replaces) its lease and the watcher lists the state
// again.
func TestPeerEtcdStopped(t *testing.T) {
	t.Parallel()
	ee, we := startEtcd(t, "east"), startEtcd(t, "west")
	eastCfg, westCfg := meshConfigs(t, ee.ep, we.ep, "2s")
	pe := publisher(t, eastCfg, ee.client())
	if err := pe.Publish(ctxT(t, 5*time.Second), eastState()); err != nil {
		t.Fatal(err)
	}
	_, waitWest := watch(t, westCfg)
	waitWest("east's state at west", 5*time.Second, func(s Snapshot) bool { return len(s.Clusters["east"].Identities) == 2 })
	oldLease := pe.Lease()

	// Close stops serving at once but waits for open watch streams up to
	// etcd's request timeout (7s) before it returns.
	stopping := time.Now()
	closed := make(chan struct{})
	go func() { ee.stop(); close(closed) }()
	s := waitWest("drop at west", 5*time.Second, func(s Snapshot) bool { return s.Clusters["east"].Expired })
	rs := s.Clusters["east"]
	t.Logf("east dropped %s after its etcd began to stop, %s after its last answer (TTL 2s)", time.Since(stopping), time.Since(rs.LastContact))
	if len(rs.Endpoints)+len(rs.Identities)+len(rs.Nodes)+len(rs.Services) != 0 || rs.Connected {
		t.Errorf("east dropped: %+v", *rs)
	}
	if took := time.Since(stopping); took < 1500*time.Millisecond || took > 3500*time.Millisecond {
		t.Errorf("dropped %s after the stop, want about the 2s TTL", took)
	}

	<-closed
	ee.start()
	restarted := time.Now()
	waitWest("recovery at west", 10*time.Second, func(s Snapshot) bool {
		rs := s.Clusters["east"]
		return !rs.Expired && rs.Connected && len(rs.Identities) == 2 && len(rs.Endpoints) == 2
	})
	t.Logf("east back at west %s after its etcd restarted (stopped for %s)", time.Since(restarted), restarted.Sub(stopping))
	// The publisher's new lease is kept alive: past another TTL the
	// state is still there.
	time.Sleep(2500 * time.Millisecond)
	s = waitWest("state kept", time.Second, func(s Snapshot) bool { return len(s.Clusters["east"].Identities) == 2 })
	if rs := s.Clusters["east"]; !rs.Published || rs.Expired {
		t.Errorf("east 2.5s after recovery: %+v", *rs)
	}
	// etcd extends every lease by its TTL when it starts, and the
	// keep-alive stream may outlive the listeners while Close drains:
	// the lease may or may not have been lost.
	t.Logf("lease %x before the stop, %x after", oldLease, pe.Lease())
}

// TestPreflight: a reachable mesh passes; an unreachable endpoint is named
// with its cluster.
func TestPreflight(t *testing.T) {
	t.Parallel()
	ee := startEtcd(t, "east")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + l.Addr().String()
	l.Close()
	ok, _ := meshConfigs(t, ee.ep, ee.ep, "")
	if err := Preflight(ctxT(t, 5*time.Second), ok); err != nil {
		t.Errorf("Preflight of a reachable mesh: %v", err)
	}
	bad, _ := meshConfigs(t, ee.ep, dead, "")
	start := time.Now()
	err = Preflight(ctxT(t, time.Second), bad)
	t.Logf("Preflight with an unreachable endpoint: %s: %v", time.Since(start), err)
	want := fmt.Sprintf(`cluster "west" (id 2, peers[0]): etcd endpoint %s unreachable`, dead)
	if err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), `"east"`) {
		t.Errorf("Preflight = %v, want %q only", err, want)
	}
	invalid, _ := meshConfigs(t, ee.ep, dead, "")
	invalid.Peers[0].ID = 1
	if err := Preflight(ctxT(t, time.Second), invalid); err == nil || !strings.Contains(err.Error(), "peers[0].id: duplicate cluster id 1") {
		t.Errorf("Preflight of an invalid config = %v", err)
	}
}

func TestServiceAnnotations(t *testing.T) {
	for _, c := range []struct {
		ann      map[string]string
		global   bool
		affinity Affinity
		err      bool
	}{
		{nil, false, AffinityNone, false},
		{map[string]string{AnnotationGlobal: "true"}, true, AffinityNone, false},
		{map[string]string{AnnotationGlobal: "false"}, false, AffinityNone, false},
		{map[string]string{AnnotationGlobal: "true", AnnotationAffinity: "local"}, true, AffinityLocal, false},
		{map[string]string{AnnotationGlobal: "true", AnnotationAffinity: "none"}, true, AffinityNone, false},
		{map[string]string{AnnotationGlobal: "yes"}, false, AffinityNone, true},
		{map[string]string{AnnotationGlobal: "true", AnnotationAffinity: "remote"}, true, AffinityRemote, false},
		{map[string]string{AnnotationGlobal: "true", AnnotationAffinity: "nearest"}, false, AffinityNone, true},
	} {
		g, a, err := ServiceAnnotations(c.ann)
		if g != c.global || a != c.affinity || (err != nil) != c.err {
			t.Errorf("ServiceAnnotations(%v) = %v, %q, %v", c.ann, g, a, err)
		}
		if err != nil && !strings.Contains(err.Error(), "metadata.annotations[service.fastpath.dev/") {
			t.Errorf("error %q does not name the annotation", err)
		}
	}
}

// TestCleanService: the watcher keeps a peer's usable ports and backends
// and reports the others.
func TestCleanService(t *testing.T) {
	pods := []netip.Prefix{netip.MustParsePrefix("10.2.0.0/16")}
	in := GlobalService{Namespace: "shop", Name: "web", Ports: []ServicePort{
		{Name: "http", Protocol: "TCP", Port: 80, Backends: []Backend{
			{IP: ip("10.2.0.5"), Port: 8080, Pod: "shop/web-1"},
			{IP: ip("10.2.0.5"), Port: 8080}, // twice
			{IP: ip("10.9.0.5"), Port: 8080}, // another cluster's range
			{IP: ip("fd00::5"), Port: 8080},  // IPv6
			{IP: ip("10.2.0.6"), Port: 0},    // no port
			{IP: ip("10.2.0.7"), Port: 8080, Terminating: true},
		}},
		{Name: "http", Protocol: "TCP", Port: 81},   // name twice
		{Name: "alt", Protocol: "TCP", Port: 80},    // number twice
		{Name: "quic", Protocol: "QUIC", Port: 443}, // protocol
		{Name: "zero", Protocol: "UDP"},             // number 0
		{Name: "Bad_Name", Protocol: "UDP", Port: 54},
		{Name: "dns", Protocol: "UDP", Port: 53},
	}}
	var problems []string
	out, ok := cleanService(in, pods, func(f string, a ...any) { problems = append(problems, fmt.Sprintf(f, a...)) })
	if !ok {
		t.Fatal("service dropped")
	}
	if len(out.Ports) != 2 || out.Ports[0].Name != "http" || out.Ports[1].Name != "dns" {
		t.Fatalf("ports %+v", out.Ports)
	}
	if b := out.Ports[0].Backends; len(b) != 2 || b[0].Pod != "shop/web-1" || !b[1].Terminating {
		t.Errorf("backends %+v", b)
	}
	want := []string{"backend 10.2.0.5:8080: listed twice", "backend 10.9.0.5:8080: outside the peer's pod CIDRs", "backend fd00::5:8080: want an IPv4 address",
		"backend 10.2.0.6:0: want an IPv4 address and a port", `port "http" 81/TCP: listed twice`, `port "alt" 80/TCP: listed twice`,
		`port 443: protocol "QUIC"`, `port "zero": number 0`, `port "Bad_Name": a lowercase RFC 1123 label`}
	if len(problems) != len(want) {
		t.Fatalf("problems %q", problems)
	}
	for i, w := range want {
		if !strings.Contains(problems[i], w) {
			t.Errorf("problem %q, want %q", problems[i], w)
		}
	}
	if len(in.Ports) != 7 || len(in.Ports[0].Backends) != 6 {
		t.Error("cleanService modified its input")
	}
	in.Name = "Web"
	problems = nil
	if _, ok := cleanService(in, pods, func(f string, a ...any) { problems = append(problems, fmt.Sprintf(f, a...)) }); ok ||
		len(problems) != 1 || !strings.Contains(problems[0], "service shop/Web: not a Kubernetes namespace and name") {
		t.Errorf("a Service named Web: kept %v, problems %q", ok, problems)
	}
}
