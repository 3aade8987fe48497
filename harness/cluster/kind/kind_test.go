package kind

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/fastpath-bench/fastpath/harness/hostsetup"
	"github.com/fastpath-bench/fastpath/harness/kindnode"
	"github.com/fastpath-bench/fastpath/internal/testutil"
)

// requireKind skips a test without Docker's engine or the offline node
// image (root is required), and returns the node image.
func requireKind(t *testing.T, ctx context.Context) string {
	t.Helper()
	testutil.RequireRoot(t)
	if _, err := exec.LookPath("docker"); err != nil || !hostsetup.EngineAnswers(ctx) {
		t.Skip("Docker's engine is not running here (fastpath host-setup docker)")
	}
	image, err := kindnode.Tag(ctx, kindnode.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !kindnode.ImageExists(ctx, image) {
		t.Skipf("node image %s is not built (make kind-node-image: about 15 minutes cold)", image)
	}
	return image
}

// TestCreateCluster creates a real kind cluster (a control plane and one
// worker) from the offline node image, checks that the API server answers
// and lists both nodes, deletes it, and checks that no node container is
// left.
func TestCreateCluster(t *testing.T) {
	ctx := context.Background()
	image := requireKind(t, ctx)
	name := strings.Replace(testutil.RunID("k"), "fp-t", NamePrefix+"t", 1)
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	start := time.Now()
	c, err := Create(ctx, Config{Name: name, Workers: 1, PodSubnet: "10.244.0.0/16", ServiceSubnet: "10.96.0.0/16",
		Datapath: "ebpf", CgroupV1: CgroupV1(), Image: image}, CreateOptions{Kubeconfig: kubeconfig, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("created %s in %s", name, time.Since(start).Round(time.Second))
	deleted := false
	t.Cleanup(func() {
		if !deleted {
			_ = c.Delete()
		}
	})
	nodes, err := c.Nodes()
	if err != nil || len(nodes) != 2 {
		t.Fatalf("nodes %v (%v)", nodes, err)
	}
	out, err := dockerOut(ctx, "exec", name+"-control-plane", "kubectl", "--kubeconfig", "/etc/kubernetes/admin.conf", "get", "nodes", "-o", "name")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Fields(out); len(got) != 2 {
		t.Fatalf("API server lists nodes %v", got)
	}
	if _, err := os.Stat(kubeconfig); err != nil {
		t.Errorf("kubeconfig: %v", err)
	}
	if err := c.Delete(); err != nil {
		t.Fatal(err)
	}
	deleted = true
	left, err := dockerOut(ctx, "ps", "-a", "-q", "--filter", "label=io.x-k8s.kind.cluster="+name)
	if err != nil || strings.TrimSpace(left) != "" {
		t.Fatalf("containers left: %q (%v)", left, err)
	}
}

// TestToKubeNodeNames: an EgressGatewayPolicy's gateway node given by its
// spec name reaches the API server as the kind worker's name; a name
// that is no spec node's, and other kinds, are left as given.
func TestToKubeNodeNames(t *testing.T) {
	objs, err := Decode([]byte(`apiVersion: fastpath.dev/v1alpha1
kind: EgressGatewayPolicy
metadata: {name: a}
spec: {gateway: {node: n2}}
---
apiVersion: fastpath.dev/v1alpha1
kind: EgressGatewayPolicy
metadata: {name: b}
spec: {gateway: {node: fp-other-worker}}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: c, namespace: x}
data: {node: n2}
`))
	if err != nil {
		t.Fatal(err)
	}
	topo := &Topology{workers: map[string]string{"n2": "fp-t1-worker2"}}
	if err := topo.toKubeNodeNames(objs); err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{"fp-t1-worker2", "fp-other-worker"} {
		if got, _, _ := unstructured.NestedString(objs[i].Object, "spec", "gateway", "node"); got != want {
			t.Errorf("%s: gateway node %q, want %q", objs[i].GetName(), got, want)
		}
	}
	if got, _, _ := unstructured.NestedString(objs[2].Object, "data", "node"); got != "n2" {
		t.Errorf("ConfigMap rewritten: %q", got)
	}
}
