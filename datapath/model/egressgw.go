package model

import (
	"fmt"
	"net/netip"
	"sort"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// EgressGatewayPolicy (fastpath.dev/v1alpha1, cluster-scoped; issue #10)
// sends what selected pods send to destination CIDRs outside the clusters
// through a gateway node, in this cluster or another one of the mesh,
// encapsulated in the overlay, and SNATed there to the gateway's egress
// IP: Cilium's CiliumEgressGatewayPolicy, with the gateway named by
// cluster and node instead of by a node selector.
//
//	apiVersion: fastpath.dev/v1alpha1
//	kind: EgressGatewayPolicy
//	metadata: {name: to-partners}
//	spec:
//	  selectors:
//	  - podSelector: {matchLabels: {app: client}}
//	    namespaceSelector: {matchLabels: {team: a}}   # optional: every namespace
//	  destinationCIDRs: [198.18.0.0/24]
//	  excludedCIDRs: [198.18.0.1/32]                 # optional
//	  gateway: {cluster: west, node: n2, egressIP: 198.18.0.2}  # cluster, egressIP optional
//
// Semantics (Resolved.EgressGatewayOf, and the datapath): the traffic of
// a selected pod to an address that no pod or node of the mesh has leaves
// through the gateway of the policy whose destination or excluded CIDR
// contains it most narrowly (among all policies selecting the pod); an
// excluded CIDR, which wins a tie, means no gateway; a tie between
// destination CIDRs of two policies goes to the policy first by name.
// Selectors match pods as Cilium ClusterMesh's do: every cluster's,
// unless the podSelector names io.cilium.k8s.policy.cluster. A policy
// takes effect in the clusters whose state holds it: there its local
// pods' traffic goes to the gateway, and the gateway's cluster SNATs the
// traffic of every pod it selects, local or remote (a gateway whose
// cluster does not hold the policy drops what it is sent). When the
// gateway node is not known (no such node, cluster not in the mesh or
// unreachable), the selected traffic is dropped, never sent out directly.
// egressIP defaults to the gateway node's address; another address must
// be one of the gateway node's own.
type EgressGatewayPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              EgressGatewayPolicySpec `json:"spec"`
}

// EgressGatewayPolicySpec is an EgressGatewayPolicy's content.
type EgressGatewayPolicySpec struct {
	// Selectors pick the source pods (any selector matching selects).
	Selectors []EgressSelector `json:"selectors"`
	// DestinationCIDRs are IPv4 CIDRs ("192.0.2.0/24").
	DestinationCIDRs []string `json:"destinationCIDRs"`
	// ExcludedCIDRs are IPv4 CIDRs inside destination CIDRs that do not
	// go through the gateway.
	ExcludedCIDRs []string `json:"excludedCIDRs,omitempty"`
	// Gateway is the node the traffic leaves through.
	Gateway EgressGatewaySpec `json:"gateway"`
}

// EgressSelector selects pods by their labels and, optionally, their
// namespace's labels.
type EgressSelector struct {
	PodSelector       *metav1.LabelSelector `json:"podSelector"`
	NamespaceSelector *metav1.LabelSelector `json:"namespaceSelector,omitempty"`
}

// EgressGatewaySpec names the gateway node.
type EgressGatewaySpec struct {
	// Cluster is the gateway's cluster; "": the local one.
	Cluster string `json:"cluster,omitempty"`
	// Node is the gateway node's name.
	Node string `json:"node"`
	// EgressIP is the source the gateway gives the traffic; "": the
	// node's address.
	EgressIP string `json:"egressIP,omitempty"`
}

