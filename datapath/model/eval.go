package model

import (
	"fmt"
	"net/netip"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Verdict is the answer of an evaluator, with the reason in words.
type Verdict struct {
	Allowed bool
	// Proxied is set for an allowed TCP connection that an L7 rule applies
	// to: it goes through the node's L7 proxy, which passes only HTTP
	// requests that the rules allow (anything else gets no echo: a raw TCP
	// exchange fails).
	Proxied bool
	Reason  string
}

// selfVerdict is the verdict on a pod's connections to itself: whatever the
// policies say, a pod always reaches itself, directly (loopback, inside
// the pod) or through a Service whose chosen backend it is (hairpin,
// which kube-proxy masquerades and the eBPF datapath sources from a
// link-local address), as the upstream NetworkPolicy tests expect.
var selfVerdict = Verdict{Allowed: true, Reason: "allowed: a pod always reaches itself"}

// Evaluate is the reference evaluator: it decides whether a connection from
// address from to address to on proto/port is allowed, reading the
// NetworkPolicy objects directly (it does not use identities or resolved
// rules). Addresses that belong to no pod match only ipBlock peers.
//
// In a cluster mesh, an address of a remote cluster's pod (Objects.Remote)
// is that pod: as a source, the ingress rules of a local destination see
// its labels, namespace, namespace labels and cluster; as a destination it
// has no local policy, so only the local source's egress applies. An
// address that a local pod (or node) also has is the local one's, and
// among remote clusters the one with the lowest id's; EvaluateFromRemote
// names a remote source explicitly.
func Evaluate(objs *Objects, from, to netip.Addr, proto Protocol, port uint16) Verdict {
	return evaluate(objs, from, to, proto, port, nil, nil)
}

// EvaluateFromRemote is Evaluate for a connection from the pod with
// address from of remote cluster cluster, named explicitly: what the
// destination's node decides on a packet whose overlay header carries that
// pod's identity, even when a local pod (or another cluster's) has the same
// address, which an address cannot tell apart.
func EvaluateFromRemote(objs *Objects, cluster string, from, to netip.Addr, proto Protocol, port uint16) Verdict {
	src, ok := remoteSource(objs, cluster, from)
	if !ok {
		return Verdict{Reason: fmt.Sprintf("remote cluster %q has no endpoint %s", cluster, from)}
	}
	return evaluate(objs, from, to, proto, port, nil, &src)
}

// EvaluateRequestFromRemote is EvaluateRequest from an explicitly named
// remote pod (see EvaluateFromRemote).
func EvaluateRequestFromRemote(objs *Objects, cluster string, from, to netip.Addr, port uint16, req Request) Verdict {
	src, ok := remoteSource(objs, cluster, from)
	if !ok {
		return Verdict{Reason: fmt.Sprintf("remote cluster %q has no endpoint %s", cluster, from)}
	}
	return evaluate(objs, from, to, ProtoTCP, port, &req, &src)
}

func remoteSource(objs *Objects, cluster string, ip netip.Addr) (evalPeer, bool) {
	for i := range objs.Remote {
		c := &objs.Remote[i]
		if c.Name != cluster {
			continue
		}
		for j := range c.Endpoints {
			if c.Endpoints[j].IP == ip {
				return evalPeer{remote: &c.Endpoints[j], cluster: c.Name}, true
			}
		}
	}
	return evalPeer{}, false
}

// evalPeer is the pod at one end of a connection, as the reference
// evaluator sees it: a local pod, a remote cluster's pod, or neither (an
// address that is no pod).
type evalPeer struct {
	pod     *corev1.Pod
	remote  *RemoteEndpoint
	cluster string // the remote pod's cluster
}

func (p evalPeer) isPod() bool { return p.pod != nil || p.remote != nil }

func (p evalPeer) namespace() string {
	switch {
	case p.pod != nil:
		return p.pod.Namespace
	case p.remote != nil:
		return p.remote.Namespace
	}
	return ""
}

// own returns the pod's own labels: a local pod's labels (with LabelCluster
// in a mesh), a remote pod's identity labels without the namespace,
// service account and namespace labels.
func (p evalPeer) own(objs *Objects) map[string]string {
	if p.pod != nil {
		return evalOwnLabels(objs, p.pod)
	}
	out := map[string]string{}
	for k, v := range p.remote.Labels {
		if k != LabelNamespace && k != LabelServiceAccount && !strings.HasPrefix(k, NamespaceLabelPrefix) {
			out[k] = v
		}
	}
	return out
}

// identity returns the pod's full identity labels.
func (p evalPeer) identity(objs *Objects, nsLabels map[string]map[string]string) map[string]string {
	if p.pod != nil {
		return identityLabels(p.pod, nsLabels[p.pod.Namespace], objs.Cluster.Name)
	}
	return p.remote.Labels
}

// nsLabels returns the labels of the pod's namespace (in its cluster).
func (p evalPeer) nsLabels(nsLabels map[string]map[string]string) map[string]string {
	if p.pod != nil {
		return nsLabels[p.pod.Namespace]
	}
	out := map[string]string{}
	for k, v := range p.remote.Labels {
		if strings.HasPrefix(k, NamespaceLabelPrefix) {
			out[k[len(NamespaceLabelPrefix):]] = v
		}
	}
	return out
}

// principals returns the pod's Istio principals: a local pod's in
// cluster.local (and <local cluster>.local in a mesh), a remote pod's in
// <its cluster>.local.
func (p evalPeer) principals(objs *Objects) []string {
	switch {
	case p.pod != nil:
		domains := []string{TrustDomain}
		if c := objs.Cluster.Name; c != "" && c+".local" != TrustDomain {
			domains = append(domains, c+".local")
		}
		return principals(domains, p.pod.Namespace, p.pod.Spec.ServiceAccountName)
	case p.remote != nil:
		return principals([]string{p.cluster + ".local"}, p.remote.Namespace, p.remote.Labels[LabelServiceAccount])
	}
	return nil
}

// evalOwnLabels returns a local pod's own labels as selectors see them:
// with LabelCluster when the mesh is on.
func evalOwnLabels(objs *Objects, pod *corev1.Pod) map[string]string {
	if objs.Cluster.Name == "" {
		return pod.Labels
	}
	out := make(map[string]string, len(pod.Labels)+1)
	for k, v := range pod.Labels {
		out[k] = v
	}
	out[LabelCluster] = objs.Cluster.Name
	return out
}

// EvaluateRequest is the reference evaluator for an HTTP request over TCP:
// the connection must be allowed, and where L7 rules apply (Cilium
// rules.http, AuthorizationPolicy methods and paths) the request must
// satisfy them.
func EvaluateRequest(objs *Objects, from, to netip.Addr, port uint16, req Request) Verdict {
	return evaluate(objs, from, to, ProtoTCP, port, &req, nil)
}

// evaluate decides a connection; remoteSrc, when given, is the source
// instead of what the address from is.
func evaluate(objs *Objects, from, to netip.Addr, proto Protocol, port uint16, req *Request, remoteSrc *evalPeer) Verdict {
	nsLabels := map[string]map[string]string{}
	for _, ns := range objs.Namespaces {
		nsLabels[ns.Name] = ns.Labels
	}
	src, dst := peerAt(objs, from), peerAt(objs, to)
	if remoteSrc != nil {
		src = *remoteSrc
	}
	if src.pod != nil && from == to {
		return selfVerdict
	}
	proxied := false
	if src.pod != nil {
		if ok, _, why := evalSide(objs, src.pod, dst, to, proto, port, true, nsLabels, nil); !ok {
			return Verdict{Allowed: false, Reason: why}
		}
	}
	if dst.pod != nil {
		ok, l7, why := evalSide(objs, dst.pod, src, from, proto, port, false, nsLabels, req)
		if !ok {
			return Verdict{Allowed: false, Reason: why}
		}
		proxied = l7
		if proto == ProtoTCP {
			ok, l7, why := evalAuthz(objs, dst.pod, src, from, port, req)
			if !ok {
				return Verdict{Allowed: false, Reason: why}
			}
			proxied = proxied || l7
		}
	}
	return Verdict{Allowed: true, Proxied: proxied, Reason: "allowed"}
}

// peerAt is the pod with address a as the evaluator sees it: a local pod,
// else (unless a local node has the address) the remote pod with the
// address in the cluster with the lowest id, else none.
func peerAt(objs *Objects, a netip.Addr) evalPeer {
	for i := range objs.Pods {
		if ip, err := netip.ParseAddr(objs.Pods[i].Status.PodIP); err == nil && ip == a {
			return evalPeer{pod: &objs.Pods[i]}
		}
	}
	if len(objs.Remote) == 0 || isNodeAddr(objs, a) {
		return evalPeer{}
	}
	var best evalPeer
	var bestID uint8
	for i := range objs.Remote {
		c := &objs.Remote[i]
		if best.remote != nil && c.ID >= bestID {
			continue
		}
		for j := range c.Endpoints {
			if c.Endpoints[j].IP == a {
				best, bestID = evalPeer{remote: &c.Endpoints[j], cluster: c.Name}, c.ID
				break
			}
		}
	}
	return best
}

// isNodeAddr reports whether a is the InternalIP of a local node.
func isNodeAddr(objs *Objects, a netip.Addr) bool {
	for _, n := range objs.Nodes {
		for _, na := range n.Status.Addresses {
			if na.Type == corev1.NodeInternalIP {
				if ip, err := netip.ParseAddr(na.Address); err == nil && ip == a {
					return true
				}
			}
		}
	}
	return false
}

// isRemoteNodeAddr reports whether a is a remote cluster's node's address.
func isRemoteNodeAddr(objs *Objects, a netip.Addr) bool {
	for _, c := range objs.Remote {
		for _, n := range c.Nodes {
			if n.IP == a {
				return true
			}
		}
	}
	return false
}

// evalSide checks the policies that select subject, for egress (subject is
// the source) or ingress (subject is the destination). peer is the pod at
// the other end (none for a non-pod address peerIP), local or remote. The port's owner for
// named ports is always the destination pod. A matching deny rule (Cilium)
// denies whatever allows; otherwise a selected direction needs an allow.
// With req, an allow rule with L7 rules for the port allows only requests
// they match; l7 reports whether such a rule matched the connection.
func evalSide(objs *Objects, subject *corev1.Pod, peer evalPeer, peerIP netip.Addr, proto Protocol, port uint16, egress bool,
	nsLabels map[string]map[string]string, req *Request) (ok, l7 bool, why string) {
	dir := "ingress"
	if egress {
		dir = "egress"
	}
	dstPod := subject
	if egress {
		// A remote destination owns no named ports here (nil).
		dstPod = peer.pod
	}
	subjectOwn := labels.Set(evalOwnLabels(objs, subject))
	selected, allowed := false, false
	for i := range objs.NetworkPolicies {
		np := &objs.NetworkPolicies[i]
		if np.Namespace != subject.Namespace || !mustSelector(&np.Spec.PodSelector).Matches(subjectOwn) {
			continue
		}
		ing, eg := policyTypes(np)
		if (egress && !eg) || (!egress && !ing) {
			continue
		}
		selected = true
		if egress {
			for _, r := range np.Spec.Egress {
				if peersMatch(objs, r.To, np.Namespace, peer, peerIP, nsLabels) && portsMatch(r.Ports, dstPod, proto, port) {
					allowed = true
				}
			}
		} else {
			for _, r := range np.Spec.Ingress {
				if peersMatch(objs, r.From, np.Namespace, peer, peerIP, nsLabels) && portsMatch(r.Ports, dstPod, proto, port) {
					allowed = true
				}
			}
		}
	}
	subjectLabels := identityLabels(subject, nsLabels[subject.Namespace], objs.Cluster.Name)
	for i := range objs.CiliumNetworkPolicies {
		c := &objs.CiliumNetworkPolicies[i]
		if c.Namespace != subject.Namespace {
			continue
		}
		for _, rule := range c.Rules() {
			sel, err := ciliumSelector(*rule.EndpointSelector, c.Namespace)
			if err != nil || !sel.Matches(labels.Set(subjectLabels)) {
				continue
			}
			var allows, denies []ciliumPeers
			var dd bool
			if egress {
				for _, r := range rule.Egress {
					allows = append(allows, egressPeers(r))
				}
				for _, r := range rule.EgressDeny {
					denies = append(denies, egressPeers(r))
				}
				dd = len(rule.Egress)+len(rule.EgressDeny) > 0
				if rule.EnableDefaultDeny != nil && rule.EnableDefaultDeny.Egress != nil {
					dd = *rule.EnableDefaultDeny.Egress
				}
			} else {
				for _, r := range rule.Ingress {
					allows = append(allows, ingressPeers(r))
				}
				for _, r := range rule.IngressDeny {
					denies = append(denies, ingressPeers(r))
				}
				dd = len(rule.Ingress)+len(rule.IngressDeny) > 0
				if rule.EnableDefaultDeny != nil && rule.EnableDefaultDeny.Ingress != nil {
					dd = *rule.EnableDefaultDeny.Ingress
				}
			}
			selected = selected || dd
			for _, p := range denies {
				if ciliumPeerMatches(objs, p, c.Namespace, subject, peer, peerIP, nsLabels) && ciliumPortsMatch(p, proto, port) {
					return false, false, fmt.Sprintf("%s deny rule of CiliumNetworkPolicy %s/%s matches", dir, c.Namespace, c.Name)
				}
			}
			for _, p := range allows {
				if !ciliumPeerMatches(objs, p, c.Namespace, subject, peer, peerIP, nsLabels) || !ciliumPortsMatch(p, proto, port) {
					continue
				}
				if p.hasL7(proto, port) {
					l7 = true
				}
				if req == nil || p.requestMatches(port, *req) {
					allowed = true
				}
			}
		}
	}
	if !selected || allowed {
		return true, l7, ""
	}
	if req != nil && l7 {
		return false, l7, fmt.Sprintf("no %s rule of the policies selecting %s/%s allows %s %s", dir, subject.Namespace, subject.Name, req.Method, req.Path)
	}
	return false, l7, fmt.Sprintf("no %s rule of the policies selecting %s/%s allows it", dir, subject.Namespace, subject.Name)
}

// ciliumPeerMatches decides a Cilium rule's peer side from the objects.
// Endpoint selectors match pods of every cluster; the entities: "cluster"
// is the local cluster's pods and every node (host, remote-node), "world"
// what is neither a pod (of any cluster) nor a node, "remote-node" every
// node but the subject's, of any cluster.
func ciliumPeerMatches(objs *Objects, p ciliumPeers, ns string, subject *corev1.Pod, peer evalPeer, peerIP netip.Addr, nsLabels map[string]map[string]string) bool {
	if p.noPeers() {
		return len(p.ports) > 0
	}
	if peer.isPod() {
		pl := peer.identity(objs, nsLabels)
		for _, sel := range p.endpoints {
			if s, err := ciliumSelector(sel, ns); err == nil && s.Matches(labels.Set(pl)) {
				return true
			}
		}
	}
	for i := range p.blocks {
		if ipBlockContains(&p.blocks[i], peerIP) {
			return true
		}
	}
	var subjectNodeIP netip.Addr
	isNode := false
	for _, n := range objs.Nodes {
		for _, a := range n.Status.Addresses {
			if a.Type != corev1.NodeInternalIP {
				continue
			}
			ip, _ := netip.ParseAddr(a.Address)
			if n.Name == subject.Spec.NodeName {
				subjectNodeIP = ip
			}
			if ip == peerIP {
				isNode = true
			}
		}
	}
	switch {
	case peer.remote != nil:
		// A remote pod is its identity, whatever its address.
		isNode = false
	case !peer.isPod() && !isNode:
		isNode = isRemoteNodeAddr(objs, peerIP)
	}
	for _, e := range p.entities {
		switch e {
		case "all":
			return true
		case "world":
			if !peer.isPod() && !isNode {
				return true
			}
		case "cluster":
			if peer.pod != nil || isNode {
				return true
			}
		case "host":
			if isNode && peerIP == subjectNodeIP {
				return true
			}
		case "remote-node":
			if isNode && peerIP != subjectNodeIP {
				return true
			}
		}
	}
	return false
}

func ciliumPortsMatch(p ciliumPeers, proto Protocol, port uint16) bool {
	for _, r := range p.portRanges() {
		if r.Contains(proto, port) {
			return true
		}
	}
	return false
}

// peersMatch decides a NetworkPolicy rule's peers. Selector peers match
// pods of every cluster: without a namespaceSelector, those of the
// policy's namespace name in any cluster; a namespaceSelector against the
// labels of the pod's namespace in its own cluster.
func peersMatch(objs *Objects, peers []networkingv1.NetworkPolicyPeer, ns string, peer evalPeer, peerIP netip.Addr, nsLabels map[string]map[string]string) bool {
	if len(peers) == 0 {
		return true
	}
	for _, p := range peers {
		if p.IPBlock != nil {
			if ipBlockContains(p.IPBlock, peerIP) {
				return true
			}
			continue
		}
		if !peer.isPod() {
			continue
		}
		if p.NamespaceSelector == nil {
			if peer.namespace() != ns {
				continue
			}
		} else if !mustSelector(p.NamespaceSelector).Matches(labels.Set(peer.nsLabels(nsLabels))) {
			continue
		}
		if p.PodSelector != nil && !mustSelector(p.PodSelector).Matches(labels.Set(peer.own(objs))) {
			continue
		}
		return true
	}
	return false
}

func ipBlockContains(b *networkingv1.IPBlock, ip netip.Addr) bool {
	cidr, err := netip.ParsePrefix(b.CIDR)
	if err != nil || !cidr.Contains(ip) {
		return false
	}
	for _, e := range b.Except {
		if ex, err := netip.ParsePrefix(e); err == nil && ex.Contains(ip) {
			return false
		}
	}
	return true
}

func portsMatch(ports []networkingv1.NetworkPolicyPort, dstPod *corev1.Pod, proto Protocol, port uint16) bool {
	if len(ports) == 0 {
		return true
	}
	for _, p := range ports {
		pp, _ := protocolOf(ptrOr(p.Protocol, corev1.ProtocolTCP))
		if pp != proto {
			continue
		}
		if p.Port == nil {
			return true
		}
		if p.Port.Type == intstr.Int {
			end := p.Port.IntVal
			if p.EndPort != nil {
				end = *p.EndPort
			}
			if int32(port) >= p.Port.IntVal && int32(port) <= end {
				return true
			}
			continue
		}
		if dstPod == nil {
			continue
		}
		for _, c := range dstPod.Spec.Containers {
			for _, cp := range c.Ports {
				cproto, _ := protocolOf(cp.Protocol)
				if cp.Name == p.Port.StrVal && cproto == proto && uint16(cp.ContainerPort) == port {
					return true
				}
			}
		}
	}
	return false
}

// Allowed decides from the resolved rules, the way an identity-based
// datapath does: the source endpoint's egress rules keyed by the
// destination's identity, then the destination's ingress rules keyed by the
// source's identity. It is what datapaths are expected to implement, and is
// checked against Evaluate in the tests.
func (r *Resolved) Allowed(from, to netip.Addr, proto Protocol, port uint16) Verdict {
	return r.allowed(from, to, proto, port, nil)
}

// AllowedRequest is Allowed for an HTTP request over TCP: what the L7
// proxy decides, checked against EvaluateRequest in the tests.
func (r *Resolved) AllowedRequest(from, to netip.Addr, port uint16, req Request) Verdict {
	return r.allowed(from, to, ProtoTCP, port, &req)
}

// IngressRequest decides a request at the destination endpoint dst from a
// peer with identity peer (and CIDR identity peerCIDR), on both layers of
// dst's ingress: the L7 proxy's decision.
func (r *Resolved) IngressRequest(dst *Endpoint, peer, peerCIDR Identity, port uint16, req Request) Verdict {
	if ok, _, why := sideAllows(dst.Ingress, dst.IngressEnforced, peer, peerCIDR, ProtoTCP, port, &req); !ok {
		return Verdict{Reason: fmt.Sprintf("ingress of %s: %s (identity %d, %s %s on port %d)", dst.Key(), why, peer, req.Method, req.Path, port)}
	}
	if ok, _, why := sideAllows(dst.Mesh, dst.MeshEnforced, peer, peerCIDR, ProtoTCP, port, &req); !ok {
		return Verdict{Reason: fmt.Sprintf("mesh ingress of %s: %s (identity %d, %s %s on port %d)", dst.Key(), why, peer, req.Method, req.Path, port)}
	}
	return Verdict{Allowed: true, Proxied: true, Reason: "allowed"}
}

func (r *Resolved) allowed(from, to netip.Addr, proto Protocol, port uint16, req *Request) Verdict {
	src, srcOK := r.byIP[from]
	dst, dstOK := r.byIP[to]
	if srcOK && from == to {
		return selfVerdict
	}
	// The identities each end's node gives the other address.
	var srcID, dstID Identity
	srcCIDR, dstCIDR := r.CIDRIdentityOf(from), r.CIDRIdentityOf(to)
	if dstOK {
		srcID = r.IdentityOf(dst.Node, from)
	}
	if srcOK {
		dstID = r.IdentityOf(src.Node, to)
	}
	if srcOK {
		if ok, _, why := sideAllows(src.Egress, src.EgressEnforced, dstID, dstCIDR, proto, port, nil); !ok {
			return Verdict{Reason: fmt.Sprintf("egress of %s: %s (identity %d, %s/%d)", src.Key(), why, dstID, proto, port)}
		}
	}
	if dstOK {
		return ingressVerdict(dst, srcID, srcCIDR, proto, port, req)
	}
	return Verdict{Allowed: true, Reason: "allowed"}
}

// ingressVerdict applies dst's ingress: the network layer, then for TCP
// the mesh layer.
func ingressVerdict(dst *Endpoint, srcID, srcCIDR Identity, proto Protocol, port uint16, req *Request) Verdict {
	ok, l7, why := sideAllows(dst.Ingress, dst.IngressEnforced, srcID, srcCIDR, proto, port, req)
	if !ok {
		return Verdict{Reason: fmt.Sprintf("ingress of %s: %s (identity %d, %s/%d)", dst.Key(), why, srcID, proto, port)}
	}
	proxied := l7
	if proto == ProtoTCP {
		ok, l7, why := sideAllows(dst.Mesh, dst.MeshEnforced, srcID, srcCIDR, proto, port, req)
		if !ok {
			return Verdict{Reason: fmt.Sprintf("mesh ingress of %s: %s (identity %d, %s/%d)", dst.Key(), why, srcID, proto, port)}
		}
		proxied = proxied || l7
	}
	return Verdict{Allowed: true, Proxied: proxied, Reason: "allowed"}
}

// AllowedFromIdentity decides from the resolved rules a connection that
// reaches the local endpoint at address to from a peer with identity id and
// address from: what the destination's node decides on a packet from the
// overlay, whose header names the sender's identity. Only the
// destination's ingress applies (network layer, then for TCP the mesh
// layer; ipBlock rules by from's CIDR identity): the source's egress is
// its own node's business, a remote source's its cluster's. It tells apart
// peers that share an address, such as pods of two clusters with
// overlapping pod CIDRs; checked against EvaluateFromRemote in the tests.
// A destination that is no local endpoint is not enforced here.
func (r *Resolved) AllowedFromIdentity(id Identity, from, to netip.Addr, proto Protocol, port uint16) Verdict {
	dst, ok := r.byIP[to]
	if !ok {
		return Verdict{Allowed: true, Reason: "allowed: no local endpoint at the destination"}
	}
	return ingressVerdict(dst, id, r.CIDRIdentityOf(from), proto, port, nil)
}

// AllowedRequestFromIdentity is AllowedFromIdentity for an HTTP request
// over TCP (checked against EvaluateRequestFromRemote).
func (r *Resolved) AllowedRequestFromIdentity(id Identity, from, to netip.Addr, port uint16, req Request) Verdict {
	dst, ok := r.byIP[to]
	if !ok {
		return Verdict{Allowed: true, Reason: "allowed: no local endpoint at the destination"}
	}
	return ingressVerdict(dst, id, r.CIDRIdentityOf(from), ProtoTCP, port, &req)
}

// sideAllows applies one endpoint's rules for one direction: a matching
// deny rule wins; else a matching allow rule allows; else the default
// (deny when enforced). Without req it decides the connection: an L7 allow
// rule admits it, an L7 deny rule cannot deny it. With req it decides the
// request: L7 rules match only the requests their HTTP rules match. l7
// reports whether an L7 rule matched the connection.
func sideAllows(rules []Rule, enforced bool, peer, peerCIDR Identity, proto Protocol, port uint16, req *Request) (ok, l7 bool, why string) {
	allow := false
	for _, r := range rules {
		if !ruleMatches(r, peer, proto, port) && !(peerCIDR != 0 && ruleMatches(r, peerCIDR, proto, port)) {
			continue
		}
		match := true
		if r.IsL7() {
			l7 = true
			if req != nil {
				match = httpMatches(r.HTTP, *req)
			} else {
				match = !r.Deny
			}
		}
		if !match {
			continue
		}
		if r.Deny {
			return false, l7, "denied by a deny rule of " + r.Policy
		}
		allow = true
	}
	if allow || !enforced {
		return true, l7, ""
	}
	return false, l7, "no rule allows it"
}

func ruleMatches(r Rule, peer Identity, proto Protocol, port uint16) bool {
	if !r.AnyPeer && !containsIdentity(r.Peers, peer) {
		return false
	}
	for _, p := range r.Ports {
		if p.Contains(proto, port) {
			return true
		}
	}
	return false
}

func containsIdentity(ids []Identity, id Identity) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}

