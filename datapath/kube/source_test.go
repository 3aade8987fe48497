package kube

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"

	"github.com/fastpath-bench/fastpath/datapath/model"
)

// syncBuffer is a log sink the informers' goroutines may write to.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// watchCounter counts the watches a fake client started: the fake
// tracker does not replay what was created between an informer's list and
// its watch, so tests change objects only once every watch runs.
type watchCounter struct {
	mu        sync.Mutex
	resources map[string]bool
}

func (w *watchCounter) reactor(action k8stesting.Action) (bool, watch.Interface, error) {
	w.mu.Lock()
	w.resources[action.GetResource().Resource] = true
	w.mu.Unlock()
	return false, nil, nil // let the default reactor answer
}

func (w *watchCounter) waitFor(t *testing.T, ctx context.Context, resources ...string) {
	t.Helper()
	for {
		w.mu.Lock()
		missing := ""
		for _, r := range resources {
			if !w.resources[r] {
				missing = r
			}
		}
		w.mu.Unlock()
		if missing == "" {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("no watch on %s", missing)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

var (
	cnpGVR = schema.GroupVersionResource{Group: "cilium.io", Version: "v2", Resource: "ciliumnetworkpolicies"}
	apGVR  = schema.GroupVersionResource{Group: "security.istio.io", Version: "v1", Resource: "authorizationpolicies"}
	pfGVR  = schema.GroupVersionResource{Group: "fastpath.dev", Version: "v1alpha1", Resource: "prefilters"}
)

func cnp(name, rv string, spec map[string]any) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "cilium.io/v2",
		"kind":       "CiliumNetworkPolicy",
		"metadata":   map[string]any{"namespace": "demo", "name": name, "resourceVersion": rv, "generation": int64(1)},
		"spec":       spec,
		// Cilium writes a status; it is no desired state.
		"status": map[string]any{"conditions": []any{map[string]any{"type": "Valid", "status": "True"}}},
	}}
}

type fixture struct {
	src     *Source
	client  *fake.Clientset
	dynamic *dynamicfake.FakeDynamicClient
	log     *syncBuffer
}

