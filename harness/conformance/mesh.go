package conformance

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"

	"github.com/fastpath-bench/fastpath/datapath/agentapi"
	"github.com/fastpath-bench/fastpath/datapath/model"
	"github.com/fastpath-bench/fastpath/harness/cluster"
	"github.com/fastpath-bench/fastpath/harness/meshmodel"
	"github.com/fastpath-bench/fastpath/harness/probe"
)

// Cases across clusters (issue #10): a case directory with mesh.yaml
// runs on a cluster mesh. mesh.yaml lists the clusters (name, id 1..255,
// nodes, optionally serviceCIDR); every pod of cluster.yaml names its
// node, which puts it in that node's cluster; Namespaces exist in every
// cluster; a policy of policies.yaml goes to the cluster its
// fastpath.dev/cluster annotation names, or to every cluster without
// one. Probes between pods of different clusters cross the overlay; a
// probe with spoof sends UDP from its pod with the spoof pod's address as
// source, and is connected when the datagram reached the destination's
// server.

// MeshCluster is one cluster of mesh.yaml.
type MeshCluster struct {
	Name        string   `json:"name"`
	ID          int      `json:"id"`
	Nodes       []string `json:"nodes"`
	ServiceCIDR string   `json:"serviceCIDR,omitempty"`
}

type meshFile struct {
	Clusters []MeshCluster `json:"clusters"`
}

// decodeMesh reads mesh.yaml strictly and checks it against the case's
// pods.
func decodeMesh(name string, data []byte, pods []corev1.Pod) ([]MeshCluster, error) {
	j, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil, fmt.Errorf("case %s: mesh.yaml: malformed YAML: %w", name, err)
	}
	dec := json.NewDecoder(bytes.NewReader(j))
	dec.DisallowUnknownFields()
	var mf meshFile
	if err := dec.Decode(&mf); err != nil {
		return nil, fmt.Errorf("case %s: mesh.yaml: %s", name, strings.TrimPrefix(err.Error(), "json: "))
	}
	var errs []error
	add := func(format string, a ...any) {
		errs = append(errs, fmt.Errorf("case %s: mesh.yaml: "+format, append([]any{name}, a...)...))
	}
	if len(mf.Clusters) < 2 {
		add("clusters: want at least 2, have %d", len(mf.Clusters))
	}
	names, ids, nodeOf := map[string]bool{}, map[int]bool{}, map[string]string{}
	for i, c := range mf.Clusters {
		f := fmt.Sprintf("clusters[%d]", i)
		if msgs := validation.IsDNS1123Label(c.Name); len(msgs) > 0 {
			add("%s.name: %q: %s", f, c.Name, strings.Join(msgs, "; "))
		} else if names[c.Name] {
			add("%s.name: %q twice", f, c.Name)
		}
		names[c.Name] = true
		if c.ID < 1 || c.ID > 255 {
			add("%s.id: %d not in 1-255", f, c.ID)
		} else if ids[c.ID] {
			add("%s.id: duplicate cluster id %d", f, c.ID)
		}
		ids[c.ID] = true
		if len(c.Nodes) == 0 {
			add("%s.nodes: none", f)
		}
		for _, n := range c.Nodes {
			if o, ok := nodeOf[n]; ok {
				add("%s.nodes: node %q is also in cluster %q", f, n, o)
			}
			nodeOf[n] = c.Name
		}
		if c.ServiceCIDR != "" {
			if _, err := netip.ParsePrefix(c.ServiceCIDR); err != nil {
				add("%s.serviceCIDR: %v", f, err)
			}
		}
	}
	for _, p := range pods {
		if _, ok := nodeOf[p.Spec.NodeName]; !ok {
			errs = append(errs, fmt.Errorf("case %s: cluster.yaml: pod %s/%s: spec.nodeName %q is no node of mesh.yaml (every pod of a mesh case names its node)", name, p.Namespace, p.Name, p.Spec.NodeName))
		}
	}
	return mf.Clusters, errors.Join(errs...)
}

// clusterOfNode names the mesh cluster of node ("" outside a mesh).
func (c *Case) clusterOfNode(node string) string {
	for _, m := range c.Mesh {
		for _, n := range m.Nodes {
			if n == node {
				return m.Name
			}
		}
	}
	return ""
}

// meshCluster returns the mesh.yaml entry of cluster name.
func (c *Case) meshCluster(name string) MeshCluster {
	for _, m := range c.Mesh {
		if m.Name == name {
			return m
		}
	}
	return MeshCluster{}
}

