package kind

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/utils/ptr"

	"github.com/fastpath-bench/fastpath/datapath/agentapi"
	"github.com/fastpath-bench/fastpath/harness/cluster"
	"github.com/fastpath-bench/fastpath/harness/cluster/netns"
	"github.com/fastpath-bench/fastpath/harness/execx"
)

var crdGVR = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// podManifest is a spec pod as a Kubernetes pod: bound to its worker
// (no scheduler decision to wait for), holding its network namespace
// with `fastpath workload pause`, at the exact address the spec asks
// for (RequestedIPAnnotation, which the agent's IPAM honours).
func (t *Topology) podManifest(ps cluster.PodSpec) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ps.Namespace, Name: ps.Name, Labels: ps.Labels},
		Spec: corev1.PodSpec{
			NodeName:                      t.workers[ps.Node],
			ServiceAccountName:            ps.ServiceAccount,
			AutomountServiceAccountToken:  ptr.To(false),
			TerminationGracePeriodSeconds: ptr.To[int64](1),
			Containers: []corev1.Container{{
				Name:            "workload",
				Image:           t.opts.AgentImage,
				ImagePullPolicy: corev1.PullNever,
				Command:         []string{"/fastpath", "workload", "pause"},
			}},
		},
	}
	if ps.IP.IsValid() {
		p.Annotations = map[string]string{agentapi.RequestedIPAnnotation: ps.IP.String()}
	}
	for _, port := range ps.Ports {
		p.Spec.Containers[0].Ports = append(p.Spec.Containers[0].Ports, corev1.ContainerPort{
			Name: port.Name, ContainerPort: int32(port.Port), Protocol: corev1.Protocol(orDefault(port.Protocol, "TCP"))})
	}
	return p
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

// createPods creates the spec's namespaces, service accounts and pods,
// waits until they run, and names their network namespaces.
func (t *Topology) createPods(ctx context.Context) error {
	core := t.client.Kube.CoreV1()
	nss := map[string]map[string]string{}
	sas := map[string]bool{}
	for ns, labels := range t.spec.Namespaces {
		nss[ns] = labels
	}
	for _, ps := range t.spec.Pods {
		if _, ok := nss[ps.Namespace]; !ok {
			nss[ps.Namespace] = nil
		}
		sas[ps.Namespace+"/"+orDefault(ps.ServiceAccount, "default")] = true
	}
	for ns, labels := range nss {
		_, err := core.Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: labels}}, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			// Exactly the spec's labels (and the name label the API
			// server keeps), as a fresh namespace would have.
			var cur *corev1.Namespace
			if cur, err = core.Namespaces().Get(ctx, ns, metav1.GetOptions{}); err == nil {
				cur.Labels = map[string]string{corev1.LabelMetadataName: ns}
				for k, v := range labels {
					cur.Labels[k] = v
				}
				_, err = core.Namespaces().Update(ctx, cur, metav1.UpdateOptions{})
			}
		}
		if err != nil {
			return fmt.Errorf("namespace %s: %w", ns, err)
		}
	}
	for sa := range sas {
		ns, name, _ := strings.Cut(sa, "/")
		_, err := core.ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}, metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("service account %s: %w", sa, err)
		}
	}
	for _, ps := range t.spec.Pods {
		if _, err := core.Pods(ps.Namespace).Create(ctx, t.podManifest(ps), metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("pod %s/%s: %w", ps.Namespace, ps.Name, err)
		}
	}
	t.opts.Logf("waiting for %d pods", len(t.spec.Pods))
	for _, ps := range t.spec.Pods {
		var pod *corev1.Pod
		err := poll(ctx, 3*time.Minute, "pod "+ps.Namespace+"/"+ps.Name+" running", func() (bool, error) {
			p, err := core.Pods(ps.Namespace).Get(ctx, ps.Name, metav1.GetOptions{})
			if err != nil {
				return false, nil
			}
			pod = p
			switch p.Status.Phase {
			case corev1.PodFailed, corev1.PodSucceeded:
				return false, fmt.Errorf("pod %s/%s ended: %s %s", ps.Namespace, ps.Name, p.Status.Reason, p.Status.Message)
			}
			return p.Status.Phase == corev1.PodRunning && p.Status.PodIP != "", nil
		})
		if err != nil {
			return fmt.Errorf("%w%s", err, t.podEvents(ctx, ps.Namespace, ps.Name))
		}
		ip, err := netip.ParseAddr(pod.Status.PodIP)
		if err != nil {
			return fmt.Errorf("pod %s/%s: status.podIP %q: %w", ps.Namespace, ps.Name, pod.Status.PodIP, err)
		}
		if ps.IP.IsValid() && ip != ps.IP {
			return fmt.Errorf("pod %s/%s got %s, asked for %s", ps.Namespace, ps.Name, ip, ps.IP)
		}
		pid, err := podPID(string(pod.UID))
		if err != nil {
			return fmt.Errorf("pod %s/%s: %w", ps.Namespace, ps.Name, err)
		}
		name := netns.PodNS(t.spec.RunID, ps.Namespace, ps.Name)
		if _, err := execx.Run(ctx, "ip", "netns", "attach", name, strconv.Itoa(pid)); err != nil {
			return fmt.Errorf("pod %s/%s: name its network namespace: %w", ps.Namespace, ps.Name, err)
		}
		t.mu.Lock()
		t.netnses = append(t.netnses, name)
		t.pods = append(t.pods, cluster.Pod{PodSpec: ps, IP: ip})
		t.mu.Unlock()
	}
	return nil
}

