package model

import (
	"math/rand"
	"net/netip"
	"strings"
	"testing"
)

// globalServices is the local part of the global service tests (added to
// testdata/mesh, cluster east): prod/api (global, two named ports),
// prod/single (global, one unnamed port) and prod/plain (not global).
// {{api}} is replaced by the api Service's extra annotations and
// {{ready}} by the readiness of its local backend.
const globalServices = `apiVersion: v1
kind: Service
metadata:
  name: api
  namespace: prod
  annotations: {service.fastpath.dev/global: "true"{{api}}}
spec:
  clusterIP: 10.96.0.50
  ports:
  - {name: http, port: 80, targetPort: 8080}
  - {name: dns, protocol: UDP, port: 53, targetPort: 5353}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: api-1, namespace: prod, labels: {kubernetes.io/service-name: api}}
addressType: IPv4
endpoints:
- addresses: [10.1.0.10]
  conditions: {ready: {{ready}}}
  targetRef: {kind: Pod, name: server}
ports:
- {name: http, port: 8080}
- {name: dns, protocol: UDP, port: 5353}
---
apiVersion: v1
kind: Service
metadata:
  name: single
  namespace: prod
  annotations: {service.fastpath.dev/global: "true"}
spec:
  clusterIP: 10.96.0.51
  ports: [{port: 8000}]
---
apiVersion: v1
kind: Service
metadata:
  name: plain
  namespace: prod
  annotations: {service.fastpath.dev/global: "false"}
spec:
  clusterIP: 10.96.0.52
  ports: [{name: http, port: 80}]
`

// globalObjects is meshObjects with globalServices and what west and
// north publish for them.
func globalObjects(t *testing.T, apiAnnotations string, localReady bool) *Objects {
	t.Helper()
	objs := meshObjects(t)
	ready := "false"
	if localReady {
		ready = "true"
	}
	doc := strings.NewReplacer("{{api}}", apiAnnotations, "{{ready}}", ready).Replace(globalServices)
	if err := objs.Decode("global.yaml", []byte(doc)); err != nil {
		t.Fatal(err)
	}
	be := func(addr string, port uint16, state BackendState) Backend {
		return Backend{Addr: netip.MustParseAddr(addr), Port: port, State: state, Node: "w1"}
	}
	objs.Remote[0].Services = []RemoteService{
		{Namespace: "prod", Name: "api", Ports: []RemoteServicePort{
			{Name: "http", Protocol: ProtoTCP, Port: 80, Backends: []Backend{
				be("10.2.0.10", 8080, BackendActive),
				be("10.2.0.11", 8080, BackendTerminating),
				// The address of the local pod prod/a-local: not west's
				// to the datapath.
				be("10.1.0.11", 8080, BackendActive),
				// No pod of west.
				be("10.2.0.99", 8080, BackendActive),
			}},
			{Name: "dns", Protocol: ProtoUDP, Port: 53, Backends: []Backend{be("10.2.0.10", 5353, BackendActive)}},
		}},
		// Matched by number: the local port has no name.
		{Namespace: "prod", Name: "single", Ports: []RemoteServicePort{
			{Name: "x", Protocol: ProtoTCP, Port: 8000, Backends: []Backend{be("10.2.0.11", 8000, BackendActive)}},
		}},
		// Not global here.
		{Namespace: "prod", Name: "plain", Ports: []RemoteServicePort{
			{Name: "http", Protocol: ProtoTCP, Port: 80, Backends: []Backend{be("10.2.0.10", 80, BackendActive)}},
		}},
	}
	objs.Remote[1].Services = []RemoteService{
		{Namespace: "prod", Name: "api", Ports: []RemoteServicePort{
			// Another name: not the local http port's.
			{Name: "web", Protocol: ProtoTCP, Port: 80, Backends: []Backend{be("10.3.0.10", 8080, BackendActive)}},
			{Name: "dns", Protocol: ProtoUDP, Port: 53, Backends: []Backend{be("10.3.0.10", 5353, BackendTerminating)}},
		}},
	}
	return objs
}

