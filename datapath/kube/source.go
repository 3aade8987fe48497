package kube

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/fastpath-bench/fastpath/datapath/model"
)

// Resource names: the keys of the revisions Snapshot returns.
const (
	ResourceNamespaces            = "namespaces"
	ResourceNodes                 = "nodes"
	ResourcePods                  = "pods"
	ResourceServices              = "services"
	ResourceEndpointSlices        = "endpointslices"
	ResourceNetworkPolicies       = "networkpolicies"
	ResourceCiliumNetworkPolicies = "ciliumnetworkpolicies"
	ResourceAuthorizationPolicies = "authorizationpolicies"
	ResourcePrefilters            = "prefilters"
	ResourceEgressGatewayPolicies = "egressgatewaypolicies"
)

// crdKind is a custom kind the Source watches when the API server serves
// it.
type crdKind struct {
	gvr  schema.GroupVersionResource
	kind string
}

func (c crdKind) apiVersion() string { return c.gvr.GroupVersion().String() }

// crdKinds are the custom kinds of the model.
var crdKinds = []crdKind{
	{schema.GroupVersionResource{Group: "cilium.io", Version: "v2", Resource: ResourceCiliumNetworkPolicies}, "CiliumNetworkPolicy"},
	{schema.GroupVersionResource{Group: "security.istio.io", Version: "v1", Resource: ResourceAuthorizationPolicies}, "AuthorizationPolicy"},
	{schema.GroupVersionResource{Group: "fastpath.dev", Version: "v1alpha1", Resource: ResourcePrefilters}, "Prefilter"},
	{schema.GroupVersionResource{Group: "fastpath.dev", Version: "v1alpha1", Resource: ResourceEgressGatewayPolicies}, "EgressGatewayPolicy"},
}

// Options configure a Source.
type Options struct {
	// Client is the API server's client (required).
	Client kubernetes.Interface
	// Dynamic reads the custom kinds; nil watches none of them.
	Dynamic dynamic.Interface
	// Resync is the informers' periodic resync; 0 is none.
	Resync time.Duration
	// Logger logs the kinds skipped; nil is slog.Default().
	Logger *slog.Logger
}

// Source watches the API server and serves the desired state. Create it
// with New, then Start it once.
type Source struct {
	client  kubernetes.Interface
	dynamic dynamic.Interface
	resync  time.Duration
	log     *slog.Logger

	factory informers.SharedInformerFactory
	typed   map[string]cache.SharedIndexInformer
	pods    corelisters.PodLister
	nodes   corelisters.NodeLister
	changed chan struct{}

	mu      sync.Mutex
	started bool
	synced  bool
	// crds are the informers of the custom kinds served, by kind.
	crds map[string]cache.SharedIndexInformer
	// revs is the highest resourceVersion each resource's handlers saw.
	revs map[string]int64
	// tombstones counts deletes only found on a relist: they carry the
	// last known (old) resourceVersion, so revs alone would not change.
	tombstones int64
}

