package clustermesh

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"

	"github.com/fastpath-bench/fastpath/datapath/model"
)

// Key layout: every key of cluster <name> is under Prefix(<name>).
const (
	// KeyRoot is the root of every cluster's prefix.
	KeyRoot = "/fastpath/clusters/"
	// Relative keys and directories under a cluster's prefix.
	keyCluster    = "cluster"
	dirEndpoints  = "endpoints/"
	dirIdentities = "identities/"
	dirServices   = "services/"
	dirNodes      = "nodes/"
)

// Service annotations that export a Service to the mesh (the model's:
// datapath/model merges a global Service's remote backends).
const (
	// AnnotationGlobal "true" makes a Service global: its backends are
	// published for the Services of the same namespace and name in the
	// other clusters, and it takes theirs.
	AnnotationGlobal = model.AnnotationGlobalService
	// AnnotationAffinity "local" prefers the cluster's own backends and
	// uses remote ones only when it has no ready one; "remote" the
	// converse.
	AnnotationAffinity = model.AnnotationServiceAffinity
)

// LabelCluster is the label the watcher adds to every remote identity's
// labels, with the name of the cluster it comes from (Cilium's label, so
// that policies can select peers of one cluster).
const LabelCluster = "io.cilium.k8s.policy.cluster"

// Prefix is the key prefix of cluster name: /fastpath/clusters/<name>/.
func Prefix(name string) string { return KeyRoot + name + "/" }

// Affinity says which backends of a global Service new flows prefer.
type Affinity = model.ServiceAffinity

// Affinities.
const (
	// AffinityNone balances over the backends of every cluster.
	AffinityNone = model.ServiceAffinityNone
	// AffinityLocal uses the local cluster's backends while it has a
	// ready one.
	AffinityLocal = model.ServiceAffinityLocal
	// AffinityRemote uses the remote clusters' backends while they have
	// a ready one.
	AffinityRemote = model.ServiceAffinityRemote
)

// ServiceAnnotations reads the mesh annotations of a Service: whether it
// is global and its affinity. Values other than "true"/"false" and
// ""/"none"/"local"/"remote" are errors.
func ServiceAnnotations(ann map[string]string) (global bool, affinity Affinity, err error) {
	global, affinity, errs := model.ServiceMeshAnnotations(ann)
	if len(errs) > 0 {
		return false, AffinityNone, errs.ToAggregate()
	}
	return global, affinity, nil
}

// ClusterInfo is the value of <prefix>cluster: who publishes the prefix
// and the TTL of its lease. A peer's state is used only while this key
// exists and matches the configured peer.
type ClusterInfo struct {
	Name            string `json:"name"`
	ID              uint8  `json:"id"`
	LeaseTTLSeconds int64  `json:"leaseTTLSeconds"`
	// The publisher's own view of its ranges: a watcher whose
	// configuration says otherwise reports it as a problem.
	PodCIDRs    []string `json:"podCIDRs,omitempty"`
	ServiceCIDR string   `json:"serviceCIDR,omitempty"`
}

// Endpoint is a pod of the publishing cluster: the value of
// <prefix>endpoints/<ip>.
type Endpoint struct {
	IP        netip.Addr        `json:"ip"`
	Namespace string            `json:"namespace"`
	Name      string            `json:"name"`
	Labels    map[string]string `json:"labels,omitempty"`
	// Node is the pod's node; NodeIP its address, the tunnel endpoint
	// other clusters encapsulate the pod's traffic to.
	Node   string     `json:"node"`
	NodeIP netip.Addr `json:"nodeIP"`
	// Identity is the pod's local identity (its cluster's model).
	Identity model.Identity `json:"identity"`
}

// Node is a node of the publishing cluster: <prefix>nodes/<name>.
type Node struct {
	Name string     `json:"name"`
	IP   netip.Addr `json:"ip"`
}

// GlobalService is a Service annotated global: <prefix>services/<ns>/<name>.
type GlobalService struct {
	Namespace string        `json:"namespace"`
	Name      string        `json:"name"`
	Affinity  Affinity      `json:"affinity,omitempty"`
	Ports     []ServicePort `json:"ports"`
}

// Key is "namespace/name".
func (s *GlobalService) Key() string { return s.Namespace + "/" + s.Name }

// ServicePort is a port of a global Service with the publishing cluster's
// backends for it. Ports are matched across clusters by name and protocol.
type ServicePort struct {
	Name     string    `json:"name,omitempty"`
	Protocol string    `json:"protocol"` // TCP, UDP or SCTP
	Port     uint16    `json:"port"`
	Backends []Backend `json:"backends"`
}

// Backend is a serving endpoint of a port: ready ones, and terminating
// ones that still serve (Terminating set). Others are not published. Pod
// is the endpoint's pod ("namespace/name") when it is one.
type Backend struct {
	IP          netip.Addr `json:"ip"`
	Port        uint16     `json:"port"`
	Node        string     `json:"node,omitempty"`
	Pod         string     `json:"pod,omitempty"`
	Terminating bool       `json:"terminating,omitempty"`
}

