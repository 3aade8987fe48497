package kube

import (
	"net/netip"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/fastpath-bench/fastpath/datapath/model"
)

func ptr[T any](v T) *T { return &v }

func objMeta(ns, name string, labels map[string]string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels, UID: types.UID("uid-" + ns + "-" + name), ResourceVersion: "100",
		CreationTimestamp: metav1.Date(2025, 1, 1, 0, 0, 0, 0, time0.Location())}
}

var time0 = metav1.Now()

func namespace(name string) corev1.Namespace {
	return corev1.Namespace{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"},
		ObjectMeta: objMeta("", name, map[string]string{"kubernetes.io/metadata.name": name}),
		Spec:       corev1.NamespaceSpec{Finalizers: []corev1.FinalizerName{corev1.FinalizerKubernetes}},
		Status:     corev1.NamespaceStatus{Phase: corev1.NamespaceActive},
	}
}

func kindNode(name, ip, cidr string) corev1.Node {
	return corev1.Node{
		ObjectMeta: objMeta("", name, map[string]string{
			"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
			"beta.kubernetes.io/os": "linux", "beta.kubernetes.io/arch": "amd64",
		}),
		Spec: corev1.NodeSpec{PodCIDR: cidr, PodCIDRs: []string{cidr}, ProviderID: "kind://docker/kind/" + name},
		Status: corev1.NodeStatus{
			Addresses:  []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: ip}, {Type: corev1.NodeHostName, Address: name}},
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}},
		},
	}
}

func runningPod(ns, name, node, ip string, labels map[string]string, ports ...corev1.ContainerPort) corev1.Pod {
	return corev1.Pod{
		ObjectMeta: objMeta(ns, name, labels),
		Spec: corev1.PodSpec{
			NodeName:           node,
			ServiceAccountName: "default",
			Containers:         []corev1.Container{{Name: "main", Image: "registry.k8s.io/e2e-test-images/agnhost:2.53", Ports: ports}},
		},
		Status: corev1.PodStatus{
			Phase:  corev1.PodRunning,
			HostIP: "172.18.0.3", HostIPs: []corev1.HostIP{{IP: "172.18.0.3"}},
			PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}},
		},
	}
}

func slicePort(name string, port int32, proto corev1.Protocol) discoveryv1.EndpointPort {
	return discoveryv1.EndpointPort{Name: ptr(name), Port: ptr(port), Protocol: ptr(proto)}
}

func readyEndpoint(ip, node string, pod *corev1.ObjectReference) discoveryv1.Endpoint {
	return discoveryv1.Endpoint{
		Addresses:  []string{ip},
		Conditions: discoveryv1.EndpointConditions{Ready: ptr(true), Serving: ptr(true), Terminating: ptr(false)},
		NodeName:   ptr(node),
		TargetRef:  pod,
	}
}

