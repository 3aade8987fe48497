package model

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// CiliumNetworkPolicy is the subset of cilium.io/v2 CiliumNetworkPolicy the
// model understands. Decoding is strict: a field outside the subset is an
// error naming it, never silently ignored.
type CiliumNetworkPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              *CiliumRule  `json:"spec,omitempty"`
	Specs             []CiliumRule `json:"specs,omitempty"`
}

// Rules returns spec and specs together.
func (c *CiliumNetworkPolicy) Rules() []CiliumRule {
	var out []CiliumRule
	if c.Spec != nil {
		out = append(out, *c.Spec)
	}
	return append(out, c.Specs...)
}

// CiliumRule is one rule of a CiliumNetworkPolicy.
type CiliumRule struct {
	Description       string                `json:"description,omitempty"`
	EndpointSelector  *metav1.LabelSelector `json:"endpointSelector,omitempty"`
	Ingress           []CiliumIngressRule   `json:"ingress,omitempty"`
	IngressDeny       []CiliumIngressRule   `json:"ingressDeny,omitempty"`
	Egress            []CiliumEgressRule    `json:"egress,omitempty"`
	EgressDeny        []CiliumEgressRule    `json:"egressDeny,omitempty"`
	EnableDefaultDeny *DefaultDenyConfig    `json:"enableDefaultDeny,omitempty"`
}

// DefaultDenyConfig overrides whether a rule puts its endpoints in default
// deny per direction (Cilium: on for each direction that has rules).
type DefaultDenyConfig struct {
	Ingress *bool `json:"ingress,omitempty"`
	Egress  *bool `json:"egress,omitempty"`
}

// CiliumIngressRule allows (or, in ingressDeny, denies) traffic from peers.
type CiliumIngressRule struct {
	FromEndpoints []metav1.LabelSelector `json:"fromEndpoints,omitempty"`
	FromCIDR      []string               `json:"fromCIDR,omitempty"`
	FromCIDRSet   []CIDRRule             `json:"fromCIDRSet,omitempty"`
	FromEntities  []string               `json:"fromEntities,omitempty"`
	ToPorts       []CiliumPortRule       `json:"toPorts,omitempty"`
}

// CiliumEgressRule allows (or, in egressDeny, denies) traffic to peers.
type CiliumEgressRule struct {
	ToEndpoints []metav1.LabelSelector `json:"toEndpoints,omitempty"`
	ToCIDR      []string               `json:"toCIDR,omitempty"`
	ToCIDRSet   []CIDRRule             `json:"toCIDRSet,omitempty"`
	ToEntities  []string               `json:"toEntities,omitempty"`
	ToPorts     []CiliumPortRule       `json:"toPorts,omitempty"`
}

// CIDRRule is a CIDR with exceptions.
type CIDRRule struct {
	CIDR   string   `json:"cidr"`
	Except []string `json:"except,omitempty"`
}

// CiliumPortRule lists ports, and optionally L7 rules.
type CiliumPortRule struct {
	Ports []CiliumPortProtocol `json:"ports,omitempty"`
	Rules *CiliumL7Rules       `json:"rules,omitempty"`
}

// CiliumPortProtocol is a port (a number as a string), an optional end of
// range, and a protocol (TCP, UDP, SCTP or ANY).
type CiliumPortProtocol struct {
	Port     string `json:"port"`
	EndPort  int32  `json:"endPort,omitempty"`
	Protocol string `json:"protocol,omitempty"`
}

// CiliumL7Rules are the L7 rules of a port rule.
type CiliumL7Rules struct {
	HTTP []CiliumHTTPRule `json:"http,omitempty"`
}

// CiliumHTTPRule matches HTTP requests.
type CiliumHTTPRule struct {
	Method string `json:"method,omitempty"`
	Path   string `json:"path,omitempty"`
}

// Entities a rule may name.
var ciliumEntities = map[string]bool{"all": true, "world": true, "cluster": true, "host": true, "remote-node": true}