// New returns a Source for o; it does not contact the API server.
func New(o Options) (*Source, error) {
	if o.Client == nil {
		return nil, errors.New("kube.Options.Client: required")
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	factory := informers.NewSharedInformerFactoryWithOptions(o.Client, o.Resync, informers.WithTransform(stripManagedFields))
	s := &Source{
		client:  o.Client,
		dynamic: o.Dynamic,
		resync:  o.Resync,
		log:     o.Logger,
		factory: factory,
		pods:    factory.Core().V1().Pods().Lister(),
		nodes:   factory.Core().V1().Nodes().Lister(),
		changed: make(chan struct{}, 1),
		crds:    map[string]cache.SharedIndexInformer{},
		revs:    map[string]int64{},
	}
	s.typed = map[string]cache.SharedIndexInformer{
		ResourceNamespaces:      factory.Core().V1().Namespaces().Informer(),
		ResourceNodes:           factory.Core().V1().Nodes().Informer(),
		ResourcePods:            factory.Core().V1().Pods().Informer(),
		ResourceServices:        factory.Core().V1().Services().Informer(),
		ResourceEndpointSlices:  factory.Discovery().V1().EndpointSlices().Informer(),
		ResourceNetworkPolicies: factory.Networking().V1().NetworkPolicies().Informer(),
	}
	return s, nil
}

// stripManagedFields drops what the cache need not hold.
func stripManagedFields(obj any) (any, error) {
	if a, err := meta.Accessor(obj); err == nil {
		a.SetManagedFields(nil)
	}
	return obj, nil
}

// Start discovers which custom kinds the API server serves, starts the
// informers (they run until ctx ends) and waits for their initial sync.
// It returns an error when ctx ends first. A Source starts once.
func (s *Source) Start(ctx context.Context) error {
	s.mu.Lock()
	if s.started {
		s.mu.Unlock()
		return errors.New("kubernetes source: already started")
	}
	s.started = true
	s.mu.Unlock()

	type watched struct {
		name string
		inf  cache.SharedIndexInformer
	}
	var all []watched
	for name, inf := range s.typed {
		all = append(all, watched{name, inf})
	}
	var dynFactory dynamicinformer.DynamicSharedInformerFactory
	if s.dynamic != nil {
		dynFactory = dynamicinformer.NewDynamicSharedInformerFactory(s.dynamic, s.resync)
		for _, c := range crdKinds {
			if !s.served(c) {
				continue
			}
			inf := dynFactory.ForResource(c.gvr).Informer()
			if err := inf.SetTransform(stripManagedFields); err != nil {
				return fmt.Errorf("kubernetes source: %s: %w", c.gvr.Resource, err)
			}
			s.mu.Lock()
			s.crds[c.kind] = inf
			s.mu.Unlock()
			all = append(all, watched{c.gvr.Resource, inf})
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i].name < all[j].name })

	regs := make([]cache.ResourceEventHandlerRegistration, len(all))
	for i, w := range all {
		reg, err := w.inf.AddEventHandler(s.handler(w.name))
		if err != nil {
			return fmt.Errorf("kubernetes source: %s: %w", w.name, err)
		}
		regs[i] = reg
	}
	s.factory.Start(ctx.Done())
	if dynFactory != nil {
		dynFactory.Start(ctx.Done())
	}
	synced := make([]cache.InformerSynced, len(regs))
	for i, r := range regs {
		synced[i] = r.HasSynced
	}
	if !cache.WaitForCacheSync(ctx.Done(), synced...) {
		var missing []string
		for i, r := range regs {
			if !r.HasSynced() {
				missing = append(missing, all[i].name)
			}
		}
		return fmt.Errorf("kubernetes source: initial list of %s not complete: %w", strings.Join(missing, ", "), context.Cause(ctx))
	}
	s.mu.Lock()
	// A resource's revision is at least that of its initial list: an
	// agent started after an object was deleted has seen no event of it,
	// yet its state is newer than the deletion. (The list's revision is
	// the API server's at the time of the list, so every write a client
	// got an answer for before is in it.)
	for _, w := range all {
		if n, err := strconv.ParseInt(w.inf.LastSyncResourceVersion(), 10, 64); err == nil && n > s.revs[w.name] {
			s.revs[w.name] = n
		}
	}
	s.synced = true
	s.mu.Unlock()
	return nil
}

// served reports whether the API server serves c's resource; a kind that
// is not served is logged once and skipped.
func (s *Source) served(c crdKind) bool {
	list, err := s.client.Discovery().ServerResourcesForGroupVersion(c.apiVersion())
	if err != nil {
		if apierrors.IsNotFound(err) {
			s.log.Info("kubernetes source: kind not served, not watched", "kind", c.kind, "apiVersion", c.apiVersion())
		} else {
			s.log.Warn("kubernetes source: kind not watched, discovery failed", "kind", c.kind, "apiVersion", c.apiVersion(), "error", err)
		}
		return false
	}
	for _, r := range list.APIResources {
		if r.Name == c.gvr.Resource {
			return true
		}
	}
	s.log.Info("kubernetes source: kind not served, not watched", "kind", c.kind, "apiVersion", c.apiVersion(), "resource", c.gvr.Resource)
	return false
}

// handler records the revisions of resource's events and signals them.
func (s *Source) handler(resource string) cache.ResourceEventHandler {
	return cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) { s.observe(resource, obj, false) },
		UpdateFunc: func(oldObj, newObj any) {
			if rv := resourceVersion(newObj); rv != "" && rv == resourceVersion(oldObj) {
				return // a resync
			}
			s.observe(resource, newObj, false)
		},
		DeleteFunc: func(obj any) {
			if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				s.observe(resource, t.Obj, true)
				return
			}
			s.observe(resource, obj, false)
		},
	}
}

func resourceVersion(obj any) string {
	a, err := meta.Accessor(obj)
	if err != nil {
		return ""
	}
	return a.GetResourceVersion()
}

