package model

import (
	"errors"
	"fmt"
	"hash/fnv"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Protocol is an IP protocol number; ProtoAny matches every protocol.
type Protocol uint8

// IP protocol numbers the policy engine knows.
const (
	ProtoAny  Protocol = 0
	ProtoICMP Protocol = 1
	ProtoTCP  Protocol = 6
	ProtoUDP  Protocol = 17
	ProtoSCTP Protocol = 132
)

func (p Protocol) String() string {
	switch p {
	case ProtoAny:
		return "ANY"
	case ProtoICMP:
		return "ICMP"
	case ProtoTCP:
		return "TCP"
	case ProtoUDP:
		return "UDP"
	case ProtoSCTP:
		return "SCTP"
	}
	return fmt.Sprintf("proto-%d", uint8(p))
}

// ParseProtocol parses "TCP", "UDP", "SCTP" or "ICMP" (case-insensitive).
func ParseProtocol(s string) (Protocol, error) {
	switch strings.ToUpper(s) {
	case "TCP", "":
		return ProtoTCP, nil
	case "UDP":
		return ProtoUDP, nil
	case "SCTP":
		return ProtoSCTP, nil
	case "ICMP":
		return ProtoICMP, nil
	}
	return 0, fmt.Errorf("unknown protocol %q (want TCP, UDP, SCTP or ICMP)", s)
}

// Identity is a security identity: a number that stands for a set of labels.
// The datapath keys every policy decision on it.
type Identity uint32

// Reserved identities. Identities of pods start at FirstPodIdentity; in a
// cluster mesh (Objects.Cluster set) they carry the cluster id in bits
// 16..23 (GlobalIdentity).
const (
	// IdentityAny is the wildcard: a rule for IdentityAny matches every peer.
	IdentityAny Identity = 0
	// IdentityHost is the local node itself.
	IdentityHost Identity = 1
	// IdentityWorld is every address the ipcache does not know.
	IdentityWorld Identity = 2
	// IdentityRemoteNode is another node of the cluster.
	IdentityRemoteNode Identity = 6
	// IdentityCIDRBase starts the node-local identities of CIDR prefixes
	// named by policies (1<<24 + a hash of the prefix), used to match any
	// address inside them (pods and nodes too) through the ipcache's
	// second identity. They never leave the node, so the cluster id bits
	// do not apply.
	IdentityCIDRBase Identity = 1 << 24
	// IdentityCIDRWorldBase starts the "world" identities of the same
	// prefixes (2<<24 + the same hash): the primary identity of addresses
	// outside the cluster that fall in a policy prefix, selected by the
	// world entity.
	IdentityCIDRWorldBase Identity = 2 << 24
	// FirstPodIdentity is the lowest identity given to a label set (the
	// lowest local part of one, in a cluster mesh).
	FirstPodIdentity Identity = 256
	// maxLocalIdentity bounds pod identities to the lower 16 bits; the upper
	// bits are kept for the cluster id (ClusterIDShift).
	maxLocalIdentity Identity = 0xffff
)

// Label keys the model adds to a pod's own labels to form its identity.
const (
	LabelNamespace       = "io.kubernetes.pod.namespace"
	NamespaceLabelPrefix = "io.cilium.k8s.namespace.labels."
	// LabelServiceAccount carries the pod's service account, so that
	// Istio principals (cluster.local/ns/<ns>/sa/<sa>) map to identities.
	LabelServiceAccount = "io.cilium.k8s.policy.serviceaccount"
)

// Direction is the direction of traffic as seen by an endpoint.
type Direction uint8

// Directions.
const (
	Ingress Direction = 0
	Egress  Direction = 1
)

func (d Direction) String() string {
	if d == Egress {
		return "egress"
	}
	return "ingress"
}

// PortRange is a protocol with an inclusive port range. Port 0 means every
// port; ProtoAny means every protocol (and then every port).
type PortRange struct {
	Protocol Protocol
	Port     uint16
	EndPort  uint16
}

func (p PortRange) String() string {
	switch {
	case p.Protocol == ProtoAny:
		return "any"
	case p.Port == 0:
		return p.Protocol.String() + "/*"
	case p.EndPort > p.Port:
		return fmt.Sprintf("%s/%d-%d", p.Protocol, p.Port, p.EndPort)
	}
	return fmt.Sprintf("%s/%d", p.Protocol, p.Port)
}

// Contains reports whether proto/port falls in the range.
func (p PortRange) Contains(proto Protocol, port uint16) bool {
	if p.Protocol == ProtoAny {
		return true
	}
	if p.Protocol != proto {
		return false
	}
	if p.Port == 0 {
		return true
	}
	end := p.EndPort
	if end < p.Port {
		end = p.Port
	}
	return port >= p.Port && port <= end
}

// Rule allows traffic between an endpoint and a set of peers on a set of
// ports. A nil Peers slice with AnyPeer set means every peer.
type Rule struct {
	// Policy is "namespace/name" of the object the rule came from.
	Policy string
	// Deny makes the rule deny what it matches, whatever any allow rule
	// says (Cilium ingressDeny/egressDeny, Istio DENY).
	Deny    bool
	AnyPeer bool
	Peers   []Identity
	Ports   []PortRange
	// HTTP, when non-nil, makes the rule an L7 rule: an allow rule then
	// allows only the HTTP requests one of its entries matches, and a deny
	// rule denies only those. A connection such a rule applies to goes
	// through the node's L7 proxy, which checks each request. L7 rules are
	// TCP ingress rules.
	HTTP []HTTPRule
}

// IsL7 reports whether the rule has an L7 part.
func (r Rule) IsL7() bool { return r.HTTP != nil }

// Endpoint is a pod with an address: the unit policy is enforced on.
type Endpoint struct {
	Namespace string
	Name      string
	Node      string
	IP        netip.Addr
	Identity  Identity
	Labels    map[string]string
	// NamedPorts maps a container port name to its protocol and number.
	NamedPorts map[string]PortRange

	// IngressEnforced and EgressEnforced are set when some policy selects
	// the endpoint for that direction: then only what a rule allows passes.
	IngressEnforced bool
	EgressEnforced  bool
	Ingress         []Rule
	Egress          []Rule

	// The mesh layer (Istio AuthorizationPolicy, L4): checked after the
	// network layer above, for TCP connections to the endpoint; both must
	// allow. MeshEnforced is set when an ALLOW policy selects the pod.
	MeshEnforced bool
	Mesh         []Rule

	// own is podOwnLabels(Labels), computed once (ownLabels): selectors
	// are matched against it for every rule of every policy.
	own labels.Set
}

// Key is "namespace/name".
func (e *Endpoint) Key() string { return e.Namespace + "/" + e.Name }

// Node is a node with its address and pod CIDR.
type Node struct {
	Name    string
	IP      netip.Addr
	PodCIDR netip.Prefix
}

// Resolved is the model every datapath programs.
type Resolved struct {
	// Identities maps each identity to its full label set.
	Identities map[Identity]map[string]string
	Endpoints  []*Endpoint
	Nodes      []Node
	// CIDRs are the prefixes named by ipBlock peers, with their identities;
	// the ipcache holds them beside the pods' /32s.
	CIDRs map[netip.Prefix]Identity
	// Policies is the number of policy objects resolved.
	Policies int
	// PrefilterDeny are the source prefixes the XDP prefilter drops.
	PrefilterDeny []netip.Prefix
	// EgressGateways are the EgressGatewayPolicies, by name
	// (egressgw.go).
	EgressGateways []*EgressGateway
	// Services are the load-balanced Services (headless ones are not),
	// sorted by namespace and name; see service.go.
	Services []*Service

	// RemoteEndpoints are the pods of the other clusters of the mesh
	// (Objects.Remote), by cluster id, then namespace and name: policy
	// peers, whose identities are in Identities, never endpoints to
	// program. The datapath gives each address that is not Shadowed its
	// identity and tunnel endpoint (NodeIP) in the ipcache. RemoteNodes
	// are the other clusters' nodes (remote-node to this cluster).
	RemoteEndpoints []*RemoteEndpoint
	RemoteNodes     []RemoteNode

	byKey map[string]*Endpoint
	byIP  map[netip.Addr]*Endpoint
	// remoteByIP holds the remote endpoints that are not Shadowed;
	// remoteNodeIPs the remote nodes' addresses; remoteIDs the remote
	// identities, by number.
	remoteByIP    map[netip.Addr]*RemoteEndpoint
	remoteNodeIPs map[netip.Addr]bool
	remoteIDs     []*remoteIdentity
	// localDomains are the trust domains of local pods' principals.
	localDomains []string
	// frontends indexes Services' ports by frontend (see
	// ServiceByFrontend).
	frontends map[frontendKey]servicePortRef
	// selectors caches converted selectors by their address in the
	// objects being resolved (valid for one Resolve call; the content
	// cache below serves every call).
	selectors map[*metav1.LabelSelector]labels.Selector
}

// Endpoint returns the endpoint "namespace/name".
func (r *Resolved) Endpoint(key string) (*Endpoint, bool) {
	e, ok := r.byKey[key]
	return e, ok
}

// EndpointByIP returns the endpoint with address ip.
func (r *Resolved) EndpointByIP(ip netip.Addr) (*Endpoint, bool) {
	e, ok := r.byIP[ip]
	return e, ok
}

// NodeEndpoints returns the endpoints scheduled on node.
func (r *Resolved) NodeEndpoints(node string) []*Endpoint {
	var out []*Endpoint
	for _, e := range r.Endpoints {
		if e.Node == node {
			out = append(out, e)
		}
	}
	return out
}

// IdentityOf returns the identity the datapath gives to address ip as seen
// from node local: a pod's identity, the host, another node, a remote
// cluster's pod (its global identity) or node (remote-node), or the world.
// An address that several of them have goes to the first in that order
// (and among remote pods, to the cluster with the lowest id).
func (r *Resolved) IdentityOf(local string, ip netip.Addr) Identity {
	if e, ok := r.byIP[ip]; ok {
		return e.Identity
	}
	for _, n := range r.Nodes {
		if n.IP == ip {
			if n.Name == local {
				return IdentityHost
			}
			return IdentityRemoteNode
		}
	}
	if e, ok := r.remoteByIP[ip]; ok {
		return e.Identity
	}
	if r.remoteNodeIPs[ip] {
		return IdentityRemoteNode
	}
	if id := r.CIDRIdentityOf(ip); id != IdentityAny {
		return worldIdentity(id)
	}
	return IdentityWorld
}

// worldIdentity maps a CIDR identity to the world identity of its prefix.
func worldIdentity(cidrID Identity) Identity {
	return IdentityCIDRWorldBase | (cidrID &^ IdentityCIDRBase)
}

func sortIdentities(ids []Identity) {
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
}

// CIDRIdentityOf returns the identity of the longest ipBlock prefix that
// contains ip, or IdentityAny when none does. The datapath looks a peer up
// under both identities: its own (pod, node or CIDR) for selector rules, and
// this one for ipBlock rules, so ipBlock rules match pods and nodes by
// address exactly, whatever identity they share with other pods.
func (r *Resolved) CIDRIdentityOf(ip netip.Addr) Identity {
	best, id := -1, IdentityAny
	for p, pid := range r.CIDRs {
		if p.Contains(ip) && p.Bits() > best {
			best, id = p.Bits(), pid
		}
	}
	return id
}

// identityLabels is the label set that defines a pod's identity: its own
// labels, its namespace name, its service account, its namespace's labels
// (prefixed), and in a cluster mesh its cluster's name.
func identityLabels(pod *corev1.Pod, nsLabels map[string]string, cluster string) map[string]string {
	out := make(map[string]string, len(pod.Labels)+len(nsLabels)+3)
	for k, v := range pod.Labels {
		out[k] = v
	}
	if cluster != "" {
		out[LabelCluster] = cluster
	}
	out[LabelNamespace] = pod.Namespace
	sa := pod.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	out[LabelServiceAccount] = sa
	for k, v := range nsLabels {
		out[NamespaceLabelPrefix+k] = v
	}
	return out
}

func labelString(l map[string]string) string {
	keys := make([]string, 0, len(l))
	for k := range l {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(l[k])
	}
	return b.String()
}

// allocateIdentities gives each distinct label set a number derived from a
// hash of the labels, so that an identity stays the same when other label
// sets come and go; collisions are resolved by probing in sorted order.
func allocateIdentities(sets []string) map[string]Identity {
	sort.Strings(sets)
	out := make(map[string]Identity, len(sets))
	used := map[Identity]bool{}
	span := uint32(maxLocalIdentity - FirstPodIdentity + 1)
	for _, s := range sets {
		if _, ok := out[s]; ok {
			continue
		}
		h := fnv.New32a()
		h.Write([]byte(s))
		id := FirstPodIdentity + Identity(h.Sum32()%span)
		for used[id] {
			id++
			if id > maxLocalIdentity {
				id = FirstPodIdentity
			}
		}
		used[id] = true
		out[s] = id
	}
	return out
}

// Resolve computes identities, endpoints and rules from objects. Pods without
// an address are not endpoints yet and are skipped, as in Kubernetes. The
// pods of remote clusters (Objects.Remote) become peers: identities and
// address lookups, not endpoints.
func Resolve(objs *Objects) (*Resolved, error) {
	if !objs.validated {
		if err := objs.Validate(); err != nil {
			return nil, err
		}
	} else if errs := objs.validateMesh(); len(errs) > 0 {
		// A Loader validated the objects of the files; the mesh part is
		// set by the agent afterwards.
		return nil, errors.Join(errs...)
	}
	nsLabels := map[string]map[string]string{}
	for _, ns := range objs.Namespaces {
		nsLabels[ns.Name] = ns.Labels
	}
	r := &Resolved{
		Identities:   map[Identity]map[string]string{},
		byKey:        map[string]*Endpoint{},
		byIP:         map[netip.Addr]*Endpoint{},
		CIDRs:        map[netip.Prefix]Identity{},
		selectors:    make(map[*metav1.LabelSelector]labels.Selector, 4*len(objs.NetworkPolicies)),
		Policies:     len(objs.NetworkPolicies) + len(objs.CiliumNetworkPolicies) + len(objs.AuthorizationPolicies),
		localDomains: localTrustDomains(objs.Cluster),
	}
	var errs []error
	for _, n := range objs.Nodes {
		node := Node{Name: n.Name}
		for _, a := range n.Status.Addresses {
			if a.Type == corev1.NodeInternalIP {
				node.IP, _ = netip.ParseAddr(a.Address)
				break
			}
		}
		if n.Spec.PodCIDR != "" {
			node.PodCIDR, _ = netip.ParsePrefix(n.Spec.PodCIDR)
		}
		r.Nodes = append(r.Nodes, node)
	}

	var sets []string
	podLabels := make([]map[string]string, len(objs.Pods))
	for i := range objs.Pods {
		podLabels[i] = identityLabels(&objs.Pods[i], nsLabels[objs.Pods[i].Namespace], objs.Cluster.Name)
		sets = append(sets, labelString(podLabels[i]))
	}
	ids := allocateIdentities(sets)

	for i := range objs.Pods {
		pod := &objs.Pods[i]
		if pod.Status.PodIP == "" {
			continue
		}
		ip, _ := netip.ParseAddr(pod.Status.PodIP)
		ep := &Endpoint{
			Namespace:  pod.Namespace,
			Name:       pod.Name,
			Node:       pod.Spec.NodeName,
			IP:         ip,
			Labels:     podLabels[i],
			Identity:   GlobalIdentity(objs.Cluster.ID, ids[labelString(podLabels[i])]),
			NamedPorts: namedPorts(pod),
		}
		if other, dup := r.byIP[ip]; dup {
			errs = append(errs, fmt.Errorf("%s: status.podIP: address %s is already used by Pod %s", objs.where("Pod", pod.Namespace, pod.Name), ip, other.Key()))
			continue
		}
		r.Identities[ep.Identity] = ep.Labels
		r.Endpoints = append(r.Endpoints, ep)
		r.byKey[ep.Key()] = ep
		r.byIP[ip] = ep
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if len(objs.Remote) > 0 {
		r.resolveRemote(objs)
	}

	// Policies in a stable order so that rule lists are deterministic.
	// (Pointers into objs, which is not modified: sorting copies of the
	// objects cost more than resolving them.)
	nps := make([]*networkingv1.NetworkPolicy, len(objs.NetworkPolicies))
	for i := range objs.NetworkPolicies {
		nps[i] = &objs.NetworkPolicies[i]
	}
	sort.Slice(nps, func(i, j int) bool {
		if nps[i].Namespace != nps[j].Namespace {
			return nps[i].Namespace < nps[j].Namespace
		}
		return nps[i].Name < nps[j].Name
	})
	cnps := append([]CiliumNetworkPolicy(nil), objs.CiliumNetworkPolicies...)
	sort.Slice(cnps, func(i, j int) bool {
		if cnps[i].Namespace != cnps[j].Namespace {
			return cnps[i].Namespace < cnps[j].Namespace
		}
		return cnps[i].Name < cnps[j].Name
	})
	r.collectCIDRs(nps, cnps, objs.AuthorizationPolicies)
	r.sizeIngress(nps)
	for _, np := range nps {
		if err := r.applyNetworkPolicy(objs, np, nsLabels); err != nil {
			errs = append(errs, err)
		}
	}
	for i := range cnps {
		r.applyCNP(&cnps[i])
	}
	aps := append([]AuthorizationPolicy(nil), objs.AuthorizationPolicies...)
	sort.Slice(aps, func(i, j int) bool {
		if aps[i].Namespace != aps[j].Namespace {
			return aps[i].Namespace < aps[j].Namespace
		}
		return aps[i].Name < aps[j].Name
	})
	for i := range aps {
		r.applyAuthz(&aps[i])
	}
	r.resolveServices(objs)
	r.PrefilterDeny = prefilterPrefixes(objs)
	r.resolveEgressGateways(objs, nsLabels)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return r, nil
}

func namedPorts(pod *corev1.Pod) map[string]PortRange {
	out := map[string]PortRange{}
	for _, c := range pod.Spec.Containers {
		for _, p := range c.Ports {
			if p.Name == "" {
				continue
			}
			proto, _ := protocolOf(p.Protocol)
			out[p.Name] = PortRange{Protocol: proto, Port: uint16(p.ContainerPort)}
		}
	}
	return out
}

// policyTypes returns whether np applies to ingress and egress, with the
// Kubernetes defaulting: Ingress always, Egress when egress rules exist.
func policyTypes(np *networkingv1.NetworkPolicy) (ingress, egress bool) {
	if len(np.Spec.PolicyTypes) == 0 {
		return true, len(np.Spec.Egress) > 0
	}
	for _, t := range np.Spec.PolicyTypes {
		switch t {
		case networkingv1.PolicyTypeIngress:
			ingress = true
		case networkingv1.PolicyTypeEgress:
			egress = true
		}
	}
	return ingress, egress
}

// selector is mustSelector with a cache by content: policies are matched
// against every endpoint, and converting (and validating) selectors
// dominated the cost of resolving. Generated and real policy sets repeat
// the same selectors many times.
func (r *Resolved) selector(sel *metav1.LabelSelector) labels.Selector {
	if s, ok := r.selectors[sel]; ok && sel != nil {
		return s
	}
	s := contentSelector(sel)
	if r.selectors != nil && sel != nil {
		r.selectors[sel] = s
	}
	return s
}

func contentSelector(sel *metav1.LabelSelector) labels.Selector {
	key := selectorKey(sel)
	if s, ok := selectorCache.Load(key); ok {
		return s.(labels.Selector)
	}
	s := mustSelector(sel)
	if selectorCacheSize.Add(1) > selectorCacheMax {
		selectorCache.Clear()
		selectorCacheSize.Store(0)
	}
	selectorCache.Store(key, s)
	return s
}

var (
	selectorCache     sync.Map // selectorKey -> labels.Selector (immutable)
	selectorCacheSize atomic.Int64
)

const selectorCacheMax = 1 << 16

// selectorKey identifies a label selector by its content.
func selectorKey(sel *metav1.LabelSelector) string {
	if sel == nil {
		return "nil"
	}
	var b strings.Builder
	keys := make([]string, 0, len(sel.MatchLabels))
	for k := range sel.MatchLabels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(sel.MatchLabels[k])
		b.WriteByte(0)
	}
	b.WriteByte(1)
	for _, e := range sel.MatchExpressions {
		b.WriteString(e.Key)
		b.WriteByte(0)
		b.WriteString(string(e.Operator))
		for _, v := range e.Values {
			b.WriteByte(0)
			b.WriteString(v)
		}
		b.WriteByte(1)
	}
	return b.String()
}

func mustSelector(sel *metav1.LabelSelector) labels.Selector {
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		// Validate ran first; an invalid selector here selects nothing.
		return labels.Nothing()
	}
	return s
}

