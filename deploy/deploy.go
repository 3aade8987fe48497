// Package deploy owns the Kubernetes manifests that install the fastpath
// node agent on a (kind) cluster as its CNI and datapath: the agent's
// ServiceAccount, RBAC and DaemonSet (rendered from the embedded template
// agent.yaml.tmpl by Render), the CustomResourceDefinitions of the
// policy kinds the agent reads (embedded crds/*.yaml, returned by CRDs),
// and, for the iptables baseline, kube-proxy in iptables mode
// (kube-proxy.yaml.tmpl, RenderKubeProxy) with the pod that removes its
// rules from a node (RenderKubeProxyCleanup).
package deploy

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"
	"text/template"
)

// AgentName names the agent's DaemonSet, ServiceAccount, ClusterRole and
// ClusterRoleBinding, and is the value of its AgentLabel label.
const AgentName = "fastpath-agent"

// AgentLabel is the label key that selects the agent's pods; its value is
// AgentName.
const AgentLabel = "app.kubernetes.io/name"

// Defaults of the Options fields left empty.
const (
	DefaultPullPolicy = "Never"
	DefaultNamespace  = "kube-system"
	DefaultDatapath   = "ebpf"
	DefaultSocket     = "/var/run/fastpath/agent.sock"
	DefaultPort       = 9965
)

// Datapaths the DaemonSet can run. The agent image is FROM scratch;
// the baselines run from Options.IptablesImage (Debian, with iptables,
// ipset and HAProxy): iptables next to kube-proxy (RenderKubeProxy),
// sidecar with a proxy in each pod's network namespace, which the agent
// finds through the CNI (SidecarPodNetns).
var Datapaths = []string{"none", "ebpf", "iptables", "sidecar"}

// IPAMState is the agent's IPAM state file (its default --ipam-state,
// in the DefaultSocket directory the DaemonSet mounts): the CNI
// plugin's ADD records there each pod's network namespace.
const IPAMState = "/var/run/fastpath/ipam.json"

// NetnsDir is where the node's runtime (containerd) keeps pods' network
// namespaces (the CNI plugin's CNI_NETNS): mounted into the sidecar
// agent at the same path, so that the recorded paths open as they are.
const NetnsDir = "/var/run/netns"

// SidecarPodNetns is the sidecar agent's --pod-netns: each pod's
// network namespace as its CNI ADD recorded it in IPAMState.
const SidecarPodNetns = "cni:" + IPAMState

// baselineImage tells whether a datapath's agent runs from
// Options.IptablesImage.
func baselineImage(datapath string) bool {
	return datapath == "iptables" || datapath == "sidecar"
}

// pullPolicies are the container image pull policies Kubernetes accepts.
var pullPolicies = []string{"Always", "IfNotPresent", "Never"}

// Options parameterize the rendered agent manifests.
type Options struct {
	// Image is the agent image, e.g. "fastpath/agent:abc123". Required.
	Image string
	// IptablesImage is the agent image of the baselines, Datapath
	// iptables and sidecar: the same binaries with iptables, ipset and
	// HAProxy (harness/images.BuildIptables). Required with those
	// datapaths, unused by the others. The CNI installer runs from Image
	// whatever the datapath.
	IptablesImage string
	// PullPolicy is the image pull policy; "" means "Never" (images are
	// loaded into kind nodes, there is no registry). Else Always,
	// IfNotPresent or Never.
	PullPolicy string
	// Namespace holds the ServiceAccount and DaemonSet; "" means
	// "kube-system".
	Namespace string
	// Datapath is the agent's --datapath; "" means "ebpf". It must be one
	// of Datapaths.
	Datapath string
	// Socket is the agent's unix socket on the node (its --api-socket,
	// and install-cni's --agent-socket for the CNI plugin); "" means
	// "/var/run/fastpath/agent.sock". Must be an absolute path; its
	// directory is mounted from the host.
	Socket string
	// Port is the read-only HTTP port (status, metrics, healthz, readyz)
	// on the node IP; 0 means 9965.
	Port int
	// APIServer is the "ip:port" of the API server as reachable from the
	// nodes. Required: the agent is the service load balancer, so it
	// cannot use the kubernetes Service ClusterIP before it runs;
	// KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are set to it.
	APIServer string
	// GoMaxProcs sets GOMAXPROCS in the agent when positive; 0 leaves it
	// unset.
	GoMaxProcs int
	// ExtraArgs are appended to the agent's arguments.
	ExtraArgs []string
	// ClusterMesh is the agent's --clustermesh configuration (YAML, see
	// datapath/clustermesh.Config): put in the ConfigMap
	// ClusterMeshConfigMap, mounted into the agent, and named by
	// --clustermesh. Only with datapath ebpf (the overlay: ExtraArgs
	// carry --tunnel). Empty: no mesh.
	ClusterMesh []byte
	// ClusterMeshPublishNode names the node whose agent publishes the
	// cluster's state (--clustermesh-publish-node); empty: none does.
	ClusterMeshPublishNode string
}

