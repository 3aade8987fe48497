package cluster

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/fastpath-bench/fastpath/datapath/clustermesh"
)

// DefaultServiceCIDR is the service CIDR of mesh cluster id when its spec
// names none: 10.(95+id).0.0/16 (id 1: Kubernetes' default 10.96.0.0/16).
func DefaultServiceCIDR(id int) netip.Prefix {
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(95 + id), 0, 0}), 16)
}

// CheckClusterNodes checks how Spec.Clusters places the nodes: every
// cluster has nodes, and every node of Spec.Nodes is in exactly one
// cluster.
func (s Spec) CheckClusterNodes() []error {
	var errs []error
	of := map[string]string{}
	for i, cs := range s.Clusters {
		if len(cs.Nodes) == 0 {
			errs = append(errs, fmt.Errorf("clusters[%d] (%s).nodes: none", i, cs.Name))
		}
		for _, n := range cs.Nodes {
			if prev, ok := of[n]; ok {
				errs = append(errs, fmt.Errorf("clusters[%d] (%s).nodes: node %q is also in cluster %q", i, cs.Name, n, prev))
			}
			of[n] = cs.Name
		}
	}
	for _, n := range s.Nodes {
		if _, ok := of[n]; !ok {
			errs = append(errs, fmt.Errorf("nodes: node %q is in no cluster of clusters", n))
		}
	}
	return errs
}

// MeshMember is one cluster of a mesh as the --clustermesh
// configurations name it.
type MeshMember struct {
	Name string
	ID   int
	// PodCIDRs are its pods' ranges (/32s for requested addresses
	// outside them), ServiceCIDR its ClusterIPs', Endpoint its etcd's
	// client URL.
	PodCIDRs    []netip.Prefix
	ServiceCIDR netip.Prefix
	Endpoint    string
}

// MeshConfig is the --clustermesh configuration of members[self], the
// others its peers, with lease TTL ttl (zero: the default). Pod ranges
// that overlap between clusters (requested addresses the cases repeat)
// are allowed: the overlay tells such pods apart by identity.
func MeshConfig(members []MeshMember, self int, ttl time.Duration) *clustermesh.Config {
	conv := func(m MeshMember) clustermesh.Cluster {
		c := clustermesh.Cluster{Name: m.Name, ID: m.ID, ServiceCIDR: m.ServiceCIDR.String(), Endpoints: []string{m.Endpoint}}
		for _, p := range m.PodCIDRs {
			c.PodCIDRs = append(c.PodCIDRs, p.String())
		}
		return c
	}
	cfg := &clustermesh.Config{Cluster: conv(members[self])}
	if ttl > 0 {
		cfg.LeaseTTL = ttl.String()
	}
	for i, m := range members {
		if i == self {
			continue
		}
		cfg.Peers = append(cfg.Peers, conv(m))
		for _, a := range members[self].PodCIDRs {
			for _, b := range m.PodCIDRs {
				if a.Overlaps(b) {
					cfg.AllowOverlappingPodCIDRs = true
				}
			}
		}
	}
	cfg.Default()
	return cfg
}

// MeshTokenPrefix starts the state token WriteState returns on a mesh:
// each cluster's own token by name ("mesh|east=...|west=...").
const MeshTokenPrefix = "mesh|"

// MeshToken joins the clusters' tokens (names[i]'s is tokens[i]).
func MeshToken(names, tokens []string) string {
	parts := make([]string, len(names))
	for i := range names {
		parts[i] = names[i] + "=" + tokens[i]
	}
	return MeshTokenPrefix + strings.Join(parts, "|")
}

// SplitMeshToken gives each cluster's token of a mesh token; a token of
// no mesh stands for every cluster of names.
func SplitMeshToken(token string, names []string) map[string]string {
	out := map[string]string{}
	rest, ok := strings.CutPrefix(token, MeshTokenPrefix)
	if !ok {
		for _, n := range names {
			out[n] = token
		}
		return out
	}
	for _, kv := range strings.Split(rest, "|") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			out[k] = v
		}
	}
	return out
}
