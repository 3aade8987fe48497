package model

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// ServiceVerdict is the reference evaluator's answer for a connection to a
// service frontend.
type ServiceVerdict struct {
	// Service is "ns/name" of the frontend matched, "" when vip:port/proto
	// is no service frontend (then Allowed and Reason are Evaluate's on the
	// address itself, and Backends is empty).
	Service string
	// Backends are the selectable backends, each with the policy verdict
	// for a connection from `from` to that backend address and backend
	// port (policy applies after service translation, as in Cilium and
	// kube-proxy). Sorted by address, then port.
	Backends []BackendVerdict
	// Allowed is true when every selectable backend allows the connection;
	// Mixed when some do and some do not (a probe's outcome then depends
	// on the chosen backend); NoBackends when there is none (the
	// connection is refused).
	Allowed, Mixed, NoBackends bool
	Reason                     string
}

// BackendVerdict is the policy verdict for one backend.
type BackendVerdict struct {
	Backend Backend
	Verdict Verdict
}

// EvaluateService is the reference evaluator for a connection from address
// from to vip:port/proto, where vip may be a ClusterIP or (for NodePort and
// LoadBalancer Services) a node's address. It reads the Service and
// EndpointSlice objects directly, independently of Resolve, picks the
// backends new flows may go to (ready endpoints; when there is none,
// terminating ones that still serve), and asks Evaluate about each backend
// address and target port.
func EvaluateService(objs *Objects, from, vip netip.Addr, proto Protocol, port uint16) ServiceVerdict {
	svc, sp := frontendOf(objs, vip, proto, port)
	if svc == nil {
		v := Evaluate(objs, from, vip, proto, port)
		return ServiceVerdict{Allowed: v.Allowed, Reason: v.Reason}
	}
	out := ServiceVerdict{Service: svc.Namespace + "/" + svc.Name}
	for _, b := range selectableBackends(objs, svc, sp, proto) {
		out.Backends = append(out.Backends, BackendVerdict{Backend: b, Verdict: Evaluate(objs, from, b.Addr, proto, b.Port)})
	}
	frontend := fmt.Sprintf("Service %s port %d/%s", out.Service, sp.Port, proto)
	var allowed, denied []string
	for _, bv := range out.Backends {
		ap := netip.AddrPortFrom(bv.Backend.Addr, bv.Backend.Port).String()
		if bv.Backend.Cluster != "" {
			ap += " of cluster " + bv.Backend.Cluster
		}
		if bv.Verdict.Allowed {
			allowed = append(allowed, ap)
		} else {
			denied = append(denied, ap+" ("+bv.Verdict.Reason+")")
		}
	}
	switch {
	case len(out.Backends) == 0:
		out.NoBackends = true
		out.Reason = frontend + " has no selectable backend: the connection is refused"
	case len(denied) == 0:
		out.Allowed = true
		out.Reason = fmt.Sprintf("allowed by every backend of %s (%s)", frontend, strings.Join(allowed, ", "))
	case len(allowed) == 0:
		out.Reason = fmt.Sprintf("denied by every backend of %s: %s", frontend, strings.Join(denied, "; "))
	default:
		out.Mixed = true
		out.Reason = fmt.Sprintf("backends of %s disagree: allowed by %s; denied by %s", frontend, strings.Join(allowed, ", "), strings.Join(denied, "; "))
	}
	return out
}

// frontendOf finds the Service port that serves vip:port/proto in the
// objects: a ClusterIP frontend, or a node port on a node's address (its
// first InternalIP, the address Resolve gives a node).
func frontendOf(objs *Objects, vip netip.Addr, proto Protocol, port uint16) (*corev1.Service, *corev1.ServicePort) {
	onNode := false
	for _, n := range objs.Nodes {
		for _, a := range n.Status.Addresses {
			if a.Type == corev1.NodeInternalIP {
				if ip, err := netip.ParseAddr(a.Address); err == nil && ip == vip {
					onNode = true
				}
				break
			}
		}
	}
	for i := range objs.Services {
		s := &objs.Services[i]
		if s.Spec.ClusterIP == corev1.ClusterIPNone || s.Spec.Type == corev1.ServiceTypeExternalName {
			continue
		}
		ip, err := netip.ParseAddr(s.Spec.ClusterIP)
		if err != nil {
			continue
		}
		nodePorts := s.Spec.Type == corev1.ServiceTypeNodePort || s.Spec.Type == corev1.ServiceTypeLoadBalancer
		for j := range s.Spec.Ports {
			p := &s.Spec.Ports[j]
			if pp, _ := protocolOf(p.Protocol); pp != proto {
				continue
			}
			if (ip == vip && int(p.Port) == int(port)) || (onNode && nodePorts && p.NodePort > 0 && int(p.NodePort) == int(port)) {
				return s, p
			}
		}
	}
	return nil, nil
}

