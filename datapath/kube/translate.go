package kube

import (
	"net/netip"
	"sort"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/fastpath-bench/fastpath/datapath/model"
)

// SourceName is the Source entry of every object a Snapshot or Translate
// returns: model errors then read "kubernetes: Pod ns/name: ...".
const SourceName = "kubernetes"

// Input is what Translate reads: the objects of a cluster, as the API
// server (or the informer caches) hold them.
type Input struct {
	Namespaces            []corev1.Namespace
	Nodes                 []corev1.Node
	Pods                  []corev1.Pod
	Services              []corev1.Service
	EndpointSlices        []discoveryv1.EndpointSlice
	NetworkPolicies       []networkingv1.NetworkPolicy
	CiliumNetworkPolicies []model.CiliumNetworkPolicy
	AuthorizationPolicies []model.AuthorizationPolicy
	Prefilters            []model.Prefilter
	EgressGatewayPolicies []model.EgressGatewayPolicy
}

// Translate turns a cluster's objects into the model's desired state,
// sorted by namespace and name, with a Source entry for every object. It
// never modifies in (changed fields are replaced by new values, never
// written through).
//
// Pods that are not endpoints are dropped: host-network pods, pods without
// an IPv4 address, and pods that have terminated (Succeeded or Failed). Of
// two pods that claim the same address (an IP reused while the old pod's
// status still names it), the one not being deleted, then the newer, is
// kept.
//
// The model is IPv4-only and load-balances TCP and UDP ClusterIP and
// NodePort frontends. What real clusters legitimately contain beyond that
// is stripped so that the rest passes model validation:
//   - Nodes: IPv6 pod CIDRs and IPv6 InternalIP/ExternalIP addresses.
//   - Pods: IPv6 entries of status.podIPs (status.podIP becomes the IPv4
//     one in IPv6-primary dual-stack clusters).
//   - Services: ExternalName and IPv6-only Services are dropped; dual-stack
//     ones keep their IPv4 address and family; SCTP ports are dropped (and
//     a non-headless Service left without ports with them); externalIPs are
//     dropped; externalTrafficPolicy and internalTrafficPolicy Local become
//     Cluster (every backend is used); a NodePort or LoadBalancer Service
//     with a port that has no node port (allocateLoadBalancerNodePorts:
//     false) becomes a ClusterIP Service.
//   - EndpointSlices: slices that are not IPv4, that name no Service, or
//     whose Service was dropped are dropped; ports without a number (the
//     "all ports" of headless Services without ports) or with a protocol
//     other than TCP and UDP are dropped; addresses that are not unicast
//     IPv4 are dropped, and endpoints left without one; a targetRef to
//     anything but a Pod is removed.
func Translate(in Input) *model.Objects {
	out := &model.Objects{Source: map[string]string{}}
	add := func(kind, ns, name string) { out.Source[model.ObjectKey(kind, ns, name)] = SourceName }

	for _, ns := range in.Namespaces {
		ns.Namespace = ""
		out.Namespaces = append(out.Namespaces, ns)
	}
	sortByName(out.Namespaces, func(n *corev1.Namespace) (string, string) { return "", n.Name })
	for _, n := range out.Namespaces {
		add("Namespace", "", n.Name)
	}

	for _, n := range in.Nodes {
		out.Nodes = append(out.Nodes, translateNode(n))
	}
	sortByName(out.Nodes, func(n *corev1.Node) (string, string) { return "", n.Name })
	for _, n := range out.Nodes {
		add("Node", "", n.Name)
	}

	out.Pods = translatePods(in.Pods)
	for _, p := range out.Pods {
		add("Pod", p.Namespace, p.Name)
	}

	svcs := map[string]bool{}
	for _, s := range in.Services {
		if t, ok := translateService(s); ok {
			out.Services = append(out.Services, t)
			svcs[t.Namespace+"/"+t.Name] = true
		}
	}
	sortByName(out.Services, func(s *corev1.Service) (string, string) { return s.Namespace, s.Name })
	for _, s := range out.Services {
		add("Service", s.Namespace, s.Name)
	}

	for _, es := range in.EndpointSlices {
		if es.AddressType != discoveryv1.AddressTypeIPv4 {
			continue
		}
		svc := es.Labels[discoveryv1.LabelServiceName]
		if svc == "" || !svcs[es.Namespace+"/"+svc] {
			continue
		}
		out.EndpointSlices = append(out.EndpointSlices, translateEndpointSlice(es))
	}
	sortByName(out.EndpointSlices, func(es *discoveryv1.EndpointSlice) (string, string) { return es.Namespace, es.Name })
	for _, es := range out.EndpointSlices {
		add("EndpointSlice", es.Namespace, es.Name)
	}

	out.NetworkPolicies = append(out.NetworkPolicies, in.NetworkPolicies...)
	sortByName(out.NetworkPolicies, func(np *networkingv1.NetworkPolicy) (string, string) { return np.Namespace, np.Name })
	for _, np := range out.NetworkPolicies {
		add("NetworkPolicy", np.Namespace, np.Name)
	}

	out.CiliumNetworkPolicies = append(out.CiliumNetworkPolicies, in.CiliumNetworkPolicies...)
	sortByName(out.CiliumNetworkPolicies, func(c *model.CiliumNetworkPolicy) (string, string) { return c.Namespace, c.Name })
	for _, c := range out.CiliumNetworkPolicies {
		add("CiliumNetworkPolicy", c.Namespace, c.Name)
	}

	out.AuthorizationPolicies = append(out.AuthorizationPolicies, in.AuthorizationPolicies...)
	sortByName(out.AuthorizationPolicies, func(a *model.AuthorizationPolicy) (string, string) { return a.Namespace, a.Name })
	for _, a := range out.AuthorizationPolicies {
		add("AuthorizationPolicy", a.Namespace, a.Name)
	}

	for _, p := range in.Prefilters {
		p.Namespace = ""
		out.Prefilters = append(out.Prefilters, p)
	}
	sortByName(out.Prefilters, func(p *model.Prefilter) (string, string) { return "", p.Name })
	for _, p := range out.Prefilters {
		add("Prefilter", "", p.Name)
	}

	for _, p := range in.EgressGatewayPolicies {
		p.Namespace = ""
		out.EgressGatewayPolicies = append(out.EgressGatewayPolicies, p)
	}
	sortByName(out.EgressGatewayPolicies, func(p *model.EgressGatewayPolicy) (string, string) { return "", p.Name })
	for _, p := range out.EgressGatewayPolicies {
		add("EgressGatewayPolicy", "", p.Name)
	}
	return out
}

