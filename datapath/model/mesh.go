package model

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// LabelCluster carries the name of a pod's cluster in its identity labels
// (and its own labels) when the cluster mesh is on: Cilium's label, so
// that a selector can name the cluster of its peers.
const LabelCluster = "io.cilium.k8s.policy.cluster"

// Cluster id layout of a pod identity in the mesh (the same as
// datapath/clustermesh's): global = cluster id << ClusterIDShift | local,
// the local part in FirstPodIdentity..0xffff, so that global identities fit
// the 24 bits of a VXLAN VNI.
const (
	ClusterIDShift = 16
	// localIdentityMask keeps the local part of a global identity.
	localIdentityMask Identity = 1<<ClusterIDShift - 1
)

// ClusterInfo names the local cluster of a cluster mesh (Objects.Cluster).
// The zero value means no mesh: identities, labels and verdicts are then
// exactly those of a single cluster.
type ClusterInfo struct {
	// Name is the cluster's name: the value of LabelCluster on its pods,
	// and (as <name>.local) the trust domain other clusters know its
	// pods' principals in. A DNS label.
	Name string
	// ID is the cluster's id, 1..255: the upper bits of its pods'
	// identities.
	ID uint8
}

// Enabled reports whether the mesh is on.
func (c ClusterInfo) Enabled() bool { return c.Name != "" }

// RemoteCluster is another cluster of the mesh, as its control plane
// publishes it (datapath/clustermesh's watcher; the agent converts).
type RemoteCluster struct {
	Name string
	ID   uint8
	// Endpoints are the cluster's pods with an address.
	Endpoints []RemoteEndpoint
	// Nodes are the cluster's nodes (PodCIDR may be left empty): their
	// addresses are remote-node to the local cluster, as Cilium's
	// remote-node entity ("any node in any of the connected clusters
	// other than the local host") says.
	Nodes []Node
	// Services are the cluster's global Services with its backends: the
	// local global Service of the same namespace and name adds them to
	// its own (globalsvc.go).
	Services []RemoteService
}

// RemoteEndpoint is a pod of a remote cluster: a policy peer, never an
// endpoint the local datapath enforces policy on.
type RemoteEndpoint struct {
	// Cluster is the name of the endpoint's cluster. In Objects.Remote it
	// may be left empty (it is the enclosing RemoteCluster's); Resolve
	// fills it in.
	Cluster   string
	Namespace string
	Name      string
	IP        netip.Addr
	// Node is the pod's node, NodeIP its address: the tunnel endpoint
	// the local cluster encapsulates the pod's traffic to.
	Node   string
	NodeIP netip.Addr
	// Identity is the pod's global identity, as its cluster published it
	// (cluster id << 16 | local identity): what the overlay carries.
	Identity Identity
	// Labels is the identity's full label set as the peer published it:
	// the pod's own labels, LabelNamespace, LabelServiceAccount, the
	// namespace's labels (NamespaceLabelPrefix) and LabelCluster.
	Labels map[string]string
	// Shadowed is set by Resolve when the endpoint's address is also a
	// local pod's or node's, or a remote endpoint's of a cluster with a
	// lower id: address lookups (IdentityOf, the ipcache) give the
	// address to the other one, and only the identity the overlay
	// carries tells this pod's packets apart.
	Shadowed bool
}

// Key is "cluster/namespace/name".
func (e *RemoteEndpoint) Key() string { return e.Cluster + "/" + e.Namespace + "/" + e.Name }

// RemoteNode is a node of a remote cluster.
type RemoteNode struct {
	Cluster string
	Node
}

// GlobalIdentity returns the identity a pod with local identity local has
// in the mesh as a pod of cluster id: id << 16 | local (local itself when
// id is 0, no mesh).
func GlobalIdentity(id uint8, local Identity) Identity {
	return Identity(id)<<ClusterIDShift | local&localIdentityMask
}

// ClusterIDOf returns the cluster id bits of a pod identity: 0 for
// identities without them (pod identities without the mesh, reserved
// identities) and for node-local CIDR identities.
func ClusterIDOf(id Identity) uint8 {
	if id >= IdentityCIDRBase {
		return 0
	}
	return uint8(id >> ClusterIDShift)
}

// LocalIdentity returns the local part of a pod identity (its lower 16
// bits): what a cluster publishes to its peers, which add its id again.
func LocalIdentity(id Identity) Identity { return id & localIdentityMask }

