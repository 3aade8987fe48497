package model

import (
	"fmt"
	"math/rand"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func loadServiceState(t *testing.T) (*Objects, *Resolved) {
	t.Helper()
	objs, err := LoadDir("testdata/services")
	if err != nil {
		t.Fatal(err)
	}
	r, err := Resolve(objs)
	if err != nil {
		t.Fatal(err)
	}
	return objs, r
}

func TestServiceDecode(t *testing.T) {
	objs, _ := loadServiceState(t)
	if len(objs.Services) != 5 || len(objs.EndpointSlices) != 6 {
		t.Fatalf("decoded %d Services, %d EndpointSlices", len(objs.Services), len(objs.EndpointSlices))
	}
	for _, key := range []string{"Service t/web", "Service t/headless", "EndpointSlice t/web-a", "EndpointSlice t/drain-a"} {
		if !strings.HasPrefix(objs.Source[key], "state.yaml#") {
			t.Errorf("Source[%q] = %q", key, objs.Source[key])
		}
	}
	web := objs.Services[0]
	if web.Name != "web" || web.Spec.Type != corev1.ServiceTypeNodePort || web.Spec.Ports[0].TargetPort.StrVal != "http" || web.Spec.Ports[2].NodePort != 30053 {
		t.Errorf("Service web decoded as %+v", web.Spec)
	}
	es := objs.EndpointSlices[0]
	if es.Labels[discoveryv1.LabelServiceName] != "web" || *es.Ports[2].Protocol != corev1.ProtocolUDP || *es.Endpoints[1].Conditions.Terminating != true {
		t.Errorf("EndpointSlice web-a decoded as %+v", es)
	}
	// The namespace defaults to "default" like for the other kinds.
	var o Objects
	if err := o.Decode("d.yaml", []byte("apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {clusterIP: 10.96.0.1, ports: [{port: 80}]}\n---\n"+
		"apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: s-1, labels: {kubernetes.io/service-name: s}}\naddressType: IPv4\nendpoints: []\n")); err != nil {
		t.Fatal(err)
	}
	if o.Services[0].Namespace != "default" || o.EndpointSlices[0].Namespace != "default" || o.Source["EndpointSlice default/s-1"] != "d.yaml#1" {
		t.Errorf("defaults: %+v %+v %v", o.Services[0].ObjectMeta, o.EndpointSlices[0].ObjectMeta, o.Source)
	}
	if err := o.Validate(); err != nil {
		t.Errorf("valid objects refused: %v", err)
	}
}

func TestServiceDecodeStrict(t *testing.T) {
	cases := []struct {
		name, content string
		want          []string
	}{
		{"Service spec field", "apiVersion: v1\nkind: Service\nmetadata: {name: s, namespace: t}\nspec: {clusterIp: 10.96.0.1}\n",
			[]string{"p.yaml", "Service t/s", `unknown field "spec.clusterIp"`}},
		{"Service port field", "apiVersion: v1\nkind: Service\nmetadata: {name: s, namespace: t}\nspec: {clusterIP: 10.96.0.1, ports: [{port: 80, nodeport: 30000}]}\n",
			[]string{"p.yaml", "Service t/s", `unknown field "spec.ports[0].nodeport"`}},
		{"EndpointSlice endpoint field", "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: e, namespace: t}\naddressType: IPv4\nendpoints: [{adresses: [10.0.0.1]}]\n",
			[]string{"p.yaml", "EndpointSlice t/e", `unknown field "endpoints[0].adresses"`}},
		{"EndpointSlice top-level field", "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: e, namespace: t}\naddressTyp: IPv4\n",
			[]string{"EndpointSlice t/e", `unknown field "addressTyp"`}},
		{"EndpointSlice wrong apiVersion", "apiVersion: discovery.k8s.io/v1beta1\nkind: EndpointSlice\nmetadata: {name: e, namespace: t}\n",
			[]string{"EndpointSlice t/e", "unknown kind"}},
		{"duplicate Service", "apiVersion: v1\nkind: Service\nmetadata: {name: s, namespace: t}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: s, namespace: t}\n",
			[]string{"Service t/s", "duplicate object", "p.yaml#0"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := LoadDir(writeState(t, map[string]string{"p.yaml": tc.content}))
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

// serviceBase is the state the validation cases add to: a Node, a Pod and
// a NodePort Service t/web (10.96.0.10:80/TCP, node port 30080).
const serviceBase = `apiVersion: v1
kind: Node
metadata: {name: n1}
status: {addresses: [{type: InternalIP, address: 192.0.2.201}, {type: ExternalIP, address: 198.51.100.1}]}
---
apiVersion: v1
kind: Pod
metadata: {name: p, namespace: t}
status: {podIP: 10.1.0.1}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: t}
spec:
  type: NodePort
  clusterIP: 10.96.0.10
  ports: [{port: 80, nodePort: 30080}]
`

// svc is a Service t/x with the given spec (YAML flow or block under
// "spec:").
func svc(spec string) string {
	return "apiVersion: v1\nkind: Service\nmetadata: {name: x, namespace: t}\nspec:\n" + spec
}

// slice is an EndpointSlice t/s of Service web, with the given body.
func slice(body string) string {
	return "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: s, namespace: t, labels: {kubernetes.io/service-name: web}}\n" + body
}

func TestServiceValidation(t *testing.T) {
	cases := []struct {
		name, content string
		// want are substrings of the error; none means accepted.
		want []string
	}{
		// Services.
		{"valid ClusterIP", svc("  clusterIP: 10.96.0.20\n  ports: [{name: a, port: 80, targetPort: 8080}, {name: b, port: 80, protocol: UDP, targetPort: web}]\n"), nil},
		{"valid headless without ports", svc("  clusterIP: None\n"), nil},
		{"valid same IP and port, other protocol", svc("  clusterIP: 10.96.0.10\n  ports: [{port: 80, protocol: UDP}]\n"), nil},
		{"valid node port twice in a Service, per protocol", svc("  type: NodePort\n  clusterIP: 10.96.0.20\n  ports: [{name: a, port: 53, nodePort: 30053}, {name: b, port: 53, protocol: UDP, nodePort: 30053}]\n"), nil},
		{"valid affinity", svc("  clusterIP: 10.96.0.20\n  ports: [{port: 80}]\n  sessionAffinity: ClientIP\n  sessionAffinityConfig: {clientIP: {timeoutSeconds: 86400}}\n"), nil},
		{"port 0", svc("  clusterIP: 10.96.0.20\n  ports: [{name: a, port: 80}, {name: b, port: 0}]\n"),
			[]string{"case.yaml#0: Service t/x: spec.ports[1].port: Invalid value: 0: must be between 1 and 65535"}},
		{"port above 65535", svc("  clusterIP: 10.96.0.20\n  ports: [{port: 65536}]\n"),
			[]string{"Service t/x: spec.ports[0].port: Invalid value: 65536"}},
		{"no clusterIP", svc("  ports: [{port: 80}]\n"),
			[]string{"Service t/x: spec.clusterIP: Required value", "set spec.clusterIP", "no IP allocator"}},
		{"clusterIP not an address", svc("  clusterIP: 10.96.0.300\n  ports: [{port: 80}]\n"),
			[]string{"Service t/x: spec.clusterIP: Invalid value: \"10.96.0.300\"", "IPv4"}},
		{"clusterIP IPv6", svc("  clusterIP: fd00::1\n  ports: [{port: 80}]\n"),
			[]string{"Service t/x: spec.clusterIP", "IPv4"}},
		{"clusterIPs dual-stack", svc("  clusterIP: 10.96.0.20\n  clusterIPs: [10.96.0.20, fd00::1]\n  ports: [{port: 80}]\n"),
			[]string{"Service t/x: spec.clusterIPs[1]", "dual-stack is not supported"}},
		{"clusterIPs disagree", svc("  clusterIP: 10.96.0.20\n  clusterIPs: [10.96.0.21]\n  ports: [{port: 80}]\n"),
			[]string{"Service t/x: spec.clusterIPs[0]", "must equal spec.clusterIP"}},
		{"clusterIP of a node", svc("  clusterIP: 198.51.100.1\n  ports: [{port: 80}]\n"),
			[]string{"Service t/x: spec.clusterIP", "an address of Node n1"}},
		{"clusterIP of a pod", svc("  clusterIP: 10.1.0.1\n  ports: [{port: 80}]\n"),
			[]string{"Service t/x: spec.clusterIP", "Pod t/p"}},
		{"ExternalName", svc("  type: ExternalName\n  externalName: db.example\n"),
			[]string{"Service t/x: spec.type", "ExternalName is not supported"}},
		{"unknown type", svc("  type: Magic\n  clusterIP: 10.96.0.20\n  ports: [{port: 80}]\n"),
			[]string{"Service t/x: spec.type: Unsupported value: \"Magic\""}},
		{"no ports", svc("  clusterIP: 10.96.0.20\n"),
			[]string{"Service t/x: spec.ports: Required value", "headless"}},
		{"SCTP", svc("  clusterIP: 10.96.0.20\n  ports: [{port: 80, protocol: SCTP}]\n"),
			[]string{"Service t/x: spec.ports[0].protocol", "not supported by the load balancer"}},
		{"unknown protocol", svc("  clusterIP: 10.96.0.20\n  ports: [{port: 80, protocol: ICMP}]\n"),
			[]string{"Service t/x: spec.ports[0].protocol: Unsupported value: \"ICMP\""}},
		{"names required", svc("  clusterIP: 10.96.0.20\n  ports: [{port: 80}, {port: 81}]\n"),
			[]string{"Service t/x: spec.ports[0].name: Required value", "Service t/x: spec.ports[1].name: Required value"}},
		{"names unique", svc("  clusterIP: 10.96.0.20\n  ports: [{name: a, port: 80}, {name: a, port: 81}]\n"),
			[]string{"Service t/x: spec.ports[1].name: Duplicate value: \"a\""}},
		{"name not a DNS label", svc("  clusterIP: 10.96.0.20\n  ports: [{name: Web_1, port: 80}]\n"),
			[]string{"Service t/x: spec.ports[0].name: Invalid value: \"Web_1\""}},
		{"port and protocol twice", svc("  clusterIP: 10.96.0.20\n  ports: [{name: a, port: 80}, {name: b, port: 80, protocol: TCP}]\n"),
			[]string{"Service t/x: spec.ports[1].port: Duplicate value: \"80/TCP\""}},
		{"targetPort number", svc("  clusterIP: 10.96.0.20\n  ports: [{port: 80, targetPort: 70000}]\n"),
			[]string{"Service t/x: spec.ports[0].targetPort: Invalid value: 70000"}},
		{"targetPort name", svc("  clusterIP: 10.96.0.20\n  ports: [{port: 80, targetPort: -web}]\n"),
			[]string{"Service t/x: spec.ports[0].targetPort: Invalid value: \"-web\""}},
		{"nodePort out of range", svc("  type: NodePort\n  clusterIP: 10.96.0.20\n  ports: [{port: 80, nodePort: 8080}]\n"),
			[]string{"Service t/x: spec.ports[0].nodePort: Invalid value: 8080: must be between 30000 and 32767"}},
		{"nodePort on ClusterIP", svc("  clusterIP: 10.96.0.20\n  ports: [{port: 80, nodePort: 30001}]\n"),
			[]string{"Service t/x: spec.ports[0].nodePort: Forbidden", "NodePort or LoadBalancer"}},
		{"nodePort required", svc("  type: NodePort\n  clusterIP: 10.96.0.20\n  ports: [{name: a, port: 80, nodePort: 30001}, {name: b, port: 81}]\n"),
			[]string{"Service t/x: spec.ports[1].nodePort: Required value: set spec.ports[1].nodePort"}},
		{"nodePort required for LoadBalancer", svc("  type: LoadBalancer\n  clusterIP: 10.96.0.20\n  ports: [{port: 80}]\n"),
			[]string{"Service t/x: spec.ports[0].nodePort: Required value: set spec.ports[0].nodePort"}},
		{"nodePort twice in a Service", svc("  type: NodePort\n  clusterIP: 10.96.0.20\n  ports: [{name: a, port: 80, nodePort: 30001}, {name: b, port: 81, nodePort: 30001}]\n"),
			[]string{"Service t/x: spec.ports[1].nodePort: Duplicate value: \"30001/TCP\""}},
		{"nodePort of another Service", svc("  type: NodePort\n  clusterIP: 10.96.0.20\n  ports: [{port: 80, protocol: UDP, nodePort: 30080}]\n"),
			[]string{"case.yaml#0: Service t/x: spec.ports[0].nodePort: Invalid value: 30080: node port 30080 is already used by Service t/web spec.ports[0] (base.yaml#2)"}},
		{"frontend of another Service", svc("  clusterIP: 10.96.0.10\n  ports: [{port: 80}]\n"),
			[]string{"Service t/x: spec.ports[0].port: Invalid value: 80: 10.96.0.10:80/TCP is already a frontend of Service t/web spec.ports[0] (base.yaml#2)"}},
		{"headless NodePort", svc("  type: NodePort\n  clusterIP: None\n  ports: [{port: 80, nodePort: 30001}]\n"),
			[]string{"Service t/x: spec.clusterIP", "headless"}},
		{"sessionAffinity", svc("  clusterIP: 10.96.0.20\n  ports: [{port: 80}]\n  sessionAffinity: Sticky\n"),
			[]string{"Service t/x: spec.sessionAffinity: Unsupported value: \"Sticky\""}},
		{"timeout 0", svc("  clusterIP: 10.96.0.20\n  ports: [{port: 80}]\n  sessionAffinity: ClientIP\n  sessionAffinityConfig: {clientIP: {timeoutSeconds: 0}}\n"),
			[]string{"Service t/x: spec.sessionAffinityConfig.clientIP.timeoutSeconds: Invalid value: 0: must be between 1 and 86400"}},
		{"timeout above a day", svc("  clusterIP: 10.96.0.20\n  ports: [{port: 80}]\n  sessionAffinity: ClientIP\n  sessionAffinityConfig: {clientIP: {timeoutSeconds: 86401}}\n"),
			[]string{"Service t/x: spec.sessionAffinityConfig.clientIP.timeoutSeconds: Invalid value: 86401"}},
		{"timeout without affinity", svc("  clusterIP: 10.96.0.20\n  ports: [{port: 80}]\n  sessionAffinityConfig: {clientIP: {timeoutSeconds: 10}}\n"),
			[]string{"Service t/x: spec.sessionAffinityConfig.clientIP: Forbidden"}},
		{"externalTrafficPolicy Local", svc("  type: NodePort\n  clusterIP: 10.96.0.20\n  externalTrafficPolicy: Local\n  ports: [{port: 80, nodePort: 30001}]\n"),
			[]string{"Service t/x: spec.externalTrafficPolicy: Unsupported value: \"Local\""}},
		{"externalIPs", svc("  clusterIP: 10.96.0.20\n  externalIPs: [203.0.113.1]\n  ports: [{port: 80}]\n"),
			[]string{"Service t/x: spec.externalIPs: Forbidden"}},
		{"Service name", "apiVersion: v1\nkind: Service\nmetadata: {name: 1web, namespace: t}\nspec: {clusterIP: 10.96.0.20, ports: [{port: 80}]}\n",
			[]string{"Service t/1web: metadata.name: Invalid value: \"1web\""}},

		// EndpointSlices.
		{"valid slice", slice("addressType: IPv4\nports: [{port: 8080}]\nendpoints: [{addresses: [10.1.0.1], targetRef: {kind: Pod, name: p}}]\n"), nil},
		{"IPv6 slice", slice("addressType: IPv6\nendpoints: [{addresses: ['fd00::1']}]\n"),
			[]string{"EndpointSlice t/s: addressType: Invalid value: \"IPv6\": not supported"}},
		{"FQDN slice", slice("addressType: FQDN\n"),
			[]string{"EndpointSlice t/s: addressType", "not supported"}},
		{"no addressType", slice("endpoints: []\n"),
			[]string{"EndpointSlice t/s: addressType: Required value"}},
		{"no service-name", "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: s, namespace: t}\naddressType: IPv4\n",
			[]string{"EndpointSlice t/s: metadata.labels[kubernetes.io/service-name]: Required value"}},
		{"no such Service", "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: s, namespace: t, labels: {kubernetes.io/service-name: webb}}\naddressType: IPv4\n",
			[]string{"case.yaml#0: EndpointSlice t/s: metadata.labels[kubernetes.io/service-name]: Invalid value: \"webb\": selects no Service"}},
		{"Service in another namespace", "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: s, namespace: u, labels: {kubernetes.io/service-name: web}}\naddressType: IPv4\n",
			[]string{"EndpointSlice u/s: metadata.labels[kubernetes.io/service-name]", "selects no Service", "u/web"}},
		{"address not IPv4", slice("addressType: IPv4\nendpoints: [{addresses: [10.1.0.1]}, {addresses: [10.1.0.2, 10.1.0.300]}]\n"),
			[]string{"EndpointSlice t/s: endpoints[1].addresses[1]: Invalid value: \"10.1.0.300\""}},
		{"IPv6 address in an IPv4 slice", slice("addressType: IPv4\nendpoints: [{addresses: ['fd00::1']}]\n"),
			[]string{"EndpointSlice t/s: endpoints[0].addresses[0]"}},
		{"no address", slice("addressType: IPv4\nendpoints: [{addresses: []}]\n"),
			[]string{"EndpointSlice t/s: endpoints[0].addresses: Required value"}},
		{"targetRef kind", slice("addressType: IPv4\nendpoints: [{addresses: [10.1.0.1], targetRef: {kind: Node, name: n1}}]\n"),
			[]string{"EndpointSlice t/s: endpoints[0].targetRef.kind: Unsupported value: \"Node\""}},
		{"port 0", slice("addressType: IPv4\nports: [{name: a, port: 80}, {name: b, port: 0}]\n"),
			[]string{"EndpointSlice t/s: ports[1].port: Invalid value: 0"}},
		{"port missing", slice("addressType: IPv4\nports: [{name: a}]\n"),
			[]string{"EndpointSlice t/s: ports[0].port: Required value"}},
		{"slice SCTP", slice("addressType: IPv4\nports: [{port: 80, protocol: SCTP}]\n"),
			[]string{"EndpointSlice t/s: ports[0].protocol", "not supported by the load balancer"}},
		{"slice port names unique", slice("addressType: IPv4\nports: [{name: a, port: 80}, {name: a, port: 81, protocol: UDP}]\n"),
			[]string{"EndpointSlice t/s: ports[1].name: Duplicate value: \"a\""}},
		{"slice unnamed ports unique", slice("addressType: IPv4\nports: [{port: 80}, {port: 81}]\n"),
			[]string{"EndpointSlice t/s: ports[1].name: Duplicate value: \"\""}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := writeState(t, map[string]string{"base.yaml": serviceBase, "case.yaml": tc.content})
			objs, err := LoadDir(dir)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if _, err := Resolve(objs); err != nil {
					t.Fatalf("Resolve: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			// Validate on the objects decoded together says the same.
			var o Objects
			for _, f := range []string{"base.yaml", "case.yaml"} {
				data, _ := os.ReadFile(filepath.Join(dir, f))
				if err := o.Decode(f, data); err != nil {
					t.Fatal(err)
				}
			}
			// (LoadDir checks references only once every file is valid.)
			verr := o.Validate()
			for _, line := range strings.Split(err.Error(), "\n") {
				if verr == nil || !strings.Contains(verr.Error(), line) {
					t.Errorf("Validate: %v\nLoadDir: %v", verr, err)
				}
			}
		})
	}
}

// TestServiceValidationAllAtOnce: every problem of every object comes in
// one error, those of single objects and those between objects.
func TestServiceValidationAllAtOnce(t *testing.T) {
	_, err := LoadDir(writeState(t, map[string]string{
		"base.yaml": serviceBase,
		"a.yaml":    svc("  clusterIP: 10.96.0.20\n  ports: [{port: 0}]\n"),
		"b.yaml":    "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: s, namespace: t, labels: {kubernetes.io/service-name: nope}}\naddressType: IPv6\n",
	}))
	if err == nil {
		t.Fatal("accepted")
	}
	for _, w := range []string{"a.yaml#0: Service t/x: spec.ports[0].port", "b.yaml#0: EndpointSlice t/s: addressType"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not contain %q", err, w)
		}
	}
	// Objects.Validate reports the dangling reference too.
	var o Objects
	o.Decode("a.yaml", []byte(serviceBase))
	o.Decode("b.yaml", []byte("apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: s, namespace: t, labels: {kubernetes.io/service-name: nope}}\naddressType: IPv6\n"))
	err = o.Validate()
	for _, w := range []string{"EndpointSlice t/s: addressType", "EndpointSlice t/s: metadata.labels[kubernetes.io/service-name]", "selects no Service"} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("error %v does not contain %q", err, w)
		}
	}
}

// TestLoaderServiceReferencesAcrossFiles: a slice may name a Service of
// another file, and the Loader (which validates files one by one) still
// refuses references to nothing and clashes between files.
func TestLoaderServiceReferencesAcrossFiles(t *testing.T) {
	dir := writeState(t, map[string]string{
		"svc.yaml":   serviceBase,
		"slice.yaml": slice("addressType: IPv4\nports: [{port: 8080}]\nendpoints: [{addresses: [10.1.0.1]}]\n"),
	})
	var l Loader
	objs, err := l.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	r, err := Resolve(objs)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Services) != 1 || len(r.Services[0].Ports[0].Backends) != 1 {
		t.Fatalf("services %+v", r.Services)
	}
	// The Service goes: the unchanged slice file now selects nothing.
	os.WriteFile(filepath.Join(dir, "svc.yaml"), []byte(strings.Replace(serviceBase, "name: web", "name: web2", 1)), 0o644)
	if _, err := l.Load(dir); err == nil || !strings.Contains(err.Error(), "slice.yaml#0: EndpointSlice t/s: metadata.labels[kubernetes.io/service-name]") ||
		!strings.Contains(err.Error(), "selects no Service") {
		t.Fatalf("dangling slice: %v", err)
	}
	// Two files with the same node port.
	os.WriteFile(filepath.Join(dir, "svc.yaml"), []byte(serviceBase), 0o644)
	os.WriteFile(filepath.Join(dir, "z.yaml"), []byte(svc("  type: NodePort\n  clusterIP: 10.96.0.20\n  ports: [{port: 81, nodePort: 30080}]\n")), 0o644)
	if _, err := l.Load(dir); err == nil || !strings.Contains(err.Error(), "z.yaml#0: Service t/x: spec.ports[0].nodePort") ||
		!strings.Contains(err.Error(), "Service t/web spec.ports[0] (svc.yaml#2)") {
		t.Fatalf("node port clash: %v", err)
	}
}

func backendsString(bs []Backend) string {
	var parts []string
	for _, b := range bs {
		s := fmt.Sprintf("%s %s pod=%s node=%s w=%d", netip.AddrPortFrom(b.Addr, b.Port), b.State, b.Pod, b.Node, b.Weight)
		if b.Cluster != "" {
			s += " cluster=" + b.Cluster
		}
		if b.Standby {
			s += " standby"
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, "; ")
}

func TestResolveServices(t *testing.T) {
	_, r := loadServiceState(t)
	var keys []string
	for _, s := range r.Services {
		keys = append(keys, s.Key())
	}
	// Sorted; the headless Service is not load-balanced.
	if want := []string{"t/db", "t/drain", "t/empty", "t/web"}; !reflect.DeepEqual(keys, want) {
		t.Fatalf("services %v, want %v", keys, want)
	}
	byKey := map[string]*Service{}
	for _, s := range r.Services {
		byKey[s.Key()] = s
	}
	web, db, empty, drain := byKey["t/web"], byKey["t/db"], byKey["t/empty"], byKey["t/drain"]
	if web.ClusterIP != netip.MustParseAddr("10.96.0.10") || !web.NodePortType || web.AffinityTimeout != 10800*time.Second {
		t.Errorf("web: %+v", web)
	}
	if db.NodePortType || db.AffinityTimeout != time.Minute || db.Ports[0].NodePort != 0 || db.Ports[0].Name != "" {
		t.Errorf("db: %+v", db)
	}
	if !empty.NodePortType || empty.AffinityTimeout != 0 || empty.Ports[0].NodePort != 30012 || len(empty.Ports[0].Backends) != 0 {
		t.Errorf("empty (LoadBalancer treated as NodePort): %+v", empty)
	}
	want := map[string]struct {
		name     string
		proto    Protocol
		port     uint16
		nodePort uint16
		backends string
	}{
		// From two slices; 10.1.0.2 is terminating in web-a and ready in
		// web-b: active wins.
		"http": {"http", ProtoTCP, 80, 30080, "10.1.0.1:8080 active pod=t/web-1 node=n1 w=1; 10.1.0.2:8080 active pod=t/web-2 node=n2 w=1; " +
			"10.1.0.3:8080 quarantined pod= node= w=1; 10.1.0.4:8080 quarantined pod= node= w=1"},
		// web-c's metrics port is UDP: not this port's.
		"metrics": {"metrics", ProtoTCP, 9090, 30090, "10.1.0.1:9091 active pod=t/web-1 node=n1 w=1; 10.1.0.2:9091 terminating pod=t/web-2 node=n2 w=1"},
		"dns":     {"dns", ProtoUDP, 53, 30053, "10.1.0.1:5353 active pod=t/web-1 node=n1 w=1; 10.1.0.2:5353 terminating pod=t/web-2 node=n2 w=1"},
	}
	if len(web.Ports) != 3 {
		t.Fatalf("web ports %+v", web.Ports)
	}
	for _, p := range web.Ports {
		w := want[p.Name]
		if p.Name != w.name || p.Protocol != w.proto || p.Port != w.port || p.NodePort != w.nodePort {
			t.Errorf("web port %+v, want %+v", p, w)
		}
		if got := backendsString(p.Backends); got != w.backends {
			t.Errorf("web port %s backends:\n got %s\nwant %s", p.Name, got, w.backends)
		}
	}
	// Two addresses of one endpoint: two backends; serving unset counts
	// as serving.
	if got, w := backendsString(db.Ports[0].Backends), "10.1.1.1:5432 active pod=t/db-1 node= w=1; 10.1.1.2:5432 terminating pod= node= w=1; 10.1.1.3:5432 terminating pod= node= w=1"; got != w {
		t.Errorf("db backends:\n got %s\nwant %s", got, w)
	}
	if got, w := backendsString(drain.Ports[0].Backends), "10.1.0.6:8000 terminating pod= node= w=1; 10.1.0.7:8000 terminating pod= node= w=1; 10.1.0.8:8000 quarantined pod= node= w=1"; got != w {
		t.Errorf("drain backends:\n got %s\nwant %s", got, w)
	}
}

func TestBackendState(t *testing.T) {
	tr, fa := true, false
	for _, tc := range []struct {
		ready, serving, terminating *bool
		want                        BackendState
	}{
		{nil, nil, nil, BackendActive},
		{&tr, &fa, &tr, BackendActive},
		{&fa, nil, nil, BackendQuarantined},
		{&fa, nil, &tr, BackendTerminating},
		{&fa, &tr, &tr, BackendTerminating},
		{&fa, &fa, &tr, BackendQuarantined},
		{&fa, &tr, &fa, BackendQuarantined},
		{&fa, &tr, nil, BackendQuarantined},
	} {
		c := discoveryv1.EndpointConditions{Ready: tc.ready, Serving: tc.serving, Terminating: tc.terminating}
		if got := backendState(c); got != tc.want {
			t.Errorf("ready %v serving %v terminating %v: %s, want %s", ptrString(tc.ready), ptrString(tc.serving), ptrString(tc.terminating), got, tc.want)
		}
	}
}

func ptrString(b *bool) string {
	if b == nil {
		return "nil"
	}
	return fmt.Sprint(*b)
}

func TestServiceByFrontend(t *testing.T) {
	_, r := loadServiceState(t)
	// The same answers from the index and from a Resolved assembled by
	// hand (no index).
	bare := &Resolved{Services: r.Services, Nodes: r.Nodes}
	for _, rr := range []*Resolved{r, bare} {
		type hit struct {
			addr    string
			port    uint16
			proto   Protocol
			svc     string
			svcPort string
		}
		hits := []hit{
			{"10.96.0.10", 80, ProtoTCP, "t/web", "http"},
			{"10.96.0.10", 9090, ProtoTCP, "t/web", "metrics"},
			{"10.96.0.10", 53, ProtoUDP, "t/web", "dns"},
			{"10.96.0.11", 5432, ProtoTCP, "t/db", ""},
			{"10.96.0.12", 80, ProtoTCP, "t/empty", ""},
		}
		// Node ports on every node address.
		for _, n := range r.Nodes {
			hits = append(hits,
				hit{n.IP.String(), 30080, ProtoTCP, "t/web", "http"},
				hit{n.IP.String(), 30090, ProtoTCP, "t/web", "metrics"},
				hit{n.IP.String(), 30053, ProtoUDP, "t/web", "dns"},
				hit{n.IP.String(), 30012, ProtoTCP, "t/empty", ""},
			)
		}
		if len(r.Nodes) != 2 {
			t.Fatalf("nodes %+v", r.Nodes)
		}
		for _, h := range hits {
			s, p, ok := rr.ServiceByFrontend(netip.MustParseAddr(h.addr), h.port, h.proto)
			if !ok || s.Key() != h.svc || p.Name != h.svcPort {
				t.Errorf("%s:%d/%s: %v %+v %+v, want %s port %q", h.addr, h.port, h.proto, ok, s, p, h.svc, h.svcPort)
				continue
			}
			own := false
			for i := range s.Ports {
				own = own || p == &s.Ports[i]
			}
			if !own {
				t.Errorf("%s:%d/%s: port not one of the Service's", h.addr, h.port, h.proto)
			}
		}
		misses := []struct {
			addr  string
			port  uint16
			proto Protocol
		}{
			{"10.96.0.10", 80, ProtoUDP},     // wrong protocol
			{"10.96.0.10", 53, ProtoTCP},     // wrong protocol
			{"10.96.0.10", 8080, ProtoTCP},   // the target port
			{"10.96.0.10", 30080, ProtoTCP},  // a node port on the ClusterIP
			{"192.0.2.201", 80, ProtoTCP},    // a service port on a node
			{"192.0.2.201", 30090, ProtoUDP}, // node port, wrong protocol
			{"192.0.2.203", 30080, ProtoTCP}, // no node's address
			{"192.0.2.212", 30080, ProtoTCP}, // not n2's first InternalIP
			{"10.1.0.1", 8080, ProtoTCP},     // a backend
			{"10.96.0.13", 8000, ProtoTCP},
		}
		for _, m := range misses {
			if s, _, ok := rr.ServiceByFrontend(netip.MustParseAddr(m.addr), m.port, m.proto); ok {
				t.Errorf("%s:%d/%s matched %s", m.addr, m.port, m.proto, s.Key())
			}
		}
		// A headless Service has no frontend, and a ClusterIP Service no
		// node port even where its port is in the node port range.
		if _, _, ok := rr.ServiceByFrontend(netip.Addr{}, 30080, ProtoTCP); ok {
			t.Error("the zero address matched a node port")
		}
	}
}

func TestSelectable(t *testing.T) {
	_, r := loadServiceState(t)
	for _, tc := range []struct {
		addr  string
		port  uint16
		proto Protocol
		want  string
	}{
		// Active only (quarantined and terminating ones out).
		{"10.96.0.10", 80, ProtoTCP, "10.1.0.1:8080 active pod=t/web-1 node=n1 w=1; 10.1.0.2:8080 active pod=t/web-2 node=n2 w=1"},
		{"10.96.0.10", 9090, ProtoTCP, "10.1.0.1:9091 active pod=t/web-1 node=n1 w=1"},
		{"10.96.0.11", 5432, ProtoTCP, "10.1.1.1:5432 active pod=t/db-1 node= w=1"},
		// No active backend: the terminating ones, never the quarantined.
		{"10.96.0.13", 80, ProtoTCP, "10.1.0.6:8000 terminating pod= node= w=1; 10.1.0.7:8000 terminating pod= node= w=1"},
		{"10.96.0.12", 80, ProtoTCP, ""},
	} {
		_, p, ok := r.ServiceByFrontend(netip.MustParseAddr(tc.addr), tc.port, tc.proto)
		if !ok {
			t.Fatalf("%s:%d: no service", tc.addr, tc.port)
		}
		if got := backendsString(p.Selectable()); got != tc.want {
			t.Errorf("%s:%d selectable:\n got %s\nwant %s", tc.addr, tc.port, got, tc.want)
		}
	}
	only := ServicePort{Backends: []Backend{{State: BackendQuarantined}, {State: BackendQuarantined}}}
	if got := only.Selectable(); got != nil {
		t.Errorf("quarantined backends selectable: %+v", got)
	}
	// Selectable returns a copy.
	p := ServicePort{Backends: []Backend{{Port: 1}}}
	p.Selectable()[0].Port = 2
	if p.Backends[0].Port != 1 {
		t.Error("Selectable shares the backends")
	}
}

func TestEvaluateService(t *testing.T) {
	objs, r := loadServiceState(t)
	client := netip.MustParseAddr("10.1.0.10")
	ip := netip.MustParseAddr
	backends := func(v ServiceVerdict) string {
		var parts []string
		for _, b := range v.Backends {
			parts = append(parts, fmt.Sprintf("%s=%v", netip.AddrPortFrom(b.Backend.Addr, b.Backend.Port), b.Verdict.Allowed))
		}
		return strings.Join(parts, " ")
	}
	for _, tc := range []struct {
		name                       string
		vip                        netip.Addr
		proto                      Protocol
		port                       uint16
		svc                        string
		allowed, mixed, noBackends bool
		backends, reason           string
	}{
		// web-1 allows 8080, web-2 nothing: the outcome depends on the
		// backend.
		{"mixed", ip("10.96.0.10"), ProtoTCP, 80, "t/web", false, true, false, "10.1.0.1:8080=true 10.1.0.2:8080=false", "disagree"},
		{"mixed through a node port", ip("192.0.2.202"), ProtoTCP, 30080, "t/web", false, true, false, "10.1.0.1:8080=true 10.1.0.2:8080=false", "web-2"},
		// Policy applies to the target port 9091 (allowed), not the
		// Service port 9090 (which web-1's policy would deny); web-2 is
		// terminating, not selectable.
		{"allowed on the target port", ip("10.96.0.10"), ProtoTCP, 9090, "t/web", true, false, false, "10.1.0.1:9091=true", "allowed by every backend"},
		{"denied", ip("10.96.0.10"), ProtoUDP, 53, "t/web", false, false, false, "10.1.0.1:5353=false", "denied by every backend"},
		{"no policy", ip("10.96.0.11"), ProtoTCP, 5432, "t/db", true, false, false, "10.1.1.1:5432=true", "allowed"},
		{"terminating fallback", ip("10.96.0.13"), ProtoTCP, 80, "t/drain", true, false, false, "10.1.0.6:8000=true 10.1.0.7:8000=true", "allowed"},
		{"no backends", ip("10.96.0.12"), ProtoTCP, 80, "t/empty", false, false, true, "", "no selectable backend"},
		{"no backends through a node port", ip("192.0.2.201"), ProtoTCP, 30012, "t/empty", false, false, true, "", "refused"},
		// Not a frontend: Evaluate on the address itself.
		{"a pod directly", ip("10.1.0.2"), ProtoTCP, 8080, "", false, false, false, "", "web-2"},
		{"a pod directly, allowed", ip("10.1.0.1"), ProtoTCP, 8080, "", true, false, false, "", "allowed"},
		{"not a node's first InternalIP", ip("192.0.2.212"), ProtoTCP, 30080, "", true, false, false, "", "allowed"},
		{"an unknown port of a ClusterIP", ip("10.96.0.10"), ProtoTCP, 81, "", true, false, false, "", "allowed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := EvaluateService(objs, client, tc.vip, tc.proto, tc.port)
			if v.Service != tc.svc || v.Allowed != tc.allowed || v.Mixed != tc.mixed || v.NoBackends != tc.noBackends || backends(v) != tc.backends {
				t.Errorf("got service %q allowed %v mixed %v noBackends %v backends %q (%s)\nwant service %q allowed %v mixed %v noBackends %v backends %q",
					v.Service, v.Allowed, v.Mixed, v.NoBackends, backends(v), v.Reason, tc.svc, tc.allowed, tc.mixed, tc.noBackends, tc.backends)
			}
			if !strings.Contains(v.Reason, tc.reason) {
				t.Errorf("reason %q does not contain %q", v.Reason, tc.reason)
			}
			// The resolved model agrees.
			checkServiceAgrees(t, r, v, client, tc.vip, tc.proto, tc.port)
		})
	}
	// The Service port 9090 itself is not open on web-1: the check above
	// would fail if policy were applied before translation.
	if Evaluate(objs, client, ip("10.1.0.1"), ProtoTCP, 9090).Allowed {
		t.Fatal("fixture: web-1 allows 9090")
	}
}

// checkServiceAgrees compares EvaluateService's answer v with the resolved
// model: the same Service, the same selectable backends (address, port,
// state), and per backend the resolved rules' verdict.
func checkServiceAgrees(t *testing.T, r *Resolved, v ServiceVerdict, from, vip netip.Addr, proto Protocol, port uint16) {
	t.Helper()
	s, p, ok := r.ServiceByFrontend(vip, port, proto)
	if !ok {
		if v.Service != "" {
			t.Fatalf("%s:%d/%s: evaluator says Service %s, resolved none", vip, port, proto, v.Service)
		}
		return
	}
	if s.Key() != v.Service {
		t.Fatalf("%s:%d/%s: resolved Service %s, evaluator %q", vip, port, proto, s.Key(), v.Service)
	}
	type key struct {
		ap      netip.AddrPort
		state   BackendState
		cluster string
	}
	var got, want []key
	for _, b := range p.Selectable() {
		got = append(got, key{netip.AddrPortFrom(b.Addr, b.Port), b.State, b.Cluster})
	}
	for _, b := range v.Backends {
		want = append(want, key{netip.AddrPortFrom(b.Backend.Addr, b.Backend.Port), b.Backend.State, b.Backend.Cluster})
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s:%d/%s (%s): resolved selectable %v, evaluator %v", vip, port, proto, s.Key(), got, want)
	}
	allowed := 0
	for _, b := range v.Backends {
		if b.Verdict.Allowed {
			allowed++
		}
		if rv := r.Allowed(from, b.Backend.Addr, proto, b.Backend.Port); rv.Allowed != b.Verdict.Allowed {
			t.Fatalf("%s -> %s:%d/%s backend %s:%d: resolved %v (%s), evaluator %v (%s)", from, vip, port, proto,
				b.Backend.Addr, b.Backend.Port, rv.Allowed, rv.Reason, b.Verdict.Allowed, b.Verdict.Reason)
		}
	}
	n := len(v.Backends)
	if v.NoBackends != (n == 0) || v.Allowed != (n > 0 && allowed == n) || v.Mixed != (allowed > 0 && allowed < n) {
		t.Fatalf("%s:%d/%s: allowed %v mixed %v noBackends %v with %d of %d backends allowing", vip, port, proto, v.Allowed, v.Mixed, v.NoBackends, allowed, n)
	}
}

// randomServices adds Services and EndpointSlices to objs (from
// randomObjects): ClusterIP and NodePort Services, some headless, with
// slices that name their ports (sometimes with another protocol), and
// endpoints in every state, at pod and other addresses, some listed twice.
func randomServices(rng *rand.Rand, objs *Objects) {
	tr, fa := true, false
	cond := func() *bool { return []*bool{nil, &tr, &fa}[rng.Intn(3)] }
	nodePort := int32(30000)
	var addrs []string
	for _, p := range objs.Pods {
		addrs = append(addrs, p.Status.PodIP)
	}
	addrs = append(addrs, "10.2.0.1", "10.2.0.2")
	for i := 0; i < 1+rng.Intn(4); i++ {
		ns := []string{"prod", "dev"}[rng.Intn(2)]
		s := corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("s%d", i), Namespace: ns}}
		s.Spec.ClusterIP = fmt.Sprintf("10.96.0.%d", i+1)
		switch rng.Intn(5) {
		case 0:
			s.Spec.ClusterIP = corev1.ClusterIPNone
		case 1, 2:
			s.Spec.Type = []corev1.ServiceType{corev1.ServiceTypeNodePort, corev1.ServiceTypeLoadBalancer}[rng.Intn(2)]
		}
		if rng.Intn(3) == 0 {
			s.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
		}
		nports := 1 + rng.Intn(3)
		used := map[string]bool{}
		for j := 0; j < nports; j++ {
			p := corev1.ServicePort{Port: []int32{80, 81, 82, 8080}[rng.Intn(4)], Protocol: []corev1.Protocol{"", corev1.ProtocolTCP, corev1.ProtocolUDP}[rng.Intn(3)]}
			proto, _ := lbProtocolOf(p.Protocol)
			if k := fmt.Sprint(p.Port, proto); used[k] {
				continue
			} else {
				used[k] = true
			}
			if nports > 1 {
				p.Name = fmt.Sprintf("p%d", j)
			}
			if isNodePortType(s.Spec.Type) {
				nodePort++
				p.NodePort = nodePort
			}
			s.Spec.Ports = append(s.Spec.Ports, p)
		}
		objs.Services = append(objs.Services, s)
		for k := rng.Intn(4); k > 0; k-- {
			es := discoveryv1.EndpointSlice{
				ObjectMeta:  metav1.ObjectMeta{Name: fmt.Sprintf("s%d-%d", i, k), Namespace: ns, Labels: map[string]string{discoveryv1.LabelServiceName: s.Name}},
				AddressType: discoveryv1.AddressTypeIPv4,
			}
			names := map[string]bool{}
			for _, sp := range s.Spec.Ports {
				if rng.Intn(4) == 0 || names[sp.Name] {
					continue
				}
				names[sp.Name] = true
				name := sp.Name
				proto := sp.Protocol
				if rng.Intn(5) == 0 {
					proto = map[corev1.Protocol]corev1.Protocol{"": corev1.ProtocolUDP, corev1.ProtocolTCP: corev1.ProtocolUDP, corev1.ProtocolUDP: corev1.ProtocolTCP}[proto]
				}
				port := int32(79 + rng.Intn(4))
				ep := discoveryv1.EndpointPort{Port: &port}
				if name != "" || rng.Intn(2) == 0 {
					ep.Name = &name
				}
				if proto != "" || rng.Intn(2) == 0 {
					ep.Protocol = &proto
				}
				es.Ports = append(es.Ports, ep)
			}
			for e := rng.Intn(5); e > 0; e-- {
				ep := discoveryv1.Endpoint{
					Addresses:  []string{addrs[rng.Intn(len(addrs))]},
					Conditions: discoveryv1.EndpointConditions{Ready: cond(), Serving: cond(), Terminating: cond()},
				}
				if rng.Intn(4) == 0 {
					ep.Addresses = append(ep.Addresses, addrs[rng.Intn(len(addrs))])
				}
				if rng.Intn(2) == 0 {
					node := []string{"n1", "n2"}[rng.Intn(2)]
					ep.NodeName = &node
				}
				es.Endpoints = append(es.Endpoints, ep)
			}
			objs.EndpointSlices = append(objs.EndpointSlices, es)
		}
	}
	rng.Shuffle(len(objs.Services), func(i, j int) { objs.Services[i], objs.Services[j] = objs.Services[j], objs.Services[i] })
	rng.Shuffle(len(objs.EndpointSlices), func(i, j int) {
		objs.EndpointSlices[i], objs.EndpointSlices[j] = objs.EndpointSlices[j], objs.EndpointSlices[i]
	})
}