// removeDNS deletes CoreDNS and its Service: the offline node image has
// no CoreDNS image (its pods would only retry pulling), and the Service's
// address (the tenth of the service CIDR) stays free for the cases and
// suites that name it.
func (t *Topology) removeDNS(ctx context.Context) error {
	err := t.client.Kube.AppsV1().Deployments("kube-system").Delete(ctx, "coredns", metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete coredns: %w", err)
	}
	err = t.client.Kube.CoreV1().Services("kube-system").Delete(ctx, "kube-dns", metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete the kube-dns Service: %w", err)
	}
	return nil
}

// Reset replaces the topology's pods with those of spec (its nodes map
// onto the workers in order; spec.RunID is ignored): it deletes the
// state every WriteState wrote and the pods, waits until they are gone,
// gives the namespaces exactly spec's labels, and creates spec's pods. The
// agents keep running: a conformance run uses one cluster for every case.
func (t *Topology) Reset(ctx context.Context, spec cluster.Spec) error {
	if t.mesh != nil {
		return t.meshReset(ctx, spec)
	}
	t.mu.Lock()
	names := make([]string, 0, len(t.applied))
	for n := range t.applied {
		names = append(names, n)
	}
	t.mu.Unlock()
	for _, n := range names {
		if _, err := t.RemoveState(n); err != nil {
			return err
		}
	}
	core := t.client.Kube.CoreV1()
	old := t.Pods()
	for _, p := range old {
		err := core.Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](1)})
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("delete pod %s: %w", p.Key(), err)
		}
	}
	for _, p := range old {
		err := poll(ctx, time.Minute, "pod "+p.Key()+" gone", func() (bool, error) {
			_, err := core.Pods(p.Namespace).Get(ctx, p.Name, metav1.GetOptions{})
			return apierrors.IsNotFound(err), nil
		})
		if err != nil {
			return err
		}
	}
	t.mu.Lock()
	netnses := t.netnses
	t.netnses, t.pods = nil, nil
	t.mu.Unlock()
	for _, n := range netnses {
		if err := unmountNetns(n); err != nil {
			return err
		}
	}
	runID := t.spec.RunID
	t.spec = spec
	t.spec.RunID = runID
	if err := t.assignNodes(spec.Nodes); err != nil {
		return err
	}
	if err := t.createPods(ctx); err != nil {
		return err
	}
	entries, _ := os.ReadDir(t.StateDir())
	for _, e := range entries {
		if e.Name() != "cluster.yaml" {
			_ = os.Remove(filepath.Join(t.StateDir(), e.Name()))
		}
	}
	return t.writeClusterState()
}

// podEvents lists a pod's events (why it does not run).
func (t *Topology) podEvents(ctx context.Context, ns, name string) string {
	evs, err := t.client.Kube.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + name})
	if err != nil || len(evs.Items) == 0 {
		return ""
	}
	var b strings.Builder
	for _, e := range evs.Items {
		fmt.Fprintf(&b, "\n  %s %s: %s", e.Type, e.Reason, e.Message)
	}
	return b.String()
}

// podPID finds, in the host's /proc, a process of the pod with uid: its
// cgroup path names the pod (kubelet's systemd driver writes the uid
// with underscores).
func podPID(uid string) (int, error) {
	pid, err := pidInCgroup("pod"+uid, "pod"+strings.ReplaceAll(uid, "-", "_"))
	if err != nil {
		return 0, fmt.Errorf("no process of pod uid %s in /proc", uid)
	}
	return pid, nil
}