func newFixture(t *testing.T, ctx context.Context, dynObjects ...runtime.Object) *fixture {
	t.Helper()
	in := kindCluster()
	var objects []runtime.Object
	for i := range in.Namespaces {
		objects = append(objects, &in.Namespaces[i])
	}
	for i := range in.Nodes {
		objects = append(objects, &in.Nodes[i])
	}
	for i := range in.Pods {
		objects = append(objects, &in.Pods[i])
	}
	for i := range in.Services {
		objects = append(objects, &in.Services[i])
	}
	for i := range in.EndpointSlices {
		objects = append(objects, &in.EndpointSlices[i])
	}
	client := fake.NewSimpleClientset(objects...)
	// cilium.io/v2 is served, security.istio.io and fastpath.dev are not.
	client.Resources = []*metav1.APIResourceList{{
		GroupVersion: "cilium.io/v2",
		APIResources: []metav1.APIResource{{Name: "ciliumnetworkpolicies", Kind: "CiliumNetworkPolicy", Namespaced: true}},
	}}
	typedWatches := &watchCounter{resources: map[string]bool{}}
	client.PrependWatchReactor("*", typedWatches.reactor)

	dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), map[schema.GroupVersionResource]string{
		cnpGVR: "CiliumNetworkPolicyList",
		apGVR:  "AuthorizationPolicyList",
		pfGVR:  "PrefilterList",
	}, dynObjects...)
	dynWatches := &watchCounter{resources: map[string]bool{}}
	dyn.PrependWatchReactor("*", dynWatches.reactor)

	log := &syncBuffer{}
	src, err := New(Options{Client: client, Dynamic: dyn, Logger: slog.New(slog.NewTextHandler(log, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := src.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
	typedWatches.waitFor(t, ctx, "namespaces", "nodes", "pods", "services", "endpointslices", "networkpolicies")
	dynWatches.waitFor(t, ctx, "ciliumnetworkpolicies")
	return &fixture{src: src, client: client, dynamic: dyn, log: log}
}

// waitSnapshot takes snapshots until ok accepts one.
func waitSnapshot(t *testing.T, ctx context.Context, src *Source, what string, ok func(*model.Objects, map[string]int64) bool) (*model.Objects, map[string]int64) {
	t.Helper()
	for {
		objs, revs, err := src.Snapshot()
		if err != nil {
			t.Fatalf("Snapshot: %v", err)
		}
		if ok(objs, revs) {
			return objs, revs
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: not seen in time; revisions %v", what, revs)
		case <-src.Changed():
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func hasNetworkPolicy(objs *model.Objects, ns, name string) bool {
	for _, np := range objs.NetworkPolicies {
		if np.Namespace == ns && np.Name == name {
			return true
		}
	}
	return false
}

func TestSource(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
	defer cancel()
	f := newFixture(t, ctx, cnp("allow-client", "7", map[string]any{
		"endpointSelector": map[string]any{"matchLabels": map[string]any{"app": "web"}},
		"ingress": []any{map[string]any{
			"fromEndpoints": []any{map[string]any{"matchLabels": map[string]any{"app": "client"}}},
			"toPorts":       []any{map[string]any{"ports": []any{map[string]any{"port": "8080", "protocol": "TCP"}}}},
		}},
	}))
	src := f.src

	objs, revs, err := src.Snapshot()
	if err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	if len(objs.Namespaces) != 6 || len(objs.Nodes) != 2 || len(objs.Pods) != 3 || len(objs.Services) != 2 || len(objs.EndpointSlices) != 2 {
		t.Errorf("snapshot: %d namespaces, %d nodes, %d pods, %d services, %d slices; want 6, 2, 3, 2, 2",
			len(objs.Namespaces), len(objs.Nodes), len(objs.Pods), len(objs.Services), len(objs.EndpointSlices))
	}
	if len(objs.CiliumNetworkPolicies) != 1 || objs.CiliumNetworkPolicies[0].Name != "allow-client" {
		t.Fatalf("CiliumNetworkPolicies: %+v", objs.CiliumNetworkPolicies)
	}
	if got := objs.Source[model.ObjectKey("CiliumNetworkPolicy", "demo", "allow-client")]; got != SourceName {
		t.Errorf("Source of the CiliumNetworkPolicy: %q", got)
	}
	// The objects of kindCluster carry resourceVersion 100, kube-dns 250.
	if revs[ResourcePods] != 100 || revs[ResourceServices] != 250 || revs[ResourceCiliumNetworkPolicies] != 7 {
		t.Errorf("revisions: %v", revs)
	}
	if _, ok := revs[ResourceNetworkPolicies]; ok {
		t.Errorf("revisions: networkpolicies had no event: %v", revs)
	}
	if _, ok := revs[ResourceAuthorizationPolicies]; ok {
		t.Errorf("revisions: authorizationpolicies is not served: %v", revs)
	}
	r, err := model.Resolve(objs)
	if err != nil {
		t.Fatalf("Resolve: %v", err)
	}
	if web, ok := r.Endpoint("demo/web-6d4cf56db6-abcde"); !ok || !web.IngressEnforced {
		t.Errorf("web: the CiliumNetworkPolicy does not apply: %+v", web)
	}
	if log := f.log.String(); !strings.Contains(log, "AuthorizationPolicy") || !strings.Contains(log, "not served") || strings.Contains(log, "CiliumNetworkPolicy") {
		t.Errorf("log should name the skipped kinds, not CiliumNetworkPolicy:\n%s", log)
	}
	again, _, err := src.Snapshot()
	if err != nil || again.Hash != objs.Hash || objs.Hash == "" {
		t.Errorf("unchanged snapshots: hashes %q and %q (err %v)", objs.Hash, again.Hash, err)
	}

	// Drain the initial signal.
	select {
	case <-src.Changed():
	default:
	}

	np := &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "deny-all", ResourceVersion: "42"},
		Spec:       networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}},
	}
	if _, err := f.client.NetworkingV1().NetworkPolicies("demo").Create(ctx, np, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-src.Changed():
	case <-ctx.Done():
		t.Fatal("Changed did not fire on a create")
	}
	// The caches may run ahead of the handlers: wait for both.
	objs, _ = waitSnapshot(t, ctx, src, "created NetworkPolicy at revision 42", func(o *model.Objects, revs map[string]int64) bool {
		return hasNetworkPolicy(o, "demo", "deny-all") && revs[ResourceNetworkPolicies] == 42
	})
	if objs.Hash == again.Hash {
		t.Errorf("hash unchanged after a create")
	}

	// A resync-like update (same resourceVersion) is not a change.
	if _, err := f.client.NetworkingV1().NetworkPolicies("demo").Update(ctx, np, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	// A real delete carries the deletion's resourceVersion; the fake
	// tracker reports the object as stored, so store it at 43 first.
	np.ResourceVersion = "43"
	if _, err := f.client.NetworkingV1().NetworkPolicies("demo").Update(ctx, np, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitSnapshot(t, ctx, src, "update to 43", func(_ *model.Objects, revs map[string]int64) bool {
		return revs[ResourceNetworkPolicies] == 43
	})
	select {
	case <-src.Changed():
	default:
	}
	np.ResourceVersion = "44"
	if _, err := f.client.NetworkingV1().NetworkPolicies("demo").Update(ctx, np, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := f.client.NetworkingV1().NetworkPolicies("demo").Delete(ctx, "deny-all", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitSnapshot(t, ctx, src, "deleted NetworkPolicy at revision 44", func(o *model.Objects, revs map[string]int64) bool {
		return !hasNetworkPolicy(o, "demo", "deny-all") && revs[ResourceNetworkPolicies] == 44
	})

	// Custom objects change too.
	if err := f.dynamic.Resource(cnpGVR).Namespace("demo").Delete(ctx, "allow-client", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitSnapshot(t, ctx, src, "deleted CiliumNetworkPolicy", func(o *model.Objects, _ map[string]int64) bool {
		return len(o.CiliumNetworkPolicies) == 0
	})

	// Lookups.
	if n, ok := src.Node("kind-worker"); !ok || n.Spec.PodCIDR != "10.244.1.0/24" {
		t.Errorf("Node(kind-worker) = %v, %v", n, ok)
	}
	if _, ok := src.Node("nope"); ok {
		t.Errorf("Node(nope) found")
	}
	if p, err := src.Pod(ctx, "demo", "client"); err != nil || p.Status.PodIP != "10.244.1.6" {
		t.Errorf("Pod(demo/client) = %v, %v", p, err)
	}
	if _, err := src.Pod(ctx, "demo", "nope"); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Errorf("Pod(demo/nope): error %v, want not found naming it", err)
	}
}

// TestSourcePodLiveGet checks that a pod not in the cache yet is read from
// the API server.
func TestSourcePodLiveGet(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	client := fake.NewSimpleClientset()
	src, err := New(Options{Client: client})
	if err != nil {
		t.Fatal(err)
	}
	// Not started: the cache is empty, the live GET finds the pod.
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "new", Annotations: map[string]string{"a": "b"}}}
	if _, err := client.CoreV1().Pods("demo").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	got, err := src.Pod(ctx, "demo", "new")
	if err != nil || got.Annotations["a"] != "b" {
		t.Fatalf("Pod(demo/new) = %v, %v", got, err)
	}
	if _, _, err := src.Snapshot(); err == nil {
		t.Errorf("Snapshot before Start: no error")
	}
}

func TestSourceBadCustomObject(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	f := newFixture(t, ctx, cnp("typo", "3", map[string]any{
		"endpointSelector": map[string]any{"matchLabels": map[string]any{"app": "web"}},
		"ingres":           []any{},
	}))
	_, _, err := f.src.Snapshot()
	if err == nil || !strings.Contains(err.Error(), "CiliumNetworkPolicy demo/typo") || !strings.Contains(err.Error(), "ingres") {
		t.Fatalf("Snapshot: error %v, want one naming the object and the field", err)
	}
}

func TestNewStart(t *testing.T) {
	if _, err := New(Options{}); err == nil {
		t.Error("New without a client: no error")
	}
	// Start fails when the context ends before the caches sync.
	client := fake.NewSimpleClientset()
	client.PrependReactor("list", "pods", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, context.DeadlineExceeded
	})
	src, err := New(Options{Client: client, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	err = src.Start(ctx)
	if err == nil || !strings.Contains(err.Error(), "pods") {
		t.Fatalf("Start: error %v, want one naming pods", err)
	}
	if err := src.Start(context.Background()); err == nil {
		t.Error("second Start: no error")
	}
}

func TestRevisionsHash(t *testing.T) {
	a := revisionsHash(map[string]int64{"pods": 1, "nodes": 2}, 0)
	if b := revisionsHash(map[string]int64{"nodes": 2, "pods": 1}, 0); a != b {
		t.Errorf("hash depends on map order")
	}
	if b := revisionsHash(map[string]int64{"pods": 1, "nodes": 3}, 0); a == b {
		t.Errorf("hash ignores a revision")
	}
	if b := revisionsHash(map[string]int64{"pods": 1, "nodes": 2}, 1); a == b {
		t.Errorf("hash ignores tombstones")
	}
	if len(a) != 16 {
		t.Errorf("hash %q: want 16 hex digits", a)
	}
}

func TestHandler(t *testing.T) {
	src, err := New(Options{Client: fake.NewSimpleClientset(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	h := src.handler(ResourcePods)
	pod := func(rv string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "p", ResourceVersion: rv}}
	}
	changed := func() bool {
		select {
		case <-src.Changed():
			return true
		default:
			return false
		}
	}
	rev := func() int64 {
		src.mu.Lock()
		defer src.mu.Unlock()
		return src.revs[ResourcePods]
	}
	h.OnAdd(pod("10"), true)
	h.OnAdd(pod("5"), false)
	if !changed() || rev() != 10 {
		t.Fatalf("after adds: rev %d", rev())
	}
	if changed() {
		t.Fatal("Changed holds more than one signal")
	}
	h.OnUpdate(pod("10"), pod("10"))
	if changed() {
		t.Error("a resync (same resourceVersion) signalled a change")
	}
	h.OnUpdate(pod("10"), pod("11"))
	if !changed() || rev() != 11 {
		t.Errorf("after update: rev %d", rev())
	}
	h.OnDelete(pod("12"))
	if !changed() || rev() != 12 {
		t.Errorf("after delete: rev %d", rev())
	}
	before := revisionsHash(src.revs, src.tombstones)
	h.OnDelete(cache.DeletedFinalStateUnknown{Key: "demo/q", Obj: pod("3")})
	if !changed() || rev() != 12 {
		t.Errorf("after tombstone: rev %d", rev())
	}
	if revisionsHash(src.revs, src.tombstones) == before {
		t.Error("a delete found on relist leaves the hash unchanged")
	}
}
