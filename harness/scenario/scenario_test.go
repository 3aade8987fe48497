package scenario

import (
	"encoding/json"
	"errors"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

func TestLoadValid(t *testing.T) {
	abs := func(p string) string {
		t.Helper()
		a, err := filepath.Abs(p)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	tests := []struct {
		file  string
		check func(t *testing.T, s *Suite)
	}{
		{
			file: "testdata/valid-minimal.yaml",
			check: func(t *testing.T, s *Suite) {
				// Defaults in place of everything left out.
				if s.Spec.Provider != "netns" || s.Spec.Repetitions != 3 || s.Spec.Warmup.Duration != time.Second {
					t.Errorf("spec defaults: provider %q repetitions %d warmup %v", s.Spec.Provider, s.Spec.Repetitions, s.Spec.Warmup)
				}
				if ns := s.Spec.Cluster.Pods[0].Namespace; ns != "default" {
					t.Errorf("pod namespace %q, want default", ns)
				}
				want := Load{Protocol: "http", Connections: 1, Duration: Duration{10 * time.Second}, Port: 8080}
				if got := s.Spec.Scenarios[0].Load; got != want {
					t.Errorf("load %+v, want %+v", got, want)
				}
			},
		},
		{
			file: "testdata/valid-full.yaml",
			check: func(t *testing.T, s *Suite) {
				if got, want := s.Spec.Policies.Files, []string{abs("testdata/policies/allow.yaml")}; !reflect.DeepEqual(got, want) {
					t.Errorf("policy files %v, want %v", got, want)
				}
				want := Load{Protocol: "tcp", QPS: 2500.5, Connections: 16, Duration: Duration{2 * time.Minute}, Port: 9000, PayloadBytes: 1024}
				if got := s.Spec.Scenarios[0].Load; got != want {
					t.Errorf("scenarios[0].load %+v, want %+v", got, want)
				}
				// A number is seconds; qps 0 stays 0 (as fast as possible).
				want = Load{Protocol: "http", Connections: 1, Duration: Duration{30 * time.Second}, Port: 8080}
				if got := s.Spec.Scenarios[1].Load; got != want {
					t.Errorf("scenarios[1].load %+v, want %+v", got, want)
				}
				if v := s.Spec.Cluster.Pods[0].Labels["enabled"]; v != "yes" {
					t.Errorf("label enabled = %q, want \"yes\"", v)
				}
				if s.Spec.Warmup.Duration != 500*time.Millisecond || s.Spec.Repetitions != 5 {
					t.Errorf("warmup %v repetitions %d", s.Spec.Warmup, s.Spec.Repetitions)
				}
			},
		},
		{
			file: "../../scenarios/bench/quick.yaml",
			check: func(t *testing.T, s *Suite) {
				if s.Metadata.Name != "quick" || !reflect.DeepEqual(s.Spec.Datapaths, []string{"none", "ebpf", "iptables"}) {
					t.Errorf("name %q datapaths %v", s.Metadata.Name, s.Spec.Datapaths)
				}
				if pr := s.Spec.Propagation; pr == nil || pr.Changes != 100 || !reflect.DeepEqual(pr.Bulk, []int{100, 1000}) || pr.ProbeInterval.Duration != time.Millisecond || pr.BulkRepetitions != 3 {
					t.Errorf("propagation %+v", pr)
				}
				if len(s.Spec.Cluster.Pods) != 4 || s.Spec.Policies.Generated != 99 {
					t.Errorf("%d pods, %d generated policies", len(s.Spec.Cluster.Pods), s.Spec.Policies.Generated)
				}
				if got, want := s.Spec.Policies.Files, []string{abs("../../scenarios/policies/quick-allow.yaml")}; !reflect.DeepEqual(got, want) {
					t.Errorf("policy files %v, want %v", got, want)
				}
				want := Load{Protocol: "http", QPS: 1000, Connections: 4, Duration: Duration{10 * time.Second}, Port: 8080}
				for _, sc := range s.Spec.Scenarios {
					if sc.Load != want {
						t.Errorf("%s: load %+v, want %+v", sc.Name, sc.Load, want)
					}
				}
				from, _ := s.PodByRef(s.Spec.Scenarios[1].From)
				to, _ := s.PodByRef(s.Spec.Scenarios[1].To)
				if s.Spec.Scenarios[1].Name != "cross-node" || from.Node == to.Node {
					t.Errorf("scenario %q goes from %s to %s", s.Spec.Scenarios[1].Name, from.Node, to.Node)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(filepath.Base(tt.file), func(t *testing.T) {
			s, err := LoadFile(tt.file)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			tt.check(t, s)

			// Round trip: what is written reads back the same.
			out, err := yaml.Marshal(s)
			if err != nil {
				t.Fatalf("marshal: %v", err)
			}
			again, err := Decode("round-trip.yaml", out, "")
			if err != nil {
				t.Fatalf("decode what was written: %v\n%s", err, out)
			}
			if !reflect.DeepEqual(s, again) {
				t.Errorf("round trip changed the suite:\nbefore %+v\nafter  %+v\nyaml:\n%s", s, again, out)
			}
		})
	}
}

func TestLoadInvalid(t *testing.T) {
	tests := []struct {
		file string
		// want are substrings that must each be in some error message.
		want []string
		// count is the number of problems expected (0: not checked).
		count int
	}{
		{
			file: "invalid-unknown-field.yaml",
			want: []string{
				`invalid-unknown-field.yaml: spec.replicas: unknown field`,
				`invalid-unknown-field.yaml: spec.cluster.pods[0].Labels: unknown field`,
				`invalid-unknown-field.yaml: spec.scenarios[1].load.qsp: unknown field`,
			},
			count: 3,
		},
		{
			file: "invalid-many.yaml",
			want: []string{
				`invalid-many.yaml: apiVersion: must be "fastpath.dev/v1alpha1", have "fastpath.dev/v1alpha2"`,
				`invalid-many.yaml: kind: must be "Suite", have "Suit"`,
				`invalid-many.yaml: metadata.name: "Many_Problems" is not a valid name`,
				`invalid-many.yaml: spec.provider: unknown provider "openstack"`,
				`invalid-many.yaml: spec.datapaths[1]: unknown datapath "cilium" (known: none, ebpf, iptables, sidecar, istio)`,
				`invalid-many.yaml: spec.datapaths[2]: duplicate datapath "none"`,
				`invalid-many.yaml: spec.repetitions: must be between 1 and 100`,
				`invalid-many.yaml: spec.warmup: must be between 0s and 1h0m0s, have -1s`,
				`invalid-many.yaml: spec.cluster.nodes[1]: duplicate node "node1"`,
				`invalid-many.yaml: spec.cluster.nodes[2]: "verylongnode" is longer than 8 characters`,
				`invalid-many.yaml: spec.cluster.nodes[3]: "Bad" is not a valid name`,
				`invalid-many.yaml: spec.cluster.namespaces[0].labels: invalid label key "bad key!"`,
				`invalid-many.yaml: spec.cluster.pods[1]: duplicate pod "bench/client"`,
				`invalid-many.yaml: spec.cluster.pods[2].node: unknown node "node9"`,
				`invalid-many.yaml: spec.cluster.pods[2].labels.app: invalid label value "not a value"`,
				`invalid-many.yaml: spec.policies.generated: must be between 0 and 100000, have -1`,
				`invalid-many.yaml: spec.scenarios[1].name: duplicate scenario "ok"`,
				`invalid-many.yaml: spec.scenarios[1].from: must be "namespace/pod", have "client"`,
				`invalid-many.yaml: spec.scenarios[1].to: no pod "bench/nobody"`,
				`invalid-many.yaml: spec.scenarios[1].load.protocol: unknown protocol "udp"`,
				`invalid-many.yaml: spec.scenarios[1].load.qps: must be >= 0`,
				`invalid-many.yaml: spec.scenarios[1].load.connections: must be between 1 and 1024`,
				`invalid-many.yaml: spec.scenarios[1].load.duration: must be between 0s and 1h0m0s, have 2h0m0s`,
				`invalid-many.yaml: spec.scenarios[1].load.port: must be between 1 and 65535`,
				`invalid-many.yaml: spec.scenarios[1].load.payloadBytes: must be between 0 and 1048576`,
				`invalid-many.yaml: spec.scenarios[2].to: must differ from from ("bench/server")`,
				`invalid-many.yaml: spec.scenarios[2].load.connections: must be between 1 and 1024 (0 means 1), have -1`,
				`invalid-many.yaml: spec.scenarios[2].load.port: must be between 1 and 65534`,
			},
			count: 28,
		},
		{
			file: "invalid-propagation.yaml",
			want: []string{
				`spec.propagation.from: no pod "bench/nobody"`,
				`spec.propagation.to: pod "bench/server" has no labels`,
				`spec.propagation.port: 9000 is taken by scenario ok`,
				`spec.propagation.changes: must be between 1 and 1000`,
				`spec.propagation.bulk[0]: must be between 1 and 100000`,
				`spec.propagation.probeInterval: must be between 100µs and 100ms`,
				`spec.scenarios[0].churn.podsPerSecond: must be between 0 and 1000`,
				`spec.scenarios[0].churn.window: must be between 1 and 1000`,
			},
			count: 8,
		},
		{
			file:  "invalid-missing-policy.yaml",
			want:  []string{`invalid-missing-policy.yaml: spec.policies.files[1]: `, `policies/nope.yaml does not exist`},
			count: 1,
		},
		{
			file: "invalid-empty.yaml",
			want: []string{
				`metadata.name: is required`,
				`spec.datapaths: at least one datapath is required`,
				`spec.cluster.nodes: must list 1 to 16 nodes, have 0`,
				`spec.cluster.pods: at least one pod is required`,
				`spec.scenarios: at least one scenario is required`,
			},
			count: 5,
		},
		{
			file:  "invalid-type.yaml",
			want:  []string{`invalid-type.yaml: `, `repetitions`},
			count: 1,
		},
		{
			file:  "invalid-duplicate-key.yaml",
			want:  []string{`invalid-duplicate-key.yaml: `, `"name" already set in map`},
			count: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			s, err := LoadFile(filepath.Join("testdata", tt.file))
			if err == nil {
				t.Fatalf("Load accepted it: %+v", s)
			}
			msgs := errorMessages(err)
			text := strings.Join(msgs, "\n")
			for _, w := range tt.want {
				if !strings.Contains(text, w) {
					t.Errorf("no error contains %q; errors:\n%s", w, text)
				}
			}
			if tt.count > 0 && len(msgs) != tt.count {
				t.Errorf("%d errors, want %d:\n%s", len(msgs), tt.count, text)
			}
		})
	}
}

// errorMessages flattens errors.Join trees into their leaf messages.
func errorMessages(err error) []string {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []string
		for _, e := range j.Unwrap() {
			out = append(out, errorMessages(e)...)
		}
		return out
	}
	return []string{err.Error()}
}

func TestValidateFieldErrors(t *testing.T) {
	s, err := LoadFile("testdata/valid-minimal.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s.Spec.Scenarios[0].Load.QPS = -1
	s.Spec.Datapaths = append(s.Spec.Datapaths, "xdp")
	err = s.Validate("quick.yaml")
	var fe *FieldError
	if !errors.As(err, &fe) {
		t.Fatalf("Validate: %v, want a *FieldError", err)
	}
	tests := []struct {
		field, want string
	}{
		{"spec.datapaths[1]", `quick.yaml: spec.datapaths[1]: unknown datapath "xdp" (known: none, ebpf, iptables, sidecar, istio)`},
		{"spec.scenarios[0].load.qps", `quick.yaml: spec.scenarios[0].load.qps: must be >= 0 (0 means as fast as possible), have -1`},
	}
	msgs := errorMessages(err)
	if len(msgs) != len(tests) {
		t.Fatalf("errors %q, want %d", msgs, len(tests))
	}
	for i, tt := range tests {
		t.Run(tt.field, func(t *testing.T) {
			if msgs[i] != tt.want {
				t.Errorf("got %q, want %q", msgs[i], tt.want)
			}
		})
	}
}

func TestDefaultIsIdempotent(t *testing.T) {
	s, err := LoadFile("testdata/valid-full.yaml")
	if err != nil {
		t.Fatal(err)
	}
	before, _ := json.Marshal(s)
	s.Default()
	after, _ := json.Marshal(s)
	if string(before) != string(after) {
		t.Errorf("Default changed a defaulted suite:\n%s\n%s", before, after)
	}
}

func TestLoadSpecNormalized(t *testing.T) {
	tests := []struct {
		name string
		in   Load
		want Load
	}{
		{"zero", Load{}, Load{Protocol: "http", Connections: 1, Duration: Duration{10 * time.Second}, Port: 8080}},
		{"set", Load{Protocol: "tcp", QPS: 5, Connections: 3, Duration: Duration{time.Second}, Port: 1, PayloadBytes: 7},
			Load{Protocol: "tcp", QPS: 5, Connections: 3, Duration: Duration{time.Second}, Port: 1, PayloadBytes: 7}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.in.Normalized(); got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestPodByRef(t *testing.T) {
	s := &Suite{Spec: SuiteSpec{Cluster: Cluster{Pods: []Pod{
		{Name: "a", Node: "n1"},
		{Name: "b", Namespace: "x", Node: "n1"},
	}}}}
	tests := []struct {
		ref  string
		want string
		ok   bool
	}{
		{"default/a", "a", true},
		{"x/b", "b", true},
		{"a", "", false},
		{"x/a", "", false},
		{"/b", "", false},
		{"x/", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.ref, func(t *testing.T) {
			p, ok := s.PodByRef(tt.ref)
			if ok != tt.ok || p.Name != tt.want {
				t.Errorf("PodByRef(%q) = %q, %v; want %q, %v", tt.ref, p.Name, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestDurationJSON(t *testing.T) {
	tests := []struct {
		in      string
		want    time.Duration
		wantErr bool
	}{
		{`"10s"`, 10 * time.Second, false},
		{`"1m30s"`, 90 * time.Second, false},
		{`"250ms"`, 250 * time.Millisecond, false},
		{`2`, 2 * time.Second, false},
		{`0.5`, 500 * time.Millisecond, false},
		{`"ten"`, 0, true},
		{`true`, 0, true},
		{`1e300`, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			var d Duration
			err := json.Unmarshal([]byte(tt.in), &d)
			if (err != nil) != tt.wantErr {
				t.Fatalf("Unmarshal(%s) error %v, want error %v", tt.in, err, tt.wantErr)
			}
			if err == nil && d.Duration != tt.want {
				t.Errorf("Unmarshal(%s) = %v, want %v", tt.in, d.Duration, tt.want)
			}
			if err != nil {
				return
			}
			out, err := json.Marshal(d)
			if err != nil {
				t.Fatal(err)
			}
			if want := `"` + tt.want.String() + `"`; string(out) != want {
				t.Errorf("Marshal = %s, want %s", out, want)
			}
		})
	}
}

// TestShippedSuitesLoad: every suite under scenarios/bench decodes and
// validates.
func TestShippedSuitesLoad(t *testing.T) {
	files, err := filepath.Glob("../../scenarios/bench/*.yaml")
	if err != nil || len(files) < 3 {
		t.Fatalf("suites: %v %v", files, err)
	}
	for _, f := range files {
		if _, err := LoadFile(f); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

func TestAgentArgs(t *testing.T) {
	for _, tc := range []struct {
		in    string
		dp    string
		flags []string
		err   string
	}{
		{in: "ebpf", dp: "ebpf"},
		{in: "ebpf+socket-lb+sockmap", dp: "ebpf", flags: []string{"--socket-lb", "--sockmap"}},
		{in: "iptables", dp: "iptables"},
		{in: "iptables+sockmap", err: `datapath "iptables+sockmap": unknown option "sockmap" (iptables takes: none)`},
		{in: "ebpf+sockmap+sockmap", err: `datapath "ebpf+sockmap+sockmap": option "sockmap" given twice`},
		{in: "ebpf+vxlan+sockmap", dp: "ebpf", flags: []string{"--tunnel", "vxlan", "--sockmap"}},
		{in: "ebpf+geneve", dp: "ebpf", flags: []string{"--tunnel", "geneve"}},
		{in: "ebpf+vxlan+geneve", err: `datapath "ebpf+vxlan+geneve": options "vxlan" and "geneve" exclude each other`},
		{in: "ebpf+xdp", err: `datapath "ebpf+xdp": unknown option "xdp" (ebpf takes: socket-lb, sockmap, xdp-nodeport, vxlan, geneve)`},
		{in: "cilium", err: `unknown datapath "cilium" (known: none, ebpf, iptables, sidecar, istio)`},
	} {
		dp, flags, err := AgentArgs(tc.in)
		if tc.err != "" {
			if err == nil || err.Error() != tc.err {
				t.Errorf("%s: error %v, want %s", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || dp != tc.dp || !reflect.DeepEqual(flags, tc.flags) {
			t.Errorf("%s: %q %q %v, want %q %q", tc.in, dp, flags, err, tc.dp, tc.flags)
		}
	}
}
