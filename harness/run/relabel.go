package run

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/fastpath-bench/fastpath/datapath/model"
	"github.com/fastpath-bench/fastpath/harness/cluster"
	"github.com/fastpath-bench/fastpath/harness/cluster/netns"
	"github.com/fastpath-bench/fastpath/harness/report"
)

// Cross-cluster propagation by relabeling (spec.propagation.relabel): the
// change is made in the probe client's cluster — its pod gets the label
// relabelKey=on in that cluster's state — and enforced in the server's,
// where a policy admits the client's labels with that label and the
// client's cluster label. The new labels take the path of a mesh: the
// client cluster's agents allocate the pod a new identity, its publisher
// writes it to that cluster's etcd, the server cluster's agents' watchers
// hand it to their model, and their policy maps change.
const (
	relabelKey         = "fastpath.dev/propagation"
	relabelPolicyFile  = "32-propagation-relabel.yaml"
	clusterStateFile   = "00-cluster.yaml"
	noSuchStateFile    = "39-propagation-none.yaml"
	relabelChangeLabel = "relabel"
)

// relabelPolicy admits the probe client, relabeled, from its cluster; it
// goes to the server's cluster.
func (r *runner) relabelPolicy() *networkingv1.NetworkPolicy {
	s := r.suite
	pr := s.Spec.Propagation
	from, _ := s.PodByRef(pr.From)
	to, _ := s.PodByRef(pr.To)
	sel := map[string]string{relabelKey: "on", model.LabelCluster: s.Spec.Cluster.ClusterOfNode(from.Node)}
	for k, v := range from.Labels {
		sel[k] = v
	}
	np := allowIngress("fp-propagation-relabel", to.Namespace, to.Labels, []networkingv1.NetworkPolicyPeer{{
		PodSelector:       &metav1.LabelSelector{MatchLabels: sel},
		NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": from.Namespace}},
	}}, pr.Port)
	np.Annotations = map[string]string{cluster.ClusterAnnotation: s.Spec.Cluster.ClusterOfNode(to.Node)}
	return np
}

var docSep = regexp.MustCompile(`(?m)^---\n`)

// relabeled returns the client cluster's state file with the probe
// client's labels plus relabelKey=on.
func (r *runner) relabeled(orig []byte) ([]byte, error) {
	pr := r.suite.Spec.Propagation
	from, _ := r.suite.PodByRef(pr.From)
	var docs []any
	found := false
	for _, d := range docSep.Split(string(orig), -1) {
		if len(bytes.TrimSpace([]byte(d))) == 0 {
			continue
		}
		var obj map[string]any
		if err := yaml.Unmarshal([]byte(d), &obj); err != nil {
			return nil, err
		}
		if md, ok := obj["metadata"].(map[string]any); ok && obj["kind"] == "Pod" && md["name"] == from.Name && md["namespace"] == from.Namespace {
			labels, _ := md["labels"].(map[string]any)
			if labels == nil {
				labels = map[string]any{}
			}
			labels[relabelKey] = "on"
			md["labels"] = labels
			found = true
		}
		docs = append(docs, obj)
	}
	if !found {
		return nil, fmt.Errorf("no pod %s in the cluster state", pr.From)
	}
	return netns.MarshalDocs(docs)
}

// relabelState returns functions that write the client cluster's state
// with the client relabeled (on) or as it was (off), each returning the
// token of the whole mesh's state: on netns by rewriting the cluster's
// state file, on kind (cluster.PodLabeler) by patching the Pod.
func (r *runner) relabelState() (on, off func() (string, error), err error) {
	mesh, ok := r.c.(cluster.Mesh)
	if !ok {
		return nil, nil, fmt.Errorf("the cluster is no mesh")
	}
	from, _ := r.suite.PodByRef(r.suite.Spec.Propagation.From)
	if pl, ok := r.c.(cluster.PodLabeler); ok {
		// kind: the Pod's labels are patched through its cluster's API
		// server.
		ref := from.Ref()
		on := "on"
		return func() (string, error) { return pl.SetPodLabel(ref, relabelKey, &on) },
			func() (string, error) { return pl.SetPodLabel(ref, relabelKey, nil) }, nil
	}
	path := filepath.Join(mesh.ClusterStateDir(r.suite.Spec.Cluster.ClusterOfNode(from.Node)), clusterStateFile)
	orig, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	relabeled, err := r.relabeled(orig)
	if err != nil {
		return nil, nil, err
	}
	write := func(data []byte) func() (string, error) {
		return func() (string, error) {
			tmp := filepath.Join(filepath.Dir(path), ".relabel.tmp")
			if err := os.WriteFile(tmp, data, 0o644); err != nil {
				return "", err
			}
			if err := os.Rename(tmp, path); err != nil {
				return "", err
			}
			// The token of the state as it is now (removing a file
			// that was never written changes nothing).
			return r.c.RemoveState(noSuchStateFile)
		}
	}
	return write(relabeled), write(orig), nil
}

