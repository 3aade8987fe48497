package scenario

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// APIVersion is the only apiVersion suites may have.
const APIVersion = "fastpath.dev/v1alpha1"

// Kind is the only kind suites may have.
const Kind = "Suite"

// Defaults applied by Suite.Default and Load.Normalized to zero-valued
// options.
const (
	// DefaultProvider builds clusters out of network namespaces.
	DefaultProvider = "netns"
	// DefaultRepetitions is how often every datapath is measured.
	DefaultRepetitions = 3
	// DefaultWarmup is the unmeasured load before each measurement.
	DefaultWarmup = time.Second
	// DefaultNamespace is the namespace of pods that name none.
	DefaultNamespace = "default"
	// DefaultProtocol is the load protocol.
	DefaultProtocol = "http"
	// DefaultConnections is the number of client connections.
	DefaultConnections = 1
	// DefaultDuration is how long a measured load lasts.
	DefaultDuration = 10 * time.Second
	// DefaultPort is the server port.
	DefaultPort = 8080
)

// Limits enforced by Suite.Validate.
const (
	// MaxRepetitions bounds spec.repetitions.
	MaxRepetitions = 100
	// MaxNodes bounds the number of nodes.
	MaxNodes = 16
	// MaxNodeNameLength bounds node names, which become parts of interface
	// names.
	MaxNodeNameLength = 8
	// MaxGeneratedPolicies bounds spec.policies.generated.
	MaxGeneratedPolicies = 100000
	// MaxConnections bounds load.connections.
	MaxConnections = 1024
	// MaxDuration bounds load.duration and spec.warmup.
	MaxDuration = time.Hour
	// MaxPayloadBytes bounds load.payloadBytes (1 MiB).
	MaxPayloadBytes = 1 << 20
)

// KnownProviders are the valid values of spec.provider.
var KnownProviders = []string{"netns", "kind"}

// KnownDatapaths are the datapaths an entry of spec.datapaths names; an
// entry may add options after "+" (DatapathOptions), e.g.
// "ebpf+socket-lb+sockmap".
//
// "istio" is Istio itself (sidecar mode; "istio+ambient": ambient mode),
// on the kind provider only: a run checks what it needs before anything
// is created and skips it, saying why (kind.IstioPreflight).
var KnownDatapaths = []string{"none", "ebpf", "iptables", "sidecar", "istio"}

// Istio is the datapath that is Istio itself (not an agent datapath).
const Istio = "istio"

// DatapathOptions are the options a datapath takes, each the agent flag of
// the same name.
var DatapathOptions = map[string][]string{
	// socket-lb: services translated at connect()/sendmsg() (cgroup
	// hooks); sockmap: same-node TCP payload moved socket to socket;
	// xdp-nodeport: NodePort traffic from outside translated in XDP;
	// vxlan: the overlay to other nodes, the sender's identity in the
	// VNI (--tunnel vxlan); geneve: the overlay in Geneve, the identity
	// in an option (--tunnel geneve). One overlay at most.
	"ebpf": {"socket-lb", "sockmap", "xdp-nodeport", "vxlan", "geneve"},
	// ambient: Istio's ambient mode (ztunnel per node) instead of
	// sidecars.
	"istio": {"ambient"},
}

// optionFlags are the agent flags of options not named like their flag.
var optionFlags = map[string][]string{"vxlan": {"--tunnel", "vxlan"}, "geneve": {"--tunnel", "geneve"}}

// exclusiveOptions are sets of options an entry takes one of.
var exclusiveOptions = [][]string{{"vxlan", "geneve"}}