// ClusterMeshConfigMap holds Options.ClusterMesh (key ClusterMeshKey),
// mounted at ClusterMeshDir in the agent's container.
const (
	ClusterMeshConfigMap = "fastpath-clustermesh"
	ClusterMeshKey       = "clustermesh.yaml"
	ClusterMeshDir       = "/etc/fastpath/clustermesh"
)

// withDefaults returns o with its empty fields set to their defaults.
func (o Options) withDefaults() Options {
	if o.PullPolicy == "" {
		o.PullPolicy = DefaultPullPolicy
	}
	if o.Namespace == "" {
		o.Namespace = DefaultNamespace
	}
	if o.Datapath == "" {
		o.Datapath = DefaultDatapath
	}
	if o.Socket == "" {
		o.Socket = DefaultSocket
	}
	if o.Port == 0 {
		o.Port = DefaultPort
	}
	return o
}

// Validate checks every field of o (after defaults) and returns all the
// problems at once (errors.Join), each naming its field; nil if o is
// valid.
func (o Options) Validate() error {
	_, err := o.resolve()
	return err
}

// resolve applies the defaults, validates, and returns the template data.
func (o Options) resolve() (tmplData, error) {
	o = o.withDefaults()
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("deploy: Options.%s: %s", field, fmt.Sprintf(format, args...)))
	}
	checkImage(bad, "Image", o.Image)
	agentImage := o.Image
	switch {
	case baselineImage(o.Datapath) && strings.TrimSpace(o.IptablesImage) == "":
		bad("IptablesImage", "required with datapath %s (the FROM scratch agent image has no iptables-restore, ipset or haproxy)", o.Datapath)
	case baselineImage(o.Datapath):
		checkImage(bad, "IptablesImage", o.IptablesImage)
		agentImage = o.IptablesImage
	}
	checkPullPolicy(bad, o.PullPolicy)
	checkNamespace(bad, o.Namespace)
	if !slices.Contains(Datapaths, o.Datapath) {
		bad("Datapath", "%q is not one of %s (the sidecar baseline runs a proxy per pod network namespace, which the DaemonSet does not)", o.Datapath, strings.Join(Datapaths, ", "))
	}
	if !path.IsAbs(o.Socket) || path.Dir(path.Clean(o.Socket)) == "/" || strings.HasSuffix(o.Socket, "/") {
		bad("Socket", "%q is not an absolute path of a file in a directory other than /", o.Socket)
	}
	if o.Port < 1 || o.Port > 65535 {
		bad("Port", "%d is outside 1-65535", o.Port)
	}
	host, port := checkAPIServer(bad, o.APIServer)
	if o.GoMaxProcs < 0 {
		bad("GoMaxProcs", "%d is negative", o.GoMaxProcs)
	}
	for i, a := range o.ExtraArgs {
		if a == "" {
			bad(fmt.Sprintf("ExtraArgs[%d]", i), "empty")
		}
	}
	if len(o.ClusterMesh) > 0 && o.Datapath != "ebpf" {
		bad("ClusterMesh", "only with datapath ebpf (the mesh needs the overlay), not %q", o.Datapath)
	}
	if o.ClusterMeshPublishNode != "" {
		if len(o.ClusterMesh) == 0 {
			bad("ClusterMeshPublishNode", "without ClusterMesh")
		}
		if strings.ContainsAny(o.ClusterMeshPublishNode, " \t\r\n") {
			bad("ClusterMeshPublishNode", "%q contains whitespace", o.ClusterMeshPublishNode)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return tmplData{}, err
	}
	var meshDigest string
	if len(o.ClusterMesh) > 0 {
		meshDigest = fmt.Sprintf("%x", sha256.Sum256(o.ClusterMesh))[:16]
	}
	return tmplData{
		ClusterMeshText:   string(o.ClusterMesh),
		ClusterMeshDigest: meshDigest,
		MeshConfigMap:     ClusterMeshConfigMap,
		MeshKey:           ClusterMeshKey,
		MeshDir:           ClusterMeshDir,
		Options:           o,
		APIHost:           host,
		APIPort:           port,
		SocketDir:         path.Dir(path.Clean(o.Socket)),
		Name:              AgentName,
		Label:             AgentLabel,
		AgentImage:        agentImage,
		Iptables:          o.Datapath == "iptables",
		Sidecar:           o.Datapath == "sidecar",
		Debian:            baselineImage(o.Datapath),
		PodNetns:          SidecarPodNetns,
		NetnsDir:          NetnsDir,
	}, nil
}

