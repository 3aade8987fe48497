// Package kind builds clusters with kind (sigs.k8s.io/kind's Go API) from
// a node image built offline (harness/kindnode) or the official one: the
// cluster configuration the scenario asks for, creation and deletion (at
// the end, on Ctrl-C, and by `fastpath clean`), and preflight checks that
// name the fix. (Work in progress, issue #9: the agent as the cluster's
// CNI and the benchmark on kind follow.)
package kind

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"strings"

	"sigs.k8s.io/kind/pkg/apis/config/v1alpha4"
)

// NamePrefix starts every cluster name the harness creates: `fastpath
// clean` deletes clusters with it.
const NamePrefix = "fp-"

// noProxy is kind's kube-proxy mode "none" (its internal config names it;
// the public v1alpha4 package has no constant for it).
const noProxy v1alpha4.ProxyMode = "none"

// KubeProxyMode is kind's kube-proxy setting for a datapath: the eBPF
// datapath is the service load balancer itself (none); the iptables
// baseline is kube-proxy in iptables mode.
func KubeProxyMode(datapath string) (v1alpha4.ProxyMode, error) {
	base, _, _ := strings.Cut(datapath, "+")
	switch base {
	case "ebpf", "none", "sidecar":
		return noProxy, nil
	case "iptables":
		return v1alpha4.IPTablesProxyMode, nil
	}
	return "", fmt.Errorf("datapath %q has no kind setup (known: ebpf, none, iptables, sidecar)", datapath)
}

// Config is what a cluster is made of.
type Config struct {
	// Name is the cluster's name (NamePrefix and a run id).
	Name string
	// Workers is the number of worker nodes (the control plane runs no
	// workloads).
	Workers int
	// PodSubnet and ServiceSubnet are the cluster's CIDRs; clusters on one
	// Docker network need distinct ones.
	PodSubnet, ServiceSubnet string
	// Datapath decides the kube-proxy mode.
	Datapath string
	// CgroupV1 is set on hosts with cgroup v1 (kubelet 1.35 refuses it
	// unless told failCgroupV1: false).
	CgroupV1 bool
	// Image is the node image.
	Image string
}

var nameRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,30}[a-z0-9])?$`)

// Validate checks every field at once and names each one at fault.
func (c Config) Validate() error {
	var errs []error
	if !nameRE.MatchString(c.Name) || !strings.HasPrefix(c.Name, NamePrefix) {
		errs = append(errs, fmt.Errorf("name %q: want %s followed by lower-case letters, digits and dashes, at most 32 characters", c.Name, NamePrefix))
	}
	if c.Workers < 1 || c.Workers > 16 {
		errs = append(errs, fmt.Errorf("workers: %d, want 1 to 16", c.Workers))
	}
	pods, perr := netip.ParsePrefix(c.PodSubnet)
	if perr != nil || !pods.Addr().Is4() || pods.Bits() > 20 {
		errs = append(errs, fmt.Errorf("podSubnet %q: want an IPv4 CIDR of /20 or larger (a /24 per node)", c.PodSubnet))
	}
	svcs, serr := netip.ParsePrefix(c.ServiceSubnet)
	if serr != nil || !svcs.Addr().Is4() || svcs.Bits() > 24 {
		errs = append(errs, fmt.Errorf("serviceSubnet %q: want an IPv4 CIDR of /24 or larger", c.ServiceSubnet))
	}
	if perr == nil && serr == nil && pods.Overlaps(svcs) {
		errs = append(errs, fmt.Errorf("podSubnet %s and serviceSubnet %s overlap", pods, svcs))
	}
	if _, err := KubeProxyMode(c.Datapath); err != nil {
		errs = append(errs, err)
	}
	if c.Image == "" {
		errs = append(errs, errors.New("image: a node image is required (make kind-node-image)"))
	}
	return errors.Join(errs...)
}

// cgroupV1Patch lets kubelet 1.35 run on a cgroup v1 host.
const cgroupV1Patch = `kind: KubeletConfiguration
apiVersion: kubelet.config.k8s.io/v1beta1
failCgroupV1: false
`

// KindConfig renders c as kind's v1alpha4 cluster configuration: no
// default CNI (the agent is the CNI), kube-proxy as the datapath needs.
func (c Config) KindConfig() (*v1alpha4.Cluster, error) {
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("kind cluster %s: %w", c.Name, err)
	}
	mode, _ := KubeProxyMode(c.Datapath)
	cfg := &v1alpha4.Cluster{
		TypeMeta: v1alpha4.TypeMeta{Kind: "Cluster", APIVersion: "kind.x-k8s.io/v1alpha4"},
		Name:     c.Name,
		Networking: v1alpha4.Networking{
			PodSubnet:         c.PodSubnet,
			ServiceSubnet:     c.ServiceSubnet,
			DisableDefaultCNI: true,
			KubeProxyMode:     mode,
		},
	}
	cfg.Nodes = append(cfg.Nodes, v1alpha4.Node{Role: v1alpha4.ControlPlaneRole, Image: c.Image})
	for i := 0; i < c.Workers; i++ {
		cfg.Nodes = append(cfg.Nodes, v1alpha4.Node{Role: v1alpha4.WorkerRole, Image: c.Image,
			Labels: map[string]string{"fastpath.dev/node": fmt.Sprintf("node%d", i+1)}})
	}
	if c.CgroupV1 {
		cfg.KubeadmConfigPatches = append(cfg.KubeadmConfigPatches, cgroupV1Patch)
	}
	v1alpha4.SetDefaultsCluster(cfg)
	return cfg, nil
}
