// Package agent is the node agent: it watches a directory of Kubernetes
// YAML, resolves it with datapath/model, programs the chosen datapath, and
// serves its status and metrics on a unix socket. A state that fails to
// load, validate or program is refused as a whole: the previous state stays
// in force and the error is reported in the status.
package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fastpath-bench/fastpath/baselines/iptables"
	"github.com/fastpath-bench/fastpath/baselines/sidecar"
	"github.com/fastpath-bench/fastpath/datapath/agentapi"
	"github.com/fastpath-bench/fastpath/datapath/attach"
	"github.com/fastpath-bench/fastpath/datapath/features"
	"github.com/fastpath-bench/fastpath/datapath/l7proxy"
	"github.com/fastpath-bench/fastpath/datapath/lb/maglev"
	"github.com/fastpath-bench/fastpath/datapath/lxc"
	"github.com/fastpath-bench/fastpath/datapath/model"
	"github.com/fastpath-bench/fastpath/datapath/prefilter"
)

// Datapaths the agent can program.
var Datapaths = []string{"none", "ebpf", "iptables", "sidecar"}

// Config configures an agent. Zero values mean defaults where noted.
type Config struct {
	// Node is this node's name, matched against spec.nodeName of pods.
	Node string
	// Source is where the desired state comes from: SourceDir (default)
	// or SourceKubernetes.
	Source string
	// StateDir is the directory of desired state (YAML/JSON), for
	// SourceDir.
	StateDir string
	// Kubeconfig is the kubeconfig file for SourceKubernetes; empty: the
	// in-cluster configuration (a DaemonSet's service account).
	Kubeconfig string
	// IPAMState is the file where the kubernetes source's IPAM keeps its
	// allocations across restarts; empty: DefaultIPAMState.
	IPAMState string
	// Listen is a TCP address ("ip:port") for the read-only API: status,
	// metrics, /healthz and /readyz; empty: none.
	Listen string
	// Datapath is "ebpf" or "none".
	Datapath string
	// PinPath is a bpffs directory for pinned maps (ebpf only); empty: none.
	PinPath string
	// AttachMode for TC programs; zero: automatic.
	AttachMode attach.Mode
	// LB chooses the service backend selection (ebpf).
	LB lxc.LBOptions
	// Sock attaches socket-LB and sockmap acceleration to the node's pod
	// cgroup (ebpf; both off by default).
	Sock lxc.SockOptions
	// XDPNodePort translates NodePort traffic from outside in XDP on the
	// uplinks (ebpf; otherwise the uplink's TC program does it).
	XDPNodePort bool
	// Tunnel is the overlay to other nodes: "" (routed: packets go to
	// other nodes' pods as they are, and the receiver takes the sender's
	// identity from its address), "vxlan" (ebpf: the sender's identity
	// travels in the VNI, and the receiver takes it from there) or
	// "geneve" (ebpf: the identity travels in a Geneve option).
	Tunnel string
	// ClusterMesh is a clustermesh configuration file (issue #10): the
	// agent watches the peers' etcd and programs their pods as peers
	// (ebpf with --tunnel vxlan or geneve: their identities travel in
	// the overlay). ClusterMeshPublish makes this agent the one that
	// publishes its cluster's state to the cluster's etcd.
	ClusterMesh        string
	ClusterMeshPublish bool
	// IptablesSkipServices leaves Services to kube-proxy (iptables): the
	// baseline programs the NetworkPolicy chains only, as an iptables
	// NetworkPolicy controller next to kube-proxy does (on kind).
	IptablesSkipServices bool
	// PodNetns names pods' network namespaces ("...{namespace}-{name}"):
	// the sidecar datapath runs a proxy inside each.
	PodNetns string
	// Socket is the unix socket of the status API; empty: no API.
	Socket string
	// Resync is how often the state is re-read even without a file event
	// (and pending endpoints retried); zero: 1s.
	Resync time.Duration
	// Uplinks are the devices packets from other nodes arrive on (ebpf:
	// the L7 proxy redirect is attached there). Empty: the device holding
	// this node's address, once the state names it.
	Uplinks []string
	// Logger; nil: slog.Default().
	Logger *slog.Logger
}

// Datapath is what the agent programs.
type Datapath interface {
	// Apply programs the state of node; on error the previous state must
	// stay in force.
	Apply(r *model.Resolved, node string) (lxc.ApplyStats, error)
	Close() error
}

// noneDatapath programs nothing: the raw-path baseline. The agent still
// loads and resolves every state, so its own cost is comparable.
type noneDatapath struct{}

