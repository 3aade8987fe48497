package model

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// Objects is the desired state: the Kubernetes objects a datapath enforces.
// Source records, for every object, the file (and document index) it came
// from, so that errors can name it.
type Objects struct {
	Namespaces      []corev1.Namespace
	Nodes           []corev1.Node
	Pods            []corev1.Pod
	NetworkPolicies []networkingv1.NetworkPolicy
	// CiliumNetworkPolicies (cilium.io/v2), the subset in cilium.go.
	CiliumNetworkPolicies []CiliumNetworkPolicy
	// AuthorizationPolicies (security.istio.io/v1), the L4 subset in
	// authz.go.
	AuthorizationPolicies []AuthorizationPolicy
	// Prefilters (fastpath.dev/v1alpha1) list source prefixes the XDP
	// prefilter drops.
	Prefilters []Prefilter
	// EgressGatewayPolicies (fastpath.dev/v1alpha1) send selected pods'
	// traffic to outside CIDRs through a gateway node (egressgw.go).
	EgressGatewayPolicies []EgressGatewayPolicy
	// Services and their EndpointSlices (discovery.k8s.io/v1), the
	// load-balancing subset in service_validate.go.
	Services       []corev1.Service
	EndpointSlices []discoveryv1.EndpointSlice

	// Cluster names the local cluster when it is part of a cluster mesh
	// (the zero value: no mesh), and Remote lists the other clusters'
	// pods, which policies may name as peers (see mesh.go and the package
	// documentation). Neither is read from state files: the agent fills
	// them in from its configuration and the mesh's control plane.
	Cluster ClusterInfo
	Remote  []RemoteCluster

	// Source maps "Kind namespace/name" to "file#doc".
	Source map[string]string
	// Hash is the digest of the files LoadDir read (see HashDir).
	Hash string

	// validated is set by a Loader, which validated every object: Resolve
	// need not again.
	validated bool
}

// ObjectKey names an object for error messages: "Kind namespace/name" or
// "Kind name" for cluster-scoped kinds.
func ObjectKey(kind, namespace, name string) string {
	if namespace == "" {
		return kind + " " + name
	}
	return kind + " " + namespace + "/" + name
}

// where returns "file: Kind ns/name" for an object, or just the key when the
// object was not read from a file.
func (o *Objects) where(kind, namespace, name string) string {
	key := ObjectKey(kind, namespace, name)
	if src, ok := o.Source[key]; ok {
		return src + ": " + key
	}
	return key
}

// yamlExtensions are the file endings LoadDir reads.
var yamlExtensions = map[string]bool{".yaml": true, ".yml": true, ".json": true}

// LoadDir reads every YAML or JSON file below dir (in lexical order, skipping
// names that start with "." so that editors' and writers' temporary files are
// ignored), decodes every document strictly, and validates the result. All
// problems are reported together; each names the file, the object and the
// field.
func LoadDir(dir string) (*Objects, error) {
	return new(Loader).Load(dir)
}

// stateFiles lists the YAML and JSON files below dir in lexical order,
// skipping names that start with "." (writers' temporary files).
func stateFiles(dir string) ([]string, error) {
	var files []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if strings.HasPrefix(d.Name(), ".") && path != dir {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.IsDir() && yamlExtensions[filepath.Ext(path)] {
			files = append(files, path)
		}
		return nil
	})
	sort.Strings(files)
	return files, err
}