// meshSpec fills in the topology's clusters.
func meshSpec(c *Case, spec *cluster.Spec) {
	spec.Nodes = nil
	for _, m := range c.Mesh {
		cs := cluster.ClusterSpec{Name: m.Name, ID: m.ID, Nodes: m.Nodes}
		if m.ServiceCIDR != "" {
			cs.ServiceCIDR = netip.MustParsePrefix(m.ServiceCIDR)
		}
		spec.Clusters = append(spec.Clusters, cs)
		spec.Nodes = append(spec.Nodes, m.Nodes...)
	}
}

// inCluster reports whether an object of cluster.yaml or policies.yaml
// goes to cluster name (its annotation names it, or it has none).
func inCluster(meta metav1.ObjectMeta, name string) bool {
	v, ok := meta.Annotations[cluster.ClusterAnnotation]
	return !ok || v == name
}

// newMeshModel builds every cluster's objects (its pods, nodes and
// policies) and the mesh model over them (harness/meshmodel: each
// cluster with the others' pods as remote peers, as their control planes
// publish them).
func newMeshModel(c *Case, t *topology) (*meshmodel.Mesh, error) {
	var names []string
	for _, m := range c.Mesh {
		names = append(names, m.Name)
	}
	policies, err := cluster.SplitByCluster(c.Policies, names)
	if err != nil {
		return nil, fmt.Errorf("policies.yaml: %w", err)
	}
	var clusters []meshmodel.Cluster
	for _, m := range c.Mesh {
		objs := &model.Objects{Namespaces: c.Cluster.Namespaces}
		for _, p := range c.Cluster.Pods {
			if c.clusterOfNode(p.Spec.NodeName) != m.Name {
				continue
			}
			p := *p.DeepCopy()
			p.Status.PodIP = t.addrs[p.Namespace+"/"+p.Name].String()
			objs.Pods = append(objs.Pods, p)
		}
		for _, n := range m.Nodes {
			objs.Nodes = append(objs.Nodes, corev1.Node{
				ObjectMeta: metav1.ObjectMeta{Name: n},
				Status:     corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: t.nodeIP(n).String()}}},
			})
		}
		if err := objs.Decode("policies.yaml ("+m.Name+")", policies[m.Name]); err != nil {
			return nil, err
		}
		if err := objs.Validate(); err != nil {
			return nil, fmt.Errorf("cluster %s: %w", m.Name, err)
		}
		clusters = append(clusters, meshmodel.Cluster{Name: m.Name, ID: m.ID, Objects: objs})
	}
	return meshmodel.Build(clusters)
}

// verdict is the model's answer for a probe between pods of the mesh:
// within a cluster, that cluster's evaluator; across clusters, the
// source's egress in its cluster and the destination's ingress in its
// own, for the source named explicitly (the identity the overlay
// carries). A pod's own forgery never leaves its node; one forged in the
// overlay is judged by the identity it carries, with the forged address.
func meshVerdict(mm *meshmodel.Mesh, p Probe, t *topology, port uint16) bool {
	src, dst := mm.PodCluster[p.From], mm.PodCluster[p.To]
	from, to := t.addrs[p.From], t.addrs[p.To]
	if src == dst && p.Spoof == "" {
		return expected(mm.Objects[src], p, from, to, port)
	}
	proto, _ := model.ParseProtocol(p.transport())
	if p.proto() == "HTTP" {
		req := model.Request{Method: p.method(), Path: p.path()}
		egress := model.EvaluateRequest(mm.Objects[src], from, to, port, req)
		ingress := model.EvaluateRequestFromRemote(mm.Objects[dst], src, from, to, port, req)
		return egress.Allowed && ingress.Allowed
	}
	switch {
	case p.Spoof != "" && p.spoofLayer() == SpoofPod:
		// The pod's node accepts from it only its own address.
		return false
	case p.Spoof != "":
		// Forged by from's node: no egress policy saw it; the receiver
		// judges the identity in the header.
		v := mm.Resolved[dst].AllowedFromIdentity(mm.Identity[p.From], t.addrs[p.Spoof], to, proto, port)
		return v.Allowed && !v.Proxied
	}
	v := mm.Verdict(src, dst, from, to, proto, port)
	return v.Allowed && !v.Proxied
}