// badFunc records a problem of an options field.
type badFunc func(field, format string, args ...any)

func checkImage(bad badFunc, field, image string) {
	if strings.TrimSpace(image) == "" {
		bad(field, "required")
	} else if strings.ContainsAny(image, " \t\r\n") {
		bad(field, "%q contains whitespace", image)
	}
}

func checkPullPolicy(bad badFunc, p string) {
	if !slices.Contains(pullPolicies, p) {
		bad("PullPolicy", "%q is not one of %s", p, strings.Join(pullPolicies, ", "))
	}
}

func checkNamespace(bad badFunc, ns string) {
	if !isDNSLabel(ns) {
		bad("Namespace", "%q is not a DNS label (lower case alphanumerics and '-', at most 63)", ns)
	}
}

// checkAPIServer checks an "ip:port" and returns its parts.
func checkAPIServer(bad badFunc, api string) (host, port string) {
	if api == "" {
		bad("APIServer", "required (ip:port of the API server as reachable from the nodes)")
		return "", ""
	}
	h, p, err := net.SplitHostPort(api)
	switch {
	case err != nil:
		bad("APIServer", "%q is not ip:port: %v", api, err)
	case net.ParseIP(h) == nil:
		bad("APIServer", "%q: host %q is not an IP address", api, h)
	default:
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			bad("APIServer", "%q: port %q is not in 1-65535", api, p)
			return "", ""
		}
		return h, p
	}
	return "", ""
}

func isDNSLabel(s string) bool {
	if s == "" || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// tmplData is what agent.yaml.tmpl sees.
type tmplData struct {
	Options
	APIHost, APIPort string // APIServer split
	SocketDir        string // Socket's directory, mounted from the host
	Name, Label      string // AgentName, AgentLabel
	AgentImage       string // the agent container's: Image or IptablesImage
	Iptables         bool   // Datapath is iptables
	Sidecar          bool   // Datapath is sidecar
	Debian           bool   // the agent runs from IptablesImage (iptables commands)
	PodNetns         string // SidecarPodNetns
	NetnsDir         string // NetnsDir
	// ClusterMeshText is Options.ClusterMesh, ClusterMeshDigest a digest
	// of it (a pod template annotation: a changed configuration rolls the
	// agents); empty without a mesh.
	ClusterMeshText, ClusterMeshDigest string
	MeshConfigMap, MeshKey, MeshDir    string
}

//go:embed agent.yaml.tmpl
var agentTmplText string

//go:embed crds/*.yaml
var crdFS embed.FS

// agentTmpl renders the agent manifests. Every templated value goes
// through q, which JSON-quotes it: a JSON string is a valid YAML scalar,
// so no value can break the document's structure.
var agentTmpl = template.Must(template.New("agent.yaml.tmpl").
	Option("missingkey=error").
	Funcs(template.FuncMap{"q": quote}).
	Parse(agentTmplText))

// quote renders v as a JSON (hence YAML) scalar: strings double-quoted and
// escaped, numbers as they are.
func quote(v any) (string, error) {
	b, err := json.Marshal(v)
	return string(b), err
}

// Render validates o and returns the agent's manifests as multi-document
// YAML: ServiceAccount, ClusterRole, ClusterRoleBinding and DaemonSet.
func Render(o Options) ([]byte, error) {
	d, err := o.resolve()
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if err := agentTmpl.Execute(&buf, d); err != nil {
		return nil, fmt.Errorf("deploy: rendering %s: %w", agentTmpl.Name(), err)
	}
	return buf.Bytes(), nil
}

// CRDs returns the CustomResourceDefinitions of the policy kinds the
// agent reads (CiliumNetworkPolicy, AuthorizationPolicy, Prefilter,
// EgressGatewayPolicy) as multi-document YAML, in file name order. Apply
// them before the agent.
func CRDs() ([]byte, error) {
	names, err := fs.Glob(crdFS, "crds/*.yaml")
	if err != nil {
		return nil, fmt.Errorf("deploy: CRDs: %w", err)
	}
	if len(names) == 0 {
		return nil, errors.New("deploy: CRDs: none embedded")
	}
	sort.Strings(names)
	var buf bytes.Buffer
	for i, n := range names {
		b, err := crdFS.ReadFile(n)
		if err != nil {
			return nil, fmt.Errorf("deploy: CRDs: %w", err)
		}
		if i > 0 {
			buf.WriteString("---\n")
		}
		buf.Write(bytes.TrimPrefix(b, []byte("---\n")))
		if len(b) > 0 && b[len(b)-1] != '\n' {
			buf.WriteByte('\n')
		}
	}
	return buf.Bytes(), nil
}
