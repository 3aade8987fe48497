package agent

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"sync"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/fastpath-bench/fastpath/datapath/agentapi"
	"github.com/fastpath-bench/fastpath/datapath/ipam"
	"github.com/fastpath-bench/fastpath/datapath/kube"
	"github.com/fastpath-bench/fastpath/datapath/model"
)

// DefaultIPAMState is where the kubernetes source's IPAM keeps its
// allocations (a host directory the DaemonSet mounts).
const DefaultIPAMState = "/var/run/fastpath/ipam.json"

// RouteProtocol marks the routes the agent adds (to other nodes' pod
// CIDRs), so that it finds and removes exactly its own.
const RouteProtocol netlink.RouteProtocol = 0xfa

// kubeNode is what the agent does on a Kubernetes node besides
// programming the datapath: it is the node's IPAM (for its CNI plugin)
// and routes other nodes' pod addresses to them.
type kubeNode struct {
	node string
	log  *slog.Logger
	src  *kube.Source
	// cancel stops the informers.
	cancel    context.CancelFunc
	stateFile string

	mu      sync.Mutex
	handler http.Handler
	why     string
	// routes are the routes programmed: destination → node address.
	routes map[netip.Prefix]netip.Addr
}

// restConfig is the kubeconfig file's, or the in-cluster one.
func restConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig != "" {
		cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("--kubeconfig %s: %w", kubeconfig, err)
		}
		return cfg, nil
	}
	cfg, err := rest.InClusterConfig()
	if err != nil {
		return nil, fmt.Errorf("--source kubernetes without --kubeconfig needs the in-cluster configuration: %w", err)
	}
	return cfg, nil
}

// startKube connects to the API server and waits for the informers'
// first sync.
func (a *Agent) startKube(ctx context.Context) (*kubeNode, error) {
	cfg, err := restConfig(a.cfg.Kubeconfig)
	if err != nil {
		return nil, err
	}
	cfg.UserAgent = "fastpath-agent/" + a.cfg.Node
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	src, err := kube.New(kube.Options{Client: client, Dynamic: dyn, Logger: a.log})
	if err != nil {
		return nil, err
	}
	kctx, cancel := context.WithCancel(ctx)
	if err := src.Start(kctx); err != nil {
		cancel()
		return nil, fmt.Errorf("kubernetes source (%s): %w", cfg.Host, err)
	}
	// Pods' packets are forwarded between their veths and the uplink.
	for _, kv := range [][2]string{{"net/ipv4/ip_forward", "1"}, {"net/ipv4/conf/all/rp_filter", "0"}} {
		if err := os.WriteFile("/proc/sys/"+kv[0], []byte(kv[1]), 0o644); err != nil {
			a.log.Warn("sysctl", "key", kv[0], "error", err)
		}
	}
	k := &kubeNode{node: a.cfg.Node, log: a.log, src: src, cancel: cancel, stateFile: a.cfg.IPAMState,
		why: "not started", routes: map[netip.Prefix]netip.Addr{}}
	k.ensureIPAM()
	return k, nil
}

// ensureIPAM starts the allocator once the node has its pod CIDR (the
// controller manager assigns it shortly after the node registers).
func (k *kubeNode) ensureIPAM() {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.handler != nil {
		return
	}
	n, ok := k.src.Node(k.node)
	if !ok {
		k.why = fmt.Sprintf("node %s not found in the API server", k.node)
		return
	}
	if n.Spec.PodCIDR == "" {
		k.why = fmt.Sprintf("node %s has no spec.podCIDR yet", k.node)
		return
	}
	cidr, err := netip.ParsePrefix(n.Spec.PodCIDR)
	if err != nil {
		k.why = fmt.Sprintf("node %s: spec.podCIDR %q: %v", k.node, n.Spec.PodCIDR, err)
		return
	}
	al, err := ipam.New(ipam.Options{CIDR: cidr, StateFile: k.stateFile})
	if err != nil {
		k.why = err.Error()
		k.log.Error("IPAM", "error", err)
		return
	}
	k.handler = ipam.Handler(al, k.requestedIP)
	k.why = ""
	k.log.Info("IPAM ready", "podCIDR", cidr, "state", k.stateFile)
}