// ciliumSelector converts a Cilium endpoint selector (label keys may carry a
// "k8s:" or "any:" source prefix) into a selector over identity labels. A
// selector that does not name the namespace label is limited to the
// policy's namespace, as Cilium does for namespaced policies.
func ciliumSelector(sel metav1.LabelSelector, ns string) (labels.Selector, error) {
	strip := func(k string) string {
		for _, p := range []string{"k8s:", "any:"} {
			k = strings.TrimPrefix(k, p)
		}
		return k
	}
	out := metav1.LabelSelector{MatchLabels: map[string]string{}}
	namesNS := false
	for k, v := range sel.MatchLabels {
		k = strip(k)
		out.MatchLabels[k] = v
		namesNS = namesNS || k == LabelNamespace
	}
	for _, e := range sel.MatchExpressions {
		e.Key = strip(e.Key)
		out.MatchExpressions = append(out.MatchExpressions, e)
		namesNS = namesNS || e.Key == LabelNamespace
	}
	if !namesNS && ns != "" {
		out.MatchLabels[LabelNamespace] = ns
	}
	return metav1.LabelSelectorAsSelector(&out)
}

func validateCNP(c *CiliumNetworkPolicy) field.ErrorList {
	var all field.ErrorList
	rules := c.Rules()
	if len(rules) == 0 {
		all = append(all, field.Required(field.NewPath("spec"), "spec or specs"))
	}
	for i, r := range rules {
		fp := field.NewPath("spec")
		if c.Spec == nil || i > 0 {
			idx := i
			if c.Spec != nil {
				idx = i - 1
			}
			fp = field.NewPath("specs").Index(idx)
		}
		if r.EndpointSelector == nil {
			all = append(all, field.Required(fp.Child("endpointSelector"), "the endpoints the rule applies to"))
		} else {
			all = append(all, validateCiliumSelector(*r.EndpointSelector, fp.Child("endpointSelector"))...)
		}
		for j, in := range r.Ingress {
			all = append(all, validateCiliumPeers(in.FromEndpoints, in.FromCIDR, in.FromCIDRSet, in.FromEntities, in.ToPorts, fp.Child("ingress").Index(j), "from", false)...)
		}
		for j, in := range r.IngressDeny {
			all = append(all, validateCiliumPeers(in.FromEndpoints, in.FromCIDR, in.FromCIDRSet, in.FromEntities, in.ToPorts, fp.Child("ingressDeny").Index(j), "from", true)...)
		}
		for j, eg := range r.Egress {
			all = append(all, validateCiliumPeers(eg.ToEndpoints, eg.ToCIDR, eg.ToCIDRSet, eg.ToEntities, eg.ToPorts, fp.Child("egress").Index(j), "to", false)...)
		}
		for j, eg := range r.EgressDeny {
			all = append(all, validateCiliumPeers(eg.ToEndpoints, eg.ToCIDR, eg.ToCIDRSet, eg.ToEntities, eg.ToPorts, fp.Child("egressDeny").Index(j), "to", true)...)
		}
	}
	return all
}

func validateCiliumSelector(sel metav1.LabelSelector, fp *field.Path) field.ErrorList {
	if _, err := ciliumSelector(sel, ""); err != nil {
		return validateSelector(&sel, fp)
	}
	return nil
}

func validateCiliumPeers(eps []metav1.LabelSelector, cidrs []string, sets []CIDRRule, entities []string, ports []CiliumPortRule, fp *field.Path, dir string, deny bool) field.ErrorList {
	var all field.ErrorList
	cap := func(s string) string { return dir + strings.ToUpper(s[:1]) + s[1:] }
	for i, s := range eps {
		all = append(all, validateCiliumSelector(s, fp.Child(cap("endpoints")).Index(i))...)
	}
	for i, c := range cidrs {
		if _, err := netip.ParsePrefix(c); err != nil {
			all = append(all, field.Invalid(fp.Child(cap("CIDR")).Index(i), c, "not a CIDR"))
		}
	}
	for i, s := range sets {
		b := ipBlockOf(s)
		all = append(all, validateIPBlock(&b, fp.Child(cap("CIDRSet")).Index(i))...)
	}
	for i, e := range entities {
		if !ciliumEntities[e] {
			all = append(all, field.NotSupported(fp.Child(cap("entities")).Index(i), e, []string{"all", "world", "cluster", "host", "remote-node"}))
		}
	}
	for i, pr := range ports {
		pp := fp.Child("toPorts").Index(i)
		for j, p := range pr.Ports {
			if _, _, _, err := parseCiliumPort(p); err != nil {
				all = append(all, field.Invalid(pp.Child("ports").Index(j), p, err.Error()))
			}
		}
		if pr.Rules != nil && len(pr.Rules.HTTP) > 0 {
			all = append(all, validateCiliumL7(pr, pp, dir, deny)...)
		}
	}
	return all
}

