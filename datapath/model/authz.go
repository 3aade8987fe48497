package model

import (
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// IstioRootNamespace holds mesh-wide AuthorizationPolicies: they apply to
// workloads of every namespace.
const IstioRootNamespace = "istio-system"

// TrustDomain of the principals this cluster issues. In a cluster mesh,
// the other clusters' pods have principals in their own trust domains
// (TrustDomainOf), and a local pod's principal also matches in
// <local cluster>.local: see the package documentation.
const TrustDomain = "cluster.local"

// AuthorizationPolicy is the subset of security.istio.io/v1
// AuthorizationPolicy fastpath enforces: the L4 part in eBPF, and methods
// and paths (with their not* forms) in the node's L7 proxy. Hosts, request
// principals and conditions (when) are refused with a clear error.
type AuthorizationPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              AuthzSpec `json:"spec"`
}

// AuthzSpec is the policy body.
type AuthzSpec struct {
	Selector *AuthzSelector `json:"selector,omitempty"`
	// Action is ALLOW (default) or DENY.
	Action string      `json:"action,omitempty"`
	Rules  []AuthzRule `json:"rules,omitempty"`
}

// AuthzSelector selects workloads by labels.
type AuthzSelector struct {
	MatchLabels map[string]string `json:"matchLabels,omitempty"`
}

// AuthzRule matches when one of From matches and one of To matches (a
// missing list matches everything).
type AuthzRule struct {
	From []AuthzFrom `json:"from,omitempty"`
	To   []AuthzTo   `json:"to,omitempty"`
	When []any       `json:"when,omitempty"`
}

// AuthzFrom wraps a source.
type AuthzFrom struct {
	Source AuthzSource `json:"source"`
}

// AuthzTo wraps an operation.
type AuthzTo struct {
	Operation AuthzOperation `json:"operation"`
}

// AuthzSource is a peer: every field given must match (values of a field
// are alternatives).
type AuthzSource struct {
	Principals        []string `json:"principals,omitempty"`
	NotPrincipals     []string `json:"notPrincipals,omitempty"`
	Namespaces        []string `json:"namespaces,omitempty"`
	NotNamespaces     []string `json:"notNamespaces,omitempty"`
	IPBlocks          []string `json:"ipBlocks,omitempty"`
	NotIPBlocks       []string `json:"notIpBlocks,omitempty"`
	RequestPrincipals []string `json:"requestPrincipals,omitempty"`
}

// AuthzOperation is the destination side.
type AuthzOperation struct {
	Ports      []string `json:"ports,omitempty"`
	NotPorts   []string `json:"notPorts,omitempty"`
	Methods    []string `json:"methods,omitempty"`
	NotMethods []string `json:"notMethods,omitempty"`
	Paths      []string `json:"paths,omitempty"`
	NotPaths   []string `json:"notPaths,omitempty"`
	Hosts      []string `json:"hosts,omitempty"`
	NotHosts   []string `json:"notHosts,omitempty"`
}

// isL7 reports whether the operation has request-level fields.
func (op AuthzOperation) isL7() bool {
	return len(op.Methods)+len(op.NotMethods)+len(op.Paths)+len(op.NotPaths) > 0
}

// http returns the operation's request-level part.
func (op AuthzOperation) http() HTTPRule {
	return HTTPRule{Methods: op.Methods, NotMethods: op.NotMethods, Paths: op.Paths, NotPaths: op.NotPaths}
}

func (a *AuthorizationPolicy) action() string {
	if a.Spec.Action == "" {
		return "ALLOW"
	}
	return a.Spec.Action
}