// requestedIP is the address a pod's annotation asks for (zero: none).
func (k *kubeNode) requestedIP(ctx context.Context, namespace, name string) (netip.Addr, error) {
	pod, err := k.src.Pod(ctx, namespace, name)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("pod %s/%s: %w", namespace, name, err)
	}
	v, ok := pod.Annotations[agentapi.RequestedIPAnnotation]
	if !ok {
		return netip.Addr{}, nil
	}
	ip, err := netip.ParseAddr(v)
	if err != nil || !ip.Is4() {
		return netip.Addr{}, fmt.Errorf("pod %s/%s: annotation %s=%q: not an IPv4 address", namespace, name, agentapi.RequestedIPAnnotation, v)
	}
	return ip, nil
}

func (k *kubeNode) ipamHandler() http.Handler {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.handler
}

func (k *kubeNode) ipamReady() bool { return k.ipamHandler() != nil }

func (k *kubeNode) ipamWhy() string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.why
}

// apply follows a programmed state: IPAM once the pod CIDR is known, and
// the routes to other nodes' pods.
func (k *kubeNode) apply(r *model.Resolved) {
	k.ensureIPAM()
	want := wantedRoutes(r, k.node)
	if err := k.syncRoutes(want); err != nil {
		k.log.Error("routes to other nodes' pods", "error", err)
	}
}

// wantedRoutes are, from node, the other nodes' pod CIDRs via their
// addresses, and /32s of pods whose exact address lies outside their
// node's CIDR.
func wantedRoutes(r *model.Resolved, node string) map[netip.Prefix]netip.Addr {
	nodes := map[string]model.Node{}
	want := map[netip.Prefix]netip.Addr{}
	for _, n := range r.Nodes {
		nodes[n.Name] = n
		if n.Name != node && n.PodCIDR.IsValid() && n.IP.IsValid() {
			want[n.PodCIDR.Masked()] = n.IP
		}
	}
	for _, e := range r.Endpoints {
		n, ok := nodes[e.Node]
		if !ok || e.Node == node || !n.IP.IsValid() || !e.IP.IsValid() {
			continue
		}
		if !n.PodCIDR.IsValid() || !n.PodCIDR.Contains(e.IP) {
			want[netip.PrefixFrom(e.IP, 32)] = n.IP
		}
	}
	return want
}

// syncRoutes makes the agent's routes those of want.
func (k *kubeNode) syncRoutes(want map[netip.Prefix]netip.Addr) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	var errs []error
	for dst, gw := range want {
		if k.routes[dst] == gw {
			continue
		}
		if err := replaceRoute(dst, gw); err != nil {
			errs = append(errs, err)
			continue
		}
		k.routes[dst] = gw
	}
	// Remove every route of ours not wanted, including those a previous
	// run left.
	have, err := netlink.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Protocol: RouteProtocol, Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_PROTOCOL|netlink.RT_FILTER_TABLE)
	if err != nil {
		return fmt.Errorf("list routes: %w", err)
	}
	for _, rt := range have {
		if rt.Dst == nil {
			continue
		}
		dst, ok := prefixOf(rt.Dst)
		if _, wanted := want[dst]; ok && wanted {
			continue
		}
		if err := netlink.RouteDel(&rt); err != nil {
			errs = append(errs, fmt.Errorf("delete route %s: %w", rt.Dst, err))
		}
		delete(k.routes, dst)
	}
	if len(errs) > 0 {
		return fmt.Errorf("%d route(s) failed, first: %w", len(errs), errs[0])
	}
	return nil
}

// removeRoutes deletes every route of the agent's.
func (k *kubeNode) removeRoutes() error { return k.syncRoutes(nil) }

func replaceRoute(dst netip.Prefix, gw netip.Addr) error {
	rt := &netlink.Route{
		Dst:      &net.IPNet{IP: dst.Addr().AsSlice(), Mask: net.CIDRMask(dst.Bits(), 32)},
		Gw:       gw.AsSlice(),
		Protocol: RouteProtocol,
	}
	if err := netlink.RouteReplace(rt); err != nil {
		return fmt.Errorf("route %s via %s: %w", dst, gw, err)
	}
	return nil
}

func prefixOf(n *net.IPNet) (netip.Prefix, bool) {
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), ones), true
}

// stop removes the routes and stops the informers. The IPAM state stays:
// pods keep their addresses across agent restarts.
func (k *kubeNode) stop() {
	if err := k.removeRoutes(); err != nil {
		k.log.Error("remove routes", "error", err)
	}
	k.cancel()
}