// sortByName sorts objects by namespace, then name.
func sortByName[T any](s []T, key func(*T) (string, string)) {
	sort.SliceStable(s, func(i, j int) bool {
		ni, mi := key(&s[i])
		nj, mj := key(&s[j])
		if ni != nj {
			return ni < nj
		}
		return mi < mj
	})
}

// ipv4 parses s as an IPv4 address.
func ipv4(s string) (netip.Addr, bool) {
	a, err := netip.ParseAddr(s)
	return a, err == nil && a.Is4()
}

// isIPv4CIDR reports whether s is an IPv4 prefix.
func isIPv4CIDR(s string) bool {
	p, err := netip.ParsePrefix(s)
	return err == nil && p.Addr().Is4()
}

func translateNode(n corev1.Node) corev1.Node {
	n.Namespace = ""
	if len(n.Spec.PodCIDRs) > 0 || (n.Spec.PodCIDR != "" && !isIPv4CIDR(n.Spec.PodCIDR)) {
		var cidrs []string
		for _, c := range n.Spec.PodCIDRs {
			if isIPv4CIDR(c) {
				cidrs = append(cidrs, c)
			}
		}
		n.Spec.PodCIDRs = cidrs
		if !isIPv4CIDR(n.Spec.PodCIDR) {
			n.Spec.PodCIDR = ""
			if len(cidrs) > 0 {
				n.Spec.PodCIDR = cidrs[0]
			}
		}
	}
	var addrs []corev1.NodeAddress
	for _, a := range n.Status.Addresses {
		if a.Type == corev1.NodeInternalIP || a.Type == corev1.NodeExternalIP {
			if _, ok := ipv4(a.Address); !ok {
				continue
			}
		}
		addrs = append(addrs, a)
	}
	n.Status.Addresses = addrs
	return n
}

// translatePods keeps the pods that are endpoints, with IPv4 addresses
// only, sorted, one per address.
func translatePods(in []corev1.Pod) []corev1.Pod {
	var pods []corev1.Pod
	for _, p := range in {
		if p.Spec.HostNetwork || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		ip, ok := ipv4(p.Status.PodIP)
		var ips []corev1.PodIP
		for _, pip := range p.Status.PodIPs {
			if a, is4 := ipv4(pip.IP); is4 {
				ips = append(ips, pip)
				if !ok {
					ip, ok = a, true
				}
			}
		}
		if !ok {
			continue
		}
		p.Status.PodIP = ip.String()
		p.Status.PodIPs = ips
		pods = append(pods, p)
	}
	sortByName(pods, func(p *corev1.Pod) (string, string) { return p.Namespace, p.Name })
	// One pod per address: the one not being deleted, then the newest.
	byIP := map[string]int{}
	var out []corev1.Pod
	for _, p := range pods {
		i, dup := byIP[p.Status.PodIP]
		if !dup {
			byIP[p.Status.PodIP] = len(out)
			out = append(out, p)
			continue
		}
		if preferPod(&p, &out[i]) {
			out[i] = p
		}
	}
	return out
}

