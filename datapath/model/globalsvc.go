package model

import (
	"fmt"
	"net/netip"
	"sort"

	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Global services (cluster mesh, issue #10): a Service annotated
// AnnotationGlobalService "true" in the local cluster is load-balanced
// over its own backends and those the remote clusters publish for their
// Service of the same namespace and name (which they publish only when it
// is global there too: Cilium's global services). See the package
// documentation for the rules.

// Service annotations of the cluster mesh (datapath/clustermesh uses the
// same).
const (
	// AnnotationGlobalService "true" makes a Service global; "false" or
	// absent, local.
	AnnotationGlobalService = "service.fastpath.dev/global"
	// AnnotationServiceAffinity says which cluster's backends new flows
	// of a global Service prefer: "local", "remote", or "none" (absent).
	AnnotationServiceAffinity = "service.fastpath.dev/affinity"
)

// ServiceAffinity is a global Service's preference among clusters (not to
// be confused with session affinity, Service.AffinityTimeout).
type ServiceAffinity string

// Affinities.
const (
	// ServiceAffinityNone balances over the backends of every cluster.
	ServiceAffinityNone ServiceAffinity = ""
	// ServiceAffinityLocal uses the local cluster's backends while one of
	// them is active (ready), else every cluster's.
	ServiceAffinityLocal ServiceAffinity = "local"
	// ServiceAffinityRemote uses the remote clusters' backends while one
	// of them is active, else every cluster's.
	ServiceAffinityRemote ServiceAffinity = "remote"
)

// ServiceMeshAnnotations reads a Service's mesh annotations: whether it is
// global and its affinity. Bad values are errors naming the annotation
// (metadata.annotations[...]); global is then false.
func ServiceMeshAnnotations(ann map[string]string) (global bool, affinity ServiceAffinity, errs field.ErrorList) {
	ap := field.NewPath("metadata", "annotations")
	switch v, ok := ann[AnnotationGlobalService]; {
	case !ok || v == "false":
	case v == "true":
		global = true
	default:
		errs = append(errs, field.Invalid(ap.Key(AnnotationGlobalService), v, `must be "true" or "false"`))
	}
	switch v := ann[AnnotationServiceAffinity]; v {
	case "", "none":
	case string(ServiceAffinityLocal), string(ServiceAffinityRemote):
		affinity = ServiceAffinity(v)
	default:
		errs = append(errs, field.NotSupported(ap.Key(AnnotationServiceAffinity), v, []string{"local", "remote", "none"}))
	}
	if len(errs) > 0 {
		return false, ServiceAffinityNone, errs
	}
	return global, affinity, nil
}

// RemoteService is a global Service of a remote cluster, as the cluster
// publishes it: its ports with the cluster's serving backends.
type RemoteService struct {
	Namespace, Name string
	Ports           []RemoteServicePort
}

// Key is "namespace/name".
func (s *RemoteService) Key() string { return s.Namespace + "/" + s.Name }

// RemoteServicePort is a port of a remote global Service.
type RemoteServicePort struct {
	// Name, Protocol (TCP or UDP) and Port are the remote Service's: a
	// local port takes the backends of the remote port of the same name
	// and protocol, or, when the local port has no name, of the same
	// number and protocol.
	Name     string
	Protocol Protocol
	Port     uint16
	// Backends are the remote cluster's serving backends: address, target
	// port, State BackendActive (ready) or BackendTerminating (serving);
	// Node and Pod ("namespace/name") when known. Cluster may be left
	// empty (it is the enclosing RemoteCluster's); Weight 0 means 1.
	Backends []Backend
}

// matchRemotePort returns the port of rs that the local port (name,
// proto, port) takes its remote backends from: the one of the same name
// and protocol, or for an unnamed local port the one of the same number
// and protocol.
func matchRemotePort(rs *RemoteService, name string, proto Protocol, port uint16) *RemoteServicePort {
	for i := range rs.Ports {
		p := &rs.Ports[i]
		if p.Protocol != proto {
			continue
		}
		if (name != "" && p.Name == name) || (name == "" && p.Port == port) {
			return p
		}
	}
	return nil
}

// remoteClustersByID returns the remote clusters in id order.
func remoteClustersByID(objs *Objects) []*RemoteCluster {
	out := make([]*RemoteCluster, len(objs.Remote))
	for i := range objs.Remote {
		out[i] = &objs.Remote[i]
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// globalBackends returns the backends of the global Service port sp
// (whose Backends are the local ones): the local backends, then each
// remote cluster's (in id order) for the matching port of its Service of
// the same namespace and name, each with its Cluster. A remote backend is
// taken only when its address is a pod of that cluster which address
// lookups give to it (RemoteEndpointByIP: not a local pod's or node's
// address, not a lower id's pod's), so that the overlay carries the
// translated packet to it, and when no earlier backend has its address
// and port. The affinity then marks the backends of the clusters not
// preferred Standby while a preferred one is active. Sorted by address,
// then port.
func (r *Resolved) globalBackends(clusters []*RemoteCluster, svc *Service, sp *ServicePort) []Backend {
	if len(clusters) == 0 {
		return sp.Backends
	}
	type addrPort struct {
		addr netip.Addr
		port uint16
	}
	seen := make(map[addrPort]bool, len(sp.Backends))
	localActive := false
	for _, b := range sp.Backends {
		seen[addrPort{b.Addr, b.Port}] = true
		localActive = localActive || b.State == BackendActive
	}
	var remote []Backend
	remoteActive := false
	for _, c := range clusters {
		var rs *RemoteService
		for i := range c.Services {
			if c.Services[i].Namespace == svc.Namespace && c.Services[i].Name == svc.Name {
				rs = &c.Services[i]
				break
			}
		}
		if rs == nil {
			continue
		}
		rp := matchRemotePort(rs, sp.Name, sp.Protocol, sp.Port)
		if rp == nil {
			continue
		}
		for _, b := range rp.Backends {
			k := addrPort{b.Addr, b.Port}
			if e, ok := r.remoteByIP[b.Addr]; !ok || e.Cluster != c.Name || seen[k] {
				continue
			}
			seen[k] = true
			b.Cluster = c.Name
			if b.Weight == 0 {
				b.Weight = 1
			}
			remoteActive = remoteActive || b.State == BackendActive
			remote = append(remote, b)
		}
	}
	out := make([]Backend, 0, len(sp.Backends)+len(remote))
	out = append(out, sp.Backends...)
	out = append(out, remote...)
	for i := range out {
		local := out[i].Cluster == ""
		switch svc.Affinity {
		case ServiceAffinityLocal:
			out[i].Standby = !local && localActive
		case ServiceAffinityRemote:
			out[i].Standby = local && remoteActive
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

// validateRemoteServices checks a remote cluster's global Services.
func validateRemoteServices(c *RemoteCluster, rp *field.Path) field.ErrorList {
	var all field.ErrorList
	keys := map[string]int{}
	for i := range c.Services {
		s := &c.Services[i]
		sp := rp.Child("services").Index(i)
		what := "Service " + s.Key()
		for _, msg := range validation.IsDNS1123Label(s.Namespace) {
			all = append(all, field.Invalid(sp.Child("namespace"), s.Namespace, msg))
		}
		for _, msg := range validation.IsDNS1035Label(s.Name) {
			all = append(all, field.Invalid(sp.Child("name"), s.Name, msg))
		}
		if j, dup := keys[s.Key()]; dup {
			all = append(all, field.Duplicate(sp.Child("name"), fmt.Sprintf("%s (also services[%d])", s.Key(), j)))
		} else {
			keys[s.Key()] = i
		}
		type portKey struct {
			name  string
			port  uint16
			proto Protocol
		}
		ports := map[portKey]int{}
		for j := range s.Ports {
			p := &s.Ports[j]
			pp := sp.Child("ports").Index(j)
			if p.Protocol != ProtoTCP && p.Protocol != ProtoUDP {
				all = append(all, field.NotSupported(pp.Child("protocol"), p.Protocol.String(), []string{"TCP", "UDP"}))
			}
			if p.Port == 0 {
				all = append(all, field.Invalid(pp.Child("port"), p.Port, "must be between 1 and 65535 ("+what+")"))
			}
			if p.Name != "" {
				for _, msg := range validation.IsDNS1123Label(p.Name) {
					all = append(all, field.Invalid(pp.Child("name"), p.Name, msg))
				}
			}
			// Both ways a local port may match it must be unique.
			for _, k := range []portKey{{name: p.Name, proto: p.Protocol}, {port: p.Port, proto: p.Protocol}} {
				if k.name == "" && k.port == 0 {
					continue
				}
				if prev, dup := ports[k]; dup {
					all = append(all, field.Duplicate(pp, fmt.Sprintf("%s port %q %d/%s (also ports[%d])", what, p.Name, p.Port, p.Protocol, prev)))
					break
				}
				ports[k] = j
			}
			backends := map[netip.AddrPort]int{}
			for k := range p.Backends {
				b := &p.Backends[k]
				bp := pp.Child("backends").Index(k)
				if !b.Addr.IsValid() || !b.Addr.Is4() {
					all = append(all, field.Invalid(bp.Child("addr"), b.Addr.String(), "not an IPv4 address ("+what+")"))
				}
				if b.Port == 0 {
					all = append(all, field.Invalid(bp.Child("port"), b.Port, "must be between 1 and 65535 ("+what+")"))
				}
				if b.State != BackendActive && b.State != BackendTerminating {
					all = append(all, field.NotSupported(bp.Child("state"), b.State.String(), []string{"active", "terminating"}))
				}
				if b.Standby {
					all = append(all, field.Invalid(bp.Child("standby"), true, "set by Resolve, not by the remote cluster"))
				}
				if b.Cluster != "" && b.Cluster != c.Name {
					all = append(all, field.Invalid(bp.Child("cluster"), b.Cluster, "differs from the cluster's name "+c.Name))
				}
				ap := netip.AddrPortFrom(b.Addr, b.Port)
				if prev, dup := backends[ap]; dup {
					all = append(all, field.Duplicate(bp, fmt.Sprintf("%s (also backends[%d])", ap, prev)))
				} else {
					backends[ap] = k
				}
			}
		}
	}
	return all
}