// TrustDomainOf returns the trust domain of a cluster's principals as the
// other clusters of the mesh name them: <name>.local. Without a name (no
// mesh) it is TrustDomain. In AuthorizationPolicies, TrustDomain
// (cluster.local) stands for the local cluster's own trust domain, as in
// Istio, where "cluster.local" in a principal points to the local trust
// domain and its aliases.
func TrustDomainOf(cluster string) string {
	if cluster == "" {
		return TrustDomain
	}
	return cluster + ".local"
}

// localTrustDomains are the trust domains local pods' principals match in:
// cluster.local, and <name>.local when the mesh is on.
func localTrustDomains(c ClusterInfo) []string {
	if !c.Enabled() || TrustDomainOf(c.Name) == TrustDomain {
		return singleClusterDomains
	}
	return []string{TrustDomain, TrustDomainOf(c.Name)}
}

// singleClusterDomains are the trust domains without the mesh (shared,
// never modified).
var singleClusterDomains = []string{TrustDomain}

// principals returns a pod's principal in each of its trust domains.
func principals(domains []string, namespace, serviceAccount string) []string {
	if serviceAccount == "" {
		serviceAccount = "default"
	}
	out := make([]string, len(domains))
	for i, d := range domains {
		out[i] = d + "/ns/" + namespace + "/sa/" + serviceAccount
	}
	return out
}

// remoteNamespaceLabels returns the namespace labels a remote identity
// carries (NamespaceLabelPrefix stripped).
func remoteNamespaceLabels(l map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range l {
		if strings.HasPrefix(k, NamespaceLabelPrefix) {
			out[strings.TrimPrefix(k, NamespaceLabelPrefix)] = v
		}
	}
	return out
}

// remoteIdentity is one identity of a remote cluster, with what selectors
// are matched against: every endpoint with the identity matches alike.
type remoteIdentity struct {
	id        Identity
	cluster   string
	namespace string
	sa        string
	labels    labels.Set // the full identity labels (Cilium selectors)
	own       labels.Set // the pod's own labels, LabelCluster included
	nsl       labels.Set // the namespace's labels
	domains   []string   // trust domains of its principals
}

// resolveRemote adds the remote clusters' endpoints and nodes: their
// identities and address lookups, never local endpoints. Clusters are
// taken in id order; an address already known (local pod, local node, a
// remote endpoint of a lower id) shadows a later endpoint.
func (r *Resolved) resolveRemote(objs *Objects) {
	clusters := make([]*RemoteCluster, len(objs.Remote))
	for i := range objs.Remote {
		clusters[i] = &objs.Remote[i]
	}
	sort.Slice(clusters, func(i, j int) bool { return clusters[i].ID < clusters[j].ID })
	localNode := map[netip.Addr]bool{}
	for _, n := range r.Nodes {
		if n.IP.IsValid() {
			localNode[n.IP] = true
		}
	}
	r.remoteByIP = map[netip.Addr]*RemoteEndpoint{}
	r.remoteNodeIPs = map[netip.Addr]bool{}
	ids := map[Identity]*remoteIdentity{}
	for _, c := range clusters {
		start := len(r.RemoteEndpoints)
		for i := range c.Endpoints {
			e := c.Endpoints[i] // a copy: objs is not modified
			e.Cluster = c.Name
			_, local := r.byIP[e.IP]
			_, earlier := r.remoteByIP[e.IP]
			e.Shadowed = local || localNode[e.IP] || earlier
			if !e.Shadowed {
				r.remoteByIP[e.IP] = &e
			}
			r.RemoteEndpoints = append(r.RemoteEndpoints, &e)
			if _, ok := ids[e.Identity]; !ok {
				ri := &remoteIdentity{
					id: e.Identity, cluster: c.Name, namespace: e.Namespace, sa: e.Labels[LabelServiceAccount],
					labels: e.Labels, own: podOwnLabels(e.Labels), nsl: remoteNamespaceLabels(e.Labels),
					domains: []string{TrustDomainOf(c.Name)},
				}
				ids[e.Identity] = ri
				r.remoteIDs = append(r.remoteIDs, ri)
				r.Identities[e.Identity] = e.Labels
			}
		}
		eps := r.RemoteEndpoints[start:]
		sort.Slice(eps, func(i, j int) bool {
			if eps[i].Namespace != eps[j].Namespace {
				return eps[i].Namespace < eps[j].Namespace
			}
			return eps[i].Name < eps[j].Name
		})
		for _, n := range c.Nodes {
			r.RemoteNodes = append(r.RemoteNodes, RemoteNode{Cluster: c.Name, Node: n})
			if n.IP.IsValid() {
				r.remoteNodeIPs[n.IP] = true
			}
		}
	}
	sort.Slice(r.remoteIDs, func(i, j int) bool { return r.remoteIDs[i].id < r.remoteIDs[j].id })
}