// pidInCgroup returns a process of this host whose cgroup path contains
// one of names.
func pidInCgroup(names ...string) (int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cg, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cgroup"))
		if err != nil {
			continue
		}
		for _, n := range names {
			if bytes.Contains(cg, []byte(n)) {
				return pid, nil
			}
		}
	}
	return 0, os.ErrNotExist
}

// hostPID maps the PID an agent reports (in its container's PID
// namespace) to the host's: the process whose innermost NSpid is pid and
// whose network namespace is the node container's.
func hostPID(cluster, node string, pid int) (int, error) {
	out, err := execx.Output(context.Background(), "docker", "inspect", "--format", "{{.State.Pid}}", node)
	if err != nil {
		return 0, err
	}
	nodePID := strings.TrimSpace(string(out))
	want, err := os.Readlink("/proc/" + nodePID + "/ns/net")
	if err != nil {
		return 0, err
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		st, err := os.ReadFile(filepath.Join("/proc", e.Name(), "status"))
		if err != nil {
			continue
		}
		var nspid []string
		for _, line := range strings.Split(string(st), "\n") {
			if rest, ok := strings.CutPrefix(line, "NSpid:"); ok {
				nspid = strings.Fields(rest)
			}
		}
		// Three levels at least: the host's, the node container's and the
		// agent container's (the node's own init is pid 1 at two).
		if len(nspid) < 3 || nspid[len(nspid)-1] != strconv.Itoa(pid) {
			continue
		}
		if comm, err := os.ReadFile(filepath.Join("/proc", e.Name(), "comm")); err != nil || strings.TrimSpace(string(comm)) != "fastpath-agent" {
			continue
		}
		if ns, err := os.Readlink(filepath.Join("/proc", e.Name(), "ns/net")); err == nil && ns == want {
			return strconv.Atoi(e.Name())
		}
	}
	return 0, fmt.Errorf("no host process for agent pid %d on node %s of %s", pid, node, cluster)
}

// PodNetns is the name (under /run/netns) of a pod's network namespace.
func (t *Topology) PodNetns(pod string) string {
	if t.mesh != nil {
		if m := t.memberOfPod(pod); m != nil {
			return m.topo.PodNetns(pod)
		}
		return ""
	}
	for _, p := range t.Pods() {
		if p.Key() == pod {
			return netns.PodNS(t.spec.RunID, p.Namespace, p.Name)
		}
	}
	return ""
}

func unmountNetns(name string) error {
	if _, err := execx.Run(context.Background(), "ip", "netns", "delete", name); err != nil {
		if _, serr := os.Stat(filepath.Join("/run/netns", name)); errors.Is(serr, os.ErrNotExist) {
			return nil
		}
		return err
	}
	return nil
}

// writeClusterState writes the namespaces, nodes and pods (with their
// addresses) into the state copy, for the model.
func (t *Topology) writeClusterState() error {
	var docs []any
	nss := map[string]bool{}
	// As the API server has them: with the name label it adds.
	nsLabels := func(ns string, labels map[string]string) map[string]string {
		out := map[string]string{corev1.LabelMetadataName: ns}
		for k, v := range labels {
			out[k] = v
		}
		return out
	}
	for ns, labels := range t.spec.Namespaces {
		nss[ns] = true
		docs = append(docs, &corev1.Namespace{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"},
			ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: nsLabels(ns, labels)}})
	}
	for _, p := range t.Pods() {
		if !nss[p.Namespace] {
			nss[p.Namespace] = true
			docs = append(docs, &corev1.Namespace{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"},
				ObjectMeta: metav1.ObjectMeta{Name: p.Namespace, Labels: nsLabels(p.Namespace, nil)}})
		}
	}
	for _, n := range t.spec.Nodes {
		docs = append(docs, &corev1.Node{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Node"},
			ObjectMeta: metav1.ObjectMeta{Name: n},
			Status:     corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: t.nodeIPs[n].String()}}}})
	}
	for _, p := range t.Pods() {
		pod := t.podManifest(p.PodSpec)
		pod.TypeMeta = metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"}
		pod.Spec.NodeName = p.Node
		pod.Spec.AutomountServiceAccountToken = nil
		pod.Spec.TerminationGracePeriodSeconds = nil
		pod.Annotations = nil
		pod.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: p.IP.String()}
		docs = append(docs, pod)
	}
	data, err := netns.MarshalDocs(docs)
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(t.StateDir(), "cluster.yaml"), data)
}