// meshModelVerdicts is modelVerdicts for a mesh case.
func meshModelVerdicts(c *Case, t *topology) ([]ProbeResult, error) {
	mm, err := newMeshModel(c, t)
	if err != nil {
		return nil, err
	}
	out := make([]ProbeResult, len(c.Probes))
	for i, p := range c.Probes {
		out[i] = ProbeResult{Probe: p}
		port, err := t.resolvePort(p, nil)
		if err != nil {
			out[i].Error = err.Error()
			continue
		}
		out[i].ResolvedPort = port
		out[i].Model = meshVerdict(mm, p, t, uint16(port))
	}
	return out, nil
}

// checkMeshProbe checks what a probe of a mesh case may do.
func checkMeshProbe(c *Case, p Probe, f string) []error {
	var errs []error
	if p.Service != "" || p.Node != "" || p.From == External {
		errs = append(errs, fmt.Errorf("%s: probes of a mesh case go from pod to pod (service, node and external: not yet across clusters)", f))
	}
	return errs
}

// checkSpoof checks a probe's spoof fields.
func checkSpoof(c *Case, p Probe, f string, pods map[string]bool) []error {
	if p.Spoof == "" {
		if p.SpoofLayer != "" {
			return []error{fmt.Errorf("%s.spoofLayer: without spoof", f)}
		}
		return nil
	}
	var errs []error
	if !pods[p.Spoof] {
		errs = append(errs, fmt.Errorf("%s.spoof: no pod %q in cluster.yaml", f, p.Spoof))
	}
	if p.proto() != "UDP" || p.To == "" {
		errs = append(errs, fmt.Errorf("%s.spoof: a spoofed probe sends UDP to a pod (protocol UDP, to)", f))
	}
	switch p.spoofLayer() {
	case SpoofPod, SpoofOverlay:
	default:
		errs = append(errs, fmt.Errorf("%s.spoofLayer: %q (want %s or %s)", f, p.SpoofLayer, SpoofPod, SpoofOverlay))
	}
	switch {
	case len(c.Mesh) == 0:
		errs = append(errs, fmt.Errorf("%s.spoof: spoofed probes need a mesh case (mesh.yaml): they check that the identity comes from the overlay", f))
	case p.spoofLayer() == SpoofOverlay && c.clusterOfNode(nodeOfPod(c, p.From)) == c.clusterOfNode(nodeOfPod(c, p.To)):
		errs = append(errs, fmt.Errorf("%s.spoofLayer: an overlay forgery goes from one cluster to another (from and to are in one cluster)", f))
	}
	return errs
}

func nodeOfPod(c *Case, key string) string {
	for _, p := range c.Cluster.Pods {
		if p.Namespace+"/"+p.Name == key {
			return p.Spec.NodeName
		}
	}
	return ""
}

// agentSocket is a cluster whose agents' whole API is reached another way
// than AgentClient's (kind: the unix socket in the node container).
type agentSocket interface {
	AgentSocketClient(node string) *agentapi.Client
}

// overlayForger is a cluster that can put forged overlay packets on the
// wire (netns, kind).
type overlayForger interface {
	ForgeOverlay(from, to string, vni uint32, src, dst netip.Addr, port int, payload []byte) error
}

// forgeOverlay makes an overlay-layer spoofed probe: from p.From's node,
// an overlay packet with p.From's identity (as its agent has it) and
// p.Spoof's address to p.To; connected when p.To's server received it.
func forgeOverlay(ctx context.Context, c cluster.Cluster, cs *Case, t *topology, p Probe, port int, timeout time.Duration) probe.Result {
	f, ok := c.(overlayForger)
	if !ok {
		return probe.Result{Err: errors.New("this provider cannot forge overlay packets")}
	}
	fromNode, toNode := nodeOfPod(cs, p.From), nodeOfPod(cs, p.To)
	ns, name, _ := strings.Cut(p.From, "/")
	var ep agentapi.EndpointPolicy
	cl := c.AgentClient(fromNode)
	if s, ok := c.(agentSocket); ok {
		// kind: the read-only port has no /v1/policy.
		cl = s.AgentSocketClient(fromNode)
	}
	b, err := cl.Get(ctx, "/v1/policy/"+ns+"/"+name)
	if err == nil {
		err = json.Unmarshal(b, &ep)
	}
	if err != nil {
		return probe.Result{Err: fmt.Errorf("identity of %s from its agent: %w", p.From, err)}
	}
	e := probe.ExpectDatagram()
	defer e.Close()
	return e.Resend(ctx, timeout, func() error {
		return f.ForgeOverlay(fromNode, toNode, ep.Identity, t.addrs[p.Spoof], t.addrs[p.To], port, e.Payload)
	})
}