// peerMatches reports whether the pod behind identity labels l (with its
// namespace's own labels nsl) matches a NetworkPolicy peer of a policy in
// namespace ns.
func (r *Resolved) peerMatches(peer networkingv1.NetworkPolicyPeer, ns string, podL labels.Set, nsl map[string]string, podNS string) bool {
	if peer.IPBlock != nil {
		return false
	}
	if peer.NamespaceSelector == nil {
		if podNS != ns {
			return false
		}
	} else if !r.selector(peer.NamespaceSelector).Matches(labels.Set(nsl)) {
		return false
	}
	if peer.PodSelector != nil && !r.selector(peer.PodSelector).Matches(podL) {
		return false
	}
	return true
}

// sizeIngress gives every endpoint's ingress rule list the room the
// NetworkPolicies selecting it need (growing it policy by policy was most
// of what resolving allocated).
func (r *Resolved) sizeIngress(nps []*networkingv1.NetworkPolicy) {
	n := make(map[*Endpoint]int, len(r.Endpoints))
	for _, np := range nps {
		if ingress, _ := policyTypes(np); !ingress || len(np.Spec.Ingress) == 0 {
			continue
		}
		sel := r.selector(&np.Spec.PodSelector)
		for _, ep := range r.Endpoints {
			if ep.Namespace == np.Namespace && sel.Matches(ep.ownLabels()) {
				n[ep] += len(np.Spec.Ingress)
			}
		}
	}
	for ep, k := range n {
		ep.Ingress = append(make([]Rule, 0, len(ep.Ingress)+k), ep.Ingress...)
	}
}