// validateCiliumL7 checks a port rule with rules.http: L7 rules apply to
// TCP ports of ingress allow rules (the proxy sits on the destination's
// node), and their method and path must be regular expressions.
func validateCiliumL7(pr CiliumPortRule, pp *field.Path, dir string, deny bool) field.ErrorList {
	var all field.ErrorList
	switch {
	case deny:
		return append(all, field.Forbidden(pp.Child("rules"), "deny rules cannot have L7 rules"))
	case dir != "from":
		return append(all, field.Forbidden(pp.Child("rules", "http"),
			"egress L7 rules are not supported: fastpath's L7 proxy enforces HTTP rules on the destination pod's node (ingress rules)"))
	case len(pr.Ports) == 0:
		all = append(all, field.Required(pp.Child("ports"), "L7 rules need the TCP ports they apply to"))
	}
	for j, p := range pr.Ports {
		if proto, lo, _, err := parseCiliumPort(p); err == nil && (proto != ProtoTCP || lo == 0) {
			all = append(all, field.Invalid(pp.Child("ports").Index(j), p, "L7 rules need protocol TCP and a port"))
		}
	}
	for j, h := range pr.Rules.HTTP {
		hp := pp.Child("rules", "http").Index(j)
		if _, err := compileFull(h.Method); err != nil {
			all = append(all, field.Invalid(hp.Child("method"), h.Method, "not a regular expression: "+err.Error()))
		}
		if _, err := compileFull(h.Path); err != nil {
			all = append(all, field.Invalid(hp.Child("path"), h.Path, "not a regular expression: "+err.Error()))
		}
	}
	return all
}

// l7Split returns the peer side once per port rule when some port rule has
// L7 rules (each keeps its own HTTP rules), or unchanged when none has.
func (p ciliumPeers) l7Split() []ciliumPeers {
	l7 := false
	for _, pr := range p.ports {
		if pr.Rules != nil && len(pr.Rules.HTTP) > 0 {
			l7 = true
		}
	}
	if !l7 {
		return []ciliumPeers{p}
	}
	var out []ciliumPeers
	for _, pr := range p.ports {
		q := p
		q.ports = []CiliumPortRule{pr}
		out = append(out, q)
	}
	return out
}

// httpRules returns the L7 rules of a peer side split by l7Split, in model
// terms; nil when it has none.
func (p ciliumPeers) httpRules() []HTTPRule {
	if len(p.ports) != 1 || p.ports[0].Rules == nil || len(p.ports[0].Rules.HTTP) == 0 {
		return nil
	}
	var out []HTTPRule
	for _, h := range p.ports[0].Rules.HTTP {
		out = append(out, HTTPRule{Method: h.Method, Path: h.Path})
	}
	return out
}

// hasL7 reports whether a port rule with L7 rules contains proto/port.
func (p ciliumPeers) hasL7(proto Protocol, port uint16) bool {
	for _, q := range p.l7Split() {
		if q.httpRules() != nil && ciliumPortsMatch(q, proto, port) {
			return true
		}
	}
	return false
}

// requestMatches reports whether req on port passes the L7 rules of the
// port rules that contain the port: true when one of them has none.
func (p ciliumPeers) requestMatches(port uint16, req Request) bool {
	for _, q := range p.l7Split() {
		if !ciliumPortsMatch(q, ProtoTCP, port) {
			continue
		}
		h := q.httpRules()
		if h == nil || httpMatches(h, req) {
			return true
		}
	}
	return false
}