// checkRelabel checks with the model that relabeling flips the probe's
// verdict on meshed datapaths, with the relabel policy installed, and
// leaves the state as it was.
func (r *runner) checkRelabel(dp string) (err error) {
	pr := r.suite.Spec.Propagation
	data, err := netns.MarshalDocs([]any{r.relabelPolicy()})
	if err != nil {
		return err
	}
	on, off, err := r.relabelState()
	if err != nil {
		return err
	}
	if _, err := r.c.WriteState(relabelPolicyFile, data); err != nil {
		return err
	}
	defer func() {
		if _, rerr := off(); rerr != nil && err == nil {
			err = rerr
		}
		if _, rerr := r.c.RemoveState(relabelPolicyFile); rerr != nil && err == nil {
			err = rerr
		}
	}()
	for _, want := range []bool{false, true} {
		if want {
			if _, err := on(); err != nil {
				return err
			}
		}
		sm, err := r.loadModel()
		if err != nil {
			return err
		}
		v := sm.verdict(dp, pr.From, pr.To, r.podIP(pr.From), r.podIP(pr.To), pr.Port)
		if v.Allowed != want {
			return fmt.Errorf("%s: spec.propagation.relabel: on %s the suite's policies and the relabel policy must %s %s -> %s TCP/%d %s the label %s=on (%s)",
				r.opts.SuitePath, dp, map[bool]string{true: "allow", false: "deny"}[want], pr.From, pr.To, pr.Port,
				map[bool]string{true: "with", false: "without"}[want], relabelKey, v.Reason)
		}
	}
	return nil
}

// measureRelabel measures changes made in the client's cluster and
// enforced in the server's (meshed datapaths only).
func (r *runner) measureRelabel(ctx context.Context, dp string, base int) report.Propagation {
	pr := r.suite.Spec.Propagation
	out := report.Propagation{Datapath: dp, Change: relabelChangeLabel, Policies: 1, BasePolicies: base, ProbeIntervalSeconds: pr.ProbeInterval.Seconds()}
	data, err := netns.MarshalDocs([]any{r.relabelPolicy()})
	if err != nil {
		out.Errors = append(out.Errors, err.Error())
		return out
	}
	on, off, err := r.relabelState()
	if err != nil {
		out.Errors = append(out.Errors, err.Error())
		return out
	}
	if err := r.settle(ctx, func() (string, error) { return r.c.WriteState(relabelPolicyFile, data) }); err != nil {
		out.Errors = append(out.Errors, "relabel policy: "+err.Error())
		return out
	}
	r.logf("propagation on %s: %d relabels of %s in its cluster, enforced in %s's", dp, pr.Changes, pr.From, pr.To)
	for i := 0; i < pr.Changes; i++ {
		allow := i%2 == 0
		write := off
		if allow {
			write = on
		}
		ack, enf, err := r.measureChange(ctx, write, allow)
		if err != nil {
			out.Errors = append(out.Errors, fmt.Sprintf("change %d: %v", i+1, err))
			continue
		}
		out.AckSeconds = append(out.AckSeconds, ack.Seconds())
		out.EnforcedSeconds = append(out.EnforcedSeconds, enf.Seconds())
		out.ProgramSeconds = append(out.ProgramSeconds, r.programSeconds(ctx))
	}
	if err := r.settle(ctx, off); err != nil {
		out.Errors = append(out.Errors, "back to the base state: "+err.Error())
	}
	if err := r.settle(ctx, func() (string, error) { return r.c.RemoveState(relabelPolicyFile) }); err != nil {
		out.Errors = append(out.Errors, "removing the relabel policy: "+err.Error())
	}
	out.Summary = report.SummarizePropagation(out)
	return out
}