func validateAuthz(a *AuthorizationPolicy) field.ErrorList {
	var all field.ErrorList
	spec := field.NewPath("spec")
	switch a.action() {
	case "ALLOW", "DENY":
	default:
		all = append(all, field.NotSupported(spec.Child("action"), a.Spec.Action, []string{"ALLOW", "DENY"}))
	}
	if a.Spec.Selector != nil {
		if _, err := metav1.LabelSelectorAsSelector(&metav1.LabelSelector{MatchLabels: a.Spec.Selector.MatchLabels}); err != nil {
			all = append(all, field.Invalid(spec.Child("selector"), a.Spec.Selector, err.Error()))
		}
	}
	for i, r := range a.Spec.Rules {
		rp := spec.Child("rules").Index(i)
		if len(r.When) > 0 {
			all = append(all, field.Forbidden(rp.Child("when"), "conditions are not supported"))
		}
		for j, f := range r.From {
			sp := rp.Child("from").Index(j).Child("source")
			if len(f.Source.RequestPrincipals) > 0 {
				all = append(all, field.Forbidden(sp.Child("requestPrincipals"), "request principals are L7 (JWT); not supported yet"))
			}
			for k, b := range append(append([]string(nil), f.Source.IPBlocks...), f.Source.NotIPBlocks...) {
				if _, err := parseAddrOrPrefix(b); err != nil {
					all = append(all, field.Invalid(sp.Child("ipBlocks").Index(k), b, "not an IP address or CIDR"))
				}
			}
		}
		for j, t := range r.To {
			op := rp.Child("to").Index(j).Child("operation")
			if len(t.Operation.Hosts)+len(t.Operation.NotHosts) > 0 {
				all = append(all, field.Forbidden(op.Child("hosts"), "hosts are not supported (methods and paths are)"))
			}
			for k, m := range append(append([]string(nil), t.Operation.Methods...), t.Operation.NotMethods...) {
				if m == "" || strings.ContainsAny(m, " \t*") {
					all = append(all, field.Invalid(op.Child("methods").Index(k), m, "an HTTP method name such as GET"))
				}
			}
			for k, pth := range append(append([]string(nil), t.Operation.Paths...), t.Operation.NotPaths...) {
				if pth == "" || (pth != "*" && strings.Contains(strings.TrimSuffix(strings.TrimPrefix(pth, "*"), "*"), "*")) {
					all = append(all, field.Invalid(op.Child("paths").Index(k), pth, `a path: exact, "prefix*", "*suffix" or "*"`))
				}
			}
			for k, p := range t.Operation.Ports {
				if _, err := parseAuthzPort(p); err != nil {
					all = append(all, field.Invalid(op.Child("ports").Index(k), p, err.Error()))
				}
			}
			for k, p := range t.Operation.NotPorts {
				if _, err := parseAuthzPort(p); err != nil {
					all = append(all, field.Invalid(op.Child("notPorts").Index(k), p, err.Error()))
				}
			}
		}
	}
	return all
}

func parseAuthzPort(s string) (uint16, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 65535 {
		return 0, fmt.Errorf("port %q: must be a number between 1 and 65535", s)
	}
	return uint16(n), nil
}

// parseAddrOrPrefix accepts "10.0.0.1" or "10.0.0.0/8".
func parseAddrOrPrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		return netip.ParsePrefix(s)
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// principalMatches is Istio's string match, for principals, namespaces and
// paths alike: exact, "*" (any non-empty value), "prefix*" or "*suffix".
func principalMatches(pattern, principal string) bool {
	switch {
	case pattern == "*":
		return principal != ""
	case strings.HasSuffix(pattern, "*"):
		return strings.HasPrefix(principal, strings.TrimSuffix(pattern, "*"))
	case strings.HasPrefix(pattern, "*"):
		return strings.HasSuffix(principal, strings.TrimPrefix(pattern, "*"))
	}
	return pattern == principal
}

func anyMatch(patterns []string, v string) bool {
	for _, p := range patterns {
		if principalMatches(p, v) {
			return true
		}
	}
	return false
}

// anyMatchOf reports whether a pattern matches one of the values.
func anyMatchOf(patterns, values []string) bool {
	for _, v := range values {
		if anyMatch(patterns, v) {
			return true
		}
	}
	return false
}