// parseCiliumPort returns protocol, first and last port (0, 0 = all ports).
func parseCiliumPort(p CiliumPortProtocol) (Protocol, uint16, uint16, error) {
	proto := ProtoAny
	switch strings.ToUpper(p.Protocol) {
	case "", "ANY":
	case "TCP":
		proto = ProtoTCP
	case "UDP":
		proto = ProtoUDP
	case "SCTP":
		proto = ProtoSCTP
	default:
		return 0, 0, 0, fmt.Errorf("protocol %q: want TCP, UDP, SCTP or ANY", p.Protocol)
	}
	if p.Port == "" || p.Port == "0" {
		if p.EndPort != 0 {
			return 0, 0, 0, fmt.Errorf("endPort without port")
		}
		return proto, 0, 0, nil
	}
	n, err := strconv.Atoi(p.Port)
	if err != nil {
		return 0, 0, 0, fmt.Errorf("port %q: named ports are not supported in Cilium rules here; use a number", p.Port)
	}
	if n < 1 || n > 65535 {
		return 0, 0, 0, fmt.Errorf("port %d: must be between 1 and 65535", n)
	}
	end := n
	if p.EndPort != 0 {
		if int(p.EndPort) < n || p.EndPort > 65535 {
			return 0, 0, 0, fmt.Errorf("endPort %d: must be between port %d and 65535", p.EndPort, n)
		}
		end = int(p.EndPort)
	}
	return proto, uint16(n), uint16(end), nil
}

func ipBlockOf(s CIDRRule) networkingv1.IPBlock {
	return networkingv1.IPBlock{CIDR: s.CIDR, Except: s.Except}
}

// ciliumPeers is the peer side of one Cilium rule, whichever direction.
type ciliumPeers struct {
	endpoints []metav1.LabelSelector
	blocks    []networkingv1.IPBlock
	entities  []string
	ports     []CiliumPortRule
}

func ingressPeers(r CiliumIngressRule) ciliumPeers {
	p := ciliumPeers{endpoints: r.FromEndpoints, entities: r.FromEntities, ports: r.ToPorts}
	for _, c := range r.FromCIDR {
		p.blocks = append(p.blocks, networkingv1.IPBlock{CIDR: c})
	}
	for _, s := range r.FromCIDRSet {
		p.blocks = append(p.blocks, ipBlockOf(s))
	}
	return p
}

func egressPeers(r CiliumEgressRule) ciliumPeers {
	p := ciliumPeers{endpoints: r.ToEndpoints, entities: r.ToEntities, ports: r.ToPorts}
	for _, c := range r.ToCIDR {
		p.blocks = append(p.blocks, networkingv1.IPBlock{CIDR: c})
	}
	for _, s := range r.ToCIDRSet {
		p.blocks = append(p.blocks, ipBlockOf(s))
	}
	return p
}

// noPeers reports whether the rule names no peer at all. Cilium then reads
// a rule with only toPorts as "every peer on these ports", and an empty rule
// ({}, the default-deny idiom) as matching nothing.
func (p ciliumPeers) noPeers() bool {
	return len(p.endpoints) == 0 && len(p.blocks) == 0 && len(p.entities) == 0
}

func (p ciliumPeers) portRanges() []PortRange {
	if len(p.ports) == 0 {
		return []PortRange{{Protocol: ProtoAny}}
	}
	var out []PortRange
	for _, pr := range p.ports {
		if len(pr.Ports) == 0 {
			out = append(out, PortRange{Protocol: ProtoAny})
		}
		for _, pp := range pr.Ports {
			proto, lo, hi, err := parseCiliumPort(pp)
			if err != nil {
				continue
			}
			if proto == ProtoAny {
				// ANY means TCP, UDP and SCTP on those ports.
				for _, pr := range []Protocol{ProtoTCP, ProtoUDP, ProtoSCTP} {
					out = append(out, PortRange{Protocol: pr, Port: lo, EndPort: hi})
				}
				continue
			}
			out = append(out, PortRange{Protocol: proto, Port: lo, EndPort: hi})
		}
	}
	return out
}