// RemoteEndpointByIP returns the remote endpoint address lookups give ip
// to (the one not Shadowed), if any. A local pod or node with the address
// comes first: callers that look up an address check EndpointByIP first.
func (r *Resolved) RemoteEndpointByIP(ip netip.Addr) (*RemoteEndpoint, bool) {
	e, ok := r.remoteByIP[ip]
	return e, ok
}

// validateMesh checks Objects.Cluster and Objects.Remote: nothing when
// the mesh is off and no remote cluster is given.
func (o *Objects) validateMesh() []error {
	if o.Cluster == (ClusterInfo{}) && len(o.Remote) == 0 {
		return nil
	}
	var errs []error
	add := func(what string, list field.ErrorList) {
		for _, e := range list {
			errs = append(errs, fmt.Errorf("%s: %s", what, e.Error()))
		}
	}
	var local field.ErrorList
	cp := field.NewPath("cluster")
	switch {
	case o.Cluster.Name == "":
		local = append(local, field.Required(cp.Child("name"), "the local cluster's name (cluster id and remote clusters need it)"))
	default:
		local = append(local, validateClusterName(o.Cluster.Name, cp.Child("name"))...)
		if o.Cluster.ID == 0 {
			local = append(local, field.Invalid(cp.Child("id"), o.Cluster.ID, "must be 1..255"))
		}
	}
	add("Cluster "+orUnknown(o.Cluster.Name), local)

	names := map[string]int{}
	idx := map[uint8]int{}
	for i := range o.Remote {
		c := &o.Remote[i]
		rp := field.NewPath("remote").Index(i)
		var all field.ErrorList
		if c.Name == "" {
			all = append(all, field.Required(rp.Child("name"), "the remote cluster's name"))
		} else {
			all = append(all, validateClusterName(c.Name, rp.Child("name"))...)
			if c.Name == o.Cluster.Name {
				all = append(all, field.Invalid(rp.Child("name"), c.Name, "is the local cluster's name"))
			}
			if j, dup := names[c.Name]; dup {
				all = append(all, field.Duplicate(rp.Child("name"), fmt.Sprintf("%s (also remote[%d])", c.Name, j)))
			} else {
				names[c.Name] = i
			}
		}
		switch {
		case c.ID == 0:
			all = append(all, field.Invalid(rp.Child("id"), c.ID, "must be 1..255"))
		case c.ID == o.Cluster.ID:
			all = append(all, field.Invalid(rp.Child("id"), c.ID, "is the local cluster's id"))
		default:
			if j, dup := idx[c.ID]; dup {
				all = append(all, field.Duplicate(rp.Child("id"), fmt.Sprintf("%d (also remote[%d] %s)", c.ID, j, o.Remote[j].Name)))
			} else {
				idx[c.ID] = i
			}
		}
		all = append(all, validateRemoteEndpoints(c, rp)...)
		all = append(all, validateRemoteServices(c, rp)...)
		nodes := map[string]bool{}
		for j, n := range c.Nodes {
			np := rp.Child("nodes").Index(j)
			if n.Name == "" {
				all = append(all, field.Required(np.Child("name"), ""))
			} else if nodes[n.Name] {
				all = append(all, field.Duplicate(np.Child("name"), n.Name))
			}
			nodes[n.Name] = true
			if !n.IP.IsValid() || !n.IP.Is4() {
				all = append(all, field.Invalid(np.Child("ip"), n.IP.String(), "not an IPv4 address"))
			}
		}
		add("RemoteCluster "+orUnknown(c.Name), all)
	}
	return errs
}

// validateClusterName accepts a DNS label other than "cluster", whose
// trust domain would be cluster.local: the name AuthorizationPolicies use
// for the local cluster.
func validateClusterName(name string, fp *field.Path) field.ErrorList {
	var all field.ErrorList
	for _, msg := range validation.IsDNS1123Label(name) {
		all = append(all, field.Invalid(fp, name, msg))
	}
	if TrustDomainOf(name) == TrustDomain {
		all = append(all, field.Invalid(fp, name, "its trust domain would be "+TrustDomain+", which names the local cluster in AuthorizationPolicies"))
	}
	return all
}

