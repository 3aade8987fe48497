package conformance

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/fastpath-bench/fastpath/datapath/model"
	"github.com/fastpath-bench/fastpath/harness/cluster/netns"
)

// Services in cases: cluster.yaml may hold Services (with spec.clusterIP
// set) and EndpointSlices. For a Service with a selector and no
// EndpointSlice of its own, the runner does what Kubernetes' EndpointSlice
// controller does: one slice per distinct set of resolved target ports,
// listing the ready pods the selector matches, with their addresses in
// the cluster the case runs on.

// endpointSlicesFor returns the generated slices.
func endpointSlicesFor(objs *model.Objects) []discoveryv1.EndpointSlice {
	has := map[string]bool{}
	for _, s := range objs.EndpointSlices {
		has[s.Namespace+"/"+s.Labels[discoveryv1.LabelServiceName]] = true
	}
	var out []discoveryv1.EndpointSlice
	for _, svc := range objs.Services {
		if len(svc.Spec.Selector) == 0 || svc.Spec.ClusterIP == corev1.ClusterIPNone || has[svc.Namespace+"/"+svc.Name] {
			continue
		}
		sel := labels.SelectorFromSet(svc.Spec.Selector)
		type group struct {
			ports     []discoveryv1.EndpointPort
			endpoints []discoveryv1.Endpoint
		}
		groups := map[string]*group{}
		var keys []string
		for i := range objs.Pods {
			pod := &objs.Pods[i]
			if pod.Namespace != svc.Namespace || !sel.Matches(labels.Set(pod.Labels)) {
				continue
			}
			ip, err := netip.ParseAddr(pod.Status.PodIP)
			if err != nil {
				continue
			}
			var ports []discoveryv1.EndpointPort
			var sig []string
			for _, sp := range svc.Spec.Ports {
				target, ok := targetPort(pod, sp)
				if !ok {
					continue
				}
				name, proto, port := sp.Name, sp.Protocol, int32(target)
				if proto == "" {
					proto = corev1.ProtocolTCP
				}
				ports = append(ports, discoveryv1.EndpointPort{Name: &name, Protocol: &proto, Port: &port})
				sig = append(sig, fmt.Sprintf("%s/%s/%d", name, proto, port))
			}
			key := strings.Join(sig, ",")
			g := groups[key]
			if g == nil {
				g = &group{ports: ports}
				groups[key] = g
				keys = append(keys, key)
			}
			ready := true
			ep := discoveryv1.Endpoint{
				Addresses:  []string{ip.String()},
				Conditions: discoveryv1.EndpointConditions{Ready: &ready},
				TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: pod.Namespace, Name: pod.Name},
			}
			if pod.Spec.NodeName != "" {
				node := pod.Spec.NodeName
				ep.NodeName = &node
			}
			g.endpoints = append(g.endpoints, ep)
		}
		sort.Strings(keys)
		for i, k := range keys {
			g := groups[k]
			out = append(out, discoveryv1.EndpointSlice{
				TypeMeta: metav1.TypeMeta{APIVersion: "discovery.k8s.io/v1", Kind: "EndpointSlice"},
				ObjectMeta: metav1.ObjectMeta{
					Name: fmt.Sprintf("%s-%d", svc.Name, i), Namespace: svc.Namespace,
					Labels: map[string]string{discoveryv1.LabelServiceName: svc.Name},
				},
				AddressType: discoveryv1.AddressTypeIPv4,
				Endpoints:   g.endpoints,
				Ports:       g.ports,
			})
		}
	}
	return out
}

// targetPort resolves a Service port's targetPort on a pod: a number as
// is (the port itself when unset), a name through the pod's container
// ports of the same protocol.
func targetPort(pod *corev1.Pod, sp corev1.ServicePort) (int, bool) {
	proto := sp.Protocol
	if proto == "" {
		proto = corev1.ProtocolTCP
	}
	switch {
	case sp.TargetPort.Type == intstr.Int && sp.TargetPort.IntVal != 0:
		return int(sp.TargetPort.IntVal), true
	case sp.TargetPort.Type == intstr.String && sp.TargetPort.StrVal != "":
		for _, c := range pod.Spec.Containers {
			for _, cp := range c.Ports {
				p := cp.Protocol
				if p == "" {
					p = corev1.ProtocolTCP
				}
				if cp.Name == sp.TargetPort.StrVal && p == proto {
					return int(cp.ContainerPort), true
				}
			}
		}
		return 0, false
	}
	return int(sp.Port), true
}

// servicesState is the state file with the case's Services and
// EndpointSlices (given and generated), for the agents.
func servicesState(objs *model.Objects) ([]byte, error) {
	var docs []any
	for _, s := range objs.Services {
		s.TypeMeta = metav1.TypeMeta{APIVersion: "v1", Kind: "Service"}
		docs = append(docs, s)
	}
	for _, s := range objs.EndpointSlices {
		s.TypeMeta = metav1.TypeMeta{APIVersion: "discovery.k8s.io/v1", Kind: "EndpointSlice"}
		docs = append(docs, s)
	}
	return netns.MarshalDocs(docs)
}

// findService finds a Service by "namespace/name".
func findService(objs *model.Objects, key string) *corev1.Service {
	for i := range objs.Services {
		s := &objs.Services[i]
		if s.Namespace+"/"+s.Name == key {
			return s
		}
	}
	return nil
}