// Principal is the Istio identity of a pod: trust domain, namespace and
// service account.
func Principal(namespace, serviceAccount string) string {
	if serviceAccount == "" {
		serviceAccount = "default"
	}
	return fmt.Sprintf("%s/ns/%s/sa/%s", TrustDomain, namespace, serviceAccount)
}

// sourceMatchesPod decides the principal and namespace parts of a source
// for a peer pod with namespace ns and its principals (one per trust
// domain it is known in), or for an address outside the mesh (inMesh
// false), which has neither.
func sourceMatchesPod(s AuthzSource, ns string, principals []string, inMesh bool) bool {
	namespace := ""
	if inMesh {
		namespace = ns
	} else {
		principals = []string{""}
	}
	if len(s.Principals) > 0 && !anyMatchOf(s.Principals, principals) {
		return false
	}
	if len(s.NotPrincipals) > 0 && (!inMesh || anyMatchOf(s.NotPrincipals, principals)) {
		return false
	}
	if len(s.Namespaces) > 0 && !anyMatch(s.Namespaces, namespace) {
		return false
	}
	if len(s.NotNamespaces) > 0 && (!inMesh || anyMatch(s.NotNamespaces, namespace)) {
		return false
	}
	return true
}

func sourceMatchesAddr(s AuthzSource, ip netip.Addr) bool {
	contains := func(list []string) bool {
		for _, b := range list {
			if p, err := parseAddrOrPrefix(b); err == nil && p.Contains(ip) {
				return true
			}
		}
		return false
	}
	if len(s.IPBlocks) > 0 && !contains(s.IPBlocks) {
		return false
	}
	if len(s.NotIPBlocks) > 0 && contains(s.NotIPBlocks) {
		return false
	}
	return true
}

// operationPorts returns the port ranges one operation allows (TCP).
func operationPorts(op AuthzOperation) []PortRange {
	allowed := make([]bool, 65536)
	if len(op.Ports) == 0 {
		for p := 1; p < 65536; p++ {
			allowed[p] = true
		}
	}
	for _, s := range op.Ports {
		if p, err := parseAuthzPort(s); err == nil {
			allowed[p] = true
		}
	}
	for _, s := range op.NotPorts {
		if p, err := parseAuthzPort(s); err == nil {
			allowed[p] = false
		}
	}
	if len(op.Ports) == 0 && len(op.NotPorts) == 0 {
		return []PortRange{{Protocol: ProtoTCP}}
	}
	var out []PortRange
	for p := 1; p < 65536; {
		if !allowed[p] {
			p++
			continue
		}
		q := p
		for q+1 < 65536 && allowed[q+1] {
			q++
		}
		out = append(out, PortRange{Protocol: ProtoTCP, Port: uint16(p), EndPort: uint16(q)})
		p = q + 1
	}
	return out
}

// selects reports whether the policy selects a pod of namespace ns with
// its own labels (LabelCluster included in a cluster mesh).
func (a *AuthorizationPolicy) selects(ns string, own labels.Set) bool {
	if a.Namespace != IstioRootNamespace && a.Namespace != ns {
		return false
	}
	if a.Spec.Selector == nil {
		return true
	}
	return labels.SelectorFromSet(a.Spec.Selector.MatchLabels).Matches(own)
}

