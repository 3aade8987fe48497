package agent

import (
	"context"
	"fmt"
	"net/netip"
	"sort"
	"sync"
	"time"

	"github.com/fastpath-bench/fastpath/datapath/agentapi"
	"github.com/fastpath-bench/fastpath/datapath/clustermesh"
	"github.com/fastpath-bench/fastpath/datapath/model"
)

// mesh connects the agent to the other clusters of a cluster mesh
// (datapath/clustermesh, issue #10): it watches the peers' etcd and gives
// their pods to the model as remote peers (Objects.Remote), and, on the
// one agent of a cluster that publishes (--clustermesh-publish), writes
// the cluster's state to its own etcd after each programmed change.
type mesh struct {
	cfg     *clustermesh.Config
	watcher *clustermesh.Watcher
	pub     *clustermesh.Publisher
	changed chan struct{} // the remote state changed: reconcile

	mu   sync.Mutex
	snap clustermesh.Snapshot
	// publish holds the latest state to publish (nil: none pending).
	publish *clustermesh.State
	kick    chan struct{}
}

func newMesh(path string, publish bool) (*mesh, error) {
	cfg, err := clustermesh.LoadConfig(path)
	if err != nil {
		return nil, fmt.Errorf("--clustermesh %s: %w", path, err)
	}
	m := &mesh{cfg: cfg, changed: make(chan struct{}, 1), kick: make(chan struct{}, 1)}
	m.watcher, err = clustermesh.NewWatcher(cfg, clustermesh.WatcherOptions{OnChange: m.onChange})
	if err != nil {
		return nil, fmt.Errorf("--clustermesh %s: %w", path, err)
	}
	if publish {
		cli, err := clustermesh.NewClient(cfg.Endpoints)
		if err != nil {
			return nil, fmt.Errorf("--clustermesh-publish: etcd of cluster %q: %w", cfg.Name, err)
		}
		if m.pub, err = clustermesh.NewPublisher(cfg, cli, nil); err != nil {
			cli.Close()
			return nil, fmt.Errorf("--clustermesh-publish: %w", err)
		}
	}
	return m, nil
}

func (m *mesh) onChange(s clustermesh.Snapshot) {
	m.mu.Lock()
	m.snap = s
	m.mu.Unlock()
	select {
	case m.changed <- struct{}{}:
	default:
	}
}

// run watches the peers and publishes until ctx ends.
func (m *mesh) run(ctx context.Context, logf func(string, ...any)) {
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := m.watcher.Run(ctx); err != nil {
			logf("cluster mesh watcher stopped", "error", err)
		}
	})
	if m.pub != nil {
		wg.Go(func() { m.publishLoop(ctx, logf) })
	}
	wg.Wait()
}

