package model

import (
	"fmt"
	"net/netip"

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
func Evaluate(objs *Objects, from, to netip.Addr, proto Protocol, port uint16) Verdict {
	return evaluate(objs, from, to, proto, port, nil)
}

// EvaluateRequest is the reference evaluator for an HTTP request over TCP:
// the connection must be allowed, and where L7 rules apply (Cilium
// rules.http, AuthorizationPolicy methods and paths) the request must
// satisfy them.
func EvaluateRequest(objs *Objects, from, to netip.Addr, port uint16, req Request) Verdict {
	return evaluate(objs, from, to, ProtoTCP, port, &req)
}

func evaluate(objs *Objects, from, to netip.Addr, proto Protocol, port uint16, req *Request) Verdict {
	nsLabels := map[string]map[string]string{}
	for _, ns := range objs.Namespaces {
		nsLabels[ns.Name] = ns.Labels
	}
	podAt := func(a netip.Addr) *corev1.Pod {
		for i := range objs.Pods {
			if ip, err := netip.ParseAddr(objs.Pods[i].Status.PodIP); err == nil && ip == a {
				return &objs.Pods[i]
			}
		}
		return nil
	}
	src, dst := podAt(from), podAt(to)
	if src != nil && from == to {
		return selfVerdict
	}
	proxied := false
	if src != nil {
		if ok, _, why := evalSide(objs, src, dst, to, proto, port, true, nsLabels, nil); !ok {
			return Verdict{Allowed: false, Reason: why}
		}
	}
	if dst != nil {
		ok, l7, why := evalSide(objs, dst, src, from, proto, port, false, nsLabels, req)
		if !ok {
			return Verdict{Allowed: false, Reason: why}
		}
		proxied = l7
		if proto == ProtoTCP {
			ok, l7, why := evalAuthz(objs, dst, src, from, port, req)
			if !ok {
				return Verdict{Allowed: false, Reason: why}
			}
			proxied = proxied || l7
		}
	}
	return Verdict{Allowed: true, Proxied: proxied, Reason: "allowed"}
}

// evalSide checks the policies that select subject, for egress (subject is
// the source) or ingress (subject is the destination). peer is the pod at
// the other end (nil for a non-pod address peerIP). The port's owner for
// named ports is always the destination pod. A matching deny rule (Cilium)
// denies whatever allows; otherwise a selected direction needs an allow.
// With req, an allow rule with L7 rules for the port allows only requests
// they match; l7 reports whether such a rule matched the connection.
func evalSide(objs *Objects, subject, peer *corev1.Pod, peerIP netip.Addr, proto Protocol, port uint16, egress bool,
	nsLabels map[string]map[string]string, req *Request) (ok, l7 bool, why string) {
	dir := "ingress"
	if egress {
		dir = "egress"
	}
	dstPod := subject
	if egress {
		dstPod = peer
	}
	selected, allowed := false, false
	for i := range objs.NetworkPolicies {
		np := &objs.NetworkPolicies[i]
		if np.Namespace != subject.Namespace || !mustSelector(&np.Spec.PodSelector).Matches(labels.Set(subject.Labels)) {
			continue
		}
		ing, eg := policyTypes(np)
		if (egress && !eg) || (!egress && !ing) {
			continue
		}
		selected = true
		if egress {
			for _, r := range np.Spec.Egress {
				if peersMatch(r.To, np.Namespace, peer, peerIP, nsLabels) && portsMatch(r.Ports, dstPod, proto, port) {
					allowed = true
				}
			}
		} else {
			for _, r := range np.Spec.Ingress {
				if peersMatch(r.From, np.Namespace, peer, peerIP, nsLabels) && portsMatch(r.Ports, dstPod, proto, port) {
					allowed = true
				}
			}
		}
	}
	subjectLabels := identityLabels(subject, nsLabels[subject.Namespace])
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
func ciliumPeerMatches(objs *Objects, p ciliumPeers, ns string, subject, peer *corev1.Pod, peerIP netip.Addr, nsLabels map[string]map[string]string) bool {
	if p.noPeers() {
		return len(p.ports) > 0
	}
	if peer != nil {
		pl := identityLabels(peer, nsLabels[peer.Namespace])
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
	for _, e := range p.entities {
		switch e {
		case "all":
			return true
		case "world":
			if peer == nil && !isNode {
				return true
			}
		case "cluster":
			if peer != nil || isNode {
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

func peersMatch(peers []networkingv1.NetworkPolicyPeer, ns string, peer *corev1.Pod, peerIP netip.Addr, nsLabels map[string]map[string]string) bool {
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
		if peer == nil {
			continue
		}
		if p.NamespaceSelector == nil {
			if peer.Namespace != ns {
				continue
			}
		} else if !mustSelector(p.NamespaceSelector).Matches(labels.Set(nsLabels[peer.Namespace])) {
			continue
		}
		if p.PodSelector != nil && !mustSelector(p.PodSelector).Matches(labels.Set(peer.Labels)) {
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
	proxied := false
	if srcOK {
		if ok, _, why := sideAllows(src.Egress, src.EgressEnforced, dstID, dstCIDR, proto, port, nil); !ok {
			return Verdict{Reason: fmt.Sprintf("egress of %s: %s (identity %d, %s/%d)", src.Key(), why, dstID, proto, port)}
		}
	}
	if dstOK {
		ok, l7, why := sideAllows(dst.Ingress, dst.IngressEnforced, srcID, srcCIDR, proto, port, req)
		if !ok {
			return Verdict{Reason: fmt.Sprintf("ingress of %s: %s (identity %d, %s/%d)", dst.Key(), why, srcID, proto, port)}
		}
		proxied = l7
		if proto == ProtoTCP {
			ok, l7, why := sideAllows(dst.Mesh, dst.MeshEnforced, srcID, srcCIDR, proto, port, req)
			if !ok {
				return Verdict{Reason: fmt.Sprintf("mesh ingress of %s: %s (identity %d, %s/%d)", dst.Key(), why, srcID, proto, port)}
			}
			proxied = proxied || l7
		}
	}
	return Verdict{Allowed: true, Proxied: proxied, Reason: "allowed"}
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