// State is what a cluster publishes: its endpoints, the identities they
// use (local identity → labels), its global Services and its nodes.
type State struct {
	Endpoints  []Endpoint
	Identities map[model.Identity]map[string]string
	Services   []GlobalService
	Nodes      []Node
}

type identityValue struct {
	Labels map[string]string `json:"labels"`
}

// kv is one key (relative to the cluster prefix) and value.
type kv struct {
	key   string
	value string
}

// encode validates s for cluster self and returns its keys, relative to
// the prefix, in the order they should be written: the cluster key,
// nodes, identities, services, endpoints (so that a watcher reading a
// batch at a time never sees an endpoint before its identity).
func (s *State) encode(self Cluster, info ClusterInfo) ([]kv, error) {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	var out []kv
	put := func(key string, v any) {
		b, err := json.Marshal(v)
		if err != nil {
			bad("%s: %v", key, err)
			return
		}
		out = append(out, kv{key, string(b)})
	}
	put(keyCluster, info)

	nodes := map[string]bool{}
	for _, n := range s.Nodes {
		if err := checkName(n.Name); err != nil {
			bad("node %q: %v", n.Name, err)
			continue
		}
		if nodes[n.Name] {
			bad("node %q: duplicate", n.Name)
		}
		nodes[n.Name] = true
		if !n.IP.IsValid() {
			bad("node %q: no IP", n.Name)
		}
		put(dirNodes+n.Name, n)
	}

	ids := make([]model.Identity, 0, len(s.Identities))
	for id := range s.Identities {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	for _, id := range ids {
		if _, err := GlobalIdentity(self.ClusterID(), id); err != nil {
			bad("identity %d: %v", id, err)
			continue
		}
		put(dirIdentities+strconv.FormatUint(uint64(id), 10), identityValue{Labels: s.Identities[id]})
	}

	svcs := map[string]bool{}
	for _, svc := range s.Services {
		if err := checkName(svc.Namespace); err != nil {
			bad("service %s: namespace: %v", svc.Key(), err)
			continue
		}
		if err := checkName(svc.Name); err != nil {
			bad("service %s: name: %v", svc.Key(), err)
			continue
		}
		if svcs[svc.Key()] {
			bad("service %s: duplicate", svc.Key())
		}
		svcs[svc.Key()] = true
		if svc.Affinity != AffinityNone && svc.Affinity != AffinityLocal && svc.Affinity != AffinityRemote {
			bad("service %s: affinity %q: want \"\", %q or %q", svc.Key(), svc.Affinity, AffinityLocal, AffinityRemote)
		}
		for _, p := range svc.Ports {
			if err := checkServicePort(p); err != nil {
				bad("service %s: %v", svc.Key(), err)
			}
			for _, b := range p.Backends {
				if err := checkBackend(b); err != nil {
					bad("service %s: port %d: %v", svc.Key(), p.Port, err)
				}
			}
		}
		if svc.Ports == nil {
			svc.Ports = []ServicePort{}
		}
		put(dirServices+svc.Namespace+"/"+svc.Name, svc)
	}

	eps := map[netip.Addr]bool{}
	for _, e := range s.Endpoints {
		what := fmt.Sprintf("endpoint %s/%s (%s)", e.Namespace, e.Name, e.IP)
		switch {
		case !e.IP.IsValid():
			bad("%s: no IP", what)
			continue
		case eps[e.IP]:
			bad("%s: duplicate address", what)
			continue
		case !self.InPodCIDRs(e.IP):
			bad("%s: address outside the cluster's pod CIDRs %v", what, self.PodCIDRs)
		case e.Namespace == "" || e.Name == "":
			bad("%s: namespace and name are required", what)
		case e.Node == "" || !e.NodeIP.IsValid():
			bad("%s: node and node IP are required", what)
		}
		if _, ok := s.Identities[e.Identity]; !ok {
			bad("%s: identity %d is not in the published identities", what, e.Identity)
		}
		eps[e.IP] = true
		put(dirEndpoints+e.IP.String(), e)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

// checkServicePort checks a published port (not its backends).
func checkServicePort(p ServicePort) error {
	if p.Protocol != "TCP" && p.Protocol != "UDP" && p.Protocol != "SCTP" {
		return fmt.Errorf("port %d: protocol %q: want TCP, UDP or SCTP", p.Port, p.Protocol)
	}
	if p.Port == 0 {
		return fmt.Errorf("port %q: number 0", p.Name)
	}
	return nil
}

// checkBackend checks a published backend.
func checkBackend(b Backend) error {
	if !b.IP.IsValid() || !b.IP.Is4() || b.Port == 0 {
		return fmt.Errorf("backend %s:%d: want an IPv4 address and a port", b.IP, b.Port)
	}
	return nil
}

// checkName accepts what may be one segment of a key.
func checkName(s string) error {
	if s == "" {
		return errors.New("empty")
	}
	if strings.ContainsAny(s, "/ \t\n") {
		return fmt.Errorf("%q contains '/' or white space", s)
	}
	return nil
}