func TestGlobalServices(t *testing.T) {
	client := netip.MustParseAddr("10.1.0.13") // prod/web
	type frontend struct {
		vip   string
		port  uint16
		proto Protocol
	}
	api, dns := frontend{"10.96.0.50", 80, ProtoTCP}, frontend{"10.96.0.50", 53, ProtoUDP}
	single, plain := frontend{"10.96.0.51", 8000, ProtoTCP}, frontend{"10.96.0.52", 80, ProtoTCP}
	cases := []struct {
		name        string
		annotations string
		localReady  bool
		dropWest    bool
		// backends and selectable, as backendsString writes them.
		want map[frontend][2]string
	}{
		{name: "merged", localReady: true, want: map[frontend][2]string{
			api: {"10.1.0.10:8080 active pod=prod/server node= w=1; 10.2.0.10:8080 active pod= node=w1 w=1 cluster=west; 10.2.0.11:8080 terminating pod= node=w1 w=1 cluster=west",
				"10.1.0.10:8080 active pod=prod/server node= w=1; 10.2.0.10:8080 active pod= node=w1 w=1 cluster=west"},
			dns: {"10.1.0.10:5353 active pod=prod/server node= w=1; 10.2.0.10:5353 active pod= node=w1 w=1 cluster=west; 10.3.0.10:5353 terminating pod= node=w1 w=1 cluster=north",
				"10.1.0.10:5353 active pod=prod/server node= w=1; 10.2.0.10:5353 active pod= node=w1 w=1 cluster=west"},
			single: {"10.2.0.11:8000 active pod= node=w1 w=1 cluster=west", "10.2.0.11:8000 active pod= node=w1 w=1 cluster=west"},
			plain:  {"", ""},
		}},
		{name: "affinity local, local ready", annotations: `, service.fastpath.dev/affinity: local`, localReady: true, want: map[frontend][2]string{
			api: {"10.1.0.10:8080 active pod=prod/server node= w=1; 10.2.0.10:8080 active pod= node=w1 w=1 cluster=west standby; 10.2.0.11:8080 terminating pod= node=w1 w=1 cluster=west standby",
				"10.1.0.10:8080 active pod=prod/server node= w=1"},
		}},
		{name: "affinity local, no local ready", annotations: `, service.fastpath.dev/affinity: local`, want: map[frontend][2]string{
			api: {"10.1.0.10:8080 quarantined pod=prod/server node= w=1; 10.2.0.10:8080 active pod= node=w1 w=1 cluster=west; 10.2.0.11:8080 terminating pod= node=w1 w=1 cluster=west",
				"10.2.0.10:8080 active pod= node=w1 w=1 cluster=west"},
		}},
		{name: "affinity remote", annotations: `, service.fastpath.dev/affinity: remote`, localReady: true, want: map[frontend][2]string{
			api: {"10.1.0.10:8080 active pod=prod/server node= w=1 standby; 10.2.0.10:8080 active pod= node=w1 w=1 cluster=west; 10.2.0.11:8080 terminating pod= node=w1 w=1 cluster=west",
				"10.2.0.10:8080 active pod= node=w1 w=1 cluster=west"},
			// North's only backend terminates, west's is active.
			dns: {"10.1.0.10:5353 active pod=prod/server node= w=1 standby; 10.2.0.10:5353 active pod= node=w1 w=1 cluster=west; 10.3.0.10:5353 terminating pod= node=w1 w=1 cluster=north",
				"10.2.0.10:5353 active pod= node=w1 w=1 cluster=west"},
		}},
		{name: "affinity remote, west gone", annotations: `, service.fastpath.dev/affinity: remote`, localReady: true, dropWest: true, want: map[frontend][2]string{
			api: {"10.1.0.10:8080 active pod=prod/server node= w=1", "10.1.0.10:8080 active pod=prod/server node= w=1"},
			dns: {"10.1.0.10:5353 active pod=prod/server node= w=1; 10.3.0.10:5353 terminating pod= node=w1 w=1 cluster=north",
				"10.1.0.10:5353 active pod=prod/server node= w=1"},
		}},
		{name: "failover: west gone, no local ready", dropWest: true, want: map[frontend][2]string{
			api: {"10.1.0.10:8080 quarantined pod=prod/server node= w=1", ""},
			dns: {"10.1.0.10:5353 quarantined pod=prod/server node= w=1; 10.3.0.10:5353 terminating pod= node=w1 w=1 cluster=north",
				"10.3.0.10:5353 terminating pod= node=w1 w=1 cluster=north"},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			objs := globalObjects(t, tc.annotations, tc.localReady)
			if tc.dropWest {
				objs.Remote = objs.Remote[1:]
			}
			r, err := Resolve(objs)
			if err != nil {
				t.Fatal(err)
			}
			for f, want := range tc.want {
				vip := netip.MustParseAddr(f.vip)
				s, p, ok := r.ServiceByFrontend(vip, f.port, f.proto)
				if !ok {
					t.Fatalf("%v: no service", f)
				}
				if s.Key() == "prod/api" && (!s.Global || s.Affinity != ServiceAffinity(strings.TrimPrefix(tc.annotations, ", service.fastpath.dev/affinity: "))) {
					t.Errorf("%s: global %v affinity %q", s.Key(), s.Global, s.Affinity)
				}
				if got := backendsString(p.Backends); got != want[0] {
					t.Errorf("%v backends:\n got %s\nwant %s", f, got, want[0])
				}
				if got := backendsString(p.Selectable()); got != want[1] {
					t.Errorf("%v selectable:\n got %s\nwant %s", f, got, want[1])
				}
				v := EvaluateService(objs, client, vip, f.proto, f.port)
				checkServiceAgrees(t, r, v, client, vip, f.proto, f.port)
				if want[1] == "" && !v.NoBackends {
					t.Errorf("%v: %+v", f, v)
				}
			}
		})
	}
	// The evaluator names the backends' clusters.
	objs := globalObjects(t, "", true)
	v := EvaluateService(objs, client, netip.MustParseAddr("10.96.0.50"), ProtoTCP, 80)
	if !strings.Contains(v.Reason, "10.2.0.10:8080 of cluster west") {
		t.Errorf("reason %q", v.Reason)
	}
}

