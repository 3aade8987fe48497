package model

import (
	"fmt"
	"net/netip"
	"sort"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Node port range of a default Kubernetes cluster (--service-node-port-range).
const (
	minNodePort = 30000
	maxNodePort = 32767
)

// Session affinity timeouts (Kubernetes' default and maximum).
const (
	defaultAffinityTimeoutSeconds = 10800
	maxAffinityTimeoutSeconds     = 86400
)

// isNodePortType reports whether a Service type has node ports
// (LoadBalancer is treated as NodePort: the model programs no load
// balancer addresses).
func isNodePortType(t corev1.ServiceType) bool {
	return t == corev1.ServiceTypeNodePort || t == corev1.ServiceTypeLoadBalancer
}

// isHeadless reports whether a Service has no virtual address.
func isHeadless(s *corev1.Service) bool { return s.Spec.ClusterIP == corev1.ClusterIPNone }

// lbProtocolOf maps a Service or EndpointSlice port protocol ("" or nil
// means TCP) to the protocols the load balancer handles: TCP and UDP.
func lbProtocolOf(p corev1.Protocol) (Protocol, bool) {
	switch p {
	case "", corev1.ProtocolTCP:
		return ProtoTCP, true
	case corev1.ProtocolUDP:
		return ProtoUDP, true
	}
	return 0, false
}

// validateLBProtocol checks a Service or EndpointSlice port protocol.
func validateLBProtocol(p corev1.Protocol, fp *field.Path) field.ErrorList {
	if _, ok := lbProtocolOf(p); ok {
		return nil
	}
	if p == corev1.ProtocolSCTP {
		return field.ErrorList{field.Invalid(fp, p, "SCTP is not supported by the load balancer (TCP and UDP are)")}
	}
	return field.ErrorList{field.NotSupported(fp, p, []string{"TCP", "UDP"})}
}

// parseServiceIP parses a frontend address: a unicast IPv4 address.
func parseServiceIP(s string) (netip.Addr, bool) {
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is4() || a.IsUnspecified() || a.IsMulticast() || a.IsLoopback() || a == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
		return netip.Addr{}, false
	}
	return a, true
}

func validateObjectName(name, namespace string, nameCheck func(string) []string) field.ErrorList {
	var all field.ErrorList
	for _, msg := range nameCheck(name) {
		all = append(all, field.Invalid(field.NewPath("metadata", "name"), name, msg))
	}
	for _, msg := range validation.IsDNS1123Label(namespace) {
		all = append(all, field.Invalid(field.NewPath("metadata", "namespace"), namespace, msg))
	}
	return all
}