func validateEgressGateway(p *EgressGatewayPolicy) field.ErrorList {
	var all field.ErrorList
	spec := field.NewPath("spec")
	sp := spec.Child("selectors")
	if len(p.Spec.Selectors) == 0 {
		all = append(all, field.Required(sp, "at least one selector"))
	}
	for i, s := range p.Spec.Selectors {
		if s.PodSelector == nil {
			all = append(all, field.Required(sp.Index(i).Child("podSelector"), "({} selects every pod)"))
		}
		all = append(all, validateSelector(s.PodSelector, sp.Index(i).Child("podSelector"))...)
		all = append(all, validateSelector(s.NamespaceSelector, sp.Index(i).Child("namespaceSelector"))...)
	}
	dp := spec.Child("destinationCIDRs")
	if len(p.Spec.DestinationCIDRs) == 0 {
		all = append(all, field.Required(dp, "at least one CIDR"))
	}
	dests, errs := egressCIDRs(p.Spec.DestinationCIDRs, dp)
	all = append(all, errs...)
	ep := spec.Child("excludedCIDRs")
	excluded, errs := egressCIDRs(p.Spec.ExcludedCIDRs, ep)
	all = append(all, errs...)
	for i, x := range excluded {
		if !x.IsValid() {
			continue
		}
		inside := false
		for _, d := range dests {
			if d.IsValid() && prefixWithin(x, d) {
				inside = true
			}
		}
		if !inside && len(dests) > 0 {
			all = append(all, field.Invalid(ep.Index(i), p.Spec.ExcludedCIDRs[i], "not inside any of destinationCIDRs: it would exclude nothing"))
		}
	}
	gp := spec.Child("gateway")
	if p.Spec.Gateway.Node == "" {
		all = append(all, field.Required(gp.Child("node"), "the gateway node's name"))
	}
	for _, msg := range validation.IsDNS1123Subdomain(p.Spec.Gateway.Node) {
		if p.Spec.Gateway.Node != "" {
			all = append(all, field.Invalid(gp.Child("node"), p.Spec.Gateway.Node, msg))
		}
	}
	if c := p.Spec.Gateway.Cluster; c != "" {
		all = append(all, validateClusterName(c, gp.Child("cluster"))...)
	}
	if s := p.Spec.Gateway.EgressIP; s != "" {
		if a, err := netip.ParseAddr(s); err != nil || !a.Is4() || a.IsUnspecified() || a.IsMulticast() || a.IsLoopback() {
			all = append(all, field.Invalid(gp.Child("egressIP"), s, "not a unicast IPv4 address"))
		}
	}
	return all
}

// egressCIDRs parses IPv4 CIDRs in canonical form, without duplicates;
// invalid ones are zero Prefixes in the result, at their index.
func egressCIDRs(in []string, fp *field.Path) ([]netip.Prefix, field.ErrorList) {
	var all field.ErrorList
	out := make([]netip.Prefix, len(in))
	seen := map[netip.Prefix]int{}
	for i, s := range in {
		p, err := netip.ParsePrefix(s)
		switch {
		case err != nil || !p.Addr().Is4():
			all = append(all, field.Invalid(fp.Index(i), s, "not an IPv4 CIDR (address/length)"))
			continue
		case p != p.Masked():
			all = append(all, field.Invalid(fp.Index(i), s, fmt.Sprintf("host bits set (the CIDR is %s)", p.Masked())))
			continue
		}
		if j, dup := seen[p]; dup {
			all = append(all, field.Duplicate(fp.Index(i), fmt.Sprintf("%s (also [%d])", s, j)))
			continue
		}
		seen[p] = i
		out[i] = p
	}
	return out, all
}

// EgressGateway is an EgressGatewayPolicy resolved.
type EgressGateway struct {
	Name string
	// Sources are the identities of the local pods it selects, Endpoints
	// those pods ("namespace/name"); RemoteSources the identities of the
	// other clusters' pods it selects (their traffic reaches a gateway of
	// this cluster through the overlay). All sorted.
	Sources       []Identity
	Endpoints     []string
	RemoteSources []Identity
	// Destinations and Excluded are its CIDRs, sorted.
	Destinations []netip.Prefix
	Excluded     []netip.Prefix
	// Cluster is the gateway's cluster (the local cluster's name, "" with
	// no mesh, when the policy names none); Local says it is the local
	// cluster.
	Cluster string
	Local   bool
	// Node is the gateway node; NodeIP its address, not valid when the
	// node is not known (then the selected traffic is dropped).
	Node   string
	NodeIP netip.Addr
	// EgressIP is the source the gateway gives the traffic: the policy's,
	// else NodeIP.
	EgressIP netip.Addr
}

// Known reports whether the gateway node is known: otherwise the traffic
// the policy selects is dropped.
func (g *EgressGateway) Known() bool { return g.NodeIP.IsValid() && g.EgressIP.IsValid() }

func sortPrefixes(ps []netip.Prefix) {
	sort.Slice(ps, func(i, j int) bool {
		if c := ps[i].Addr().Compare(ps[j].Addr()); c != 0 {
			return c < 0
		}
		return ps[i].Bits() < ps[j].Bits()
	})
}