func (noneDatapath) Apply(r *model.Resolved, node string) (lxc.ApplyStats, error) {
	return lxc.ApplyStats{Endpoints: len(r.NodeEndpoints(node))}, nil
}
func (noneDatapath) Close() error { return nil }

// iptablesDatapath adapts the iptables baseline.
type iptablesDatapath struct{ d *iptables.Datapath }

func (i iptablesDatapath) Apply(r *model.Resolved, node string) (lxc.ApplyStats, error) {
	st, err := i.d.Apply(context.Background(), r, node)
	return lxc.ApplyStats{
		Endpoints:     st.Endpoints - len(st.Pending),
		Pending:       st.Pending,
		PolicyEntries: st.Rules,
		SwapDuration:  st.SetsDuration + st.RestoreDuration,
	}, err
}
func (i iptablesDatapath) Close() error { return i.d.Close() }

// sidecarDatapath adapts the sidecar proxy baseline.
type sidecarDatapath struct{ d *sidecar.Datapath }

func (s sidecarDatapath) Apply(r *model.Resolved, node string) (lxc.ApplyStats, error) {
	start := time.Now()
	st, err := s.d.Apply(r, node)
	return lxc.ApplyStats{Endpoints: st.Endpoints, Pending: st.Pending, Swapped: st.Reloaded, SwapDuration: time.Since(start)}, err
}
func (s sidecarDatapath) Close() error { return s.d.Close() }

// Agent is a running node agent.
type Agent struct {
	cfg Config
	dp  Datapath
	log *slog.Logger

	mu     sync.Mutex
	status agentapi.Status
	// changed is closed (and replaced) whenever reconcile has updated
	// status: long-polling status requests wait on it.
	changed  chan struct{}
	resolved *model.Resolved
	// features are the kernel features found at start (ebpf).
	features []string
	// src is where the desired state comes from.
	src source
	// kube is the kubernetes source's node side: IPAM and routes (nil
	// for the directory source).
	kube *kubeNode

	// events fans the datapath's flow events out to monitor clients.
	events *fanout
	// metrics returns datapath counters, when the datapath has them.
	metrics func() (map[lxc.MetricKey]lxc.Counter, error)
	// lxc is the eBPF datapath, when that is the one programmed.
	lxc *lxc.Datapath
	// prefilter is the XDP prefilter on the uplinks (ebpf).
	prefilter *prefilter.Filter
	// proxy is the node's L7 proxy (ebpf).
	proxy *l7proxy.Proxy
	// uplinks are the devices the uplink program is attached to.
	uplinks []string
	// mesh follows the other clusters (--clustermesh); meshVersion is
	// the snapshot version last programmed.
	mesh        *mesh
	meshVersion uint64
	// sidecar is the sidecar proxy baseline, when that is the datapath.
	sidecar *sidecar.Datapath
}