// validateService checks one Service on its own; validateServiceRefs checks
// what involves other objects (shared frontends and node ports).
func validateService(s *corev1.Service) field.ErrorList {
	var all field.ErrorList
	all = append(all, validateObjectName(s.Name, s.Namespace, validation.IsDNS1035Label)...)
	all = append(all, validateLabels(s.Labels, field.NewPath("metadata", "labels"))...)
	_, _, annErrs := ServiceMeshAnnotations(s.Annotations)
	all = append(all, annErrs...)
	spec := field.NewPath("spec")
	nodePortType := false
	switch s.Spec.Type {
	case "", corev1.ServiceTypeClusterIP:
	case corev1.ServiceTypeNodePort, corev1.ServiceTypeLoadBalancer:
		nodePortType = true
	case corev1.ServiceTypeExternalName:
		// A DNS alias: nothing to load-balance. The rest of the spec
		// would only add noise.
		return append(all, field.Invalid(spec.Child("type"), s.Spec.Type, "type ExternalName is not supported (no load-balanced frontend); use ClusterIP, NodePort or LoadBalancer"))
	default:
		all = append(all, field.NotSupported(spec.Child("type"), s.Spec.Type, []string{"ClusterIP", "NodePort", "LoadBalancer"}))
	}

	headless := isHeadless(s)
	switch {
	case headless:
		if nodePortType {
			all = append(all, field.Invalid(spec.Child("clusterIP"), s.Spec.ClusterIP, fmt.Sprintf("a headless Service may not be of type %s", s.Spec.Type)))
		}
	case s.Spec.ClusterIP == "":
		all = append(all, field.Required(spec.Child("clusterIP"), `set spec.clusterIP to an IPv4 address (or "None" for a headless Service): this model has no IP allocator`))
	default:
		if _, ok := parseServiceIP(s.Spec.ClusterIP); !ok {
			all = append(all, field.Invalid(spec.Child("clusterIP"), s.Spec.ClusterIP, `must be a unicast IPv4 address or "None"`))
		}
	}
	for i, ip := range s.Spec.ClusterIPs {
		switch {
		case i > 0:
			all = append(all, field.Forbidden(spec.Child("clusterIPs").Index(i), "dual-stack is not supported: at most one address, equal to spec.clusterIP"))
		case ip != s.Spec.ClusterIP:
			all = append(all, field.Invalid(spec.Child("clusterIPs").Index(i), ip, fmt.Sprintf("must equal spec.clusterIP %q", s.Spec.ClusterIP)))
		}
	}
	for i, f := range s.Spec.IPFamilies {
		if f != corev1.IPv4Protocol {
			all = append(all, field.NotSupported(spec.Child("ipFamilies").Index(i), f, []string{"IPv4"}))
		}
	}
	if len(s.Spec.ExternalIPs) > 0 {
		all = append(all, field.Forbidden(spec.Child("externalIPs"), "external IPs are not supported"))
	}
	if p := s.Spec.ExternalTrafficPolicy; p != "" && p != corev1.ServiceExternalTrafficPolicyCluster {
		all = append(all, field.NotSupported(spec.Child("externalTrafficPolicy"), p, []string{"Cluster"}))
	}
	if p := s.Spec.InternalTrafficPolicy; p != nil && *p != corev1.ServiceInternalTrafficPolicyCluster {
		all = append(all, field.NotSupported(spec.Child("internalTrafficPolicy"), *p, []string{"Cluster"}))
	}

	ports := spec.Child("ports")
	if len(s.Spec.Ports) == 0 && !headless {
		all = append(all, field.Required(ports, "at least one port (only a headless Service may have none)"))
	}
	type portKey struct {
		port  int32
		proto corev1.Protocol
	}
	names := map[string]bool{}
	seenPorts := map[portKey]bool{}
	seenNodePorts := map[portKey]bool{}
	for i, p := range s.Spec.Ports {
		pp := ports.Index(i)
		if p.Name == "" {
			if len(s.Spec.Ports) > 1 {
				all = append(all, field.Required(pp.Child("name"), "required when the Service has more than one port"))
			}
		} else {
			for _, msg := range validation.IsDNS1123Label(p.Name) {
				all = append(all, field.Invalid(pp.Child("name"), p.Name, msg))
			}
			if names[p.Name] {
				all = append(all, field.Duplicate(pp.Child("name"), p.Name))
			}
			names[p.Name] = true
		}
		if p.Port < 1 || p.Port > 65535 {
			all = append(all, field.Invalid(pp.Child("port"), p.Port, "must be between 1 and 65535"))
		}
		all = append(all, validateLBProtocol(p.Protocol, pp.Child("protocol"))...)
		proto := p.Protocol
		if proto == "" {
			proto = corev1.ProtocolTCP
		}
		if k := (portKey{p.Port, proto}); seenPorts[k] {
			all = append(all, field.Duplicate(pp.Child("port"), fmt.Sprintf("%d/%s", p.Port, proto)))
		} else {
			seenPorts[k] = true
		}
		switch p.TargetPort.Type {
		case intstr.Int:
			// 0 is unset: the target port is the port.
			if p.TargetPort.IntVal < 0 || p.TargetPort.IntVal > 65535 {
				all = append(all, field.Invalid(pp.Child("targetPort"), p.TargetPort.IntVal, "must be between 1 and 65535"))
			}
		case intstr.String:
			for _, msg := range validation.IsValidPortName(p.TargetPort.StrVal) {
				all = append(all, field.Invalid(pp.Child("targetPort"), p.TargetPort.StrVal, msg))
			}
		}
		switch {
		case p.NodePort != 0 && !nodePortType:
			all = append(all, field.Forbidden(pp.Child("nodePort"), "may only be set for type NodePort or LoadBalancer"))
		case p.NodePort != 0 && (p.NodePort < minNodePort || p.NodePort > maxNodePort):
			all = append(all, field.Invalid(pp.Child("nodePort"), p.NodePort, fmt.Sprintf("must be between %d and %d", minNodePort, maxNodePort)))
		case p.NodePort != 0:
			// One Service may use a node port once per protocol.
			if k := (portKey{p.NodePort, proto}); seenNodePorts[k] {
				all = append(all, field.Duplicate(pp.Child("nodePort"), fmt.Sprintf("%d/%s", p.NodePort, proto)))
			} else {
				seenNodePorts[k] = true
			}
		case nodePortType:
			all = append(all, field.Required(pp.Child("nodePort"), fmt.Sprintf("set spec.ports[%d].nodePort (%d-%d): this model has no node port allocator", i, minNodePort, maxNodePort)))
		}
	}

	cfg := s.Spec.SessionAffinityConfig
	switch s.Spec.SessionAffinity {
	case "", corev1.ServiceAffinityNone:
		if cfg != nil && cfg.ClientIP != nil {
			all = append(all, field.Forbidden(spec.Child("sessionAffinityConfig", "clientIP"), "may only be set when sessionAffinity is ClientIP"))
		}
	case corev1.ServiceAffinityClientIP:
		if cfg != nil && cfg.ClientIP != nil && cfg.ClientIP.TimeoutSeconds != nil {
			if t := *cfg.ClientIP.TimeoutSeconds; t < 1 || t > maxAffinityTimeoutSeconds {
				all = append(all, field.Invalid(spec.Child("sessionAffinityConfig", "clientIP", "timeoutSeconds"), t, fmt.Sprintf("must be between 1 and %d", maxAffinityTimeoutSeconds)))
			}
		}
	default:
		all = append(all, field.NotSupported(spec.Child("sessionAffinity"), s.Spec.SessionAffinity, []string{"None", "ClientIP"}))
	}
	return all
}

