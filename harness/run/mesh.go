package run

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/fastpath-bench/fastpath/datapath/model"
	"github.com/fastpath-bench/fastpath/harness/cluster"
	"github.com/fastpath-bench/fastpath/harness/meshmodel"
)

// stateModel is the reference model of the desired state as written now:
// one cluster's objects, or on a mesh each cluster's (per-cluster state
// directories) in the two views the datapaths have of each other's pods.
type stateModel struct {
	// single is the one cluster's objects (no mesh).
	single *model.Objects
	// mesh is what a meshed datapath (ebpf: --clustermesh) enforces: the
	// other clusters' pods are remote peers with their identities and
	// cluster label.
	mesh *meshmodel.Mesh
	// flat is what a datapath without a mesh (iptables, sidecar)
	// enforces: each cluster knows only its own pods; another cluster's
	// pod is an address (ipBlock rules match it, pod selectors do not).
	flat map[string]*model.Objects
	// clusterOf names each pod's cluster ("namespace/name").
	clusterOf map[string]string
}

// loadModel reads the current desired state.
func (r *runner) loadModel() (*stateModel, error) {
	mesh, ok := r.c.(cluster.Mesh)
	if !ok || len(r.suite.Spec.Cluster.Clusters) == 0 {
		objs, err := model.LoadDir(r.c.StateDir())
		if err != nil {
			return nil, err
		}
		if _, err := model.Resolve(objs); err != nil {
			return nil, err
		}
		return &stateModel{single: objs}, nil
	}
	sm := &stateModel{flat: map[string]*model.Objects{}, clusterOf: map[string]string{}}
	var clusters []meshmodel.Cluster
	for _, mc := range r.suite.Spec.Cluster.Clusters {
		dir := mesh.ClusterStateDir(mc.Name)
		flat, err := model.LoadDir(dir)
		if err != nil {
			return nil, fmt.Errorf("cluster %s: %w", mc.Name, err)
		}
		if _, err := model.Resolve(flat); err != nil {
			return nil, fmt.Errorf("cluster %s: %w", mc.Name, err)
		}
		sm.flat[mc.Name] = flat
		objs, err := model.LoadDir(dir)
		if err != nil {
			return nil, fmt.Errorf("cluster %s: %w", mc.Name, err)
		}
		clusters = append(clusters, meshmodel.Cluster{Name: mc.Name, ID: mc.ID, Objects: objs})
	}
	m, err := meshmodel.Build(clusters)
	if err != nil {
		return nil, err
	}
	sm.mesh = m
	for _, p := range r.c.Pods() {
		sm.clusterOf[p.Key()] = mesh.ClusterOf(p.Node)
	}
	return sm, nil
}

// meshed says whether datapath entry dp joins the mesh (its agents get
// --clustermesh): ebpf does, the others route by address.
func meshed(dp string) bool {
	base, _, _ := strings.Cut(dp, "+")
	return base == "ebpf"
}

// verdict is the model's verdict on a TCP connection from pod from to
// pod to (refs) on port, as datapath entry dp enforces it.
func (sm *stateModel) verdict(dp, from, to string, fromIP, toIP netip.Addr, port int) model.Verdict {
	if sm.single != nil {
		return model.Evaluate(sm.single, fromIP, toIP, model.ProtoTCP, uint16(port))
	}
	src, dst := sm.clusterOf[from], sm.clusterOf[to]
	if meshed(dp) {
		return sm.mesh.Verdict(src, dst, fromIP, toIP, model.ProtoTCP, uint16(port))
	}
	egress := model.Evaluate(sm.flat[src], fromIP, toIP, model.ProtoTCP, uint16(port))
	if src == dst || !egress.Allowed {
		return egress
	}
	ingress := model.Evaluate(sm.flat[dst], fromIP, toIP, model.ProtoTCP, uint16(port))
	if !ingress.Allowed {
		return model.Verdict{Reason: "ingress in " + dst + ": " + ingress.Reason}
	}
	return ingress
}

// enforcing lists datapath entries of the suite whose verdicts the
// suite's checks ask the model for: on a mesh one per view (meshed or
// not) among those that enforce policy; without a mesh the model has one
// view, and the first entry stands for all.
func (r *runner) enforcing() []string {
	if len(r.suite.Spec.Cluster.Clusters) == 0 {
		return r.suite.Spec.Datapaths[:1]
	}
	var out []string
	seen := map[bool]bool{}
	for _, dp := range r.suite.Spec.Datapaths {
		base, _, _ := strings.Cut(dp, "+")
		if base == "none" {
			continue
		}
		if !seen[meshed(dp)] {
			seen[meshed(dp)] = true
			out = append(out, dp)
		}
	}
	return out
}