func validateRemoteEndpoints(c *RemoteCluster, rp *field.Path) field.ErrorList {
	var all field.ErrorList
	byIP := map[netip.Addr]int{}
	byKey := map[string]int{}
	byID := map[Identity]int{}
	for j := range c.Endpoints {
		e := &c.Endpoints[j]
		ep := rp.Child("endpoints").Index(j)
		pod := fmt.Sprintf("pod %s/%s", e.Namespace, e.Name)
		if e.Cluster != "" && e.Cluster != c.Name {
			all = append(all, field.Invalid(ep.Child("cluster"), e.Cluster, "differs from the cluster's name "+c.Name))
		}
		if e.Namespace == "" {
			all = append(all, field.Required(ep.Child("namespace"), pod))
		}
		if e.Name == "" {
			all = append(all, field.Required(ep.Child("name"), pod))
		}
		if k := e.Namespace + "/" + e.Name; e.Namespace != "" && e.Name != "" {
			if prev, dup := byKey[k]; dup {
				all = append(all, field.Duplicate(ep.Child("name"), fmt.Sprintf("%s (also endpoints[%d])", k, prev)))
			} else {
				byKey[k] = j
			}
		}
		switch {
		case !e.IP.IsValid() || !e.IP.Is4():
			all = append(all, field.Invalid(ep.Child("ip"), e.IP.String(), "not an IPv4 address ("+pod+")"))
		default:
			if prev, dup := byIP[e.IP]; dup {
				all = append(all, field.Duplicate(ep.Child("ip"), fmt.Sprintf("%s (%s; also endpoints[%d])", e.IP, pod, prev)))
			} else {
				byIP[e.IP] = j
			}
		}
		if e.Node == "" {
			all = append(all, field.Required(ep.Child("node"), pod))
		}
		if !e.NodeIP.IsValid() || !e.NodeIP.Is4() {
			all = append(all, field.Invalid(ep.Child("nodeIP"), e.NodeIP.String(), "not an IPv4 address: the tunnel endpoint ("+pod+")"))
		}
		idp := ep.Child("identity")
		switch local := LocalIdentity(e.Identity); {
		case e.Identity >= IdentityCIDRBase || ClusterIDOf(e.Identity) != c.ID:
			all = append(all, field.Invalid(idp, fmt.Sprintf("%#x", uint32(e.Identity)),
				fmt.Sprintf("cluster bits %d differ from the cluster's id %d (%s)", uint32(e.Identity)>>ClusterIDShift, c.ID, pod)))
		case local < FirstPodIdentity:
			all = append(all, field.Invalid(idp, fmt.Sprintf("%#x", uint32(e.Identity)),
				fmt.Sprintf("local part %d is outside %d..%d (%s)", local, FirstPodIdentity, maxLocalIdentity, pod)))
		}
		lp := ep.Child("labels")
		all = append(all, validateLabels(e.Labels, lp)...)
		switch v, ok := e.Labels[LabelCluster]; {
		case !ok:
			all = append(all, field.Required(lp.Key(LabelCluster), "the cluster label ("+pod+")"))
		case v != c.Name:
			all = append(all, field.Invalid(lp.Key(LabelCluster), v, "must be the cluster's name "+c.Name+" ("+pod+")"))
		}
		if v, ok := e.Labels[LabelNamespace]; !ok || v != e.Namespace {
			all = append(all, field.Invalid(lp.Key(LabelNamespace), v, "must be the endpoint's namespace "+e.Namespace+" ("+pod+")"))
		}
		if _, ok := e.Labels[LabelServiceAccount]; !ok {
			all = append(all, field.Required(lp.Key(LabelServiceAccount), "the service account label ("+pod+")"))
		}
		if prev, seen := byID[e.Identity]; seen && labelString(c.Endpoints[prev].Labels) != labelString(e.Labels) {
			all = append(all, field.Invalid(lp, labelString(e.Labels),
				fmt.Sprintf("identity %#x has other labels in endpoints[%d] (%s)", uint32(e.Identity), prev, pod)))
		} else if !seen {
			byID[e.Identity] = j
		}
	}
	return all
}