// preferPod reports whether a should be kept rather than b when both claim
// the same address.
func preferPod(a, b *corev1.Pod) bool {
	if (a.DeletionTimestamp == nil) != (b.DeletionTimestamp == nil) {
		return a.DeletionTimestamp == nil
	}
	return b.CreationTimestamp.Before(&a.CreationTimestamp)
}

func translateService(s corev1.Service) (corev1.Service, bool) {
	if s.Spec.Type == corev1.ServiceTypeExternalName {
		return s, false
	}
	if len(s.Spec.IPFamilies) > 0 {
		has4 := false
		for _, f := range s.Spec.IPFamilies {
			has4 = has4 || f == corev1.IPv4Protocol
		}
		if !has4 {
			return s, false
		}
		s.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv4Protocol}
	}
	if s.Spec.ClusterIP == corev1.ClusterIPNone {
		if len(s.Spec.ClusterIPs) > 0 {
			s.Spec.ClusterIPs = []string{corev1.ClusterIPNone}
		}
	} else {
		ip := ""
		for _, c := range append([]string{s.Spec.ClusterIP}, s.Spec.ClusterIPs...) {
			if _, ok := ipv4(c); ok {
				ip = c
				break
			}
		}
		if ip == "" {
			return s, false
		}
		s.Spec.ClusterIP = ip
		if len(s.Spec.ClusterIPs) > 0 {
			s.Spec.ClusterIPs = []string{ip}
		}
	}
	s.Spec.ExternalIPs = nil
	if s.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal {
		s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyCluster
	}
	if p := s.Spec.InternalTrafficPolicy; p != nil && *p == corev1.ServiceInternalTrafficPolicyLocal {
		cluster := corev1.ServiceInternalTrafficPolicyCluster
		s.Spec.InternalTrafficPolicy = &cluster
	}
	var ports []corev1.ServicePort
	missingNodePort := false
	for _, p := range s.Spec.Ports {
		if p.Protocol == corev1.ProtocolSCTP {
			continue
		}
		missingNodePort = missingNodePort || p.NodePort == 0
		ports = append(ports, p)
	}
	if len(ports) == 0 && len(s.Spec.Ports) > 0 && s.Spec.ClusterIP != corev1.ClusterIPNone {
		return s, false
	}
	if (s.Spec.Type == corev1.ServiceTypeNodePort || s.Spec.Type == corev1.ServiceTypeLoadBalancer) && missingNodePort {
		s.Spec.Type = corev1.ServiceTypeClusterIP
		s.Spec.ExternalTrafficPolicy = ""
	}
	if s.Spec.Type != corev1.ServiceTypeNodePort && s.Spec.Type != corev1.ServiceTypeLoadBalancer {
		for i := range ports { // a new slice: ours to change
			ports[i].NodePort = 0
		}
	}
	s.Spec.Ports = ports
	return s, true
}

func translateEndpointSlice(es discoveryv1.EndpointSlice) discoveryv1.EndpointSlice {
	var ports []discoveryv1.EndpointPort
	for _, p := range es.Ports {
		if p.Port == nil {
			continue
		}
		if p.Protocol != nil && *p.Protocol != corev1.ProtocolTCP && *p.Protocol != corev1.ProtocolUDP {
			continue
		}
		ports = append(ports, p)
	}
	es.Ports = ports
	var eps []discoveryv1.Endpoint
	for _, ep := range es.Endpoints {
		var addrs []string
		for _, a := range ep.Addresses {
			if ip, ok := ipv4(a); ok && !ip.IsUnspecified() && !ip.IsMulticast() && !ip.IsLoopback() && ip != netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
				addrs = append(addrs, a)
			}
		}
		if len(addrs) == 0 {
			continue
		}
		ep.Addresses = addrs
		if ep.TargetRef != nil && (ep.TargetRef.Kind != "Pod" || ep.TargetRef.Name == "") {
			ep.TargetRef = nil
		}
		eps = append(eps, ep)
	}
	es.Endpoints = eps
	return es
}