// kindCluster is what a two-node kind cluster's API server holds (trimmed
// to the kinds the model reads), as real objects come: defaults filled in.
func kindCluster() Input {
	single := corev1.IPFamilyPolicySingleStack
	clusterPolicy := corev1.ServiceInternalTrafficPolicyCluster
	hostNetworkPod := runningPod("kube-system", "kube-proxy-x7k2p", "kind-worker", "172.18.0.3", map[string]string{"k8s-app": "kube-proxy", "controller-revision-hash": "5b9d6f7c8d", "pod-template-generation": "1"})
	hostNetworkPod.Spec.HostNetwork = true
	etcd := runningPod("kube-system", "etcd-kind-control-plane", "kind-control-plane", "172.18.0.2", map[string]string{"component": "etcd", "tier": "control-plane"})
	etcd.Spec.HostNetwork = true
	pending := runningPod("default", "pending", "", "", map[string]string{"app": "pending"})
	pending.Status = corev1.PodStatus{Phase: corev1.PodPending}
	completed := runningPod("default", "job-abc12", "kind-worker", "10.244.1.7", map[string]string{"job-name": "job"})
	completed.Status.Phase = corev1.PodSucceeded
	corednsA := runningPod("kube-system", "coredns-674b8bbfcf-4xk9d", "kind-control-plane", "10.244.0.2",
		map[string]string{"k8s-app": "kube-dns", "pod-template-hash": "674b8bbfcf"},
		corev1.ContainerPort{Name: "dns", ContainerPort: 53, Protocol: corev1.ProtocolUDP},
		corev1.ContainerPort{Name: "dns-tcp", ContainerPort: 53, Protocol: corev1.ProtocolTCP},
		corev1.ContainerPort{Name: "metrics", ContainerPort: 9153, Protocol: corev1.ProtocolTCP})
	corednsA.Status.HostIP = "172.18.0.2"
	web := runningPod("demo", "web-6d4cf56db6-abcde", "kind-worker", "10.244.1.5",
		map[string]string{"app": "web", "pod-template-hash": "6d4cf56db6"},
		corev1.ContainerPort{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP})
	client := runningPod("demo", "client", "kind-worker", "10.244.1.6", map[string]string{"app": "client"})

	return Input{
		Namespaces: []corev1.Namespace{namespace("kube-system"), namespace("default"), namespace("demo"), namespace("kube-public"), namespace("kube-node-lease"), namespace("local-path-storage")},
		Nodes: []corev1.Node{
			kindNode("kind-worker", "172.18.0.3", "10.244.1.0/24"),
			kindNode("kind-control-plane", "172.18.0.2", "10.244.0.0/24"),
		},
		Pods: []corev1.Pod{hostNetworkPod, etcd, pending, completed, corednsA, web, client},
		Services: []corev1.Service{
			{
				ObjectMeta: objMeta("default", "kubernetes", map[string]string{"component": "apiserver", "provider": "kubernetes"}),
				Spec: corev1.ServiceSpec{
					Type: corev1.ServiceTypeClusterIP, ClusterIP: "10.96.0.1", ClusterIPs: []string{"10.96.0.1"},
					IPFamilies: []corev1.IPFamily{corev1.IPv4Protocol}, IPFamilyPolicy: &single,
					Ports:                 []corev1.ServicePort{{Name: "https", Port: 443, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(6443)}},
					SessionAffinity:       corev1.ServiceAffinityNone,
					InternalTrafficPolicy: &clusterPolicy,
				},
			},
			{
				ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "kube-dns", ResourceVersion: "250",
					Labels:      map[string]string{"k8s-app": "kube-dns", "kubernetes.io/cluster-service": "true", "kubernetes.io/name": "CoreDNS"},
					Annotations: map[string]string{"prometheus.io/port": "9153", "prometheus.io/scrape": "true"}},
				Spec: corev1.ServiceSpec{
					Type: corev1.ServiceTypeClusterIP, ClusterIP: "10.96.0.10", ClusterIPs: []string{"10.96.0.10"},
					IPFamilies: []corev1.IPFamily{corev1.IPv4Protocol}, IPFamilyPolicy: &single,
					Selector: map[string]string{"k8s-app": "kube-dns"},
					Ports: []corev1.ServicePort{
						{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP, TargetPort: intstr.FromInt32(53)},
						{Name: "dns-tcp", Port: 53, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(53)},
						{Name: "metrics", Port: 9153, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(9153)},
					},
					SessionAffinity:       corev1.ServiceAffinityNone,
					InternalTrafficPolicy: &clusterPolicy,
				},
			},
		},
		EndpointSlices: []discoveryv1.EndpointSlice{
			{
				ObjectMeta:  objMeta("default", "kubernetes", map[string]string{discoveryv1.LabelServiceName: "kubernetes", discoveryv1.LabelSkipMirror: "true"}),
				AddressType: discoveryv1.AddressTypeIPv4,
				Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"172.18.0.2"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr(true)}}},
				Ports:       []discoveryv1.EndpointPort{slicePort("https", 6443, corev1.ProtocolTCP)},
			},
			{
				ObjectMeta: objMeta("kube-system", "kube-dns-8xq2v", map[string]string{
					discoveryv1.LabelServiceName: "kube-dns", discoveryv1.LabelManagedBy: "endpointslice-controller.k8s.io",
					"k8s-app": "kube-dns", "kubernetes.io/cluster-service": "true", "kubernetes.io/name": "CoreDNS"}),
				AddressType: discoveryv1.AddressTypeIPv4,
				Endpoints: []discoveryv1.Endpoint{readyEndpoint("10.244.0.2", "kind-control-plane",
					&corev1.ObjectReference{Kind: "Pod", Namespace: "kube-system", Name: "coredns-674b8bbfcf-4xk9d", UID: "uid-coredns"})},
				Ports: []discoveryv1.EndpointPort{
					slicePort("dns-tcp", 53, corev1.ProtocolTCP),
					slicePort("dns", 53, corev1.ProtocolUDP),
					slicePort("metrics", 9153, corev1.ProtocolTCP),
				},
			},
		},
		NetworkPolicies: []networkingv1.NetworkPolicy{{
			ObjectMeta: objMeta("demo", "web-from-client", nil),
			Spec: networkingv1.NetworkPolicySpec{
				PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
				Ingress: []networkingv1.NetworkPolicyIngressRule{{
					From:  []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "client"}}}},
					Ports: []networkingv1.NetworkPolicyPort{{Protocol: ptr(corev1.ProtocolTCP), Port: ptr(intstr.FromString("http"))}},
				}},
				PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
			},
		}},
	}
}