// resolveEgressGateways resolves objs' EgressGatewayPolicies, by name.
func (r *Resolved) resolveEgressGateways(objs *Objects, nsLabels map[string]map[string]string) {
	for i := range objs.EgressGatewayPolicies {
		p := &objs.EgressGatewayPolicies[i]
		g := &EgressGateway{Name: p.Name, Node: p.Spec.Gateway.Node, Cluster: p.Spec.Gateway.Cluster}
		for _, s := range p.Spec.DestinationCIDRs {
			if pr, err := netip.ParsePrefix(s); err == nil {
				g.Destinations = append(g.Destinations, pr)
			}
		}
		for _, s := range p.Spec.ExcludedCIDRs {
			if pr, err := netip.ParsePrefix(s); err == nil {
				g.Excluded = append(g.Excluded, pr)
			}
		}
		sortPrefixes(g.Destinations)
		sortPrefixes(g.Excluded)

		type sel struct{ pod, ns labels.Selector }
		var sels []sel
		for _, s := range p.Spec.Selectors {
			x := sel{pod: r.selector(s.PodSelector), ns: labels.Everything()}
			if s.NamespaceSelector != nil {
				x.ns = r.selector(s.NamespaceSelector)
			}
			sels = append(sels, x)
		}
		matches := func(own, nsl labels.Set) bool {
			for _, s := range sels {
				if s.pod.Matches(own) && s.ns.Matches(nsl) {
					return true
				}
			}
			return false
		}
		ids := map[Identity]bool{}
		for _, ep := range r.Endpoints {
			if matches(ep.ownLabels(), labels.Set(nsLabels[ep.Namespace])) {
				g.Endpoints = append(g.Endpoints, ep.Key())
				if !ids[ep.Identity] {
					ids[ep.Identity] = true
					g.Sources = append(g.Sources, ep.Identity)
				}
			}
		}
		for _, ri := range r.remoteIDs {
			if matches(ri.own, ri.nsl) {
				g.RemoteSources = append(g.RemoteSources, ri.id)
			}
		}
		sort.Strings(g.Endpoints)
		sortIdentities(g.Sources)
		sortIdentities(g.RemoteSources)

		// The gateway node: the local cluster's, or a remote one's.
		if g.Cluster == "" || g.Cluster == objs.Cluster.Name {
			g.Cluster, g.Local = objs.Cluster.Name, true
			for _, n := range r.Nodes {
				if n.Name == g.Node && n.IP.Is4() {
					g.NodeIP = n.IP
				}
			}
		} else {
			for _, n := range r.RemoteNodes {
				if n.Cluster == g.Cluster && n.Name == g.Node && n.IP.Is4() {
					g.NodeIP = n.IP
				}
			}
		}
		if g.NodeIP.IsValid() {
			g.EgressIP = g.NodeIP
			if p.Spec.Gateway.EgressIP != "" {
				g.EgressIP, _ = netip.ParseAddr(p.Spec.Gateway.EgressIP)
			}
		}
		r.EgressGateways = append(r.EgressGateways, g)
	}
	sort.Slice(r.EgressGateways, func(i, j int) bool { return r.EgressGateways[i].Name < r.EgressGateways[j].Name })
}

// InMesh reports whether a pod or node of the mesh (local or remote) has
// address ip: such traffic never goes through an egress gateway.
func (r *Resolved) InMesh(ip netip.Addr) bool {
	if _, ok := r.byIP[ip]; ok {
		return true
	}
	for _, n := range r.Nodes {
		if n.IP == ip {
			return true
		}
	}
	_, remote := r.remoteByIP[ip]
	return remote || r.remoteNodeIPs[ip]
}

// EgressGatewayOf returns the egress gateway the traffic of a pod with
// identity src (local or remote) to dst leaves through, nil when it goes
// out as usual: dst in the mesh, no policy selecting src whose CIDRs
// contain dst, or the narrowest such CIDR an excluded one (see
// EgressGatewayPolicy). A result that is not Known means the traffic is
// dropped.
func (r *Resolved) EgressGatewayOf(src Identity, dst netip.Addr) *EgressGateway {
	if !dst.Is4() || r.InMesh(dst) {
		return nil
	}
	var best *EgressGateway
	bits, excluded := -1, false
	for _, g := range r.EgressGateways {
		if !containsIdentity(g.Sources, src) && !containsIdentity(g.RemoteSources, src) {
			continue
		}
		for _, p := range g.Excluded {
			if p.Contains(dst) && (p.Bits() > bits || p.Bits() == bits && !excluded) {
				best, bits, excluded = nil, p.Bits(), true
			}
		}
		for _, p := range g.Destinations {
			// Ties: an exclusion wins, then the policy first by name.
			if p.Contains(dst) && p.Bits() > bits {
				best, bits, excluded = g, p.Bits(), false
			}
		}
	}
	return best
}
