package deploy

import (
	"slices"
	"strings"
	"testing"
)

// A cluster of a mesh: the configuration in a ConfigMap mounted into the
// agent, named by --clustermesh, one node publishing, and a digest of
// the configuration on the pod template.
func TestRenderClusterMesh(t *testing.T) {
	cfg := []byte("name: east\nid: 1\nendpoints: [\"http://172.18.0.2:12379\"]\n")
	o := Options{Image: "fastpath/agent:x", APIServer: "172.18.0.2:6443", ClusterMesh: cfg, ClusterMeshPublishNode: "fp-x-east-worker",
		ExtraArgs: []string{"--tunnel=vxlan"}}
	r := render(t, o)
	if r.cm == nil || r.cm.Name != ClusterMeshConfigMap || r.cm.Namespace != DefaultNamespace || r.cm.Data[ClusterMeshKey] != string(cfg) {
		t.Fatalf("ConfigMap %+v", r.cm)
	}
	pod := r.ds.Spec.Template
	agent := container(t, pod.Spec.Containers, "agent")
	for _, want := range []string{"--clustermesh=" + ClusterMeshDir + "/" + ClusterMeshKey, "--clustermesh-publish-node=fp-x-east-worker", "--tunnel=vxlan"} {
		if !slices.Contains(agent.Args, want) {
			t.Errorf("agent args %v lack %s", agent.Args, want)
		}
	}
	mounted := false
	for _, m := range agent.VolumeMounts {
		mounted = mounted || (m.Name == "clustermesh" && m.MountPath == ClusterMeshDir && m.ReadOnly)
	}
	vol := false
	for _, v := range pod.Spec.Volumes {
		vol = vol || (v.Name == "clustermesh" && v.ConfigMap != nil && v.ConfigMap.Name == ClusterMeshConfigMap)
	}
	if !mounted || !vol {
		t.Errorf("mesh configuration not mounted: mounts %v, volumes %v", agent.VolumeMounts, pod.Spec.Volumes)
	}
	d1 := pod.Annotations["fastpath.dev/clustermesh-digest"]
	o.ClusterMesh = append(cfg, []byte("leaseTTL: 2s\n")...)
	d2 := render(t, o).ds.Spec.Template.Annotations["fastpath.dev/clustermesh-digest"]
	if d1 == "" || d1 == d2 {
		t.Errorf("digest annotation %q then %q: want a change with the configuration", d1, d2)
	}
	// Without a mesh: no ConfigMap, no flags.
	plain := render(t, Options{Image: "fastpath/agent:x", APIServer: "172.18.0.2:6443"})
	for _, a := range container(t, plain.ds.Spec.Template.Spec.Containers, "agent").Args {
		if strings.HasPrefix(a, "--clustermesh") {
			t.Errorf("arg %s without a mesh", a)
		}
	}
	// Refused: a mesh without ebpf, a publisher without a mesh.
	err := Options{Image: "i", APIServer: "1.2.3.4:6443", Datapath: "none", ClusterMesh: cfg}.Validate()
	if err == nil || !strings.Contains(err.Error(), "Options.ClusterMesh") {
		t.Errorf("mesh with datapath none: %v", err)
	}
	err = Options{Image: "i", APIServer: "1.2.3.4:6443", ClusterMeshPublishNode: "n"}.Validate()
	if err == nil || !strings.Contains(err.Error(), "Options.ClusterMeshPublishNode") {
		t.Errorf("publisher without mesh: %v", err)
	}
}