// TestServicesAgreeWithEvaluator compares, on random Services, slices and
// policies, the resolved frontends and selectable backends with
// EvaluateService, which reads the objects on its own.
func TestServicesAgreeWithEvaluator(t *testing.T) {
	rng := rand.New(rand.NewSource(2))
	mrng := rand.New(rand.NewSource(3))
	frontends, withBackends, mixed, terminatingOnly := 0, 0, 0, 0
	meshRounds, remoteSelected, localAndRemote, standby := 0, 0, 0, 0
	for round := 0; round < 300; round++ {
		objs := randomObjects(rng)
		randomServices(rng, objs)
		if mrng.Intn(3) == 0 {
			// A cluster mesh with global Services.
			addRandomMesh(mrng, objs)
			addRandomGlobalServices(mrng, objs)
			meshRounds++
		}
		if err := objs.Validate(); err != nil {
			t.Fatalf("round %d: random objects invalid: %v", round, err)
		}
		r, err := Resolve(objs)
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		bare := &Resolved{Services: r.Services, Nodes: r.Nodes}
		// Every frontend, and addresses and ports around them.
		type probe struct {
			addr  netip.Addr
			port  uint16
			proto Protocol
		}
		var probes []probe
		for _, s := range objs.Services {
			ip, err := netip.ParseAddr(s.Spec.ClusterIP)
			for _, p := range s.Spec.Ports {
				proto, _ := lbProtocolOf(p.Protocol)
				for _, pr := range []Protocol{ProtoTCP, ProtoUDP} {
					if err == nil {
						probes = append(probes, probe{ip, uint16(p.Port), pr}, probe{ip, uint16(p.Port) + 1, pr})
					}
					if p.NodePort != 0 {
						for _, n := range r.Nodes {
							probes = append(probes, probe{n.IP, uint16(p.NodePort), pr})
						}
						probes = append(probes, probe{netip.MustParseAddr("10.0.0.1"), uint16(p.NodePort), proto})
						if err == nil {
							probes = append(probes, probe{ip, uint16(p.NodePort), proto})
						}
					}
				}
			}
		}
		from := netip.MustParseAddr(objs.Pods[rng.Intn(len(objs.Pods))].Status.PodIP)
		for _, pr := range probes {
			v := EvaluateService(objs, from, pr.addr, pr.proto, pr.port)
			checkServiceAgrees(t, r, v, from, pr.addr, pr.proto, pr.port)
			s1, p1, ok1 := r.ServiceByFrontend(pr.addr, pr.port, pr.proto)
			s2, p2, ok2 := bare.ServiceByFrontend(pr.addr, pr.port, pr.proto)
			if ok1 != ok2 || s1 != s2 || p1 != p2 {
				t.Fatalf("round %d: %v: index %v %v, scan %v %v", round, pr, ok1, s1, ok2, s2)
			}
			if v.Service == "" {
				continue
			}
			frontends++
			if len(v.Backends) > 0 {
				withBackends++
				if v.Backends[0].Backend.State == BackendTerminating {
					terminatingOnly++
				}
			}
			if v.Mixed {
				mixed++
			}
		}
		// Resolved backends are sorted and unique, one per address and
		// port, and every Service port's backends come from its slices.
		for _, s := range r.Services {
			for _, p := range s.Ports {
				local, remote := false, false
				for _, b := range p.Selectable() {
					local, remote = local || b.Cluster == "", remote || b.Cluster != ""
				}
				if remote {
					remoteSelected++
				}
				if local && remote {
					localAndRemote++
				}
				for _, b := range p.Backends {
					if b.Standby {
						standby++
						break
					}
				}
				if !sort.SliceIsSorted(p.Backends, func(i, j int) bool {
					return netip.AddrPortFrom(p.Backends[i].Addr, p.Backends[i].Port).Compare(netip.AddrPortFrom(p.Backends[j].Addr, p.Backends[j].Port)) < 0
				}) {
					t.Fatalf("round %d: %s %s: backends not sorted: %s", round, s.Key(), p.Name, backendsString(p.Backends))
				}
				for i := 1; i < len(p.Backends); i++ {
					if p.Backends[i].Addr == p.Backends[i-1].Addr && p.Backends[i].Port == p.Backends[i-1].Port {
						t.Fatalf("round %d: %s %s: duplicate backend: %s", round, s.Key(), p.Name, backendsString(p.Backends))
					}
				}
			}
		}
	}
	t.Logf("%d frontends, %d with backends (%d terminating only), %d mixed", frontends, withBackends, terminatingOnly, mixed)
	t.Logf("%d mesh rounds: %d ports with remote backends selectable (%d with local ones too), %d with backends on standby", meshRounds, remoteSelected, localAndRemote, standby)
	if frontends == 0 || withBackends == 0 || terminatingOnly == 0 || mixed == 0 || remoteSelected == 0 || localAndRemote == 0 || standby == 0 {
		t.Fatal("the random services exercised too little")
	}
}
