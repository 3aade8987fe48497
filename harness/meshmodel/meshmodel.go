// Package meshmodel evaluates the reference model across the clusters of
// a mesh (issue #10): each cluster's own objects, with the other clusters'
// pods as remote peers (global identities and identity labels, the
// cluster label added) as the clustermesh watcher hands them to the
// agents; a connection across clusters is allowed when the source's
// egress allows it in its cluster and the destination's ingress allows it
// in its own, for the source named explicitly (the identity the overlay
// carries). The benchmark runner (harness/run) uses it; the conformance
// runner may too.
package meshmodel

import (
	"fmt"
	"net/netip"

	corev1 "k8s.io/api/core/v1"

	"github.com/fastpath-bench/fastpath/datapath/model"
)

// Cluster is one cluster's desired state.
type Cluster struct {
	Name string
	ID   int
	// Objects are the cluster's own objects (its pods with addresses,
	// its nodes with their InternalIP, its policies). Build sets their
	// Cluster and Remote.
	Objects *model.Objects
}

// Mesh is the model of a whole mesh.
type Mesh struct {
	// Objects are each cluster's objects with the other clusters as
	// Remote; Resolved the same resolved.
	Objects  map[string]*model.Objects
	Resolved map[string]*model.Resolved
	// PodCluster names the cluster of each pod ("namespace/name");
	// Identity is each pod's global identity.
	PodCluster map[string]string
	Identity   map[string]model.Identity
}

// Build resolves every cluster's objects, then makes each cluster's pods
// remote peers of the others and resolves again (rules that select
// remote pods).
func Build(clusters []Cluster) (*Mesh, error) {
	m := &Mesh{
		Objects:    map[string]*model.Objects{},
		Resolved:   map[string]*model.Resolved{},
		PodCluster: map[string]string{},
		Identity:   map[string]model.Identity{},
	}
	nodeIPs := map[string]netip.Addr{}
	for _, c := range clusters {
		if c.ID < 1 || c.ID > 255 {
			return nil, fmt.Errorf("cluster %s: id %d is not 1..255", c.Name, c.ID)
		}
		c.Objects.Cluster = model.ClusterInfo{Name: c.Name, ID: uint8(c.ID)}
		c.Objects.Remote = nil
		r, err := model.Resolve(c.Objects)
		if err != nil {
			return nil, fmt.Errorf("cluster %s: %w", c.Name, err)
		}
		m.Objects[c.Name], m.Resolved[c.Name] = c.Objects, r
		for _, n := range c.Objects.Nodes {
			nodeIPs[n.Name] = InternalIP(n)
		}
	}
	remote := map[string]model.RemoteCluster{}
	for _, c := range clusters {
		rc := model.RemoteCluster{Name: c.Name, ID: uint8(c.ID)}
		for _, n := range c.Objects.Nodes {
			rc.Nodes = append(rc.Nodes, model.Node{Name: n.Name, IP: nodeIPs[n.Name]})
		}
		for _, ep := range m.Resolved[c.Name].Endpoints {
			labels := map[string]string{model.LabelCluster: c.Name}
			for k, v := range ep.Labels {
				labels[k] = v
			}
			rc.Endpoints = append(rc.Endpoints, model.RemoteEndpoint{
				Namespace: ep.Namespace, Name: ep.Name, IP: ep.IP, Node: ep.Node, NodeIP: nodeIPs[ep.Node],
				Identity: ep.Identity, Labels: labels,
			})
			m.Identity[ep.Namespace+"/"+ep.Name] = ep.Identity
			m.PodCluster[ep.Namespace+"/"+ep.Name] = c.Name
		}
		remote[c.Name] = rc
	}
	for _, c := range clusters {
		for _, o := range clusters {
			if o.Name != c.Name {
				c.Objects.Remote = append(c.Objects.Remote, remote[o.Name])
			}
		}
		r, err := model.Resolve(c.Objects)
		if err != nil {
			return nil, fmt.Errorf("cluster %s with its peers: %w", c.Name, err)
		}
		m.Resolved[c.Name] = r
	}
	return m, nil
}

// InternalIP is a node's InternalIP address (invalid when it has none).
func InternalIP(n corev1.Node) netip.Addr {
	for _, a := range n.Status.Addresses {
		if a.Type == corev1.NodeInternalIP {
			if ip, err := netip.ParseAddr(a.Address); err == nil {
				return ip
			}
		}
	}
	return netip.Addr{}
}

// Verdict is the model's verdict on a connection from the pod with
// address from in cluster src to the address to in cluster dst: within a
// cluster that cluster's evaluator; across clusters the source's egress
// in src and the destination's ingress in dst for the source named
// explicitly.
func (m *Mesh) Verdict(src, dst string, from, to netip.Addr, proto model.Protocol, port uint16) model.Verdict {
	if src == dst {
		return model.Evaluate(m.Objects[src], from, to, proto, port)
	}
	egress := model.Evaluate(m.Objects[src], from, to, proto, port)
	if !egress.Allowed {
		return model.Verdict{Reason: "egress in " + src + ": " + egress.Reason}
	}
	ingress := model.EvaluateFromRemote(m.Objects[dst], src, from, to, proto, port)
	if !ingress.Allowed {
		return model.Verdict{Reason: "ingress in " + dst + ": " + ingress.Reason}
	}
	return model.Verdict{Allowed: true, Proxied: egress.Proxied || ingress.Proxied, Reason: "egress in " + src + ": " + egress.Reason + "; ingress in " + dst + ": " + ingress.Reason}
}