// AgentArgs splits a spec.datapaths entry into the agent's --datapath and
// the flags its options turn on.
func AgentArgs(entry string) (datapath string, flags []string, err error) {
	parts := strings.Split(entry, "+")
	datapath = parts[0]
	if !slices.Contains(KnownDatapaths, datapath) {
		return "", nil, fmt.Errorf("unknown datapath %q (known: %s)", datapath, strings.Join(KnownDatapaths, ", "))
	}
	seen := map[string]bool{}
	for _, o := range parts[1:] {
		if !slices.Contains(DatapathOptions[datapath], o) {
			known := "none"
			if len(DatapathOptions[datapath]) > 0 {
				known = strings.Join(DatapathOptions[datapath], ", ")
			}
			return "", nil, fmt.Errorf("datapath %q: unknown option %q (%s takes: %s)", entry, o, datapath, known)
		}
		if seen[o] {
			return "", nil, fmt.Errorf("datapath %q: option %q given twice", entry, o)
		}
		seen[o] = true
		for _, set := range exclusiveOptions {
			if !slices.Contains(set, o) {
				continue
			}
			for _, other := range set {
				if other != o && seen[other] {
					return "", nil, fmt.Errorf("datapath %q: options %q and %q exclude each other", entry, other, o)
				}
			}
		}
		if f, ok := optionFlags[o]; ok {
			flags = append(flags, f...)
			continue
		}
		flags = append(flags, "--"+o)
	}
	return datapath, flags, nil
}

// KnownProtocols are the valid values of load.protocol.
var KnownProtocols = []string{"http", "tcp", "grpc"}

// Suite is a benchmark suite file.
type Suite struct {
	// APIVersion must be APIVersion.
	APIVersion string `json:"apiVersion"`
	// Kind must be Kind.
	Kind string `json:"kind"`
	// Metadata names the suite.
	Metadata Metadata `json:"metadata"`
	// Spec is what to build and measure.
	Spec SuiteSpec `json:"spec"`
}

// Metadata identifies a suite.
type Metadata struct {
	// Name is the suite's name, a DNS label; reports carry it.
	Name string `json:"name"`
}

// SuiteSpec describes the cluster, the datapaths to compare and the
// scenarios to measure.
type SuiteSpec struct {
	// Provider builds the cluster: "netns" (the default: network
	// namespaces on this machine) or "kind" (a kind cluster with the
	// agent as its CNI DaemonSet).
	Provider string `json:"provider,omitempty"`
	// Datapaths are compared against each other, each one of
	// KnownDatapaths, without duplicates, at least one.
	Datapaths []string `json:"datapaths"`
	// Repetitions is how often each datapath is measured, 1 to 100; 0
	// means 3.
	Repetitions int `json:"repetitions,omitempty"`
	// Warmup is the unmeasured load run before each measurement; 0 means
	// 1s.
	Warmup Duration `json:"warmup,omitzero"`
	// Cluster is the topology.
	Cluster Cluster `json:"cluster"`
	// Policies are installed before anything is measured.
	Policies Policies `json:"policies,omitzero"`
	// Scenarios are measured for every datapath, at least one, with
	// unique names.
	Scenarios []Scenario `json:"scenarios"`
	// Propagation, when set, measures for every datapath how fast policy
	// changes take effect.
	Propagation *Propagation `json:"propagation,omitempty"`
	// Partition, on a cluster mesh, cuts a cluster's control plane off
	// and measures which connections keep working, and for how long.
	Partition *Partition `json:"partition,omitempty"`
}

// Partition measures a cut between the clusters of a mesh: From (in one
// cluster) holds Established connections to To (in another) and opens
// new ones every ProbeInterval while the control plane of cluster Cut
// (From's by default) is stopped for Duration, then started again. The
// report says how long new connections kept working (until the peers
// dropped Cut's identities, a lease TTL after its control plane stopped
// answering), whether the established ones survived, and how long the
// mesh took to admit new connections again. Datapaths in the mesh only
// (ebpf); the suite's policies must admit From -> To by identity (the
// cluster label), so that losing the identities denies it.
type Partition struct {
	From string `json:"from"`
	To   string `json:"to"`
	// Port is the TCP port (an echo server listens there); 0 means 9100.
	Port int `json:"port,omitempty"`
	// Cut is the cluster whose control plane stops; "" means From's.
	Cut string `json:"cut,omitempty"`
	// Established is how many connections are open before the cut, 0 to
	// 64; 0 means 4.
	Established int `json:"established,omitempty"`
	// Duration of the cut, 1s to 5m; 0 means three lease TTLs.
	Duration Duration `json:"duration,omitzero"`
	// ProbeInterval is the time between new connections, 10ms to 1s; 0
	// means 50ms.
	ProbeInterval Duration `json:"probeInterval,omitzero"`
}

