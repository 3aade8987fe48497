package model

import (
	"net/netip"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// Services: Kubernetes Service + EndpointSlice (discovery.k8s.io/v1)
// objects resolved into what a load balancer programs: per frontend
// (ClusterIP:port/proto, and NodePort on every node address) the backends
// with their state.

// BackendState says whether a backend takes new flows.
type BackendState uint8

// Backend states. Existing flows stay on their backend in every state,
// until the backend is removed.
const (
	// BackendActive: the endpoint is ready; new flows go to active
	// backends.
	BackendActive BackendState = iota
	// BackendTerminating: the endpoint is terminating but still serving;
	// it gets new flows only when the service has no active backend
	// (Kubernetes' ProxyTerminatingEndpoints behaviour).
	BackendTerminating
	// BackendQuarantined: not ready and not terminating-serving; no new
	// flows.
	BackendQuarantined
)

func (s BackendState) String() string {
	switch s {
	case BackendActive:
		return "active"
	case BackendTerminating:
		return "terminating"
	case BackendQuarantined:
		return "quarantined"
	}
	return "unknown"
}

// Service is one resolved Service.
type Service struct {
	Namespace, Name string
	// ClusterIP is the virtual address (Services without one, such as
	// headless Services, are not load-balanced and are not resolved).
	ClusterIP netip.Addr
	// NodePortType is set for type NodePort (and LoadBalancer): every
	// port then also has a NodePort on every node address.
	NodePortType bool
	// AffinityTimeout is positive when sessionAffinity is ClientIP
	// (default 10800s, from sessionAffinityConfig.clientIP.timeoutSeconds).
	AffinityTimeout time.Duration
	// Global is set when the Service is annotated
	// service.fastpath.dev/global "true" (cluster mesh): its ports' Backends
	// then also hold the remote clusters' backends (globalsvc.go), and
	// Affinity (service.fastpath.dev/affinity) says which cluster's new
	// flows prefer.
	Global   bool
	Affinity ServiceAffinity
	Ports    []ServicePort
}

// Key is "namespace/name".
func (s *Service) Key() string { return s.Namespace + "/" + s.Name }

// ServicePort is one port of a Service with its backends.
type ServicePort struct {
	// Name of the port (may be empty when the Service has one port).
	Name     string
	Protocol Protocol
	// Port on the ClusterIP.
	Port uint16
	// NodePort, 0 unless the Service is of type NodePort.
	NodePort uint16
	// Backends from the Service's EndpointSlices (label
	// kubernetes.io/service-name), for the slice port with this port's
	// name and protocol; one entry per endpoint address. For a global
	// Service also the remote clusters' backends (Cluster set). Sorted by
	// address, then port.
	Backends []Backend
}

// Backend is one endpoint address of a service port.
type Backend struct {
	Addr netip.Addr
	Port uint16
	// Pod is "namespace/name" of the endpoint's targetRef when it is a
	// Pod; Node is the endpoint's nodeName.
	Pod, Node string
	State     BackendState
	// Weight for weighted selection (Maglev); always 1 from Kubernetes
	// objects.
	Weight uint16
	// Cluster is the remote cluster of a global Service's backend, ""
	// for the local cluster's.
	Cluster string
	// Standby is set by Resolve on a global Service's backends of the
	// clusters its affinity does not prefer while a preferred backend is
	// active: no new flows (as quarantined), existing flows stay.
	Standby bool
}

// Selectable returns the backends new flows may go to: the active ones, or
// when there is none the terminating ones; never the quarantined ones, nor
// those on Standby.
// The result is a new slice (nil when the port has no selectable backend),
// in the order of Backends.
func (p *ServicePort) Selectable() []Backend {
	for _, want := range []BackendState{BackendActive, BackendTerminating} {
		var out []Backend
		for _, b := range p.Backends {
			if b.State == want && !b.Standby {
				out = append(out, b)
			}
		}
		if len(out) > 0 {
			return out
		}
	}
	return nil
}

// frontendKey is a ClusterIP frontend, or with a zero address a node port
// (which every node address serves).
type frontendKey struct {
	addr  netip.Addr
	port  uint16
	proto Protocol
}

type servicePortRef struct {
	svc  *Service
	port int // index in svc.Ports
}

// ServiceByFrontend returns the Service and port that serve addr:port/proto:
// a ClusterIP frontend, or a node port on the address of one of Nodes.
// Validation keeps frontends unique (and ClusterIPs off node addresses), so
// there is at most one.
func (r *Resolved) ServiceByFrontend(addr netip.Addr, port uint16, proto Protocol) (*Service, *ServicePort, bool) {
	if !addr.IsValid() {
		return nil, nil, false // the index keys node ports by the zero address
	}
	if r.frontends == nil {
		// Not built by Resolve (a Resolved assembled by hand): look
		// through the Services.
		return r.scanFrontends(addr, port, proto)
	}
	ref, ok := r.frontends[frontendKey{addr, port, proto}]
	if !ok && r.isNodeAddr(addr) {
		ref, ok = r.frontends[frontendKey{netip.Addr{}, port, proto}]
	}
	if !ok {
		return nil, nil, false
	}
	return ref.svc, &ref.svc.Ports[ref.port], true
}

func (r *Resolved) scanFrontends(addr netip.Addr, port uint16, proto Protocol) (*Service, *ServicePort, bool) {
	node := r.isNodeAddr(addr)
	for _, s := range r.Services {
		for i := range s.Ports {
			p := &s.Ports[i]
			if p.Protocol != proto {
				continue
			}
			if (s.ClusterIP == addr && p.Port == port) || (node && s.NodePortType && p.NodePort != 0 && p.NodePort == port) {
				return s, p, true
			}
		}
	}
	return nil, nil, false
}

func (r *Resolved) isNodeAddr(addr netip.Addr) bool {
	if !addr.IsValid() {
		return false
	}
	for _, n := range r.Nodes {
		if n.IP == addr {
			return true
		}
	}
	return false
}

// backendState maps an endpoint's conditions to a backend state: ready (nil
// means ready) is active; else terminating and still serving (nil means
// serving) is terminating; else quarantined.
func backendState(c discoveryv1.EndpointConditions) BackendState {
	switch {
	case c.Ready == nil || *c.Ready:
		return BackendActive
	case c.Terminating != nil && *c.Terminating && (c.Serving == nil || *c.Serving):
		return BackendTerminating
	}
	return BackendQuarantined
}

// resolveServices builds r.Services and the frontend index from the
// Services and EndpointSlices (validated: every slice names an existing
// Service).
func (r *Resolved) resolveServices(objs *Objects) {
	// Slices by "namespace/service", each list in name order so that the
	// result does not depend on the order of files.
	slices := map[string][]*discoveryv1.EndpointSlice{}
	for i := range objs.EndpointSlices {
		es := &objs.EndpointSlices[i]
		if es.AddressType != discoveryv1.AddressTypeIPv4 {
			continue
		}
		key := es.Namespace + "/" + es.Labels[discoveryv1.LabelServiceName]
		slices[key] = append(slices[key], es)
	}
	for _, list := range slices {
		sort.Slice(list, func(i, j int) bool { return list[i].Name < list[j].Name })
	}
	r.Services = nil
	r.frontends = map[frontendKey]servicePortRef{}
	var remote []*RemoteCluster
	if len(objs.Remote) > 0 {
		remote = remoteClustersByID(objs)
	}
	for i := range objs.Services {
		s := &objs.Services[i]
		if s.Spec.Type == corev1.ServiceTypeExternalName || isHeadless(s) {
			continue
		}
		ip, ok := parseServiceIP(s.Spec.ClusterIP)
		if !ok {
			continue
		}
		svc := &Service{
			Namespace:    s.Namespace,
			Name:         s.Name,
			ClusterIP:    ip,
			NodePortType: isNodePortType(s.Spec.Type),
		}
		svc.Global, svc.Affinity, _ = ServiceMeshAnnotations(s.Annotations)
		if s.Spec.SessionAffinity == corev1.ServiceAffinityClientIP {
			secs := int32(defaultAffinityTimeoutSeconds)
			if c := s.Spec.SessionAffinityConfig; c != nil && c.ClientIP != nil && c.ClientIP.TimeoutSeconds != nil {
				secs = *c.ClientIP.TimeoutSeconds
			}
			svc.AffinityTimeout = time.Duration(secs) * time.Second
		}
		for _, p := range s.Spec.Ports {
			proto, _ := lbProtocolOf(p.Protocol)
			sp := ServicePort{Name: p.Name, Protocol: proto, Port: uint16(p.Port)}
			if svc.NodePortType {
				sp.NodePort = uint16(p.NodePort)
			}
			sp.Backends = portBackends(slices[svc.Key()], sp.Name, proto)
			if svc.Global {
				sp.Backends = r.globalBackends(remote, svc, &sp)
			}
			svc.Ports = append(svc.Ports, sp)
		}
		r.Services = append(r.Services, svc)
	}
	sort.Slice(r.Services, func(i, j int) bool {
		a, b := r.Services[i], r.Services[j]
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		return a.Name < b.Name
	})
	for _, svc := range r.Services {
		for i, p := range svc.Ports {
			ref := servicePortRef{svc, i}
			if _, dup := r.frontends[frontendKey{svc.ClusterIP, p.Port, p.Protocol}]; !dup {
				r.frontends[frontendKey{svc.ClusterIP, p.Port, p.Protocol}] = ref
			}
			if p.NodePort != 0 {
				if _, dup := r.frontends[frontendKey{netip.Addr{}, p.NodePort, p.Protocol}]; !dup {
					r.frontends[frontendKey{netip.Addr{}, p.NodePort, p.Protocol}] = ref
				}
			}
		}
	}
}

// portBackends collects the backends of the service port named name with
// protocol proto from the Service's slices: per slice, the slice port of
// that name and protocol (which carries the target port number), and one
// backend per endpoint address. A backend listed more than once keeps its
// best state (active, then terminating, then quarantined).
func portBackends(slices []*discoveryv1.EndpointSlice, name string, proto Protocol) []Backend {
	type addrPort struct {
		addr netip.Addr
		port uint16
	}
	index := map[addrPort]int{}
	var out []Backend
	for _, es := range slices {
		var port uint16
		for _, p := range es.Ports {
			pp, ok := lbProtocolOf(ptrOr(p.Protocol, corev1.ProtocolTCP))
			if ok && pp == proto && ptrOr(p.Name, "") == name && p.Port != nil {
				port = uint16(*p.Port)
				break
			}
		}
		if port == 0 {
			continue
		}
		for _, ep := range es.Endpoints {
			b := Backend{Port: port, Node: ptrOr(ep.NodeName, ""), State: backendState(ep.Conditions), Weight: 1}
			if ref := ep.TargetRef; ref != nil && ref.Kind == "Pod" {
				ns := ref.Namespace
				if ns == "" {
					ns = es.Namespace
				}
				b.Pod = ns + "/" + ref.Name
			}
			for _, a := range ep.Addresses {
				addr, ok := parseServiceIP(a)
				if !ok {
					continue
				}
				b.Addr = addr
				k := addrPort{addr, port}
				if i, dup := index[k]; dup {
					if b.State < out[i].State {
						out[i] = b
					}
					continue
				}
				index[k] = len(out)
				out = append(out, b)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Addr != out[j].Addr {
			return out[i].Addr.Less(out[j].Addr)
		}
		return out[i].Port < out[j].Port
	})
	return out
}