// publishLoop starts the publisher (retrying until the cluster's etcd
// answers) and publishes the latest state whenever there is a new one.
func (m *mesh) publishLoop(ctx context.Context, logf func(string, ...any)) {
	defer m.pub.Stop()
	for {
		if err := m.pub.Start(ctx); err == nil {
			break
		} else {
			logf("cluster mesh: cannot start publishing yet", "cluster", m.cfg.Name, "error", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(2 * time.Second):
		}
	}
	for {
		m.mu.Lock()
		st := m.publish
		m.publish = nil
		m.mu.Unlock()
		if st != nil {
			if err := m.pub.Publish(ctx, *st); err != nil {
				logf("cluster mesh: publish", "cluster", m.cfg.Name, "error", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-m.kick:
		}
	}
}

// remote is the peers' pods and nodes as the model's remote clusters, in
// a stable order, with the snapshot's version.
func (m *mesh) remote() ([]model.RemoteCluster, uint64) {
	m.mu.Lock()
	s := m.snap
	m.mu.Unlock()
	names := make([]string, 0, len(s.Clusters))
	for n := range s.Clusters {
		names = append(names, n)
	}
	sort.Strings(names)
	var out []model.RemoteCluster
	for _, n := range names {
		rs := s.Clusters[n]
		rc := model.RemoteCluster{Name: rs.Name, ID: rs.ID}
		for _, node := range rs.Nodes {
			rc.Nodes = append(rc.Nodes, model.Node{Name: node.Name, IP: node.IP})
		}
		sort.Slice(rc.Nodes, func(i, j int) bool { return rc.Nodes[i].Name < rc.Nodes[j].Name })
		for _, ep := range rs.Endpoints {
			rc.Endpoints = append(rc.Endpoints, model.RemoteEndpoint{
				Namespace: ep.Namespace, Name: ep.Name, IP: ep.IP, Node: ep.Node, NodeIP: ep.NodeIP,
				Identity: model.Identity(ep.GlobalIdentity), Labels: rs.Identities[ep.GlobalIdentity],
			})
		}
		sort.Slice(rc.Endpoints, func(i, j int) bool { return rc.Endpoints[i].IP.Less(rc.Endpoints[j].IP) })
		rc.Services = remoteServices(rs.Services)
		out = append(out, rc)
	}
	return out, s.Version
}

// remoteServices converts a peer's global Services (as the watcher
// cleaned them) for the model, sorted by key: ports other than TCP and
// UDP, which no local Service has, are left out; backends keep the
// published order.
func remoteServices(svcs map[string]clustermesh.GlobalService) []model.RemoteService {
	out := make([]model.RemoteService, 0, len(svcs))
	for _, gs := range svcs {
		rs := model.RemoteService{Namespace: gs.Namespace, Name: gs.Name}
		for _, p := range gs.Ports {
			var proto model.Protocol
			switch p.Protocol {
			case "TCP":
				proto = model.ProtoTCP
			case "UDP":
				proto = model.ProtoUDP
			default:
				continue
			}
			rp := model.RemoteServicePort{Name: p.Name, Protocol: proto, Port: p.Port}
			for _, b := range p.Backends {
				mb := model.Backend{Addr: b.IP, Port: b.Port, Node: b.Node, Pod: b.Pod, State: model.BackendActive, Weight: 1}
				if b.Terminating {
					mb.State = model.BackendTerminating
				}
				rp.Backends = append(rp.Backends, mb)
			}
			rs.Ports = append(rs.Ports, rp)
		}
		out = append(out, rs)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key() < out[j].Key() })
	return out
}

// apply sets the mesh part of objs (a shallow copy the caller resolves).
func (m *mesh) apply(objs *model.Objects) uint64 {
	objs.Cluster = model.ClusterInfo{Name: m.cfg.Name, ID: m.cfg.ClusterID()}
	var v uint64
	objs.Remote, v = m.remote()
	return v
}

// programmed hands the publisher the cluster's state from r (its pods,
// their local identities, its nodes, its global Services); a no-op on
// agents that do not publish.
func (m *mesh) programmed(r *model.Resolved) {
	if m.pub == nil {
		return
	}
	st := clustermesh.State{Identities: map[model.Identity]map[string]string{}}
	nodeIPs := map[string]netip.Addr{}
	for _, n := range r.Nodes {
		nodeIPs[n.Name] = n.IP
		if n.IP.IsValid() {
			st.Nodes = append(st.Nodes, clustermesh.Node{Name: n.Name, IP: n.IP})
		}
	}
	for _, ep := range r.Endpoints {
		local := model.LocalIdentity(ep.Identity)
		st.Identities[local] = ep.Labels
		st.Endpoints = append(st.Endpoints, clustermesh.Endpoint{
			IP: ep.IP, Namespace: ep.Namespace, Name: ep.Name, Labels: ep.Labels,
			Node: ep.Node, NodeIP: nodeIPs[ep.Node], Identity: local,
		})
	}
	st.Services = globalServices(r)
	m.mu.Lock()
	m.publish = &st
	m.mu.Unlock()
	select {
	case m.kick <- struct{}{}:
	default:
	}
}

// globalServices are r's global Services as the cluster publishes them:
// every port with the cluster's own serving backends (active or
// terminating, on standby or not: the peers' affinity is theirs) that
// are its pods — only a pod's address reaches the peers' ipcache, with
// its node as tunnel endpoint.
func globalServices(r *model.Resolved) []clustermesh.GlobalService {
	var out []clustermesh.GlobalService
	for _, s := range r.Services {
		if !s.Global {
			continue
		}
		gs := clustermesh.GlobalService{Namespace: s.Namespace, Name: s.Name, Affinity: s.Affinity, Ports: []clustermesh.ServicePort{}}
		for _, p := range s.Ports {
			sp := clustermesh.ServicePort{Name: p.Name, Protocol: p.Protocol.String(), Port: p.Port, Backends: []clustermesh.Backend{}}
			for _, b := range p.Backends {
				if b.Cluster != "" || b.State == model.BackendQuarantined {
					continue
				}
				if _, pod := r.EndpointByIP(b.Addr); !pod {
					continue
				}
				sp.Backends = append(sp.Backends, clustermesh.Backend{IP: b.Addr, Port: b.Port, Node: b.Node, Pod: b.Pod,
					Terminating: b.State == model.BackendTerminating})
			}
			gs.Ports = append(gs.Ports, sp)
		}
		out = append(out, gs)
	}
	return out
}

// status is the mesh part of the agent's status for remote as programmed.
func (m *mesh) status(remote []model.RemoteCluster, version uint64) *agentapi.MeshStatus {
	st := &agentapi.MeshStatus{Cluster: m.cfg.Name, Publishing: m.pub != nil, Version: version}
	for _, rc := range remote {
		p := agentapi.MeshPeer{Name: rc.Name, ID: rc.ID, Endpoints: len(rc.Endpoints), Services: len(rc.Services)}
		for _, s := range rc.Services {
			for _, sp := range s.Ports {
				p.Backends += len(sp.Backends)
			}
		}
		st.Peers = append(st.Peers, p)
	}
	return st
}