// Defaults of Partition.
const (
	DefaultPartitionPort          = 9100
	DefaultPartitionEstablished   = 4
	DefaultPartitionProbeInterval = 50 * time.Millisecond
)

// Propagation measures policy propagation: the time from a change of the
// desired state to (a) every agent acknowledging it programmed and (b) the
// first of a stream of probe connections, one every ProbeInterval, from
// which on every probe sees the new verdict. A toggle policy allows From
// to reach To on Port; single changes add and remove it in turn, bulk
// changes add it together with generated policies.
type Propagation struct {
	// From and To are the probe's pods, "namespace/pod". Without the
	// toggle policy the suite's own policies must deny From -> To on Port
	// (To selected for ingress), so that each change flips the verdict.
	From string `json:"from"`
	To   string `json:"to"`
	// Port is the TCP port probed (an echo server listens there); 0
	// means 9000.
	Port int `json:"port,omitempty"`
	// Changes is the number of single-policy changes, 1 to 1000; 0 means
	// 20.
	Changes int `json:"changes,omitempty"`
	// Bulk lists sizes of policy sets applied at once (the toggle and
	// generated policies), each 1 to 100000.
	Bulk []int `json:"bulk,omitempty"`
	// BulkRepetitions is how often each bulk size is applied (and
	// removed), 1 to 100; 0 means 3.
	BulkRepetitions int `json:"bulkRepetitions,omitempty"`
	// ProbeInterval is the time between probe connections, 100µs to
	// 100ms; 0 means 1ms.
	ProbeInterval Duration `json:"probeInterval,omitzero"`
	// Timeout bounds each change, up to 5m; 0 means 30s.
	Timeout Duration `json:"timeout,omitzero"`
	// Relabel, on a mesh with From and To in different clusters, also
	// measures Changes changes made in From's cluster and enforced in
	// To's: From's pod gains and loses a label in its cluster's state,
	// which a policy in To's cluster selects together with From's
	// cluster label (datapaths in the mesh only: ebpf).
	Relabel bool `json:"relabel,omitempty"`
}

// Defaults of Propagation.
const (
	DefaultPropagationPort    = 9000
	DefaultPropagationChanges = 20
	DefaultBulkRepetitions    = 3
	DefaultProbeInterval      = time.Millisecond
	DefaultPropagationTimeout = 30 * time.Second
)

// Cluster is a topology of nodes and pods.
type Cluster struct {
	// Nodes are unique names of 1 to 8 characters out of [a-z0-9-] (they
	// become parts of interface names); 1 to 16 of them.
	Nodes []string `json:"nodes"`
	// Pods are placed on Nodes; at least one.
	Pods []Pod `json:"pods"`
	// Namespaces optionally labels namespaces; a pod namespace not listed
	// has no labels.
	Namespaces []Namespace `json:"namespaces,omitempty"`
	// Clusters, when set, makes the topology a cluster mesh (issue #10):
	// at least two clusters, every node in exactly one of them, each
	// with its own desired state and control plane (netns provider
	// only). Policy documents carrying the annotation
	// fastpath.dev/cluster go to that cluster only.
	Clusters []MeshCluster `json:"clusters,omitempty"`
	// MeshLeaseTTL is the lease TTL of the clusters' control-plane keys,
	// 1s to 5m; 0 means the control plane's default (15s). Only with
	// Clusters.
	MeshLeaseTTL Duration `json:"meshLeaseTTL,omitzero"`
}

// MeshCluster is one cluster of a mesh.
type MeshCluster struct {
	// Name is a DNS label, unique; policies name it in the annotation
	// fastpath.dev/cluster and select its pods by the label
	// io.cilium.k8s.policy.cluster.
	Name string `json:"name"`
	// ID is 1 to 255, unique (the upper bits of its pods' identities).
	ID int `json:"id"`
	// Nodes are its nodes, names of Cluster.Nodes.
	Nodes []string `json:"nodes"`
	// ServiceCIDR is its ClusterIP range (IPv4, not overlapping another
	// cluster's); "" means the provider's default for its id.
	ServiceCIDR string `json:"serviceCIDR,omitempty"`
}