// selectableBackends returns the endpoints of the Service port sp that new
// flows may go to, from the slices labelled with the Service's name: the
// addresses of ready endpoints with the number of the slice port of sp's
// name and protocol; when there are none, those of endpoints that are
// terminating but serving. A global Service adds the remote clusters'
// (remoteBackends) as its affinity says. Sorted by address, then port;
// each once.
func selectableBackends(objs *Objects, svc *corev1.Service, sp *corev1.ServicePort, proto Protocol) []Backend {
	ready := map[netip.AddrPort]Backend{}
	terminating := map[netip.AddrPort]Backend{}
	listed := map[netip.AddrPort]bool{} // in any state
	for i := range objs.EndpointSlices {
		es := &objs.EndpointSlices[i]
		if es.Namespace != svc.Namespace || es.Labels[discoveryv1.LabelServiceName] != svc.Name || es.AddressType != discoveryv1.AddressTypeIPv4 {
			continue
		}
		var target int32
		for _, p := range es.Ports {
			name, pproto := "", corev1.ProtocolTCP
			if p.Name != nil {
				name = *p.Name
			}
			if p.Protocol != nil && *p.Protocol != "" {
				pproto = *p.Protocol
			}
			if pp, _ := protocolOf(pproto); name == sp.Name && pp == proto && p.Port != nil {
				target = *p.Port
				break
			}
		}
		if target < 1 || target > 65535 {
			continue
		}
		for _, ep := range es.Endpoints {
			c := ep.Conditions
			isReady := c.Ready == nil || *c.Ready
			isTerminating := !isReady && c.Terminating != nil && *c.Terminating && (c.Serving == nil || *c.Serving)
			for _, a := range ep.Addresses {
				ip, err := netip.ParseAddr(a)
				if err != nil || !ip.Is4() {
					continue
				}
				ap := netip.AddrPortFrom(ip, uint16(target))
				listed[ap] = true
				if !isReady && !isTerminating {
					continue
				}
				b := Backend{Addr: ip, Port: uint16(target), Weight: 1, State: BackendActive}
				if ep.NodeName != nil {
					b.Node = *ep.NodeName
				}
				if ep.TargetRef != nil && ep.TargetRef.Kind == "Pod" {
					ns := ep.TargetRef.Namespace
					if ns == "" {
						ns = es.Namespace
					}
					b.Pod = ns + "/" + ep.TargetRef.Name
				}
				if isReady {
					if _, seen := ready[ap]; !seen {
						ready[ap] = b
					}
				} else if _, seen := terminating[ap]; !seen {
					b.State = BackendTerminating
					terminating[ap] = b
				}
			}
		}
	}
	if global, affinity, errs := ServiceMeshAnnotations(svc.Annotations); global && len(errs) == 0 {
		rReady, rTerminating := remoteBackends(objs, svc, sp, proto, listed)
		switch {
		case affinity == ServiceAffinityLocal && len(ready) > 0:
			rReady, rTerminating = nil, nil
		case affinity == ServiceAffinityRemote && len(rReady) > 0:
			ready, terminating = map[netip.AddrPort]Backend{}, nil
		}
		for ap, b := range rReady {
			ready[ap] = b
		}
		if terminating == nil {
			terminating = map[netip.AddrPort]Backend{}
		}
		for ap, b := range rTerminating {
			terminating[ap] = b
		}
	}
	pick := ready
	if len(pick) == 0 {
		pick = terminating
	}
	out := make([]Backend, 0, len(pick))
	for _, b := range pick {
		out = append(out, b)
	}
	sort.Slice(out, func(i, j int) bool {
		return netip.AddrPortFrom(out[i].Addr, out[i].Port).Compare(netip.AddrPortFrom(out[j].Addr, out[j].Port)) < 0
	})
	return out
}

// remoteBackends returns the ready and the terminating backends the remote
// clusters publish for the global Service svc's port sp: per cluster, in
// id order, its Service of the same namespace and name, the port of sp's
// name and protocol (for an unnamed sp, of sp's number and protocol), and
// of that port the backends whose address is a pod of that cluster as
// address lookups see it (peerAt: the local pods', local nodes' and
// lower ids' addresses are theirs) and not listed before (listed: the
// local slices' addresses and ports in any state; updated).
func remoteBackends(objs *Objects, svc *corev1.Service, sp *corev1.ServicePort, proto Protocol, listed map[netip.AddrPort]bool) (ready, terminating map[netip.AddrPort]Backend) {
	ready, terminating = map[netip.AddrPort]Backend{}, map[netip.AddrPort]Backend{}
	clusters := make([]*RemoteCluster, 0, len(objs.Remote))
	for i := range objs.Remote {
		clusters = append(clusters, &objs.Remote[i])
	}
	sort.Slice(clusters, func(i, j int) bool { return clusters[i].ID < clusters[j].ID })
	for _, c := range clusters {
		for _, rs := range c.Services {
			if rs.Namespace != svc.Namespace || rs.Name != svc.Name {
				continue
			}
			for _, rp := range rs.Ports {
				if rp.Protocol != proto || (sp.Name != "" && rp.Name != sp.Name) || (sp.Name == "" && int(rp.Port) != int(sp.Port)) {
					continue
				}
				for _, b := range rp.Backends {
					ap := netip.AddrPortFrom(b.Addr, b.Port)
					if owner := peerAt(objs, b.Addr); owner.remote == nil || owner.cluster != c.Name || listed[ap] {
						continue
					}
					listed[ap] = true
					nb := Backend{Addr: b.Addr, Port: b.Port, Node: b.Node, Pod: b.Pod, Weight: 1, State: b.State, Cluster: c.Name}
					if b.State == BackendActive {
						ready[ap] = nb
					} else {
						terminating[ap] = nb
					}
				}
				break
			}
		}
	}
	return ready, terminating
}
