package deploy

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"text/template"
)

// KubeProxyName names kube-proxy's ServiceAccount, ConfigMap and
// DaemonSet, and is the value of their KubeProxyLabel label (kubeadm's
// names).
const KubeProxyName = "kube-proxy"

// KubeProxyLabel is the label key that selects kube-proxy's pods (and,
// with value KubeProxyCleanupName, the cleanup pods).
const KubeProxyLabel = "k8s-app"

// KubeProxyBinding names the ClusterRoleBinding of kube-proxy's
// ServiceAccount to system:node-proxier.
const KubeProxyBinding = "fastpath:kube-proxy"

// KubeProxyCleanupName is the KubeProxyLabel value of the cleanup pods,
// and their names' prefix.
const KubeProxyCleanupName = "kube-proxy-cleanup"

// DefaultKubeProxyHealthzPort is kube-proxy's own default.
const DefaultKubeProxyHealthzPort = 10256

// KubeProxyModes are the modes RenderKubeProxy renders: iptables, the
// baseline's (the node images have no ipvsadm, and the iptables
// NetworkPolicy baseline goes with iptables Services).
var KubeProxyModes = []string{"iptables"}

// KubeProxyOptions parameterize the kube-proxy manifests.
type KubeProxyOptions struct {
	// Image is kube-proxy's image, e.g. "registry.k8s.io/kube-proxy:v1.35.0"
	// (the kind node image has it for its Kubernetes version). Required.
	Image string
	// PullPolicy: as Options.PullPolicy ("" means "Never").
	PullPolicy string
	// Namespace: as Options.Namespace ("" means "kube-system").
	Namespace string
	// Mode is kube-proxy's mode; "" means "iptables", the only one of
	// KubeProxyModes.
	Mode string
	// ClusterCIDR is the pods' CIDR (IPv4): kube-proxy masquerades
	// traffic to Services from outside it. Required.
	ClusterCIDR string
	// APIServer is the "ip:port" of the API server as reachable from the
	// nodes (the kubernetes Service needs kube-proxy first). Required.
	APIServer string
	// HealthzPort is kube-proxy's health port on the node; 0 means 10256.
	HealthzPort int
}

// kubeProxyData is what the kube-proxy templates see.
type kubeProxyData struct {
	KubeProxyOptions
	APIHost, APIPort string
	Name, Label      string
	Binding          string
	CleanupName      string
	// Node and PodName: the cleanup pod's.
	Node, PodName string
}

func (o KubeProxyOptions) resolve() (kubeProxyData, error) {
	if o.PullPolicy == "" {
		o.PullPolicy = DefaultPullPolicy
	}
	if o.Namespace == "" {
		o.Namespace = DefaultNamespace
	}
	if o.Mode == "" {
		o.Mode = KubeProxyModes[0]
	}
	if o.HealthzPort == 0 {
		o.HealthzPort = DefaultKubeProxyHealthzPort
	}
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("deploy: KubeProxyOptions.%s: %s", field, fmt.Sprintf(format, args...)))
	}
	checkImage(bad, "Image", o.Image)
	checkPullPolicy(bad, o.PullPolicy)
	checkNamespace(bad, o.Namespace)
	if !slices.Contains(KubeProxyModes, o.Mode) {
		bad("Mode", "%q is not one of %s", o.Mode, strings.Join(KubeProxyModes, ", "))
	}
	if o.ClusterCIDR == "" {
		bad("ClusterCIDR", "required (the pods' CIDR)")
	} else if p, err := netip.ParsePrefix(o.ClusterCIDR); err != nil || !p.Addr().Is4() || p.Masked() != p {
		bad("ClusterCIDR", "%q is not an IPv4 CIDR (network address/bits)", o.ClusterCIDR)
	}
	host, port := checkAPIServer(bad, o.APIServer)
	if o.HealthzPort < 1 || o.HealthzPort > 65535 {
		bad("HealthzPort", "%d is outside 1-65535", o.HealthzPort)
	}
	if err := errors.Join(errs...); err != nil {
		return kubeProxyData{}, err
	}
	return kubeProxyData{KubeProxyOptions: o, APIHost: host, APIPort: port, Name: KubeProxyName, Label: KubeProxyLabel,
		Binding: KubeProxyBinding, CleanupName: KubeProxyCleanupName}, nil
}

//go:embed kube-proxy.yaml.tmpl
var kubeProxyTmplText string

//go:embed kube-proxy-cleanup.yaml.tmpl
var kubeProxyCleanupTmplText string

var (
	kubeProxyTmpl        = template.Must(template.New("kube-proxy.yaml.tmpl").Option("missingkey=error").Funcs(template.FuncMap{"q": quote}).Parse(kubeProxyTmplText))
	kubeProxyCleanupTmpl = template.Must(template.New("kube-proxy-cleanup.yaml.tmpl").Option("missingkey=error").Funcs(template.FuncMap{"q": quote}).Parse(kubeProxyCleanupTmplText))
)

// RenderKubeProxy validates o and returns kube-proxy's manifests as
// multi-document YAML: ServiceAccount, ClusterRoleBinding (to
// system:node-proxier), ConfigMap (its KubeProxyConfiguration) and
// DaemonSet.
func RenderKubeProxy(o KubeProxyOptions) ([]byte, error) {
	d, err := o.resolve()
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if err := kubeProxyTmpl.Execute(&buf, d); err != nil {
		return nil, fmt.Errorf("deploy: rendering %s: %w", kubeProxyTmpl.Name(), err)
	}
	return buf.Bytes(), nil
}

// KubeProxyCleanupPod is the name of the cleanup pod of node.
func KubeProxyCleanupPod(node string) string { return KubeProxyCleanupName + "-" + node }

// RenderKubeProxyCleanup returns the pod that runs `kube-proxy --cleanup`
// on node (with o's image, pull policy and namespace) and exits: run it
// once kube-proxy's pods are gone, so that no KUBE-* rule or chain is
// left on the node.
func RenderKubeProxyCleanup(o KubeProxyOptions, node string) ([]byte, error) {
	d, err := o.resolve()
	var errs []error
	if err != nil {
		errs = append(errs, err)
	}
	if !isDNSSubdomain(KubeProxyCleanupPod(node)) {
		errs = append(errs, fmt.Errorf("deploy: RenderKubeProxyCleanup: node %q: not a node name (lower case alphanumerics, '-' and '.')", node))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	d.Node, d.PodName = node, KubeProxyCleanupPod(node)
	var buf bytes.Buffer
	if err := kubeProxyCleanupTmpl.Execute(&buf, d); err != nil {
		return nil, fmt.Errorf("deploy: rendering %s: %w", kubeProxyCleanupTmpl.Name(), err)
	}
	return buf.Bytes(), nil
}

// isDNSSubdomain: lower case alphanumerics, '-' and '.', starting and
// ending alphanumeric, at most 253.
func isDNSSubdomain(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if len(label) > 63 || !isDNSLabel(label) {
			return false
		}
	}
	return true
}
