package kind

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"strconv"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/fastpath-bench/fastpath/datapath/agentapi"
	"github.com/fastpath-bench/fastpath/harness/cluster"
)

var _ cluster.PodLabeler = (*Topology)(nil)

// SetPodLabel patches label key of pod ("namespace/name") through the API
// server of the pod's cluster (removes it when value is nil), keeps the
// state copy the model reads in step, and returns the token of the state
// as it is now: on a mesh, every cluster's revisions (the pod's cluster's
// agents must have seen the patch).
func (t *Topology) SetPodLabel(pod, key string, value *string) (string, error) {
	if t.mesh != nil {
		m := t.memberOfPod(pod)
		if m == nil {
			return "", fmt.Errorf("no pod %s in the mesh", pod)
		}
		if _, err := m.topo.SetPodLabel(pod, key, value); err != nil {
			return "", fmt.Errorf("cluster %s: %w", m.spec.Name, err)
		}
		if err := t.writeMeshClusterState(); err != nil {
			return "", err
		}
		return t.meshToken(), nil
	}
	ns, name, ok := strings.Cut(pod, "/")
	if !ok {
		return "", fmt.Errorf("pod %q: want namespace/name", pod)
	}
	patch, err := labelPatch(key, value)
	if err != nil {
		return "", err
	}
	p, err := t.client.Kube.CoreV1().Pods(ns).Patch(context.Background(), name, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: "fastpath"})
	if err != nil {
		return "", fmt.Errorf("label pod %s: %w", pod, err)
	}
	rv, _ := strconv.ParseInt(p.ResourceVersion, 10, 64)
	t.mu.Lock()
	t.revs["pods"] = max(t.revs["pods"], rv)
	for i := range t.pods {
		if t.pods[i].Key() == pod {
			t.pods[i].Labels = maps.Clone(p.Labels)
		}
	}
	tok := agentapi.RevisionToken(t.revs)
	t.mu.Unlock()
	return tok, t.writeClusterState()
}

// labelPatch is the JSON merge patch setting label key to *value (null
// removes it).
func labelPatch(key string, value *string) ([]byte, error) {
	return json.Marshal(map[string]any{"metadata": map[string]any{"labels": map[string]any{key: value}}})
}

// meshToken is the token of the mesh's state as it is now: each cluster's
// revisions.
func (t *Topology) meshToken() string {
	var names, toks []string
	for _, m := range t.mesh {
		m.topo.mu.Lock()
		names, toks = append(names, m.spec.Name), append(toks, agentapi.RevisionToken(m.topo.revs))
		m.topo.mu.Unlock()
	}
	return cluster.MeshToken(names, toks)
}
