// Package cluster defines what the harness needs from a cluster, whatever
// builds it: nodes running agents, pods with addresses, a place to write
// desired state, and a way to run workload processes in pods. One
// implementation per backend lives below it (netns today).
package cluster

import (
	"context"
	"net/netip"
	"os/exec"
	"time"

	"github.com/fastpath-bench/fastpath/datapath/agentapi"
)

// Spec is the topology to build.
type Spec struct {
	// RunID prefixes every name the provider creates ("fp-1a2b3c").
	RunID string
	Nodes []string
	Pods  []PodSpec
	// Namespaces gives labels for pod namespaces (optional).
	Namespaces map[string]map[string]string
	// LogDir receives component logs; empty: a directory under the run's
	// state.
	LogDir string
	// Clusters makes the topology a cluster mesh (issue #10): every node
	// of Nodes belongs to exactly one of them; each has its own desired
	// state, its own control plane (etcd) and its own agents, which join
	// the mesh through it. Nil: one cluster.
	Clusters []ClusterSpec
	// MeshLeaseTTL is the lease TTL of the clusters' control-plane keys
	// (how long a partitioned peer's identities survive); zero: the
	// control plane's default (15s).
	MeshLeaseTTL time.Duration
}

// ClusterSpec is one cluster of a mesh.
type ClusterSpec struct {
	// Name is a DNS label; ID 1..255 (the upper bits of its pods'
	// identities).
	Name string
	ID   int
	// Nodes are its nodes (names of Spec.Nodes).
	Nodes []string
	// ServiceCIDR is the range of its ClusterIPs; zero: the provider's
	// default for the cluster's id.
	ServiceCIDR netip.Prefix
}

// ClusterAnnotation on an object of desired state (WriteState) names the
// cluster of a mesh it belongs to; objects without it go to every
// cluster.
const ClusterAnnotation = "fastpath.dev/cluster"

// Mesh is a built topology of several clusters (Spec.Clusters).
type Mesh interface {
	// ClusterOf names the cluster of a node.
	ClusterOf(node string) string
	// ClusterStateDir is the state directory of one cluster (the model
	// evaluates each cluster's own).
	ClusterStateDir(name string) string
	// StopControlPlane stops a cluster's control plane: a partition
	// between it and the other clusters (they keep its last state for a
	// lease TTL, then forget it). StartControlPlane starts it again with
	// its data.
	StopControlPlane(name string) error
	StartControlPlane(name string) error
}

// PodSpec is a pod to create.
type PodSpec struct {
	Namespace string
	Name      string
	Node      string
	Labels    map[string]string
	// ServiceAccount of the pod ("" means "default").
	ServiceAccount string
	// IP requests an exact address (optional).
	IP netip.Addr
	// Ports are container ports (name may be empty).
	Ports []Port
}

// Port is a container port.
type Port struct {
	Name     string
	Port     int
	Protocol string
}

// Pod is a created pod.
type Pod struct {
	PodSpec
	IP netip.Addr
}

// Key is "namespace/name".
func (p Pod) Key() string { return p.Namespace + "/" + p.Name }

// AgentOptions configure the agents of one run of a datapath.
type AgentOptions struct {
	// Datapath is "none" or "ebpf".
	Datapath string
	// ReadyTimeout bounds the wait for every agent to program the state;
	// zero means 30s.
	ReadyTimeout time.Duration
	// ExtraArgs are passed to every agent.
	ExtraArgs []string
	// GoMaxProcs is the agents' GOMAXPROCS; zero means the provider's
	// default (netns: 1, since its nodes share the machine's CPUs, as a
	// node agent limited to one CPU would run).
	GoMaxProcs int
}

// Process is a component the harness started (agent, server, client):
// a process on this host (Cmd), or a container of a pod (Container).
type Process struct {
	Name string
	// Cmd is the host process (netns provider; agents found by PID).
	Cmd *exec.Cmd
	// Container is set instead when the command runs as a container of
	// its pod (kind).
	Container *Container
}

// PID is the process's PID on this host, 0 when unknown.
func (p *Process) PID() int {
	switch {
	case p.Cmd != nil && p.Cmd.Process != nil:
		return p.Cmd.Process.Pid
	case p.Container != nil:
		return p.Container.PID
	}
	return 0
}

// Container is a command running as a container of a pod.
type Container struct {
	// Pod is "namespace/name"; Name the container's.
	Pod, Name string
	// PID is its process's PID on this host while it runs (CPU and
	// memory sampling); 0 when it could not be found.
	PID int
	// Done is closed once the container has ended and its output has
	// been written to the command's Stdout; then Err says how it ended
	// (nil: exit code 0).
	Done <-chan struct{}
	Err  func() error
	// Stop ends it (SIGTERM, then SIGKILL) and waits for Done.
	Stop func()
}

// Cluster is a built topology.
type Cluster interface {
	// Nodes lists the nodes by the names the spec gave them.
	Nodes() []string
	// Pods lists the pods with their addresses.
	Pods() []Pod
	// WriteState replaces a named set of desired state (Kubernetes YAML)
	// and returns the token agents will report once they have programmed
	// it: the netns provider writes a file of the agents' state
	// directory (the token is the directory's digest), the kind provider
	// applies the objects to the API server (the token names the
	// resourceVersions it got back).
	WriteState(name string, data []byte) (string, error)
	// RemoveState removes a named set written by WriteState.
	RemoveState(name string) (string, error)
	// StateDir is a directory holding the whole desired state as YAML
	// (pods with their addresses, and what WriteState wrote), for the
	// model to evaluate.
	StateDir() string
	// PodNetns is the name (under /run/netns) of a pod's network
	// namespace.
	PodNetns(pod string) string
	// AgentClient talks to the agent of a node.
	AgentClient(node string) *agentapi.Client
	// StartAgents starts one agent per node with the datapath and waits
	// until each has programmed the current state.
	StartAgents(ctx context.Context, opts AgentOptions) error
	// WaitProgrammed waits until every agent has programmed the state with
	// digest hash, and returns per node how long after since it was.
	WaitProgrammed(ctx context.Context, hash string, since time.Time) (map[string]time.Duration, error)
	// StopAgents stops the agents (they detach their programs).
	StopAgents(ctx context.Context) error
	// Agents returns the running agent processes by node.
	Agents() map[string]*Process
	// StartIn starts cmd (the harness's own executable with a `workload`
	// command) in pod: as a process in the pod's network namespace
	// (netns), or as a container of the pod from the project's image
	// running the same arguments (kind; Process.Container is set and the
	// output goes to cmd.Stdout when it ends).
	StartIn(pod string, cmd *exec.Cmd) (*Process, error)
	// Destroy removes everything the cluster created.
	Destroy(ctx context.Context) error
}

// PodLabeler is a cluster whose pods' labels change in place: the kind
// provider patches the Pod through its cluster's API server. (On netns a
// pod's labels are part of its cluster's state file, which the runner
// rewrites.)
type PodLabeler interface {
	// SetPodLabel sets label key of pod ("namespace/name") to *value, or
	// removes it when value is nil, updates the state directories the
	// model reads, and returns the token of the whole state as it is now
	// (on a mesh, every cluster's).
	SetPodLabel(pod, key string, value *string) (string, error)
}