// EgressAllowed decides only src's egress rules for a connection to
// address to: what a proxy in the source pod (a sidecar's outbound
// listener) can check.
func (r *Resolved) EgressAllowed(src *Endpoint, to netip.Addr, proto Protocol, port uint16) Verdict {
	dstID := r.IdentityOf(src.Node, to)
	if ok, _, why := sideAllows(src.Egress, src.EgressEnforced, dstID, r.CIDRIdentityOf(to), proto, port, nil); !ok {
		return Verdict{Reason: fmt.Sprintf("egress of %s: %s (identity %d, %s/%d)", src.Key(), why, dstID, proto, port)}
	}
	return Verdict{Allowed: true, Reason: "allowed"}
}

// IngressAllowed decides only dst's ingress rules (network, then for TCP
// the mesh layer) for a connection from address from: what a proxy in the
// destination pod (a sidecar's inbound listener) can check.
func (r *Resolved) IngressAllowed(dst *Endpoint, from netip.Addr, proto Protocol, port uint16) Verdict {
	srcID, srcCIDR := r.IdentityOf(dst.Node, from), r.CIDRIdentityOf(from)
	ok, l7, why := sideAllows(dst.Ingress, dst.IngressEnforced, srcID, srcCIDR, proto, port, nil)
	if !ok {
		return Verdict{Reason: fmt.Sprintf("ingress of %s: %s (identity %d, %s/%d)", dst.Key(), why, srcID, proto, port)}
	}
	if proto == ProtoTCP {
		okM, l7M, whyM := sideAllows(dst.Mesh, dst.MeshEnforced, srcID, srcCIDR, proto, port, nil)
		if !okM {
			return Verdict{Reason: fmt.Sprintf("mesh ingress of %s: %s (identity %d, %s/%d)", dst.Key(), whyM, srcID, proto, port)}
		}
		l7 = l7 || l7M
	}
	return Verdict{Allowed: true, Proxied: l7, Reason: "allowed"}
}