// New validates cfg and loads the datapath.
func New(cfg Config) (*Agent, error) {
	var errs []error
	if cfg.Node == "" {
		errs = append(errs, errors.New("--node: required"))
	}
	switch cfg.Source {
	case "", SourceDir:
		cfg.Source = SourceDir
		if cfg.StateDir == "" {
			errs = append(errs, errors.New("--state-dir: required"))
		} else if fi, err := os.Stat(cfg.StateDir); err != nil || !fi.IsDir() {
			errs = append(errs, fmt.Errorf("--state-dir %s: not a directory", cfg.StateDir))
		}
	case SourceKubernetes:
		if cfg.StateDir != "" {
			errs = append(errs, errors.New("--state-dir: not used with --source kubernetes"))
		}
		if cfg.IPAMState == "" {
			cfg.IPAMState = DefaultIPAMState
		}
	default:
		errs = append(errs, fmt.Errorf("--source %q: want %s or %s", cfg.Source, SourceDir, SourceKubernetes))
	}
	if cfg.Listen != "" {
		if _, err := netip.ParseAddrPort(cfg.Listen); err != nil {
			errs = append(errs, fmt.Errorf("--listen %q: want ip:port", cfg.Listen))
		}
	}
	if cfg.Resync == 0 {
		cfg.Resync = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	a := &Agent{cfg: cfg, log: cfg.Logger, changed: make(chan struct{})}
	switch cfg.Datapath {
	case "none":
		a.dp = noneDatapath{}
	case "ebpf":
	case "iptables":
	case "sidecar":
		if cfg.PodNetns == "" {
			errs = append(errs, errors.New("--pod-netns: required with --datapath sidecar (how pods' network namespaces are named)"))
		}
	default:
		errs = append(errs, fmt.Errorf("--datapath %q: unknown (want one of %v)", cfg.Datapath, Datapaths))
	}
	switch cfg.LB.Algorithm {
	case "", lxc.LBRandom, lxc.LBMaglev:
	default:
		errs = append(errs, fmt.Errorf("--lb-algorithm %q: want %s or %s", cfg.LB.Algorithm, lxc.LBRandom, lxc.LBMaglev))
	}
	if m := cfg.LB.MaglevTableSize; m != 0 && (!maglev.IsPrime(m) || m+1 > lxc.MaxSelectArray) {
		errs = append(errs, fmt.Errorf("--maglev-table-size %d: want a prime below %d", m, lxc.MaxSelectArray))
	}
	if (cfg.Sock.LB || cfg.Sock.Sockmap) && cfg.Datapath != "ebpf" {
		errs = append(errs, fmt.Errorf("--socket-lb and --sockmap need --datapath ebpf (not %q)", cfg.Datapath))
	}
	switch {
	case cfg.Tunnel == "" || slices.Contains(lxc.TunnelTypes, cfg.Tunnel) && cfg.Datapath == "ebpf":
	case slices.Contains(lxc.TunnelTypes, cfg.Tunnel):
		errs = append(errs, fmt.Errorf("--tunnel %s needs --datapath ebpf (not %q)", cfg.Tunnel, cfg.Datapath))
	default:
		errs = append(errs, fmt.Errorf("--tunnel %q: want %s or nothing", cfg.Tunnel, strings.Join(lxc.TunnelTypes, " or ")))
	}
	if cfg.ClusterMesh != "" && (cfg.Datapath != "ebpf" || cfg.Tunnel == "") {
		errs = append(errs, fmt.Errorf("--clustermesh needs --datapath ebpf and --tunnel %s (identities cross clusters in the overlay; not --datapath %q --tunnel %q)", strings.Join(lxc.TunnelTypes, " or "), cfg.Datapath, cfg.Tunnel))
	}
	if cfg.ClusterMeshPublish && cfg.ClusterMesh == "" {
		errs = append(errs, errors.New("--clustermesh-publish needs --clustermesh"))
	}
	if cfg.ClusterMesh != "" {
		m, err := newMesh(cfg.ClusterMesh, cfg.ClusterMeshPublish)
		if err != nil {
			errs = append(errs, err)
		}
		a.mesh = m
	}
	if cfg.XDPNodePort && cfg.Datapath != "ebpf" {
		errs = append(errs, fmt.Errorf("--xdp-nodeport needs --datapath ebpf (not %q)", cfg.Datapath))
	}
	if cfg.IptablesSkipServices && cfg.Datapath != "iptables" {
		errs = append(errs, fmt.Errorf("--iptables-services=false needs --datapath iptables (not %q)", cfg.Datapath))
	}
	if (cfg.Sock.LB || cfg.Sock.Sockmap) && cfg.Sock.Cgroup == "" {
		errs = append(errs, errors.New("--cgroup: required with --socket-lb or --sockmap (the cgroup v2 directory of the node's pods)"))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	switch cfg.Datapath {
	case "ebpf":
		// Probe first: a kernel without a required feature gets one
		// error naming it, not a verifier or attach failure later.
		rep := features.Probe()
		if err := rep.Check(); err != nil {
			return nil, err
		}
		if cfg.Sock.LB {
			if err := rep.Need("--socket-lb", "prog:cgroup_sock_addr", "helper:get_netns_cookie"); err != nil {
				return nil, err
			}
		}
		if cfg.Sock.Sockmap {
			if err := rep.Need("--sockmap", "map:sockhash", "prog:sock_ops", "prog:sk_msg"); err != nil {
				return nil, err
			}
		}
		if cfg.XDPNodePort {
			if err := rep.Need("--xdp-nodeport", "prog:xdp", "helper:xdp_fib_lookup"); err != nil {
				return nil, err
			}
		}
		a.features = rep.Names()
		d, err := lxc.Load(lxc.Options{PinPath: cfg.PinPath, AttachMode: cfg.AttachMode, LB: cfg.LB})
		if err != nil {
			return nil, fmt.Errorf("load ebpf datapath: %w", err)
		}
		if err := d.AttachSockets(cfg.Sock); err != nil {
			d.Close()
			return nil, err
		}
		if cfg.Tunnel != "" {
			if err := d.EnableTunnel(lxc.TunnelOptions{Type: cfg.Tunnel}); err != nil {
				d.Close()
				return nil, err
			}
		}
		a.dp = d
		a.metrics = d.Metrics
		a.lxc = d
		a.events = newFanout(d.OpenEvents)
		pf, err := prefilter.Load(prefilter.Options{PinPath: cfg.PinPath, NodePort: cfg.XDPNodePort, SharedMaps: d.Maps()})
		if err != nil {
			d.Close()
			return nil, err
		}
		a.prefilter = pf
		if err := a.startProxy(); err != nil {
			d.Close()
			return nil, err
		}
		if err := d.SetProxyPort(a.proxy.Addr().Port()); err != nil {
			a.stopProxy()
			d.Close()
			return nil, fmt.Errorf("L7 proxy: %w", err)
		}
	case "iptables":
		if err := a.startProxy(); err != nil {
			return nil, err
		}
		d, err := iptables.New(iptables.Options{ProxyPort: a.proxy.Addr().Port(), ProxyMark: uint32(lxc.MarkToProxy), ProxyMask: uint32(lxc.MarkMask),
			SkipServices: cfg.IptablesSkipServices})
		if err != nil {
			a.stopProxy()
			return nil, err
		}
		a.dp = iptablesDatapath{d}
	case "sidecar":
		dir := filepath.Join(os.TempDir(), "fastpath-sidecar-"+cfg.Node)
		if cfg.Socket != "" {
			dir = filepath.Join(filepath.Dir(cfg.Socket), "sidecar-"+cfg.Node)
		}
		d, err := sidecar.New(sidecar.Options{PodNetns: cfg.PodNetns, Dir: dir})
		if err != nil {
			return nil, err
		}
		a.sidecar = d
		a.dp = sidecarDatapath{d}
	}
	a.status = agentapi.Status{Node: cfg.Node, Datapath: cfg.Datapath, Source: cfg.Source, PID: os.Getpid(), GoMaxProcs: runtime.GOMAXPROCS(0), StartedAt: time.Now(), Kernel: kernelRelease(), Features: a.features,
		SocketLB: cfg.Sock.LB, Sockmap: cfg.Sock.Sockmap}
	return a, nil
}

// Status returns a copy of the current status.
func (a *Agent) Status() agentapi.Status {
	a.mu.Lock()
	defer a.mu.Unlock()
	st := a.status
	st.Pending = append([]string(nil), a.status.Pending...)
	st.Uplinks = append([]string(nil), a.uplinks...)
	if a.lxc != nil {
		st.Tunnel = a.lxc.TunnelDeviceName()
		st.TunnelType = a.lxc.TunnelType()
		for _, g := range a.lxc.EgressGateways() {
			st.EgressGateways = append(st.EgressGateways, agentapi.EgressGateway{Name: g.Name, Cluster: g.Cluster, Node: g.Node,
				EgressIP: g.EgressIP, Gateway: g.Gateway, Sources: g.Sources, Dropped: g.Dropped})
		}
	}
	if a.prefilter != nil {
		st.PrefilterDevices = a.prefilter.Devices()
		st.PrefilterPrefixes = a.prefilter.Len()
	}
	if a.proxy != nil {
		ps := a.proxy.Stats()
		st.Proxy = &agentapi.ProxyStats{Listen: a.proxy.Addr().String(), Connections: ps.Connections, Requests: ps.Requests,
			Allowed: ps.Allowed, Denied: ps.Denied, UpstreamErrors: ps.UpstreamErrors}
	}
	if a.sidecar != nil {
		st.SidecarProxy = a.sidecar.Proxy()
		st.SidecarPIDs = a.sidecar.PIDs()
	}
	return st
}

// startProxy starts the node's L7 proxy and adds the routing that
// delivers packets redirected to it (the same for both datapaths: packets
// marked MarkToProxy go to a local socket).
func (a *Agent) startProxy() error {
	p, err := l7proxy.Listen(l7proxy.Options{UpstreamMark: lxc.MarkFromProxy, Decider: l7proxy.DeciderFunc(a.decideRequest)})
	if err != nil {
		return fmt.Errorf("L7 proxy: %w", err)
	}
	if err := lxc.InstallProxyRouting(); err != nil {
		p.Close()
		return fmt.Errorf("L7 proxy: %w", err)
	}
	a.proxy = p
	return nil
}

func (a *Agent) stopProxy() {
	if a.proxy == nil {
		return
	}
	a.proxy.Close()
	if err := lxc.RemoveProxyRouting(); err != nil {
		a.log.Warn("L7 proxy", "error", err)
	}
}

// decideRequest is the L7 proxy's decider: the destination pod's ingress
// rules (both layers) for the request, with the source's identity as this
// node sees it. A request to an address that is no pod of this node is
// denied.
func (a *Agent) decideRequest(src, dst netip.AddrPort, req model.Request) l7proxy.Decision {
	a.mu.Lock()
	r := a.resolved
	a.mu.Unlock()
	if r == nil {
		return l7proxy.Decision{Reason: "no policy programmed yet"}
	}
	ep, ok := r.EndpointByIP(dst.Addr())
	if !ok || ep.Node != a.cfg.Node {
		return l7proxy.Decision{Reason: fmt.Sprintf("%s is not a pod of node %s", dst.Addr(), a.cfg.Node)}
	}
	v := r.IngressRequest(ep, r.IdentityOf(a.cfg.Node, src.Addr()), r.CIDRIdentityOf(src.Addr()), dst.Port(), req)
	return l7proxy.Decision{Allowed: v.Allowed, Reason: v.Reason}
}

// syncPrefilter attaches the XDP prefilter to the uplinks while the state
// denies any prefix, and detaches it when none is left: an XDP program on
// a veth changes how the device receives every packet (NAPI), so it is
// there only when it has work. (On Debian's 5.10 under emulation, an idle
// XDP program on the node's veth also sent ksoftirqd into soft lockups.)
func (a *Agent) syncPrefilter(r *model.Resolved) {
	if a.prefilter == nil {
		return
	}
	if len(r.PrefilterDeny) == 0 && !a.cfg.XDPNodePort {
		for _, name := range a.prefilter.Devices() {
			if err := a.prefilter.Detach(name); err != nil {
				a.log.Warn("prefilter", "device", name, "error", err)
			}
		}
		return
	}
	for _, name := range a.uplinks {
		if err := a.prefilter.Attach(name); err != nil {
			a.log.Warn("prefilter not attached: denied prefixes are not dropped on this uplink", "device", name, "error", err)
		}
	}
}

// attachUplinks attaches the uplink program once: to the configured
// devices, or to the one holding this node's address in r.
func (a *Agent) attachUplinks(r *model.Resolved) {
	if a.lxc == nil || a.uplinks != nil {
		return
	}
	names := a.cfg.Uplinks
	if len(names) == 0 {
		for _, n := range r.Nodes {
			if n.Name == a.cfg.Node && n.IP.IsValid() {
				if name, err := deviceWithAddr(n.IP); err == nil {
					names = []string{name}
				} else {
					a.log.Warn("uplink not found: L7 rules cannot be enforced for traffic from other nodes (it is dropped)", "error", err)
				}
			}
		}
	}
	var done []string
	for _, name := range names {
		if err := a.lxc.AttachUplink(name); err != nil {
			a.log.Warn("uplink", "error", err)
			continue
		}
		done = append(done, name)
	}
	if len(done) > 0 {
		a.uplinks = done
	}
}

// deviceWithAddr returns the name of the interface that has address ip.
func deviceWithAddr(ip netip.Addr) (string, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return "", err
	}
	for _, ifc := range ifs {
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, ad := range addrs {
			if n, ok := ad.(*net.IPNet); ok {
				if a, ok := netip.AddrFromSlice(n.IP); ok && a.Unmap() == ip {
					return ifc.Name, nil
				}
			}
		}
	}
	return "", fmt.Errorf("no interface has address %s", ip)
}

// Run watches the desired state and programs every change until ctx
// ends, then detaches everything.
func (a *Agent) Run(ctx context.Context) error {
	defer a.dp.Close()
	if a.prefilter != nil {
		defer a.prefilter.Close()
	}
	defer a.stopProxy()
	switch a.cfg.Source {
	case SourceKubernetes:
		k, err := a.startKube(ctx)
		if err != nil {
			return err
		}
		a.kube = k
		defer k.stop()
		a.src = kubeSource{k.src}
	default:
		a.src = &dirSource{dir: a.cfg.StateDir}
	}
	stop, err := a.serve()
	if err != nil {
		return err
	}
	defer stop()
	if a.lxc != nil {
		defer a.events.close()
		go a.gcLoop(ctx)
	}
	changed := make(chan struct{}, 1)
	watchErr := make(chan error, 1)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { watchErr <- a.src.watch(wctx, changed) }()
	var meshChanged chan struct{}
	if a.mesh != nil {
		meshChanged = a.mesh.changed
		go a.mesh.run(wctx, a.log.Warn)
	}
	a.reconcile()
	tick := time.NewTicker(a.cfg.Resync)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			a.log.Info("stopping: detaching datapath")
			return nil
		case err := <-watchErr:
			if err == nil {
				err = errors.New("state watch ended")
			}
			return err
		case <-changed:
			a.reconcile()
		case <-meshChanged:
			a.reconcile()
		case <-tick.C:
			a.reconcile()
		}
	}
}