func TestTranslateKindCluster(t *testing.T) {
	in := kindCluster()
	objs := Translate(in)
	r, err := model.Resolve(objs)
	if err != nil {
		t.Fatalf("Resolve: %v", err)
	}

	if got, want := len(objs.Namespaces), 6; got != want {
		t.Errorf("namespaces: %d, want %d", got, want)
	}
	if got, want := len(objs.Nodes), 2; got != want {
		t.Errorf("nodes: %d, want %d", got, want)
	}
	var pods []string
	for _, p := range objs.Pods {
		pods = append(pods, p.Namespace+"/"+p.Name)
	}
	if got, want := strings.Join(pods, " "), "demo/client demo/web-6d4cf56db6-abcde kube-system/coredns-674b8bbfcf-4xk9d"; got != want {
		t.Errorf("pods: %s, want %s (host-network, pending and completed pods dropped, sorted)", got, want)
	}
	var eps []string
	for _, e := range r.Endpoints {
		eps = append(eps, e.Key()+"="+e.IP.String()+"@"+e.Node)
	}
	if got, want := strings.Join(eps, " "), "demo/client=10.244.1.6@kind-worker demo/web-6d4cf56db6-abcde=10.244.1.5@kind-worker kube-system/coredns-674b8bbfcf-4xk9d=10.244.0.2@kind-control-plane"; got != want {
		t.Errorf("endpoints: %s\nwant %s", got, want)
	}
	if n := r.Nodes; len(n) != 2 || n[0].Name != "kind-control-plane" || n[0].IP != netip.MustParseAddr("172.18.0.2") || n[1].PodCIDR != netip.MustParsePrefix("10.244.1.0/24") {
		t.Errorf("nodes: %+v", n)
	}
	web, ok := r.Endpoint("demo/web-6d4cf56db6-abcde")
	if !ok {
		t.Fatal("no endpoint demo/web")
	}
	if !web.IngressEnforced || len(web.Ingress) == 0 {
		t.Errorf("web: the NetworkPolicy does not apply: %+v", web)
	}
	if web.Labels[model.NamespaceLabelPrefix+"kubernetes.io/metadata.name"] != "demo" {
		t.Errorf("web: namespace labels missing from identity: %v", web.Labels)
	}
	if got := web.NamedPorts["http"]; got.Port != 8080 {
		t.Errorf("web: named port http = %v", got)
	}

	svcs := map[string]*model.Service{}
	for _, s := range r.Services {
		svcs[s.Key()] = s
	}
	if len(svcs) != 2 {
		t.Fatalf("services: %d, want 2", len(r.Services))
	}
	api := svcs["default/kubernetes"]
	if api == nil || api.ClusterIP != netip.MustParseAddr("10.96.0.1") || len(api.Ports) != 1 || api.Ports[0].Port != 443 ||
		len(api.Ports[0].Backends) != 1 || api.Ports[0].Backends[0].Addr != netip.MustParseAddr("172.18.0.2") || api.Ports[0].Backends[0].Port != 6443 {
		t.Errorf("default/kubernetes: %+v", api)
	}
	dns := svcs["kube-system/kube-dns"]
	if dns == nil || len(dns.Ports) != 3 {
		t.Fatalf("kube-system/kube-dns: %+v", dns)
	}
	for _, p := range dns.Ports {
		if len(p.Backends) != 1 || p.Backends[0].Addr != netip.MustParseAddr("10.244.0.2") || p.Backends[0].Pod != "kube-system/coredns-674b8bbfcf-4xk9d" {
			t.Errorf("kube-dns port %s: backends %+v", p.Name, p.Backends)
		}
	}
	if _, p, ok := r.ServiceByFrontend(netip.MustParseAddr("10.96.0.10"), 53, model.ProtoUDP); !ok || p.Name != "dns" {
		t.Errorf("10.96.0.10:53/UDP is not kube-dns's dns port")
	}

	if got := objs.Source[model.ObjectKey("Pod", "demo", "client")]; got != SourceName {
		t.Errorf("Source of Pod demo/client = %q", got)
	}
	if got := objs.Source[model.ObjectKey("Node", "", "kind-worker")]; got != SourceName {
		t.Errorf("Source of Node kind-worker = %q", got)
	}
	// Translate copies: the input is unchanged.
	if in.Pods[0].Name != "kube-proxy-x7k2p" || len(in.Pods) != 7 {
		t.Errorf("input changed")
	}
}

