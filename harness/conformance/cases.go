// Package conformance runs policy conformance cases: directories holding a
// cluster (cluster.yaml), policies (policies.yaml) and expected probe
// results (expect.yaml). Against the model it asks the reference evaluator;
// against a datapath it builds the cluster, programs the policies through
// real agents, and makes real connections between pod namespaces.
package conformance

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	"github.com/fastpath-bench/fastpath/datapath/model"
)

// Case is one conformance case.
type Case struct {
	// Name is the case directory relative to the corpus root.
	Name string
	Dir  string
	// Cluster holds the Namespaces and Pods of cluster.yaml.
	Cluster *model.Objects
	// ClusterKey is a digest of cluster.yaml: consecutive cases with the
	// same key reuse one topology.
	ClusterKey string
	// Policies is policies.yaml as written (may be empty).
	Policies []byte
	Probes   []Probe
	// Mesh are the clusters of mesh.yaml (nil: one cluster).
	Mesh []MeshCluster
}

// Probe is one expected connection result.
type Probe struct {
	// From is the source pod ("namespace/name"), or External.
	From string `json:"from"`
	// To is the destination pod, or Service the destination Service
	// ("namespace/name": the probe connects to its ClusterIP, and port is
	// a Service port, by number or name).
	To      string `json:"to,omitempty"`
	Service string `json:"service,omitempty"`
	// Node makes the probe connect to that node's address (port is then
	// a NodePort).
	Node     string             `json:"node,omitempty"`
	Port     intstr.IntOrString `json:"port"`
	Protocol string             `json:"protocol,omitempty"`
	// Method and Path make an HTTP probe's request (protocol HTTP only;
	// defaults GET and /).
	Method string `json:"method,omitempty"`
	Path   string `json:"path,omitempty"`
	// Spoof makes a UDP probe of a mesh case send with this pod's
	// address as source (a forged address); connected means the
	// datagram reached the destination's server. SpoofLayer says who
	// forges: "pod" (default: the pod itself, whose node must drop
	// sources that are not the pod's) or "overlay" (from's node puts an
	// overlay packet on the wire with from's identity and the forged
	// inner source: the receiver must judge it by the identity).
	Spoof      string `json:"spoof,omitempty"`
	SpoofLayer string `json:"spoofLayer,omitempty"`
	Connected  bool   `json:"connected"`
}

// External names, as a probe's from, a host outside the cluster on the
// nodes' network (north-south traffic to NodePorts).
const External = "external"

func (p Probe) String() string {
	to := p.To
	if p.Service != "" {
		to = "service " + p.Service
	}
	if p.Node != "" {
		to = "node " + p.Node
	}
	if p.proto() == "HTTP" {
		return fmt.Sprintf("%s -> %s HTTP/%s %s %s", p.From, to, p.Port.String(), p.method(), p.path())
	}
	if p.Spoof != "" {
		return fmt.Sprintf("%s (as %s, forged at the %s) -> %s %s/%s", p.From, p.Spoof, p.spoofLayer(), to, p.proto(), p.Port.String())
	}
	return fmt.Sprintf("%s -> %s %s/%s", p.From, to, p.proto(), p.Port.String())
}

// transport is the L4 protocol the probe uses (TCP for HTTP).
func (p Probe) transport() string {
	if p.proto() == "HTTP" {
		return "TCP"
	}
	return p.proto()
}

func (p Probe) spoofLayer() string {
	if p.SpoofLayer == "" {
		return SpoofPod
	}
	return p.SpoofLayer
}

// Spoof layers.
const (
	SpoofPod     = "pod"
	SpoofOverlay = "overlay"
)

func (p Probe) method() string {
	if p.Method == "" {
		return "GET"
	}
	return p.Method
}

func (p Probe) path() string {
	if p.Path == "" {
		return "/"
	}
	return p.Path
}

func (p Probe) proto() string {
	if p.Protocol == "" {
		return "TCP"
	}
	return strings.ToUpper(p.Protocol)
}

type expectFile struct {
	Probes []Probe `json:"probes"`
}

// LoadCases finds every case below root (a directory holding cluster.yaml
// and expect.yaml), in lexical order. Every problem of every case is
// reported.
func LoadCases(root string) ([]*Case, error) {
	var dirs []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if _, err := os.Stat(filepath.Join(path, "expect.yaml")); err == nil {
				dirs = append(dirs, path)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read cases: %w", err)
	}
	if len(dirs) == 0 {
		return nil, fmt.Errorf("no cases below %s (a case is a directory with cluster.yaml, policies.yaml and expect.yaml)", root)
	}
	sort.Strings(dirs)
	var cases []*Case
	var errs []error
	for _, d := range dirs {
		c, err := LoadCase(root, d)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		cases = append(cases, c)
	}
	return cases, errors.Join(errs...)
}

