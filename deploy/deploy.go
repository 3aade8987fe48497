// Package deploy owns the Kubernetes manifests that install the fastpath
// node agent on a (kind) cluster as its CNI and datapath: the agent's
// ServiceAccount, RBAC and DaemonSet (rendered from the embedded template
// agent.yaml.tmpl by Render), and the CustomResourceDefinitions of the
// policy kinds the agent reads (embedded crds/*.yaml, returned by CRDs).
package deploy

import (
	"bytes"
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

// Datapaths the DaemonSet can run. The agent image is FROM scratch:
// the iptables datapath and the sidecar baseline need binaries it lacks.
var Datapaths = []string{"none", "ebpf"}

// pullPolicies are the container image pull policies Kubernetes accepts.
var pullPolicies = []string{"Always", "IfNotPresent", "Never"}

// Options parameterize the rendered agent manifests.
type Options struct {
	// Image is the agent image, e.g. "fastpath/agent:abc123". Required.
	Image string
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
}

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
	if strings.TrimSpace(o.Image) == "" {
		bad("Image", "required")
	} else if strings.ContainsAny(o.Image, " \t\r\n") {
		bad("Image", "%q contains whitespace", o.Image)
	}
	if !slices.Contains(pullPolicies, o.PullPolicy) {
		bad("PullPolicy", "%q is not one of %s", o.PullPolicy, strings.Join(pullPolicies, ", "))
	}
	if !isDNSLabel(o.Namespace) {
		bad("Namespace", "%q is not a DNS label (lower case alphanumerics and '-', at most 63)", o.Namespace)
	}
	if !slices.Contains(Datapaths, o.Datapath) {
		bad("Datapath", "%q is not one of %s (the agent image lacks what the others need)", o.Datapath, strings.Join(Datapaths, ", "))
	}
	if !path.IsAbs(o.Socket) || path.Dir(path.Clean(o.Socket)) == "/" || strings.HasSuffix(o.Socket, "/") {
		bad("Socket", "%q is not an absolute path of a file in a directory other than /", o.Socket)
	}
	if o.Port < 1 || o.Port > 65535 {
		bad("Port", "%d is outside 1-65535", o.Port)
	}
	var host, port string
	if o.APIServer == "" {
		bad("APIServer", "required (ip:port of the API server as reachable from the nodes)")
	} else {
		h, p, err := net.SplitHostPort(o.APIServer)
		switch {
		case err != nil:
			bad("APIServer", "%q is not ip:port: %v", o.APIServer, err)
		case net.ParseIP(h) == nil:
			bad("APIServer", "%q: host %q is not an IP address", o.APIServer, h)
		default:
			if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
				bad("APIServer", "%q: port %q is not in 1-65535", o.APIServer, p)
			}
			host, port = h, p
		}
	}
	if o.GoMaxProcs < 0 {
		bad("GoMaxProcs", "%d is negative", o.GoMaxProcs)
	}
	for i, a := range o.ExtraArgs {
		if a == "" {
			bad(fmt.Sprintf("ExtraArgs[%d]", i), "empty")
		}
	}
	if err := errors.Join(errs...); err != nil {
		return tmplData{}, err
	}
	return tmplData{
		Options:   o,
		APIHost:   host,
		APIPort:   port,
		SocketDir: path.Dir(path.Clean(o.Socket)),
		Name:      AgentName,
		Label:     AgentLabel,
	}, nil
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
// agent reads (CiliumNetworkPolicy, AuthorizationPolicy, Prefilter) as
// multi-document YAML, in file name order. Apply them before the agent.
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