// validateEndpointSlice checks one EndpointSlice on its own;
// validateServiceRefs checks that it belongs to a Service.
func validateEndpointSlice(es *discoveryv1.EndpointSlice) field.ErrorList {
	var all field.ErrorList
	all = append(all, validateObjectName(es.Name, es.Namespace, validation.IsDNS1123Subdomain)...)
	labelsPath := field.NewPath("metadata", "labels")
	all = append(all, validateLabels(es.Labels, labelsPath)...)
	if es.Labels[discoveryv1.LabelServiceName] == "" {
		all = append(all, field.Required(labelsPath.Key(discoveryv1.LabelServiceName), "the name of the Service the slice belongs to"))
	}
	ipv4 := false
	switch es.AddressType {
	case discoveryv1.AddressTypeIPv4:
		ipv4 = true
	case "":
		all = append(all, field.Required(field.NewPath("addressType"), "IPv4"))
	case discoveryv1.AddressTypeIPv6, discoveryv1.AddressTypeFQDN:
		all = append(all, field.Invalid(field.NewPath("addressType"), es.AddressType, "not supported: the load balancer takes IPv4 addresses only"))
	default:
		all = append(all, field.NotSupported(field.NewPath("addressType"), es.AddressType, []string{"IPv4"}))
	}
	for i, ep := range es.Endpoints {
		fp := field.NewPath("endpoints").Index(i)
		if len(ep.Addresses) == 0 {
			all = append(all, field.Required(fp.Child("addresses"), "at least one address"))
		}
		for j, a := range ep.Addresses {
			if _, ok := parseServiceIP(a); ipv4 && !ok {
				all = append(all, field.Invalid(fp.Child("addresses").Index(j), a, "not a unicast IPv4 address"))
			}
		}
		if ref := ep.TargetRef; ref != nil {
			if ref.Kind != "Pod" {
				all = append(all, field.NotSupported(fp.Child("targetRef", "kind"), ref.Kind, []string{"Pod"}))
			}
			if ref.Name == "" {
				all = append(all, field.Required(fp.Child("targetRef", "name"), "the Pod's name"))
			}
		}
	}
	names := map[string]bool{}
	for i, p := range es.Ports {
		fp := field.NewPath("ports").Index(i)
		switch {
		case p.Port == nil:
			all = append(all, field.Required(fp.Child("port"), "the target port number (1-65535)"))
		case *p.Port < 1 || *p.Port > 65535:
			all = append(all, field.Invalid(fp.Child("port"), *p.Port, "must be between 1 and 65535"))
		}
		if p.Protocol != nil {
			all = append(all, validateLBProtocol(*p.Protocol, fp.Child("protocol"))...)
		}
		name := ptrOr(p.Name, "")
		if name != "" {
			for _, msg := range validation.IsDNS1123Label(name) {
				all = append(all, field.Invalid(fp.Child("name"), name, msg))
			}
		}
		if names[name] {
			all = append(all, field.Duplicate(fp.Child("name"), name))
		}
		names[name] = true
	}
	return all
}