// LoadCase reads one case directory.
func LoadCase(root, dir string) (*Case, error) {
	name, _ := filepath.Rel(root, dir)
	if name == "." {
		name = filepath.Base(dir)
	}
	c := &Case{Name: name, Dir: dir}
	clusterData, err := os.ReadFile(filepath.Join(dir, "cluster.yaml"))
	if err != nil {
		return nil, fmt.Errorf("case %s: %w", name, err)
	}
	meshData, err := os.ReadFile(filepath.Join(dir, "mesh.yaml"))
	if err != nil && !os.IsNotExist(err) {
		return nil, fmt.Errorf("case %s: %w", name, err)
	}
	sum := sha256.Sum256(append(append(clusterData, 0), meshData...))
	c.ClusterKey = hex.EncodeToString(sum[:8])
	c.Cluster = &model.Objects{}
	if err := c.Cluster.Decode(filepath.Join(name, "cluster.yaml"), clusterData); err != nil {
		return nil, fmt.Errorf("case %s: %w", name, err)
	}
	if meshData != nil {
		if c.Mesh, err = decodeMesh(name, meshData, c.Cluster.Pods); err != nil {
			return nil, err
		}
		if len(c.Cluster.Services)+len(c.Cluster.EndpointSlices) > 0 {
			return nil, fmt.Errorf("case %s: cluster.yaml: Services in mesh cases: not yet", name)
		}
	}
	if len(c.Cluster.NetworkPolicies) > 0 {
		return nil, fmt.Errorf("case %s: cluster.yaml: policies belong in policies.yaml", name)
	}
	if len(c.Cluster.Pods) == 0 {
		return nil, fmt.Errorf("case %s: cluster.yaml: no pods", name)
	}
	c.Policies, err = os.ReadFile(filepath.Join(dir, "policies.yaml"))
	if err != nil && !os.IsNotExist(err) {
		return nil, fmt.Errorf("case %s: %w", name, err)
	}
	pol := &model.Objects{}
	if err := pol.Decode(filepath.Join(name, "policies.yaml"), c.Policies); err != nil {
		return nil, fmt.Errorf("case %s: %w", name, err)
	}
	if len(pol.Pods)+len(pol.Namespaces)+len(pol.Nodes) > 0 {
		return nil, fmt.Errorf("case %s: policies.yaml: only policy objects belong here", name)
	}
	expData, err := os.ReadFile(filepath.Join(dir, "expect.yaml"))
	if err != nil {
		return nil, fmt.Errorf("case %s: %w", name, err)
	}
	j, err := yaml.YAMLToJSON(expData)
	if err != nil {
		return nil, fmt.Errorf("case %s: expect.yaml: malformed YAML: %w", name, err)
	}
	dec := json.NewDecoder(bytes.NewReader(j))
	dec.DisallowUnknownFields()
	var ef expectFile
	if err := dec.Decode(&ef); err != nil {
		return nil, fmt.Errorf("case %s: expect.yaml: %s", name, strings.TrimPrefix(err.Error(), "json: "))
	}
	if len(ef.Probes) == 0 {
		return nil, fmt.Errorf("case %s: expect.yaml: probes: none", name)
	}
	pods := map[string]bool{}
	for _, p := range c.Cluster.Pods {
		pods[p.Namespace+"/"+p.Name] = true
	}
	nodes := map[string]bool{}
	for _, n := range topologyOf(c, "").spec.Nodes {
		nodes[n] = true
	}
	services := map[string]bool{}
	for _, s := range c.Cluster.Services {
		services[s.Namespace+"/"+s.Name] = true
	}
	var errs []error
	for i, p := range ef.Probes {
		f := fmt.Sprintf("case %s: expect.yaml: probes[%d]", name, i)
		if len(c.Mesh) > 0 {
			errs = append(errs, checkMeshProbe(c, p, f)...)
		}
		errs = append(errs, checkSpoof(c, p, f, pods)...)
		switch {
		case p.From == External && p.Node == "":
			errs = append(errs, fmt.Errorf("%s.from: %s reaches only node addresses (NodePorts): give node", f, External))
		case p.From != External && !pods[p.From]:
			errs = append(errs, fmt.Errorf("%s.from: no pod %q in cluster.yaml (or %q, the host outside the cluster)", f, p.From, External))
		}
		targets := 0
		for _, s := range []string{p.To, p.Service, p.Node} {
			if s != "" {
				targets++
			}
		}
		switch {
		case targets > 1:
			errs = append(errs, fmt.Errorf("%s: to, service and node are exclusive", f))
		case p.Node != "":
			if !nodes[p.Node] {
				errs = append(errs, fmt.Errorf("%s.node: no node %q (nodes are the pods' spec.nodeName values)", f, p.Node))
			}
			if p.Port.Type != intstr.Int || (p.proto() != "TCP" && p.proto() != "UDP") {
				errs = append(errs, fmt.Errorf("%s: a probe to a node takes a port number and TCP or UDP", f))
			}
		case p.Service != "":
			if !services[p.Service] {
				errs = append(errs, fmt.Errorf("%s.service: no Service %q in cluster.yaml", f, p.Service))
			}
			if p.proto() != "TCP" && p.proto() != "UDP" {
				errs = append(errs, fmt.Errorf("%s.protocol: %s probes to a Service are not supported (TCP or UDP)", f, p.proto()))
			}
		case !pods[p.To]:
			errs = append(errs, fmt.Errorf("%s.to: no pod %q in cluster.yaml", f, p.To))
		}
		switch p.proto() {
		case "TCP", "UDP", "SCTP", "HTTP":
		default:
			errs = append(errs, fmt.Errorf("%s.protocol: %q (want TCP, UDP, SCTP or HTTP)", f, p.Protocol))
		}
		if p.proto() != "HTTP" && (p.Method != "" || p.Path != "") {
			errs = append(errs, fmt.Errorf("%s: method and path are for protocol HTTP only", f))
		}
		if p.Path != "" && !strings.HasPrefix(p.Path, "/") {
			errs = append(errs, fmt.Errorf("%s.path: %q must start with /", f, p.Path))
		}
		if p.Port.Type == intstr.Int && (p.Port.IntVal < 1 || p.Port.IntVal > 65535) {
			errs = append(errs, fmt.Errorf("%s.port: %d not in 1-65535", f, p.Port.IntVal))
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	c.Probes = ef.Probes
	return c, nil
}