// TestTranslateStrips checks what real (dual-stack, cloud) clusters hold
// that the model would refuse.
func TestTranslateStrips(t *testing.T) {
	in := kindCluster()
	dual := corev1.IPFamilyPolicyRequireDualStack
	local := corev1.ServiceInternalTrafficPolicyLocal

	// IPv6-primary dual-stack node and pod.
	in.Nodes[0].Spec.PodCIDR = "fd00:10:244:1::/64"
	in.Nodes[0].Spec.PodCIDRs = []string{"fd00:10:244:1::/64", "10.244.1.0/24"}
	in.Nodes[0].Status.Addresses = append([]corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "fc00:f853:ccd:e793::3"}}, in.Nodes[0].Status.Addresses...)
	v6pod := runningPod("demo", "dual", "kind-worker", "fd00:10:244:1::9", map[string]string{"app": "dual"})
	v6pod.Status.PodIPs = []corev1.PodIP{{IP: "fd00:10:244:1::9"}, {IP: "10.244.1.9"}}
	v6only := runningPod("demo", "v6only", "kind-worker", "fd00:10:244:1::10", map[string]string{"app": "v6"})
	// An address reused while the old pod is still terminating.
	old := runningPod("demo", "old", "kind-worker", "10.244.1.6", map[string]string{"app": "old"})
	old.DeletionTimestamp = &time0
	in.Pods = append([]corev1.Pod{old}, append(in.Pods, v6pod, v6only)...)

	svc := func(name string, spec corev1.ServiceSpec) corev1.Service {
		return corev1.Service{ObjectMeta: objMeta("demo", name, nil), Spec: spec}
	}
	tcp := func(name string, port, nodePort int32) corev1.ServicePort {
		return corev1.ServicePort{Name: name, Port: port, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(port), NodePort: nodePort}
	}
	in.Services = append(in.Services,
		svc("dualstack", corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, ClusterIP: "fd00:10:96::a", ClusterIPs: []string{"fd00:10:96::a", "10.96.1.1"},
			IPFamilies: []corev1.IPFamily{corev1.IPv6Protocol, corev1.IPv4Protocol}, IPFamilyPolicy: &dual, Ports: []corev1.ServicePort{tcp("http", 80, 0)},
			InternalTrafficPolicy: &local}),
		svc("v6only", corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, ClusterIP: "fd00:10:96::b", ClusterIPs: []string{"fd00:10:96::b"},
			IPFamilies: []corev1.IPFamily{corev1.IPv6Protocol}, Ports: []corev1.ServicePort{tcp("http", 80, 0)}}),
		svc("external", corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "example.com"}),
		svc("lb", corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, ClusterIP: "10.96.1.2", ClusterIPs: []string{"10.96.1.2"},
			IPFamilies: []corev1.IPFamily{corev1.IPv4Protocol}, Ports: []corev1.ServicePort{tcp("http", 80, 31080),
				{Name: "sctp", Port: 9, Protocol: corev1.ProtocolSCTP, NodePort: 31009}},
			ExternalTrafficPolicy: corev1.ServiceExternalTrafficPolicyLocal, HealthCheckNodePort: 32000, ExternalIPs: []string{"192.0.2.10"}}),
		svc("lb-no-nodeports", corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, ClusterIP: "10.96.1.3", ClusterIPs: []string{"10.96.1.3"},
			Ports: []corev1.ServicePort{tcp("http", 80, 0)}, AllocateLoadBalancerNodePorts: ptr(false)}),
		svc("sctp-only", corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, ClusterIP: "10.96.1.4",
			Ports: []corev1.ServicePort{{Name: "sctp", Port: 9, Protocol: corev1.ProtocolSCTP}}}),
		svc("headless", corev1.ServiceSpec{ClusterIP: "None", ClusterIPs: []string{"None"}, IPFamilies: []corev1.IPFamily{corev1.IPv4Protocol, corev1.IPv6Protocol}}),
	)
	es := func(name, svc string, at discoveryv1.AddressType, ports []discoveryv1.EndpointPort, eps ...discoveryv1.Endpoint) discoveryv1.EndpointSlice {
		labels := map[string]string{}
		if svc != "" {
			labels[discoveryv1.LabelServiceName] = svc
		}
		return discoveryv1.EndpointSlice{ObjectMeta: objMeta("demo", name, labels), AddressType: at, Ports: ports, Endpoints: eps}
	}
	in.EndpointSlices = append(in.EndpointSlices,
		es("dualstack-v6", "dualstack", discoveryv1.AddressTypeIPv6, []discoveryv1.EndpointPort{slicePort("http", 80, corev1.ProtocolTCP)}, readyEndpoint("fd00:10:244:1::9", "kind-worker", nil)),
		es("dualstack-v4", "dualstack", discoveryv1.AddressTypeIPv4, []discoveryv1.EndpointPort{slicePort("http", 80, corev1.ProtocolTCP)},
			readyEndpoint("10.244.1.9", "kind-worker", &corev1.ObjectReference{Kind: "Node", Name: "kind-worker"})),
		es("v6only-abc", "v6only", discoveryv1.AddressTypeIPv6, nil, readyEndpoint("fd00:10:244:1::10", "kind-worker", nil)),
		es("lb-abc", "lb", discoveryv1.AddressTypeIPv4, []discoveryv1.EndpointPort{slicePort("http", 80, corev1.ProtocolTCP), slicePort("sctp", 9, corev1.ProtocolSCTP)}, readyEndpoint("10.244.1.5", "kind-worker", nil)),
		es("headless-abc", "headless", discoveryv1.AddressTypeIPv4, []discoveryv1.EndpointPort{{}}, readyEndpoint("10.244.1.5", "kind-worker", nil)),
		es("gone-abc", "gone", discoveryv1.AddressTypeIPv4, nil, readyEndpoint("10.244.1.5", "kind-worker", nil)),
		es("custom", "", discoveryv1.AddressTypeIPv4, nil, readyEndpoint("10.244.1.5", "kind-worker", nil)),
		es("fqdn", "dualstack", discoveryv1.AddressTypeFQDN, nil, discoveryv1.Endpoint{Addresses: []string{"example.com"}}),
	)

	// The model refuses these objects as they come...
	raw := &model.Objects{Namespaces: in.Namespaces, Nodes: in.Nodes, Pods: in.Pods, Services: in.Services, EndpointSlices: in.EndpointSlices, NetworkPolicies: in.NetworkPolicies}
	if _, err := model.Resolve(raw); err == nil {
		t.Fatal("the model accepts the objects untranslated: this test checks nothing")
	}
	// ... and accepts them translated.
	objs := Translate(in)
	r, err := model.Resolve(objs)
	if err != nil {
		t.Fatalf("Resolve: %v", err)
	}
	if n, _ := r.Endpoint("demo/dual"); n == nil || n.IP != netip.MustParseAddr("10.244.1.9") {
		t.Errorf("dual-stack pod: %+v, want 10.244.1.9", n)
	}
	if _, ok := r.Endpoint("demo/v6only"); ok {
		t.Errorf("IPv6-only pod is an endpoint")
	}
	if _, ok := r.Endpoint("demo/old"); ok {
		t.Errorf("terminating pod demo/old kept over demo/client, which has its address now")
	}
	if _, ok := r.Endpoint("demo/client"); !ok {
		t.Errorf("demo/client dropped")
	}
	for _, n := range r.Nodes {
		if n.Name == "kind-worker" && (n.IP != netip.MustParseAddr("172.18.0.3") || n.PodCIDR != netip.MustParsePrefix("10.244.1.0/24")) {
			t.Errorf("dual-stack node: %+v", n)
		}
	}
	var svcs []string
	for _, s := range objs.Services {
		svcs = append(svcs, s.Namespace+"/"+s.Name)
	}
	if got, want := strings.Join(svcs, " "), "default/kubernetes demo/dualstack demo/headless demo/lb demo/lb-no-nodeports kube-system/kube-dns"; got != want {
		t.Errorf("services: %s\nwant %s", got, want)
	}
	var slices []string
	for _, s := range objs.EndpointSlices {
		slices = append(slices, s.Namespace+"/"+s.Name)
	}
	if got, want := strings.Join(slices, " "), "default/kubernetes demo/dualstack-v4 demo/headless-abc demo/lb-abc kube-system/kube-dns-8xq2v"; got != want {
		t.Errorf("endpoint slices: %s\nwant %s", got, want)
	}
	byKey := map[string]*model.Service{}
	for _, s := range r.Services {
		byKey[s.Key()] = s
	}
	if s := byKey["demo/dualstack"]; s == nil || s.ClusterIP != netip.MustParseAddr("10.96.1.1") || len(s.Ports[0].Backends) != 1 {
		t.Errorf("dual-stack service: %+v", s)
	}
	if s := byKey["demo/lb"]; s == nil || !s.NodePortType || len(s.Ports) != 1 || s.Ports[0].NodePort != 31080 || len(s.Ports[0].Backends) != 1 {
		t.Errorf("load balancer service: %+v", s)
	}
	if s := byKey["demo/lb-no-nodeports"]; s == nil || s.NodePortType {
		t.Errorf("load balancer without node ports: %+v", s)
	}
	// The input's objects are unchanged.
	if in.Nodes[0].Spec.PodCIDR != "fd00:10:244:1::/64" || len(in.Nodes[0].Status.Addresses) != 3 {
		t.Errorf("input node changed: %+v", in.Nodes[0])
	}
	if len(in.Services[5].Spec.Ports) != 2 || in.Services[5].Spec.ExternalIPs == nil {
		t.Errorf("input service changed: %+v", in.Services[5].Spec)
	}
}