// Limits of a mesh.
const (
	MaxClusterID    = 255
	MinMeshLeaseTTL = time.Second
	MaxMeshLeaseTTL = 5 * time.Minute
)

// ClusterOfNode names the mesh cluster of node ("" without clusters or
// when no cluster lists it).
func (c *Cluster) ClusterOfNode(node string) string {
	for _, mc := range c.Clusters {
		if slices.Contains(mc.Nodes, node) {
			return mc.Name
		}
	}
	return ""
}

// Namespace gives labels to a namespace.
type Namespace struct {
	// Name is the namespace, a DNS label.
	Name string `json:"name"`
	// Labels are the namespace's labels.
	Labels map[string]string `json:"labels,omitempty"`
}

// Pod is a pod of the topology.
type Pod struct {
	// Name is the pod's name, a DNS label, unique within its namespace.
	Name string `json:"name"`
	// Namespace is the pod's namespace, a DNS label; "" means "default".
	Namespace string `json:"namespace,omitempty"`
	// Node is one of Cluster.Nodes.
	Node string `json:"node"`
	// Labels are the pod's labels, which policies select.
	Labels map[string]string `json:"labels,omitempty"`
}

// Ref returns "namespace/name", the form scenarios refer to the pod by.
func (p Pod) Ref() string {
	ns := p.Namespace
	if ns == "" {
		ns = DefaultNamespace
	}
	return ns + "/" + p.Name
}

// Policies are the policy objects installed in the cluster.
type Policies struct {
	// Files are Kubernetes YAML files (NetworkPolicy and the like),
	// relative to the suite file's directory. LoadFile and Decode make them
	// absolute; they must exist.
	Files []string `json:"files,omitempty"`
	// Generated is the number of synthetic filler NetworkPolicies to add,
	// 0 to 100000.
	Generated int `json:"generated,omitempty"`
}

// Scenario is one measured traffic pattern.
type Scenario struct {
	// Name is unique in the suite, a DNS label.
	Name string `json:"name"`
	// From is the client pod, "namespace/pod".
	From string `json:"from"`
	// To is the server pod, "namespace/pod", other than From.
	To string `json:"to"`
	// Load is what the client sends.
	Load Load `json:"load,omitzero"`
	// Churn, when set, changes the desired state at a steady rate while
	// the load is measured.
	Churn *Churn `json:"churn,omitempty"`
	// Via is how the client addresses the server: "pod" (its address;
	// the default) or "service" (the ClusterIP of a Service whose one
	// backend is the server, so the datapath's load balancer translates
	// every connection).
	Via string `json:"via,omitempty"`
	// Services is how many Services the cluster holds while the scenario
	// runs: the scenario's own (with via: service) and generated ones
	// with two backends each, 0 to MaxServices. They are installed before
	// the scenario and stay until another scenario asks for another
	// number.
	Services int `json:"services,omitempty"`
	// Backends is how many backends each generated Service has (made-up
	// addresses: they add load balancer state, not traffic), 1 to
	// MaxBackends; 0 means 2.
	Backends int `json:"backends,omitempty"`
	// Policies, when set, replaces spec.policies.generated for this
	// scenario: that many filler NetworkPolicies are installed before it
	// (0 to MaxGeneratedPolicies) and stay until another scenario asks for
	// another number.
	Policies *int `json:"policies,omitempty"`
}

// MaxServices bounds Scenario.Services; MaxBackends Scenario.Backends.
const (
	MaxServices = 20000
	MaxBackends = 1000
)

// Churn is control-plane activity during a measurement: policies and pods
// created and deleted at steady rates. Each change is one state file
// written or removed, which every agent picks up and programs.
type Churn struct {
	// PoliciesPerSecond is the rate of policy creations (0 to 1000); once
	// Window churned policies exist, each creation also deletes the
	// oldest. The policies select the scenario's server, so they change
	// its policy maps.
	PoliciesPerSecond float64 `json:"policiesPerSecond,omitempty"`
	// PodsPerSecond is the rate of pod creations (0 to 1000), deleted like
	// the policies. The pods run on a node outside the cluster, each with
	// labels of its own: every agent allocates an identity and an ipcache
	// entry for each, as for pods of other nodes.
	PodsPerSecond float64 `json:"podsPerSecond,omitempty"`
	// Window is how many churned objects of each kind live at once, 1 to
	// 1000; 0 means 20.
	Window int `json:"window,omitempty"`
}