// Decode adds the objects of one (possibly multi-document) YAML or JSON file
// to o. Unknown kinds and unknown fields are errors.
func (o *Objects) Decode(file string, data []byte) error {
	if o.Source == nil {
		o.Source = map[string]string{}
	}
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var errs []error
	for doc := 0; ; doc++ {
		raw, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("%s: document %d: malformed YAML: %w", file, doc, err)
		}
		if len(bytes.TrimSpace(raw)) == 0 || isOnlyComments(raw) {
			continue
		}
		if err := o.decodeDoc(file, doc, raw); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func isOnlyComments(raw []byte) bool {
	for _, line := range bytes.Split(raw, []byte("\n")) {
		l := bytes.TrimSpace(line)
		if len(l) > 0 && l[0] != '#' && !bytes.Equal(l, []byte("---")) {
			return false
		}
	}
	return true
}

type header struct {
	metav1.TypeMeta `json:",inline"`
	Metadata        struct {
		Name      string `json:"name"`
		Namespace string `json:"namespace"`
	} `json:"metadata"`
}

func (o *Objects) decodeDoc(file string, doc int, raw []byte) error {
	var h header
	if err := yaml.Unmarshal(raw, &h); err != nil {
		return fmt.Errorf("%s: document %d: malformed YAML: %w", file, doc, err)
	}
	gvk := h.APIVersion + "/" + h.Kind
	ns := h.Metadata.Namespace
	loc := fmt.Sprintf("%s: %s", file, ObjectKey(orUnknown(h.Kind), ns, orUnknown(h.Metadata.Name)))
	if h.Metadata.Name == "" {
		return fmt.Errorf("%s: metadata.name: required", loc)
	}
	strict := func(into any) error {
		j, err := yaml.YAMLToJSON(raw)
		if err != nil {
			return fmt.Errorf("%s: malformed YAML: %w", loc, err)
		}
		// sigs.k8s.io/json names the full path of an unknown or
		// duplicate field ("spec.podSelectr").
		strictErrs, err := kjson.UnmarshalStrict(j, into, kjson.DisallowDuplicateFields, kjson.DisallowUnknownFields)
		if err != nil {
			return fmt.Errorf("%s: %s", loc, cleanDecodeError(err))
		}
		if len(strictErrs) > 0 {
			var msgs []string
			for _, e := range strictErrs {
				msgs = append(msgs, cleanDecodeError(e))
			}
			return fmt.Errorf("%s: %s", loc, strings.Join(msgs, "; "))
		}
		return nil
	}
	var key string
	switch gvk {
	case "v1/Namespace":
		var obj corev1.Namespace
		if err := strict(&obj); err != nil {
			return err
		}
		obj.Namespace = ""
		key = ObjectKey("Namespace", "", obj.Name)
		o.Namespaces = append(o.Namespaces, obj)
	case "v1/Node":
		var obj corev1.Node
		if err := strict(&obj); err != nil {
			return err
		}
		key = ObjectKey("Node", "", obj.Name)
		o.Nodes = append(o.Nodes, obj)
	case "v1/Pod":
		var obj corev1.Pod
		if err := strict(&obj); err != nil {
			return err
		}
		if obj.Namespace == "" {
			obj.Namespace = metav1.NamespaceDefault
		}
		key = ObjectKey("Pod", obj.Namespace, obj.Name)
		o.Pods = append(o.Pods, obj)
	case "v1/Service":
		var obj corev1.Service
		if err := strict(&obj); err != nil {
			return err
		}
		if obj.Namespace == "" {
			obj.Namespace = metav1.NamespaceDefault
		}
		key = ObjectKey("Service", obj.Namespace, obj.Name)
		o.Services = append(o.Services, obj)
	case "discovery.k8s.io/v1/EndpointSlice":
		var obj discoveryv1.EndpointSlice
		if err := strict(&obj); err != nil {
			return err
		}
		if obj.Namespace == "" {
			obj.Namespace = metav1.NamespaceDefault
		}
		key = ObjectKey("EndpointSlice", obj.Namespace, obj.Name)
		o.EndpointSlices = append(o.EndpointSlices, obj)
	case "networking.k8s.io/v1/NetworkPolicy":
		var obj networkingv1.NetworkPolicy
		if err := strict(&obj); err != nil {
			return err
		}
		if obj.Namespace == "" {
			obj.Namespace = metav1.NamespaceDefault
		}
		key = ObjectKey("NetworkPolicy", obj.Namespace, obj.Name)
		o.NetworkPolicies = append(o.NetworkPolicies, obj)
	case "cilium.io/v2/CiliumNetworkPolicy":
		var obj CiliumNetworkPolicy
		if err := strict(&obj); err != nil {
			return err
		}
		if obj.Namespace == "" {
			obj.Namespace = metav1.NamespaceDefault
		}
		key = ObjectKey("CiliumNetworkPolicy", obj.Namespace, obj.Name)
		o.CiliumNetworkPolicies = append(o.CiliumNetworkPolicies, obj)
	case "security.istio.io/v1/AuthorizationPolicy", "security.istio.io/v1beta1/AuthorizationPolicy":
		var obj AuthorizationPolicy
		if err := strict(&obj); err != nil {
			return err
		}
		if obj.Namespace == "" {
			obj.Namespace = metav1.NamespaceDefault
		}
		key = ObjectKey("AuthorizationPolicy", obj.Namespace, obj.Name)
		o.AuthorizationPolicies = append(o.AuthorizationPolicies, obj)
	case "fastpath.dev/v1alpha1/Prefilter":
		var obj Prefilter
		if err := strict(&obj); err != nil {
			return err
		}
		obj.Namespace = ""
		key = ObjectKey("Prefilter", "", obj.Name)
		o.Prefilters = append(o.Prefilters, obj)
	case "fastpath.dev/v1alpha1/EgressGatewayPolicy":
		var obj EgressGatewayPolicy
		if err := strict(&obj); err != nil {
			return err
		}
		obj.Namespace = ""
		key = ObjectKey("EgressGatewayPolicy", "", obj.Name)
		o.EgressGatewayPolicies = append(o.EgressGatewayPolicies, obj)
	default:
		if h.Kind == "" {
			return fmt.Errorf("%s: kind: required", loc)
		}
		return fmt.Errorf("%s: apiVersion/kind: unknown kind %q of apiVersion %q (known: v1 Namespace, Node, Pod, Service; discovery.k8s.io/v1 EndpointSlice; networking.k8s.io/v1 NetworkPolicy; cilium.io/v2 CiliumNetworkPolicy; security.istio.io/v1 AuthorizationPolicy; fastpath.dev/v1alpha1 Prefilter, EgressGatewayPolicy)", loc, h.Kind, h.APIVersion)
	}
	if prev, dup := o.Source[key]; dup {
		return fmt.Errorf("%s: metadata.name: duplicate object, already defined in %s", loc, prev)
	}
	o.Source[key] = fmt.Sprintf("%s#%d", file, doc)
	return nil
}

func orUnknown(s string) string {
	if s == "" {
		return "<unnamed>"
	}
	return s
}

// cleanDecodeError strips the layers sigs.k8s.io/yaml adds so that the field
// name stands out: `json: unknown field "foo"`.
func cleanDecodeError(err error) string {
	s := err.Error()
	for _, p := range []string{"error unmarshaling JSON: ", "while decoding JSON: ", "json: "} {
		s = strings.ReplaceAll(s, p, "")
	}
	return s
}