// applyAuthz adds an AuthorizationPolicy's rules to the mesh layer of the
// endpoints it selects. Sources resolve to identities: principals and
// namespaces to the pod identities (which carry namespace and service
// account), ipBlocks to CIDR identities of the addresses.
func (r *Resolved) applyAuthz(a *AuthorizationPolicy) {
	name := a.Namespace + "/" + a.Name
	deny := a.action() == "DENY"
	var rules []Rule
	for _, ar := range a.Spec.Rules {
		// One rule per distinct L7 part: the L4-only operations together,
		// and each operation with methods or paths on its own.
		type part struct {
			ports []PortRange
			http  []HTTPRule
		}
		var parts []part
		var l4 []PortRange
		if len(ar.To) == 0 {
			l4 = []PortRange{{Protocol: ProtoTCP}}
		}
		for _, t := range ar.To {
			if t.Operation.isL7() {
				parts = append(parts, part{operationPorts(t.Operation), []HTTPRule{t.Operation.http()}})
			} else {
				l4 = append(l4, operationPorts(t.Operation)...)
			}
		}
		if len(l4) > 0 || len(parts) == 0 {
			parts = append([]part{{ports: l4}}, parts...)
		}
		for _, pt := range parts {
			if len(ar.From) == 0 {
				rules = append(rules, Rule{Policy: name, Deny: deny, AnyPeer: true, Ports: pt.ports, HTTP: pt.http})
				continue
			}
			for _, f := range ar.From {
				rules = append(rules, Rule{Policy: name, Deny: deny, Peers: r.authzPeers(f.Source), Ports: pt.ports, HTTP: pt.http})
			}
		}
	}
	for _, ep := range r.Endpoints {
		if !a.selects(ep.Namespace, ep.ownLabels()) {
			continue
		}
		if !deny {
			ep.MeshEnforced = true
		}
		ep.Mesh = append(ep.Mesh, rules...)
	}
}

