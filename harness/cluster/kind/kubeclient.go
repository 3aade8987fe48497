package kind

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/yaml"
)

// fieldManager owns what the harness applies (server-side apply).
const fieldManager = "fastpath"

// Client applies and deletes objects of any kind the API server serves.
type Client struct {
	Config  *rest.Config
	Kube    kubernetes.Interface
	Dynamic dynamic.Interface
	mapper  meta.ResettableRESTMapper
}

// NewClient connects with a kubeconfig file.
func NewClient(kubeconfig string) (*Client, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", kubeconfig, err)
	}
	cfg.QPS, cfg.Burst = 100, 200
	kc, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(kc.Discovery()))
	return &Client{Config: cfg, Kube: kc, Dynamic: dyn, mapper: mapper}, nil
}

// Decode splits multi-document YAML into objects.
func Decode(data []byte) ([]*unstructured.Unstructured, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var out []*unstructured.Unstructured
	for i := 0; ; i++ {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		js, err := yaml.YAMLToJSON(doc)
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		if string(bytes.TrimSpace(js)) == "null" {
			continue
		}
		u := &unstructured.Unstructured{}
		if err := json.Unmarshal(js, &u.Object); err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		out = append(out, u)
	}
}

// resource maps an object to its resource; namespaced says whether it
// lives in a namespace.
func (c *Client) resource(u *unstructured.Unstructured) (schema.GroupVersionResource, bool, error) {
	gvk := u.GroupVersionKind()
	m, err := c.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		// A CRD installed since the mapper last looked.
		c.mapper.Reset()
		m, err = c.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	}
	if err != nil {
		return schema.GroupVersionResource{}, false, fmt.Errorf("%s %s: %w", gvk.Kind, u.GetName(), err)
	}
	return m.Resource, m.Scope.Name() == meta.RESTScopeNameNamespace, nil
}

// cleanForApply drops what an applied object must not carry.
func cleanForApply(u *unstructured.Unstructured) {
	unstructured.RemoveNestedField(u.Object, "status")
	unstructured.RemoveNestedField(u.Object, "metadata", "creationTimestamp")
	unstructured.RemoveNestedField(u.Object, "metadata", "resourceVersion")
	unstructured.RemoveNestedField(u.Object, "metadata", "managedFields")
}

// Apply applies u (server-side, forcing ownership) and returns its
// resource name ("networkpolicies") and the resourceVersion it got.
func (c *Client) Apply(ctx context.Context, u *unstructured.Unstructured) (string, int64, error) {
	gvr, namespaced, err := c.resource(u)
	if err != nil {
		return "", 0, err
	}
	cleanForApply(u)
	var ri dynamic.ResourceInterface = c.Dynamic.Resource(gvr)
	if namespaced {
		if u.GetNamespace() == "" {
			u.SetNamespace("default")
		}
		ri = c.Dynamic.Resource(gvr).Namespace(u.GetNamespace())
	}
	out, err := ri.Apply(ctx, u.GetName(), u, metav1.ApplyOptions{FieldManager: fieldManager, Force: true})
	if err != nil {
		return gvr.Resource, 0, fmt.Errorf("apply %s %s: %w", u.GetKind(), objectName(u), err)
	}
	rv, _ := strconv.ParseInt(out.GetResourceVersion(), 10, 64)
	return gvr.Resource, rv, nil
}

// Delete deletes u; a missing object is not an error. It returns the
// resource name and the deleted object's resourceVersion when the API
// server sends the object back (0 otherwise).
func (c *Client) Delete(ctx context.Context, u *unstructured.Unstructured) (string, int64, error) {
	gvr, namespaced, err := c.resource(u)
	if err != nil {
		return "", 0, err
	}
	path := "/api/" + gvr.Version
	if gvr.Group != "" {
		path = "/apis/" + gvr.Group + "/" + gvr.Version
	}
	if namespaced {
		ns := u.GetNamespace()
		if ns == "" {
			ns = "default"
		}
		path += "/namespaces/" + ns
	}
	path += "/" + gvr.Resource + "/" + u.GetName()
	raw, err := c.Kube.Discovery().RESTClient().Delete().AbsPath(path).Do(ctx).Raw()
	if err != nil {
		if apierrors.IsNotFound(err) {
			return gvr.Resource, 0, nil
		}
		return gvr.Resource, 0, fmt.Errorf("delete %s %s: %w", u.GetKind(), objectName(u), err)
	}
	var obj struct {
		Kind     string `json:"kind"`
		Metadata struct {
			ResourceVersion string `json:"resourceVersion"`
		} `json:"metadata"`
	}
	_ = json.Unmarshal(raw, &obj)
	rv := int64(0)
	if obj.Kind != "Status" {
		rv, _ = strconv.ParseInt(obj.Metadata.ResourceVersion, 10, 64)
	}
	return gvr.Resource, rv, nil
}

func objectName(u *unstructured.Unstructured) string {
	if u.GetNamespace() == "" {
		return u.GetName()
	}
	return u.GetNamespace() + "/" + u.GetName()
}