func (s *Source) observe(resource string, obj any, tombstone bool) {
	rv := resourceVersion(obj)
	s.mu.Lock()
	if n, err := strconv.ParseInt(rv, 10, 64); err == nil {
		if cur, ok := s.revs[resource]; !ok || n > cur {
			s.revs[resource] = n
		}
	} else if rv != "" {
		s.log.Debug("kubernetes source: resourceVersion not a number", "resource", resource, "resourceVersion", rv)
	}
	if tombstone {
		s.tombstones++
	}
	s.mu.Unlock()
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

// Changed is signalled (coalescing: it holds at most one signal) after
// every add, update and delete the informers see. Take a Snapshot after
// receiving from it.
func (s *Source) Changed() <-chan struct{} { return s.changed }

// Snapshot returns the desired state the caches hold (see Translate; the
// objects are copies the caller owns) and, per resource, the highest
// resourceVersion its handlers saw, deletes included (a resource without
// events has no entry). objs.Hash digests those revisions, so snapshots
// with no event between them have the same Hash. The objects are not
// validated: model.Resolve does that. An error (the Source is not synced,
// or a custom object outside the model's subset, named with its field)
// comes without objects.
func (s *Source) Snapshot() (*model.Objects, map[string]int64, error) {
	s.mu.Lock()
	if !s.synced {
		s.mu.Unlock()
		return nil, nil, errors.New("kubernetes source: not started or not synced")
	}
	// Revisions first: a handler runs after its cache changed, so the
	// objects listed below are at least as new as these revisions.
	revs := maps.Clone(s.revs)
	tombstones := s.tombstones
	crds := maps.Clone(s.crds)
	s.mu.Unlock()

	var in Input
	for _, o := range s.typed[ResourceNamespaces].GetStore().List() {
		if v, ok := o.(*corev1.Namespace); ok {
			in.Namespaces = append(in.Namespaces, *v.DeepCopy())
		}
	}
	for _, o := range s.typed[ResourceNodes].GetStore().List() {
		if v, ok := o.(*corev1.Node); ok {
			in.Nodes = append(in.Nodes, *v.DeepCopy())
		}
	}
	for _, o := range s.typed[ResourcePods].GetStore().List() {
		if v, ok := o.(*corev1.Pod); ok {
			in.Pods = append(in.Pods, *v.DeepCopy())
		}
	}
	for _, o := range s.typed[ResourceServices].GetStore().List() {
		if v, ok := o.(*corev1.Service); ok {
			in.Services = append(in.Services, *v.DeepCopy())
		}
	}
	for _, o := range s.typed[ResourceEndpointSlices].GetStore().List() {
		if v, ok := o.(*discoveryv1.EndpointSlice); ok {
			in.EndpointSlices = append(in.EndpointSlices, *v.DeepCopy())
		}
	}
	for _, o := range s.typed[ResourceNetworkPolicies].GetStore().List() {
		if v, ok := o.(*networkingv1.NetworkPolicy); ok {
			in.NetworkPolicies = append(in.NetworkPolicies, *v.DeepCopy())
		}
	}
	var custom model.Objects
	var errs []error
	for _, c := range crdKinds {
		inf, ok := crds[c.kind]
		if !ok {
			continue
		}
		items := inf.GetStore().List()
		sort.Slice(items, func(i, j int) bool { return storeKey(items[i]) < storeKey(items[j]) })
		for _, o := range items {
			u, ok := o.(*unstructured.Unstructured)
			if !ok {
				continue
			}
			if err := decodeCustom(&custom, c, u); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if len(errs) > 0 {
		return nil, nil, errors.Join(errs...)
	}
	in.CiliumNetworkPolicies = custom.CiliumNetworkPolicies
	in.AuthorizationPolicies = custom.AuthorizationPolicies
	in.Prefilters = custom.Prefilters
	in.EgressGatewayPolicies = custom.EgressGatewayPolicies

	objs := Translate(in)
	objs.Hash = revisionsHash(revs, tombstones)
	return objs, revs, nil
}

func storeKey(obj any) string {
	k, _ := cache.MetaNamespaceKeyFunc(obj)
	return k
}

// decodeCustom decodes a custom object strictly (as the model decodes
// files) into objs. Its status, which is no desired state, is ignored.
func decodeCustom(objs *model.Objects, c crdKind, u *unstructured.Unstructured) error {
	content := maps.Clone(u.Object)
	delete(content, "status")
	if u.GetAPIVersion() == "" || u.GetKind() == "" {
		content["apiVersion"] = c.apiVersion()
		content["kind"] = c.kind
	}
	data, err := json.Marshal(content)
	if err != nil {
		return fmt.Errorf("%s: %s: %w", SourceName, model.ObjectKey(c.kind, u.GetNamespace(), u.GetName()), err)
	}
	// Errors read "kubernetes: Kind ns/name: field: problem".
	return objs.Decode(SourceName, data)
}

// revisionsHash digests the revisions: "resource=rev" lines in order.
func revisionsHash(revs map[string]int64, tombstones int64) string {
	keys := make([]string, 0, len(revs))
	for k := range revs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s=%d\n", k, revs[k])
	}
	if tombstones > 0 {
		fmt.Fprintf(&b, "tombstones=%d\n", tombstones)
	}
	sum := sha256.Sum256([]byte(b.String()))
	return hex.EncodeToString(sum[:])[:16]
}

// Pod returns the pod namespace/name from the cache or, when the cache
// does not have it (yet), from the API server. The pod is a copy.
func (s *Source) Pod(ctx context.Context, namespace, name string) (*corev1.Pod, error) {
	pod, err := s.pods.Pods(namespace).Get(name)
	if err == nil {
		return pod.DeepCopy(), nil
	}
	if !apierrors.IsNotFound(err) {
		return nil, err
	}
	return s.client.CoreV1().Pods(namespace).Get(ctx, name, metav1.GetOptions{})
}

// Node returns the node name from the cache (a copy), and whether it is
// there.
func (s *Source) Node(name string) (*corev1.Node, bool) {
	n, err := s.nodes.Get(name)
	if err != nil {
		return nil, false
	}
	return n.DeepCopy(), true
}