func (r *Resolved) authzPeers(s AuthzSource) []Identity {
	seen := map[Identity]bool{}
	var out []Identity
	add := func(id Identity) {
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	peerFields := len(s.Principals)+len(s.NotPrincipals)+len(s.Namespaces)+len(s.NotNamespaces) > 0
	addrFields := len(s.IPBlocks)+len(s.NotIPBlocks) > 0
	if !addrFields || peerFields {
		// Pods by principal and namespace (and, when ipBlocks are also
		// given, by their address: identity-wide, see the docs).
		for _, ep := range r.Endpoints {
			if sourceMatchesPod(s, ep.Namespace, principals(r.localDomains, ep.Namespace, ep.Labels[LabelServiceAccount]), true) && (!addrFields || sourceMatchesAddr(s, ep.IP)) {
				add(ep.Identity)
			}
		}
		// Remote pods by their principals in their cluster's trust
		// domain (and their namespace).
		if addrFields {
			for _, e := range r.RemoteEndpoints {
				if sourceMatchesPod(s, e.Namespace, principals([]string{TrustDomainOf(e.Cluster)}, e.Namespace, e.Labels[LabelServiceAccount]), true) && sourceMatchesAddr(s, e.IP) {
					add(e.Identity)
				}
			}
		} else {
			for _, ri := range r.remoteIDs {
				if sourceMatchesPod(s, ri.namespace, principals(ri.domains, ri.namespace, ri.sa), true) {
					add(ri.id)
				}
			}
		}
	}
	if addrFields && !peerFields {
		// Addresses: the CIDR identities of prefixes inside the blocks.
		for prefix, id := range r.CIDRs {
			if authzBlocksCover(s, prefix) {
				add(id)
			}
		}
	}
	sortIdentities(out)
	return out
}

func authzBlocksCover(s AuthzSource, prefix netip.Prefix) bool {
	b := networkingv1.IPBlock{}
	if len(s.IPBlocks) == 0 {
		b.CIDR = "0.0.0.0/0"
		b.Except = s.NotIPBlocks
		return ipBlockCoversLoose(b, prefix)
	}
	for _, blk := range s.IPBlocks {
		p, err := parseAddrOrPrefix(blk)
		if err != nil {
			continue
		}
		if ipBlockCoversLoose(networkingv1.IPBlock{CIDR: p.String(), Except: s.NotIPBlocks}, prefix) {
			return true
		}
	}
	return false
}

// ipBlockCoversLoose is ipBlockCovers for excepts that need not lie inside
// the block (Istio's notIpBlocks are independent of ipBlocks). A prefix that
// merely contains an except is still covered: the except is in the ipcache
// too, so its addresses resolve to the except's own identity.
func ipBlockCoversLoose(b networkingv1.IPBlock, prefix netip.Prefix) bool {
	cidr, err := netip.ParsePrefix(b.CIDR)
	if err != nil || !prefixWithin(prefix, cidr.Masked()) {
		return false
	}
	for _, e := range b.Except {
		ex, err := parseAddrOrPrefix(e)
		if err == nil && prefixWithin(prefix, ex.Masked()) {
			return false
		}
	}
	return true
}

// authzPrefixes lists the prefixes AuthorizationPolicies name, so that the
// ipcache has CIDR identities for them.
func authzPrefixes(aps []AuthorizationPolicy) []string {
	var out []string
	for _, a := range aps {
		for _, r := range a.Spec.Rules {
			for _, f := range r.From {
				for _, b := range append(append([]string(nil), f.Source.IPBlocks...), f.Source.NotIPBlocks...) {
					if p, err := parseAddrOrPrefix(b); err == nil {
						out = append(out, p.Masked().String())
					}
				}
			}
		}
	}
	if len(out) > 0 {
		out = append(out, "0.0.0.0/0") // notIpBlocks alone mean "everything but"
	}
	sort.Strings(out)
	return out
}

// evalAuthz is the reference evaluator's mesh layer: for TCP to a pod, a
// matching DENY policy denies; when ALLOW policies select the pod, one must
// match. Without req it decides the connection: an operation with methods
// or paths then admits it (ALLOW) but cannot deny it (DENY), since only the
// requests can tell. With req it decides the request. l7 reports whether an
// operation with methods or paths matched the connection (the proxy then
// carries it).
func evalAuthz(objs *Objects, dst *corev1.Pod, src evalPeer, srcIP netip.Addr, port uint16, req *Request) (ok, l7 bool, why string) {
	selected, allowed := false, false
	dstOwn := labels.Set(evalOwnLabels(objs, dst))
	for i := range objs.AuthorizationPolicies {
		a := &objs.AuthorizationPolicies[i]
		if !a.selects(dst.Namespace, dstOwn) {
			continue
		}
		deny := a.action() == "DENY"
		matches := false
		for _, r := range a.Spec.Rules {
			m, rl7 := authzRuleMatches(objs, r, src, srcIP, port, req, deny)
			matches = matches || m
			l7 = l7 || rl7
		}
		if deny {
			if matches {
				return false, l7, fmt.Sprintf("DENY AuthorizationPolicy %s/%s matches", a.Namespace, a.Name)
			}
			continue
		}
		selected = true
		allowed = allowed || matches
	}
	if selected && !allowed {
		return false, l7, fmt.Sprintf("no ALLOW AuthorizationPolicy selecting %s/%s matches", dst.Namespace, dst.Name)
	}
	return true, l7, ""
}

// authzRuleMatches decides one rule for the connection (req nil) or the
// request; l7 reports whether an operation with methods or paths matched
// the source and port.
func authzRuleMatches(objs *Objects, r AuthzRule, src evalPeer, srcIP netip.Addr, port uint16, req *Request, deny bool) (match, l7 bool) {
	fromOK := len(r.From) == 0
	for _, f := range r.From {
		if sourceMatchesPod(f.Source, src.namespace(), src.principals(objs), src.isPod()) && sourceMatchesAddr(f.Source, srcIP) {
			fromOK = true
		}
	}
	if !fromOK {
		return false, false
	}
	if len(r.To) == 0 {
		return true, false
	}
	for _, t := range r.To {
		portOK := false
		for _, pr := range operationPorts(t.Operation) {
			if pr.Contains(ProtoTCP, port) {
				portOK = true
			}
		}
		if !portOK {
			continue
		}
		if !t.Operation.isL7() {
			match = true
			continue
		}
		l7 = true
		switch {
		case req != nil:
			match = match || t.Operation.http().Matches(*req)
		case !deny:
			match = true
		}
	}
	return match, l7
}
