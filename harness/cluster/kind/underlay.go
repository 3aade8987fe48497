package kind

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The flat underlay of a kind mesh. On netns the mesh's fabric routes
// every node's pod CIDR between all nodes of all clusters, so datapaths
// without a mesh (none, iptables, sidecar) reach another cluster's pods by
// address. kind's clusters share the Docker network but nothing routes
// one cluster's pod CIDRs in another: the agent, as the CNI, routes only
// the nodes of its own cluster (datapath/agent wantedRoutes), and a
// node's default route leads to the Docker bridge's gateway (the host),
// which knows no pod CIDR. The mesh build therefore gives every node a
// route to each node of the other clusters' pod CIDR via that node's
// address, as a routed underlay would. The routes carry their own
// protocol (UnderlayRouteProtocol): the agent deletes only routes of its
// own protocol (0xfa). With ebpf the overlay (VXLAN) carries the
// cross-cluster traffic whatever the routes say.

// UnderlayRouteProtocol marks the routes the kind mesh adds to its nodes
// (the agent's are 0xfa).
const UnderlayRouteProtocol = 0xfb

// underlayNode is a node of a mesh cluster as the underlay routes it.
type underlayNode struct {
	Cluster string
	// Name is the kind node (its container).
	Name    string
	IP      netip.Addr
	PodCIDR netip.Prefix
}

// underlayRoute is a route on node Node: Dst via Via.
type underlayRoute struct {
	Node string
	Dst  netip.Prefix
	Via  netip.Addr
}

// planUnderlay gives every node a route to each node of the other
// clusters' pod CIDR via that node's address. Pod CIDRs must not overlap
// across clusters (a flat underlay cannot route the same address to two
// nodes); nodes without an address or pod CIDR are refused.
func planUnderlay(nodes []underlayNode) ([]underlayRoute, error) {
	var errs []error
	for i, n := range nodes {
		if !n.IP.Is4() || !n.PodCIDR.IsValid() {
			errs = append(errs, fmt.Errorf("node %s (cluster %s): address %v, pod CIDR %v: want both", n.Name, n.Cluster, n.IP, n.PodCIDR))
			continue
		}
		for _, o := range nodes[:i] {
			if o.Cluster != n.Cluster && o.PodCIDR.IsValid() && o.PodCIDR.Overlaps(n.PodCIDR) {
				errs = append(errs, fmt.Errorf("pod CIDRs of node %s (cluster %s, %s) and node %s (cluster %s, %s) overlap: a flat underlay cannot route both",
					o.Name, o.Cluster, o.PodCIDR, n.Name, n.Cluster, n.PodCIDR))
			}
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	var out []underlayRoute
	for _, n := range nodes {
		for _, o := range nodes {
			if o.Cluster != n.Cluster {
				out = append(out, underlayRoute{Node: n.Name, Dst: o.PodCIDR.Masked(), Via: o.IP})
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Node != out[j].Node {
			return out[i].Node < out[j].Node
		}
		return out[i].Dst.String() < out[j].Dst.String()
	})
	return out, nil
}

// underlayBatch is the `ip -batch` input that installs routes (those of
// one node).
func underlayBatch(routes []underlayRoute) string {
	var b strings.Builder
	for _, r := range routes {
		fmt.Fprintf(&b, "route replace %s via %s proto %d\n", r.Dst, r.Via, UnderlayRouteProtocol)
	}
	return b.String()
}

// underlayNodes lists every node of every cluster of the mesh with its
// address and pod CIDR, waiting until the controller manager has given
// each one a pod CIDR.
func (t *Topology) underlayNodes(ctx context.Context) ([]underlayNode, error) {
	var out []underlayNode
	for _, m := range t.mesh {
		var nodes []underlayNode
		err := poll(ctx, 2*time.Minute, "pod CIDRs of cluster "+m.spec.Name+"'s nodes", func() (bool, error) {
			list, err := m.topo.client.Kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
			if err != nil {
				return false, nil
			}
			nodes = nodes[:0]
			for _, n := range list.Items {
				cidr, _ := netip.ParsePrefix(n.Spec.PodCIDR)
				nodes = append(nodes, underlayNode{Cluster: m.spec.Name, Name: n.Name, IP: internalIP(&n), PodCIDR: cidr})
				if !cidr.IsValid() || !internalIP(&n).IsValid() {
					return false, nil
				}
			}
			return len(nodes) > 0, nil
		})
		if err != nil {
			return nil, err
		}
		out = append(out, nodes...)
	}
	return out, nil
}

// addUnderlayRoutes installs the flat underlay's routes on every node of
// the mesh (one `ip -batch` per node, at once).
func (t *Topology) addUnderlayRoutes(ctx context.Context) error {
	nodes, err := t.underlayNodes(ctx)
	if err != nil {
		return err
	}
	routes, err := planUnderlay(nodes)
	if err != nil {
		return err
	}
	byNode := map[string][]underlayRoute{}
	for _, r := range routes {
		byNode[r.Node] = append(byNode[r.Node], r)
	}
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	for node, rs := range byNode {
		wg.Go(func() {
			if err := nodeIPBatch(ctx, node, underlayBatch(rs)); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("underlay routes: %w", err)
	}
	t.mu.Lock()
	t.underlayOn = nil
	for node := range byNode {
		t.underlayOn = append(t.underlayOn, node)
	}
	t.mu.Unlock()
	t.opts.Logf("flat underlay: %d routes between the clusters' nodes (pod CIDRs via node addresses, protocol %#x)", len(routes), UnderlayRouteProtocol)
	return nil
}

// removeUnderlayRoutes deletes the underlay's routes from the nodes that
// got them (a node already gone is no error).
func (t *Topology) removeUnderlayRoutes(ctx context.Context) error {
	t.mu.Lock()
	nodes := t.underlayOn
	t.underlayOn = nil
	t.mu.Unlock()
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	for _, node := range nodes {
		wg.Go(func() {
			err := nodeIPBatch(ctx, node, fmt.Sprintf("route flush proto %d\n", UnderlayRouteProtocol))
			if err != nil && !strings.Contains(err.Error(), "No such container") {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// nodeIPBatch runs `ip -batch -` with input in kind node's container.
func nodeIPBatch(ctx context.Context, node, input string) error {
	cmd := exec.CommandContext(ctx, "docker", "exec", "-i", node, "ip", "-batch", "-")
	cmd.Stdin = strings.NewReader(input)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("node %s: ip -batch: %w: %s", node, err, strings.TrimSpace(out.String()))
	}
	return nil
}