// validateServiceRefs checks what relates Services and EndpointSlices to
// other objects: every slice belongs to an existing Service; no two
// Services share a ClusterIP frontend (address, port, protocol) or a node
// port; a ClusterIP is no node or pod address. It must run on the whole
// state (a Loader runs it after merging its files). Invalid parts of
// objects, which validateService reports, are skipped here.
func (o *Objects) validateServiceRefs() []error {
	var errs []error
	add := func(kind, ns, name string, e *field.Error) {
		errs = append(errs, fmt.Errorf("%s: %s", o.where(kind, ns, name), e.Error()))
	}
	// Addresses that a ClusterIP must not take.
	taken := map[netip.Addr]string{}
	for _, n := range o.Nodes {
		for _, a := range n.Status.Addresses {
			if ip, err := netip.ParseAddr(a.Address); err == nil && (a.Type == corev1.NodeInternalIP || a.Type == corev1.NodeExternalIP) {
				taken[ip] = "an address of Node " + n.Name
			}
		}
	}
	for _, p := range o.Pods {
		if ip, err := netip.ParseAddr(p.Status.PodIP); err == nil {
			taken[ip] = "the address of Pod " + p.Namespace + "/" + p.Name
		}
	}
	type frontend struct {
		ip    netip.Addr
		port  int32
		proto Protocol
	}
	// Services in a stable order, so that the first of two is the one
	// kept and the second the one named at fault.
	svcs := make([]*corev1.Service, len(o.Services))
	for i := range o.Services {
		svcs[i] = &o.Services[i]
	}
	sort.SliceStable(svcs, func(i, j int) bool {
		return svcs[i].Namespace+"/"+svcs[i].Name < svcs[j].Namespace+"/"+svcs[j].Name
	})
	exists := map[string]bool{}
	frontends := map[frontend]servicePortOwner{}
	nodePorts := map[int32]servicePortOwner{}
	for _, s := range svcs {
		key := s.Namespace + "/" + s.Name
		exists[key] = true
		if s.Spec.Type == corev1.ServiceTypeExternalName {
			continue
		}
		ports := field.NewPath("spec", "ports")
		ip, ipOK := parseServiceIP(s.Spec.ClusterIP)
		if what, ok := taken[ip]; ipOK && ok {
			add("Service", s.Namespace, s.Name, field.Invalid(field.NewPath("spec", "clusterIP"), s.Spec.ClusterIP, "is "+what))
		}
		for i, p := range s.Spec.Ports {
			proto, ok := lbProtocolOf(p.Protocol)
			if !ok || p.Port < 1 || p.Port > 65535 {
				continue
			}
			if ipOK {
				f := frontend{ip, p.Port, proto}
				if prev, dup := frontends[f]; dup && prev.key != key {
					add("Service", s.Namespace, s.Name, field.Invalid(ports.Index(i).Child("port"), p.Port,
						fmt.Sprintf("%s:%d/%s is already a frontend of %s", ip, p.Port, proto, prev.describe(o))))
				} else if !dup {
					frontends[f] = servicePortOwner{s, key, i}
				}
			}
			if p.NodePort >= minNodePort && p.NodePort <= maxNodePort && isNodePortType(s.Spec.Type) {
				if prev, dup := nodePorts[p.NodePort]; dup && prev.key != key {
					add("Service", s.Namespace, s.Name, field.Invalid(ports.Index(i).Child("nodePort"), p.NodePort,
						fmt.Sprintf("node port %d is already used by %s", p.NodePort, prev.describe(o))))
				} else if !dup {
					nodePorts[p.NodePort] = servicePortOwner{s, key, i}
				}
			}
		}
	}
	for i := range o.EndpointSlices {
		es := &o.EndpointSlices[i]
		svc := es.Labels[discoveryv1.LabelServiceName]
		if svc == "" {
			continue // validateEndpointSlice said so
		}
		if !exists[es.Namespace+"/"+svc] {
			add("EndpointSlice", es.Namespace, es.Name, field.Invalid(field.NewPath("metadata", "labels").Key(discoveryv1.LabelServiceName), svc,
				fmt.Sprintf("selects no Service: there is no Service %s/%s", es.Namespace, svc)))
		}
	}
	return errs
}

// servicePortOwner is the Service port that holds a frontend or node port.
type servicePortOwner struct {
	svc       *corev1.Service
	key       string // "namespace/name"
	portIndex int
}

// describe names the owner for an error: "Service ns/name spec.ports[i]
// (file#doc)".
func (w servicePortOwner) describe(o *Objects) string {
	s := fmt.Sprintf("Service %s spec.ports[%d]", w.key, w.portIndex)
	if src, ok := o.Source[ObjectKey("Service", w.svc.Namespace, w.svc.Name)]; ok {
		s += " (" + src + ")"
	}
	return s
}