// ciliumRule resolves one Cilium rule into identities and ports.
func (r *Resolved) ciliumRule(policy string, p ciliumPeers, ns string, deny bool) Rule {
	out := Rule{Policy: policy, Deny: deny, Ports: p.portRanges(), HTTP: p.httpRules()}
	if p.noPeers() {
		if len(p.ports) == 0 {
			out.Ports = nil // {}: matches nothing
			return out
		}
		out.AnyPeer = true
		return out
	}
	seen := map[Identity]bool{}
	add := func(id Identity) {
		if !seen[id] {
			seen[id] = true
			out.Peers = append(out.Peers, id)
		}
	}
	for _, sel := range p.endpoints {
		s, err := ciliumSelector(sel, ns)
		if err != nil {
			continue
		}
		for _, ep := range r.Endpoints {
			if s.Matches(labels.Set(ep.Labels)) {
				add(ep.Identity)
			}
		}
		// Pods of every cluster of the mesh (Cilium's classic
		// behaviour; LabelCluster in the selector restricts it).
		for _, ri := range r.remoteIDs {
			if s.Matches(ri.labels) {
				add(ri.id)
			}
		}
	}
	for i := range p.blocks {
		for prefix, id := range r.CIDRs {
			if ipBlockCovers(&p.blocks[i], prefix) {
				add(id)
			}
		}
	}
	for _, e := range p.entities {
		switch e {
		case "all":
			out.AnyPeer = true
		case "world":
			add(IdentityWorld)
			for _, id := range r.CIDRs {
				add(worldIdentity(id))
			}
		case "cluster":
			// The local cluster only (Cilium: "all network endpoints
			// inside of the local cluster"), with host and remote-node
			// (which includes other clusters' nodes).
			for _, ep := range r.Endpoints {
				add(ep.Identity)
			}
			add(IdentityHost)
			add(IdentityRemoteNode)
		case "host":
			add(IdentityHost)
		case "remote-node":
			add(IdentityRemoteNode)
		}
	}
	sortIdentities(out.Peers)
	return out
}

// applyCNP adds the rules of a CiliumNetworkPolicy to the endpoints it
// selects.
func (r *Resolved) applyCNP(c *CiliumNetworkPolicy) {
	name := c.Namespace + "/" + c.Name
	for _, rule := range c.Rules() {
		sel, err := ciliumSelector(*rule.EndpointSelector, c.Namespace)
		if err != nil {
			continue
		}
		ingressDD := len(rule.Ingress)+len(rule.IngressDeny) > 0
		egressDD := len(rule.Egress)+len(rule.EgressDeny) > 0
		if rule.EnableDefaultDeny != nil {
			if rule.EnableDefaultDeny.Ingress != nil {
				ingressDD = *rule.EnableDefaultDeny.Ingress
			}
			if rule.EnableDefaultDeny.Egress != nil {
				egressDD = *rule.EnableDefaultDeny.Egress
			}
		}
		for _, ep := range r.Endpoints {
			// A namespaced policy selects only pods of its namespace, even
			// when its endpointSelector names another one (Cilium ignores
			// such a namespace match).
			if ep.Namespace != c.Namespace || !sel.Matches(labels.Set(ep.Labels)) {
				continue
			}
			ep.IngressEnforced = ep.IngressEnforced || ingressDD
			ep.EgressEnforced = ep.EgressEnforced || egressDD
			for _, in := range rule.Ingress {
				for _, p := range ingressPeers(in).l7Split() {
					ep.Ingress = append(ep.Ingress, r.ciliumRule(name, p, c.Namespace, false))
				}
			}
			for _, in := range rule.IngressDeny {
				ep.Ingress = append(ep.Ingress, r.ciliumRule(name, ingressPeers(in), c.Namespace, true))
			}
			for _, eg := range rule.Egress {
				ep.Egress = append(ep.Egress, r.ciliumRule(name, egressPeers(eg), c.Namespace, false))
			}
			for _, eg := range rule.EgressDeny {
				ep.Egress = append(ep.Egress, r.ciliumRule(name, egressPeers(eg), c.Namespace, true))
			}
		}
	}
}

// cidrsOfCNP lists the prefixes a CiliumNetworkPolicy names.
func cidrsOfCNP(c *CiliumNetworkPolicy) []networkingv1.IPBlock {
	var out []networkingv1.IPBlock
	for _, rule := range c.Rules() {
		for _, in := range append(append([]CiliumIngressRule(nil), rule.Ingress...), rule.IngressDeny...) {
			out = append(out, ingressPeers(in).blocks...)
		}
		for _, eg := range append(append([]CiliumEgressRule(nil), rule.Egress...), rule.EgressDeny...) {
			out = append(out, egressPeers(eg).blocks...)
		}
	}
	return out
}