// reconcile loads the state and programs it when it changed (or when
// endpoints are still pending).
func (a *Agent) reconcile() {
	if a.lxc != nil && a.cfg.Sock.Sockmap {
		// Once a second (resync) and on changes, not per status poll.
		flows, denied, err := a.lxc.SockmapFlows()
		a.mu.Lock()
		if err == nil {
			a.status.SockmapFlows, a.status.SockmapDenied = flows, denied
		}
		a.mu.Unlock()
	}
	a.mu.Lock()
	cur := a.status
	a.mu.Unlock()
	start := time.Now()
	// The source digests the state (the directory loader decoding only
	// changed files): its digest tells whether anything changed.
	objs, h, revs, err := a.src.load()
	// The other clusters' pods (a copy: the source keeps its objects).
	meshVersion := a.meshVersion
	if a.mesh != nil && err == nil {
		o := *objs
		meshVersion = a.mesh.apply(&o)
		objs = &o
	}
	loaded := time.Now()
	if cur.Ready && len(cur.Pending) == 0 && meshVersion == a.meshVersion {
		// Unchanged, or the same refused state again: nothing to do. (Back
		// to the programmed state after a refusal: reprogram, which also
		// clears the error.)
		if h != "" && ((h == cur.StateHash && cur.LastError == "") || h == cur.FailedHash) {
			return
		}
	}
	var r *model.Resolved
	if err == nil {
		r, err = model.Resolve(objs)
	}
	resolved := time.Now()
	var st lxc.ApplyStats
	if err == nil {
		st, err = a.dp.Apply(r, a.cfg.Node)
	}
	programmed := time.Now()
	if err == nil && a.prefilter != nil {
		if err = a.prefilter.Set(r.PrefilterDeny); err != nil {
			err = fmt.Errorf("prefilter: %w", err)
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	defer a.notifyLocked()
	if err != nil {
		if a.status.LastError != err.Error() {
			a.log.Error("desired state refused; previous state stays in force", "error", err)
		}
		a.status.LastError = err.Error()
		a.status.FailedHash = h
		a.status.FailedRevisions = revs
		a.status.PolicyOverflows += int64(st.Overflows)
		if errors.Is(err, lxc.ErrOverflow) {
			a.status.RefusedOverflow++
		}
		return
	}
	changed := a.status.StateHash != objs.Hash || len(a.status.Pending) != len(st.Pending)
	a.status.Ready = true
	a.status.Generation++
	a.status.StateHash = objs.Hash
	a.status.AppliedAt = time.Now()
	a.status.ApplySeconds = time.Since(start).Seconds()
	a.status.ProgramSeconds = st.SwapDuration.Seconds()
	a.status.LoadSeconds = loaded.Sub(start).Seconds()
	a.status.ResolveSeconds = resolved.Sub(loaded).Seconds()
	a.status.DatapathSeconds = programmed.Sub(resolved).Seconds()
	a.status.LastError = ""
	a.status.FailedHash = ""
	a.status.FailedRevisions = nil
	a.status.Revisions = revs
	a.status.Endpoints = st.Endpoints
	a.status.Pending = st.Pending
	a.status.PolicyEntries = st.PolicyEntries
	a.status.AttachMode = string(st.AttachMode)
	a.status.Identities = len(r.Identities)
	a.resolved = r
	a.status.Policies = r.Policies
	if a.mesh != nil {
		a.meshVersion = meshVersion
		a.status.Mesh = a.mesh.status(objs.Remote, meshVersion)
		a.mesh.programmed(r)
	}
	a.attachUplinks(r)
	a.syncPrefilter(r)
	if a.kube != nil {
		a.kube.apply(r)
	}
	if changed {
		a.log.Info("programmed", "hash", objs.Hash, "endpoints", st.Endpoints, "pending", len(st.Pending),
			"policyEntries", st.PolicyEntries, "seconds", a.status.ApplySeconds,
			"load", a.status.LoadSeconds, "resolve", a.status.ResolveSeconds, "datapath", a.status.DatapathSeconds)
	}
}

// notifyLocked wakes the status requests waiting for a change; a.mu is
// held.
func (a *Agent) notifyLocked() {
	close(a.changed)
	a.changed = make(chan struct{})
}

// maxStatusWait bounds a long-polling status request.
const maxStatusWait = 30 * time.Second

// serveStatus writes the status. With ?programmed=HASH&wait=DURATION it
// first waits, up to wait, until state HASH is programmed with no endpoint
// pending or refused: a client measuring propagation learns of it at once
// without polling the agent (which would compete with the agent for CPU).
func (a *Agent) serveStatus(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if hash := q.Get("programmed"); hash != "" {
		wait, err := time.ParseDuration(q.Get("wait"))
		if err != nil || wait < 0 {
			http.Error(w, fmt.Sprintf("wait=%q: want a duration such as 10s", q.Get("wait")), http.StatusBadRequest)
			return
		}
		t := time.NewTimer(min(wait, maxStatusWait))
		defer t.Stop()
	waiting:
		for {
			a.mu.Lock()
			done := agentapi.Programmed(&a.status, hash)
			ch := a.changed
			a.mu.Unlock()
			if done {
				break
			}
			select {
			case <-ch:
			case <-t.C:
				break waiting // answer with the status as it is
			case <-r.Context().Done():
				return
			}
		}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(a.Status())
}

// serve starts the API: every endpoint on the unix socket (root's only),
// the read-only ones on the TCP address. It returns a function that stops
// both.
func (a *Agent) serve() (stop func(), err error) {
	var servers []*http.Server
	stop = func() {
		for _, srv := range servers {
			srv.Close()
		}
		if a.cfg.Socket != "" {
			os.Remove(a.cfg.Socket)
		}
	}
	ro := http.NewServeMux()
	ro.HandleFunc("GET /v1/status", a.serveStatus)
	ro.HandleFunc("GET /metrics", a.serveMetrics)
	ro.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	ro.HandleFunc("GET /readyz", a.serveReady)
	if a.cfg.Socket != "" {
		if err := os.MkdirAll(filepath.Dir(a.cfg.Socket), 0o755); err != nil {
			return stop, err
		}
		os.Remove(a.cfg.Socket)
		l, err := net.Listen("unix", a.cfg.Socket)
		if err != nil {
			return stop, fmt.Errorf("listen on %s: %w", a.cfg.Socket, err)
		}
		mux := http.NewServeMux()
		mux.Handle("/", ro)
		mux.HandleFunc("GET /v1/monitor", a.serveMonitor)
		mux.HandleFunc("GET /v1/policy/{namespace}/{name}", a.servePolicy)
		mux.HandleFunc("GET /v1/lb", a.serveLB)
		mux.HandleFunc("GET /v1/prefilter", a.servePrefilter)
		// Go profiles of the agent (the socket is root's only).
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
		mux.HandleFunc("GET /v1/sidecar", a.serveSidecar)
		// The CNI plugin asks for pod addresses here.
		mux.HandleFunc("POST /v1/ipam/", a.serveIPAM)
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		servers = append(servers, srv)
		go func() { _ = srv.Serve(l) }()
	}
	if a.cfg.Listen != "" {
		l, err := net.Listen("tcp", a.cfg.Listen)
		if err != nil {
			stop()
			return func() {}, fmt.Errorf("--listen %s: %w", a.cfg.Listen, err)
		}
		srv := &http.Server{Handler: ro, ReadHeaderTimeout: 5 * time.Second}
		servers = append(servers, srv)
		go func() { _ = srv.Serve(l) }()
	}
	return stop, nil
}

// serveReady answers 200 once a desired state is programmed (and, with
// the kubernetes source, the node's IPAM runs), else 503 saying why.
func (a *Agent) serveReady(w http.ResponseWriter, _ *http.Request) {
	st := a.Status()
	switch {
	case !st.Ready:
		msg := "no desired state programmed yet"
		if st.LastError != "" {
			msg += ": " + st.LastError
		}
		http.Error(w, msg, http.StatusServiceUnavailable)
	case a.kube != nil && !a.kube.ipamReady():
		http.Error(w, "IPAM not ready: "+a.kube.ipamWhy(), http.StatusServiceUnavailable)
	default:
		fmt.Fprintln(w, "ok")
	}
}

// serveSidecar reports a pod's sidecar proxy (sidecar datapath).
func (a *Agent) serveSidecar(w http.ResponseWriter, r *http.Request) {
	if a.sidecar == nil {
		http.Error(w, "the "+a.cfg.Datapath+" datapath has no sidecars", http.StatusNotFound)
		return
	}
	st, err := a.sidecar.PodStats(r.URL.Query().Get("pod"))
	if err != nil {
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(st)
}

// serveIPAM hands CNI requests to the node's allocator (kubernetes
// source only).
func (a *Agent) serveIPAM(w http.ResponseWriter, r *http.Request) {
	if a.kube == nil {
		http.Error(w, "IPAM is served with --source kubernetes only", http.StatusNotFound)
		return
	}
	h := a.kube.ipamHandler()
	if h == nil {
		http.Error(w, "IPAM not ready: "+a.kube.ipamWhy(), http.StatusServiceUnavailable)
		return
	}
	h.ServeHTTP(w, r)
}

// serveMetrics writes Prometheus text format.
func (a *Agent) serveMetrics(w http.ResponseWriter, _ *http.Request) {
	st := a.Status()
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	fmt.Fprintf(w, "# HELP fastpath_agent_generation Successful applies of desired state.\n# TYPE fastpath_agent_generation counter\nfastpath_agent_generation %d\n", st.Generation)
	fmt.Fprintf(w, "# HELP fastpath_agent_apply_seconds Duration of the last successful apply.\n# TYPE fastpath_agent_apply_seconds gauge\nfastpath_agent_apply_seconds %g\n", st.ApplySeconds)
	errGauge := 0
	if st.LastError != "" {
		errGauge = 1
	}
	fmt.Fprintf(w, "# HELP fastpath_agent_state_refused 1 when the newest desired state was refused.\n# TYPE fastpath_agent_state_refused gauge\nfastpath_agent_state_refused %d\n", errGauge)
	fmt.Fprintf(w, "# HELP fastpath_agent_policy_overflow_refusals_total Desired states refused because a policy map would overflow.\n# TYPE fastpath_agent_policy_overflow_refusals_total counter\nfastpath_agent_policy_overflow_refusals_total %d\n", st.RefusedOverflow)
	fmt.Fprintf(w, "# HELP fastpath_agent_endpoints_failed_closed_total New endpoints programmed to drop everything because their policy would overflow.\n# TYPE fastpath_agent_endpoints_failed_closed_total counter\nfastpath_agent_endpoints_failed_closed_total %d\n", st.PolicyOverflows)
	fmt.Fprintf(w, "# HELP fastpath_agent_policy_entries Policy map entries programmed.\n# TYPE fastpath_agent_policy_entries gauge\nfastpath_agent_policy_entries %d\n", st.PolicyEntries)
	if st.Proxy != nil {
		fmt.Fprintf(w, "# HELP fastpath_proxy_requests_total HTTP requests the node's L7 proxy decided.\n# TYPE fastpath_proxy_requests_total counter\n")
		fmt.Fprintf(w, "fastpath_proxy_requests_total{verdict=\"allowed\"} %d\nfastpath_proxy_requests_total{verdict=\"denied\"} %d\n", st.Proxy.Allowed, st.Proxy.Denied)
		fmt.Fprintf(w, "# HELP fastpath_proxy_upstream_errors_total Allowed requests the proxy could not forward.\n# TYPE fastpath_proxy_upstream_errors_total counter\nfastpath_proxy_upstream_errors_total %d\n", st.Proxy.UpstreamErrors)
	}
	if a.metrics == nil {
		return
	}
	m, err := a.metrics()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	keys := make([]lxc.MetricKey, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].Reason != keys[j].Reason {
			return keys[i].Reason < keys[j].Reason
		}
		return keys[i].Direction < keys[j].Direction
	})
	fmt.Fprintf(w, "# HELP fastpath_datapath_packets_total Packets by verdict reason and direction.\n# TYPE fastpath_datapath_packets_total counter\n")
	for _, k := range keys {
		fmt.Fprintf(w, "fastpath_datapath_packets_total{reason=%q,direction=%q} %d\n", k.Reason, k.Direction, m[k].Packets)
	}
	fmt.Fprintf(w, "# HELP fastpath_datapath_bytes_total Bytes by verdict reason and direction.\n# TYPE fastpath_datapath_bytes_total counter\n")
	for _, k := range keys {
		fmt.Fprintf(w, "fastpath_datapath_bytes_total{reason=%q,direction=%q} %d\n", k.Reason, k.Direction, m[k].Bytes)
	}
}

func kernelRelease() string {
	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		return ""
	}
	return unix.ByteSliceToString(uts.Release[:])
}