// TestGlobalServiceWithoutMesh: a global Service without remote clusters
// is a local one.
func TestGlobalServiceWithoutMesh(t *testing.T) {
	objs, err := LoadDir("testdata/mesh")
	if err != nil {
		t.Fatal(err)
	}
	doc := strings.NewReplacer("{{api}}", `, service.fastpath.dev/affinity: remote`, "{{ready}}", "true").Replace(globalServices)
	if err := objs.Decode("global.yaml", []byte(doc)); err != nil {
		t.Fatal(err)
	}
	r, err := Resolve(objs)
	if err != nil {
		t.Fatal(err)
	}
	_, p, _ := r.ServiceByFrontend(netip.MustParseAddr("10.96.0.50"), 80, ProtoTCP)
	if got, want := backendsString(p.Selectable()), "10.1.0.10:8080 active pod=prod/server node= w=1"; got != want {
		t.Errorf("selectable %s, want %s", got, want)
	}
}

func TestGlobalServiceValidation(t *testing.T) {
	for _, tc := range []struct {
		name, annotations string
		want              []string
	}{
		{"global not a boolean", `service.fastpath.dev/global: "yes"`,
			[]string{`global.yaml#0: Service prod/x: metadata.annotations[service.fastpath.dev/global]: Invalid value: "yes": must be "true" or "false"`}},
		{"unknown affinity", `service.fastpath.dev/global: "true", service.fastpath.dev/affinity: nearest`,
			[]string{`Service prod/x: metadata.annotations[service.fastpath.dev/affinity]: Unsupported value: "nearest"`, `"local"`, `"remote"`, `"none"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var objs Objects
			err := objs.Decode("global.yaml", []byte(`apiVersion: v1
kind: Service
metadata: {name: x, namespace: prod, annotations: {`+tc.annotations+`}}
spec: {clusterIP: 10.96.0.9, ports: [{port: 80}]}
`))
			if err == nil {
				err = objs.Validate()
			}
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
	for _, ann := range []string{`service.fastpath.dev/global: "false"`, `service.fastpath.dev/affinity: none`, `service.fastpath.dev/global: "true", service.fastpath.dev/affinity: local`} {
		var objs Objects
		if err := objs.Decode("ok.yaml", []byte(`apiVersion: v1
kind: Service
metadata: {name: x, namespace: prod, annotations: {`+ann+`}}
spec: {clusterIP: 10.96.0.9, ports: [{port: 80}]}
`)); err != nil {
			t.Fatal(err)
		}
		if err := objs.Validate(); err != nil {
			t.Errorf("%s: %v", ann, err)
		}
	}
}

func TestRemoteServiceValidation(t *testing.T) {
	for _, tc := range []struct {
		name   string
		modify func(o *Objects)
		want   []string
	}{
		{"namespace", func(o *Objects) { o.Remote[0].Services[0].Namespace = "Prod" }, []string{"RemoteCluster west: remote[0].services[0].namespace: Invalid value: \"Prod\""}},
		{"duplicate", func(o *Objects) { o.Remote[0].Services[1].Name = "api" }, []string{"remote[0].services[1].name: Duplicate value", "prod/api (also services[0])"}},
		{"SCTP", func(o *Objects) { o.Remote[0].Services[0].Ports[0].Protocol = ProtoSCTP }, []string{"remote[0].services[0].ports[0].protocol: Unsupported value: \"SCTP\""}},
		{"port 0", func(o *Objects) { o.Remote[0].Services[0].Ports[1].Port = 0 }, []string{"remote[0].services[0].ports[1].port: Invalid value: 0", "Service prod/api"}},
		{"duplicate port name", func(o *Objects) {
			o.Remote[1].Services[0].Ports[1].Name, o.Remote[1].Services[0].Ports[1].Protocol = "web", ProtoTCP
		},
			[]string{"RemoteCluster north: remote[1].services[0].ports[1]: Duplicate value", "also ports[0]"}},
		{"backend address", func(o *Objects) { o.Remote[0].Services[0].Ports[0].Backends[1].Addr = netip.MustParseAddr("fd00::1") },
			[]string{"remote[0].services[0].ports[0].backends[1].addr: Invalid value: \"fd00::1\": not an IPv4 address (Service prod/api)"}},
		{"backend port", func(o *Objects) { o.Remote[0].Services[0].Ports[0].Backends[0].Port = 0 }, []string{"remote[0].services[0].ports[0].backends[0].port"}},
		{"quarantined", func(o *Objects) { o.Remote[0].Services[0].Ports[0].Backends[0].State = BackendQuarantined },
			[]string{"remote[0].services[0].ports[0].backends[0].state: Unsupported value: \"quarantined\""}},
		{"standby", func(o *Objects) { o.Remote[0].Services[0].Ports[0].Backends[0].Standby = true }, []string{"backends[0].standby", "set by Resolve"}},
		{"other cluster", func(o *Objects) { o.Remote[0].Services[0].Ports[0].Backends[0].Cluster = "north" }, []string{"backends[0].cluster", "differs from the cluster's name west"}},
		{"duplicate backend", func(o *Objects) {
			o.Remote[0].Services[0].Ports[0].Backends[1].Addr = o.Remote[0].Services[0].Ports[0].Backends[0].Addr
		},
			[]string{"backends[1]: Duplicate value", "10.2.0.10:8080"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := globalObjects(t, "", true)
			if err := o.Validate(); err != nil {
				t.Fatalf("the fixture is refused: %v", err)
			}
			tc.modify(o)
			err := o.Validate()
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if _, err := Resolve(o); err == nil {
				t.Error("Resolve accepted it")
			}
		})
	}
}

// addRandomGlobalServices makes some of objs' Services (randomServices')
// global, with every affinity, and has the remote clusters (addRandomMesh's)
// publish Services of the same names (and others) whose ports match by
// name, by number or not at all, with backends at their pods' addresses,
// at shadowed ones, at addresses of no pod, and at addresses the local
// slices list too.
func addRandomGlobalServices(rng *rand.Rand, objs *Objects) {
	var remoteAddrs []string
	for _, c := range objs.Remote {
		for _, e := range c.Endpoints {
			remoteAddrs = append(remoteAddrs, e.IP.String())
		}
	}
	for i := range objs.Services {
		s := &objs.Services[i]
		if rng.Intn(3) > 0 {
			s.Annotations = map[string]string{AnnotationGlobalService: "true"}
			if a := []string{"", "none", "local", "remote"}[rng.Intn(4)]; a != "" {
				s.Annotations[AnnotationServiceAffinity] = a
			}
		}
	}
	// Local slices that list remote pods' addresses.
	for i := range objs.EndpointSlices {
		es := &objs.EndpointSlices[i]
		if len(es.Endpoints) > 0 && rng.Intn(3) == 0 {
			es.Endpoints[0].Addresses = []string{remoteAddrs[rng.Intn(len(remoteAddrs))]}
		}
	}
	for ci := range objs.Remote {
		c := &objs.Remote[ci]
		var addrs []string
		for _, e := range c.Endpoints {
			addrs = append(addrs, e.IP.String(), e.IP.String())
		}
		addrs = append(addrs, "10.0.0.99", objs.Pods[rng.Intn(len(objs.Pods))].Status.PodIP)
		for _, s := range objs.Services {
			if rng.Intn(4) == 0 {
				continue
			}
			rs := RemoteService{Namespace: s.Namespace, Name: s.Name}
			if rng.Intn(8) == 0 {
				rs.Namespace = map[string]string{"prod": "dev", "dev": "prod"}[rs.Namespace]
			}
			type portKey struct {
				name  string
				port  uint16
				proto Protocol
			}
			used := map[portKey]bool{}
			for _, sp := range s.Spec.Ports {
				if rng.Intn(4) == 0 {
					continue
				}
				proto, _ := lbProtocolOf(sp.Protocol)
				rp := RemoteServicePort{Name: sp.Name, Protocol: proto, Port: uint16(sp.Port)}
				switch rng.Intn(8) {
				case 0:
					rp.Name = "other"
				case 1:
					rp.Name = "" // matched by number only
				case 2:
					rp.Port++
				case 3:
					rp.Protocol = map[Protocol]Protocol{ProtoTCP: ProtoUDP, ProtoUDP: ProtoTCP}[proto]
				}
				kn, kp := portKey{name: rp.Name, proto: rp.Protocol}, portKey{port: rp.Port, proto: rp.Protocol}
				if (rp.Name != "" && used[kn]) || used[kp] {
					continue
				}
				used[kn], used[kp] = rp.Name != "", true
				seen := map[netip.AddrPort]bool{}
				for n := rng.Intn(4); n > 0; n-- {
					b := Backend{Addr: netip.MustParseAddr(addrs[rng.Intn(len(addrs))]), Port: uint16(79 + rng.Intn(4)),
						State: []BackendState{BackendActive, BackendActive, BackendTerminating}[rng.Intn(3)], Node: c.Name + "-n1"}
					if ap := netip.AddrPortFrom(b.Addr, b.Port); !seen[ap] {
						seen[ap] = true
						rp.Backends = append(rp.Backends, b)
					}
				}
				rs.Ports = append(rs.Ports, rp)
			}
			dup := false
			for _, prev := range c.Services {
				dup = dup || prev.Key() == rs.Key()
			}
			if !dup {
				c.Services = append(c.Services, rs)
			}
		}
	}
}