func (r *Resolved) applyNetworkPolicy(objs *Objects, np *networkingv1.NetworkPolicy, nsLabels map[string]map[string]string) error {
	sel := r.selector(&np.Spec.PodSelector)
	ingress, egress := policyTypes(np)
	name := np.Namespace + "/" + np.Name
	for _, ep := range r.Endpoints {
		if ep.Namespace != np.Namespace || !sel.Matches(ep.ownLabels()) {
			continue
		}
		if ingress {
			ep.IngressEnforced = true
			for _, rule := range np.Spec.Ingress {
				ep.Ingress = append(ep.Ingress, r.rule(name, rule.From, rule.Ports, np.Namespace, nsLabels, func(networkingv1.NetworkPolicyPort) []*Endpoint { return []*Endpoint{ep} }))
			}
		}
		if egress {
			ep.EgressEnforced = true
			for _, rule := range np.Spec.Egress {
				ep.Egress = append(ep.Egress, r.egressRules(name, rule, np.Namespace, nsLabels)...)
			}
		}
	}
	return nil
}

// egressRules resolves one egress rule. A rule with named ports is split by
// peer identity, because a name means the port each destination pod gives
// it: each identity gets the numbers its own pods define. (Pods that share
// an identity but number the same name differently get the union. Pods
// matched only by an ipBlock of the rule get no named ports: an ipBlock
// is matched through a CIDR identity, which cannot carry per-pod numbers;
// this fails closed.)
func (r *Resolved) egressRules(policy string, rule networkingv1.NetworkPolicyEgressRule, ns string, nsLabels map[string]map[string]string) []Rule {
	named := false
	for _, p := range rule.Ports {
		if p.Port != nil && p.Port.Type == intstr.String {
			named = true
		}
	}
	whole := r.rule(policy, rule.To, rule.Ports, ns, nsLabels, nil)
	if !named {
		return []Rule{whole}
	}
	// The matched peers, grouped by identity.
	byID := map[Identity][]*Endpoint{}
	var ids []Identity
	for _, ep := range r.Endpoints {
		if !whole.AnyPeer && !containsIdentity(whole.Peers, ep.Identity) {
			continue
		}
		if _, ok := byID[ep.Identity]; !ok {
			ids = append(ids, ep.Identity)
		}
		byID[ep.Identity] = append(byID[ep.Identity], ep)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	var out []Rule
	// Numeric ports keep applying to every peer (including non-pod peers
	// of an empty "to").
	numeric := Rule{Policy: policy, AnyPeer: whole.AnyPeer, Peers: whole.Peers}
	for _, p := range rule.Ports {
		if p.Port != nil && p.Port.Type == intstr.String {
			continue
		}
		numeric.Ports = append(numeric.Ports, r.rule(policy, nil, []networkingv1.NetworkPolicyPort{p}, ns, nsLabels, nil).Ports...)
	}
	if len(numeric.Ports) > 0 {
		out = append(out, numeric)
	}
	for _, id := range ids {
		owners := byID[id]
		per := Rule{Policy: policy, Peers: []Identity{id}}
		for _, p := range rule.Ports {
			if p.Port == nil || p.Port.Type != intstr.String {
				continue
			}
			proto, _ := protocolOf(ptrOr(p.Protocol, corev1.ProtocolTCP))
			seen := map[PortRange]bool{}
			for _, ep := range owners {
				if np, ok := ep.NamedPorts[p.Port.StrVal]; ok && np.Protocol == proto && !seen[np] {
					seen[np] = true
					per.Ports = append(per.Ports, np)
				}
			}
		}
		if len(per.Ports) > 0 {
			out = append(out, per)
		}
	}
	if len(out) == 0 {
		// Nothing resolves: the rule allows nothing (the endpoint is still
		// enforced by its policy).
		out = append(out, Rule{Policy: policy})
	}
	return out
}

// ipBlockCovers reports whether every address of prefix lies in the block
// (inside cidr, outside every except).
func ipBlockCovers(b *networkingv1.IPBlock, prefix netip.Prefix) bool {
	cidr, err := netip.ParsePrefix(b.CIDR)
	if err != nil || !prefixWithin(prefix, cidr) {
		return false
	}
	for _, e := range b.Except {
		if ex, err := netip.ParsePrefix(e); err == nil && prefixWithin(prefix, ex) {
			return false
		}
	}
	return true
}

// prefixWithin reports whether inner is a subset of outer.
func prefixWithin(inner, outer netip.Prefix) bool {
	return inner.Addr().Is4() == outer.Addr().Is4() && inner.Bits() >= outer.Bits() && outer.Masked().Contains(inner.Addr())
}

// collectCIDRs gives every prefix named by an ipBlock (cidr and except) a
// CIDR identity, derived from a hash of the prefix like pod identities.
func (r *Resolved) collectCIDRs(nps []*networkingv1.NetworkPolicy, cnps []CiliumNetworkPolicy, aps []AuthorizationPolicy) {
	prefixes := authzPrefixes(aps)
	add := func(s string) {
		if p, err := netip.ParsePrefix(s); err == nil && p.Addr().Is4() {
			prefixes = append(prefixes, p.Masked().String())
		}
	}
	for i := range cnps {
		for _, b := range cidrsOfCNP(&cnps[i]) {
			add(b.CIDR)
			for _, e := range b.Except {
				add(e)
			}
		}
	}
	for _, np := range nps {
		for _, rule := range np.Spec.Ingress {
			for _, p := range rule.From {
				if p.IPBlock != nil {
					add(p.IPBlock.CIDR)
					for _, e := range p.IPBlock.Except {
						add(e)
					}
				}
			}
		}
		for _, rule := range np.Spec.Egress {
			for _, p := range rule.To {
				if p.IPBlock != nil {
					add(p.IPBlock.CIDR)
					for _, e := range p.IPBlock.Except {
						add(e)
					}
				}
			}
		}
	}
	sort.Strings(prefixes)
	used := map[Identity]bool{}
	for _, s := range prefixes {
		p := netip.MustParsePrefix(s)
		if _, ok := r.CIDRs[p]; ok {
			continue
		}
		h := fnv.New32a()
		h.Write([]byte(s))
		id := IdentityCIDRBase + Identity(h.Sum32()&0xffffff)
		for used[id] {
			id = IdentityCIDRBase + (id+1-IdentityCIDRBase)&0xffffff
		}
		used[id] = true
		r.CIDRs[p] = id
	}
}

// ownLabels is the pod's own labels (podOwnLabels of Labels).
func (e *Endpoint) ownLabels() labels.Set {
	if e.own == nil {
		e.own = podOwnLabels(e.Labels)
	}
	return e.own
}

// podOwnLabels strips the labels the model added, leaving the pod's own.
func podOwnLabels(l map[string]string) map[string]string {
	out := make(map[string]string, len(l))
	for k, v := range l {
		if k == LabelNamespace || k == LabelServiceAccount || strings.HasPrefix(k, NamespaceLabelPrefix) {
			continue
		}
		out[k] = v
	}
	return out
}

// rule turns one NetworkPolicy rule into a Rule. Named ports are resolved
// against the endpoints that own them: the selected pod for ingress (own
// returns it), every matched peer for egress (own is nil).
func (r *Resolved) rule(policy string, peers []networkingv1.NetworkPolicyPeer, ports []networkingv1.NetworkPolicyPort, ns string,
	nsLabels map[string]map[string]string, own func(networkingv1.NetworkPolicyPort) []*Endpoint) Rule {
	out := Rule{Policy: policy}
	var matched []*Endpoint
	if len(peers) == 0 {
		out.AnyPeer = true
		matched = r.Endpoints
	} else {
		seen := map[Identity]bool{}
		addID := func(id Identity) {
			if !seen[id] {
				seen[id] = true
				out.Peers = append(out.Peers, id)
			}
		}
		for _, ep := range r.Endpoints {
			for _, p := range peers {
				// ipBlock peers match pods through the CIDR identity the
				// ipcache gives their address (below), not their own.
				if p.IPBlock != nil && ipBlockContains(p.IPBlock, ep.IP) {
					matched = append(matched, ep)
					break
				}
				if p.IPBlock == nil && r.peerMatches(p, ns, ep.ownLabels(), nsLabels[ep.Namespace], ep.Namespace) {
					matched = append(matched, ep)
					addID(ep.Identity)
					break
				}
			}
		}
		// Remote pods match selector peers by identity (they own no
		// named ports here: a name resolves to nothing for them, failing
		// closed), and ipBlocks by address like any other address.
		for _, ri := range r.remoteIDs {
			for _, p := range peers {
				if p.IPBlock == nil && r.peerMatches(p, ns, ri.own, ri.nsl, ri.namespace) {
					addID(ri.id)
					break
				}
			}
		}
		for _, p := range peers {
			if p.IPBlock == nil {
				continue
			}
			// Every ipcache prefix inside cidr and outside every except:
			// the longest-prefix match of an address in cidr-except is one
			// of them (cidr itself is in the ipcache), and of no other.
			for prefix, id := range r.CIDRs {
				if ipBlockCovers(p.IPBlock, prefix) {
					addID(id)
				}
			}
		}
		sort.Slice(out.Peers, func(i, j int) bool { return out.Peers[i] < out.Peers[j] })
	}
	if len(ports) == 0 {
		out.Ports = []PortRange{{Protocol: ProtoAny}}
		return out
	}
	for _, p := range ports {
		proto, _ := protocolOf(ptrOr(p.Protocol, corev1.ProtocolTCP))
		switch {
		case p.Port == nil:
			out.Ports = append(out.Ports, PortRange{Protocol: proto})
		case p.Port.Type == intstr.Int:
			pr := PortRange{Protocol: proto, Port: uint16(p.Port.IntVal)}
			if p.EndPort != nil {
				pr.EndPort = uint16(*p.EndPort)
			}
			out.Ports = append(out.Ports, pr)
		default:
			owners := matched
			if own != nil {
				owners = own(p)
			}
			seen := map[PortRange]bool{}
			for _, ep := range owners {
				if np, ok := ep.NamedPorts[p.Port.StrVal]; ok && np.Protocol == proto && !seen[np] {
					seen[np] = true
					out.Ports = append(out.Ports, np)
				}
			}
		}
	}
	if len(out.Ports) == 0 {
		// Only named ports that no pod defines: the rule allows nothing,
		// but it still makes the endpoint enforced.
		out.Ports = nil
	}
	return out
}

func ptrOr[T any](p *T, def T) T {
	if p == nil {
		return def
	}
	return *p
}