// DefaultChurnWindow is Churn.Window's default.
const DefaultChurnWindow = 20

// Load is the load a scenario's client generates.
type Load struct {
	// Protocol is "http", "tcp" (fortio TCP echo, on Port+1) or "grpc"
	// (fortio gRPC ping, unary calls, on Port+2); "" means
	// "http".
	Protocol string `json:"protocol,omitempty"`
	// QPS is the target rate across all connections; 0 means as fast as
	// possible. Negative values are invalid.
	QPS float64 `json:"qps,omitempty"`
	// Connections is the number of concurrent connections, 1 to 1024; 0
	// means 1.
	Connections int `json:"connections,omitempty"`
	// Duration is how long the measured load lasts, at most 1h; 0 means
	// 10s.
	Duration Duration `json:"duration,omitzero"`
	// Port is the server's HTTP port, 1 to 65535 (65534 for tcp, 65533
	// for grpc); 0 means
	// 8080.
	Port int `json:"port,omitempty"`
	// PayloadBytes is the size of each response body, 0 to 1 MiB.
	PayloadBytes int `json:"payloadBytes,omitempty"`
}

// Normalized returns l with defaults in place of zero-valued options.
func (l Load) Normalized() Load {
	if l.Protocol == "" {
		l.Protocol = DefaultProtocol
	}
	if l.Connections == 0 {
		l.Connections = DefaultConnections
	}
	if l.Duration.Duration == 0 {
		l.Duration.Duration = DefaultDuration
	}
	if l.Port == 0 {
		l.Port = DefaultPort
	}
	return l
}

// Default replaces zero-valued options with their defaults, in place:
// provider, repetitions, warm-up, pod namespaces and every scenario's load.
// It is idempotent.
func (s *Suite) Default() {
	if s.Spec.Provider == "" {
		s.Spec.Provider = DefaultProvider
	}
	if s.Spec.Repetitions == 0 {
		s.Spec.Repetitions = DefaultRepetitions
	}
	if s.Spec.Warmup.Duration == 0 {
		s.Spec.Warmup.Duration = DefaultWarmup
	}
	for i := range s.Spec.Cluster.Pods {
		if s.Spec.Cluster.Pods[i].Namespace == "" {
			s.Spec.Cluster.Pods[i].Namespace = DefaultNamespace
		}
	}
	for i := range s.Spec.Scenarios {
		s.Spec.Scenarios[i].Load = s.Spec.Scenarios[i].Load.Normalized()
		if c := s.Spec.Scenarios[i].Churn; c != nil && c.Window == 0 {
			c.Window = DefaultChurnWindow
		}
	}
	if pr := s.Spec.Propagation; pr != nil {
		if pr.Port == 0 {
			pr.Port = DefaultPropagationPort
		}
		if pr.Changes == 0 {
			pr.Changes = DefaultPropagationChanges
		}
		if pr.BulkRepetitions == 0 {
			pr.BulkRepetitions = DefaultBulkRepetitions
		}
		if pr.ProbeInterval.Duration == 0 {
			pr.ProbeInterval.Duration = DefaultProbeInterval
		}
		if pr.Timeout.Duration == 0 {
			pr.Timeout.Duration = DefaultPropagationTimeout
		}
	}
}

// PodByRef returns the pod "namespace/name" refers to. A pod without a
// namespace is found as "default/name".
func (s *Suite) PodByRef(ref string) (Pod, bool) {
	ns, name, ok := strings.Cut(ref, "/")
	if !ok || ns == "" || name == "" {
		return Pod{}, false
	}
	for _, p := range s.Spec.Cluster.Pods {
		if p.Ref() == ns+"/"+name {
			return p, true
		}
	}
	return Pod{}, false
}
