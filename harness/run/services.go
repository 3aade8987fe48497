package run

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/fastpath-bench/fastpath/harness/cluster/netns"
	"github.com/fastpath-bench/fastpath/harness/scenario"
)

// Scenarios with `services: N` run with N Services installed (one state
// file, replaced when the next scenario wants another set): with `via:
// service` the first is the scenario's own, ClusterIP benchServiceVIP with
// the server as its only backend on the HTTP, TCP-echo and gRPC ports; the
// others are generated, each with two backends, so that the datapath's
// service tables (eBPF maps, kube-proxy style nat chains) hold N services
// while the load runs.
const servicesStateFile = "06-bench-services.yaml"

var benchServiceVIP = netip.MustParseAddr("10.96.0.10")

// serviceSet identifies what is installed.
type serviceSet struct {
	n        int
	backends int
	target   string
	via      string
}

// installServices writes the scenario's Services (or removes them) and
// waits until every agent has programmed them.
func (r *runner) installServices(ctx context.Context, sc scenario.Scenario) error {
	want := serviceSet{n: sc.Services, backends: sc.Backends, target: sc.To, via: sc.Via}
	if want == r.services || (want.n == 0 && r.services.n == 0) {
		return nil
	}
	since := time.Now()
	var hash string
	var err error
	if want.n == 0 {
		hash, err = r.c.RemoveState(servicesStateFile)
	} else {
		var data []byte
		data, err = r.servicesYAML(sc)
		if err == nil {
			hash, err = r.c.WriteState(servicesStateFile, data)
		}
	}
	if err != nil {
		return fmt.Errorf("services for %s: %w", sc.Name, err)
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	if _, err := r.c.WaitProgrammed(wctx, hash, since); err != nil {
		return fmt.Errorf("services for %s: %w", sc.Name, err)
	}
	r.logf("%d services installed in %s", want.n, time.Since(since).Round(time.Millisecond))
	r.services = want
	return nil
}

func (r *runner) servicesYAML(sc scenario.Scenario) ([]byte, error) {
	ns, _, _ := strings.Cut(sc.To, "/")
	target, client := r.podIP(sc.To), r.podIP(sc.From)
	var docs []any
	add := func(name string, vip netip.Addr, ports []corev1.ServicePort, addrs []netip.Addr) {
		svc := corev1.Service{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			Spec:       corev1.ServiceSpec{ClusterIP: vip.String(), Ports: ports},
		}
		slice := discoveryv1.EndpointSlice{
			TypeMeta:    metav1.TypeMeta{APIVersion: "discovery.k8s.io/v1", Kind: "EndpointSlice"},
			ObjectMeta:  metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{discoveryv1.LabelServiceName: name}},
			AddressType: discoveryv1.AddressTypeIPv4,
		}
		ready := true
		for _, a := range addrs {
			slice.Endpoints = append(slice.Endpoints, discoveryv1.Endpoint{Addresses: []string{a.String()}, Conditions: discoveryv1.EndpointConditions{Ready: &ready}})
		}
		for _, p := range ports {
			name, proto, port := p.Name, p.Protocol, p.TargetPort.IntVal
			slice.Ports = append(slice.Ports, discoveryv1.EndpointPort{Name: &name, Protocol: &proto, Port: &port})
		}
		docs = append(docs, svc, slice)
	}
	n := sc.Services
	if sc.Via == "service" {
		port := sc.Load.Port
		var ports []corev1.ServicePort
		for i, name := range []string{"http", "tcp", "grpc"} {
			ports = append(ports, corev1.ServicePort{Name: name, Protocol: corev1.ProtocolTCP, Port: int32(port + i), TargetPort: intstr.FromInt32(int32(port + i))})
		}
		add("bench-target", benchServiceVIP, ports, []netip.Addr{target})
		n--
	}
	fillerBackends := []netip.Addr{target, client}
	if sc.Backends > 0 {
		// Made-up addresses (nothing is sent to fillers): state, not traffic.
		fillerBackends = nil
		for j := 0; j < sc.Backends; j++ {
			fillerBackends = append(fillerBackends, netip.AddrFrom4([4]byte{10, 98, byte(j >> 8), byte(j)}))
		}
	}
	for i := 0; i < n; i++ {
		vip := netip.AddrFrom4([4]byte{10, 97, byte(i >> 8), byte(i)})
		add(fmt.Sprintf("filler-%05d", i), vip,
			[]corev1.ServicePort{{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80, TargetPort: intstr.FromInt32(9999)}},
			fillerBackends)
	}
	return netns.MarshalDocs(docs)
}
