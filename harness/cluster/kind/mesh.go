package kind

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"github.com/fastpath-bench/fastpath/datapath/clustermesh"
	"github.com/fastpath-bench/fastpath/harness/cluster"
)

// A kind cluster mesh (Spec.Clusters, issue #10): one kind cluster per
// mesh cluster, all on the harness's one Docker network (NetworkName), each with its own pod
// and service CIDRs, its own agent DaemonSet and its own etcd, a
// host-network pod on its control-plane node (EtcdPort, the node's
// address on the Docker network). Every agent of a cluster gets the same
// --clustermesh configuration (a ConfigMap), and the agent of the
// cluster's first worker publishes (--clustermesh-publish-node). The
// mesh topology (a Topology with members) implements cluster.Cluster by
// delegating to the member holding the node or pod, and cluster.Mesh.

// EtcdPort is the client port of a mesh cluster's etcd on its
// control-plane node (kubeadm's own etcd has 2379 and 2380).
const EtcdPort = 12379

// etcdPodName names the mesh etcd pod in kube-system.
const etcdPodName = "fastpath-mesh-etcd"

// meshMember is one cluster of a mesh.
type meshMember struct {
	spec        cluster.ClusterSpec
	topo        *Topology
	podSubnet   netip.Prefix
	serviceCIDR netip.Prefix
	etcdURL     string
}

// MeshPodSubnet is the pod CIDR of the i-th cluster of a mesh:
// 10.(244+i).0.0/16 (the first is kind's default).
func MeshPodSubnet(i int) netip.Prefix {
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(244 + i), 0, 0}), 16)
}

// MemberName is the kind cluster name of mesh cluster cs in run runID:
// the run id and the cluster's name (its id when that is too long).
func MemberName(runID string, cs cluster.ClusterSpec) string {
	if n := runID + "-" + cs.Name; len(n) <= 32 {
		return n
	}
	return fmt.Sprintf("%s-c%d", runID, cs.ID)
}

// planMesh checks Spec.Clusters and gives each cluster its kind
// configuration's CIDRs and its part of the spec.
func planMesh(spec cluster.Spec) ([]*meshMember, []cluster.Spec, error) {
	var errs []error
	if len(spec.Clusters) > 12 {
		errs = append(errs, fmt.Errorf("clusters: %d, at most 12 on kind (pod CIDRs 10.244-255.0.0/16)", len(spec.Clusters)))
	}
	of := map[string]string{}
	names, ids := map[string]bool{}, map[int]bool{}
	for i, cs := range spec.Clusters {
		if names[cs.Name] {
			errs = append(errs, fmt.Errorf("clusters[%d].name: %q twice", i, cs.Name))
		}
		if ids[cs.ID] {
			errs = append(errs, fmt.Errorf("clusters[%d].id: %d twice", i, cs.ID))
		}
		names[cs.Name], ids[cs.ID] = true, true
		for _, n := range cs.Nodes {
			of[n] = cs.Name
		}
	}
	errs = append(errs, spec.CheckClusterNodes()...)
	for _, p := range spec.Pods {
		if _, ok := of[p.Node]; !ok {
			errs = append(errs, fmt.Errorf("pod %s/%s: node %q is in no cluster", p.Namespace, p.Name, p.Node))
		}
	}
	if len(errs) > 0 {
		return nil, nil, errors.Join(errs...)
	}
	var ms []*meshMember
	var subs []cluster.Spec
	for i, cs := range spec.Clusters {
		m := &meshMember{spec: cs, podSubnet: MeshPodSubnet(i), serviceCIDR: cs.ServiceCIDR}
		if !m.serviceCIDR.IsValid() {
			m.serviceCIDR = cluster.DefaultServiceCIDR(cs.ID)
		}
		if m.serviceCIDR.Overlaps(m.podSubnet) {
			errs = append(errs, fmt.Errorf("clusters[%d] (%s): service CIDR %s overlaps its pod CIDR %s", i, cs.Name, m.serviceCIDR, m.podSubnet))
		}
		ms = append(ms, m)
		subs = append(subs, memberSpec(spec, cs))
	}
	for i, m := range ms {
		for _, o := range ms[:i] {
			if m.serviceCIDR.Overlaps(o.serviceCIDR) {
				errs = append(errs, fmt.Errorf("clusters: service CIDRs of %s (%s) and %s (%s) overlap", o.spec.Name, o.serviceCIDR, m.spec.Name, m.serviceCIDR))
			}
		}
	}
	return ms, subs, errors.Join(errs...)
}

// memberSpec is cluster cs's part of spec: its nodes and their pods, every
// namespace.
func memberSpec(spec cluster.Spec, cs cluster.ClusterSpec) cluster.Spec {
	sub := cluster.Spec{RunID: MemberName(spec.RunID, cs), Nodes: append([]string(nil), cs.Nodes...), Namespaces: spec.Namespaces, LogDir: spec.LogDir}
	for _, p := range spec.Pods {
		if slices.Contains(cs.Nodes, p.Node) {
			sub.Pods = append(sub.Pods, p)
		}
	}
	return sub
}

// buildMesh creates the clusters of a mesh at once, their etcds, and the
// agents' mesh configurations.
func buildMesh(ctx context.Context, spec cluster.Spec, opts TopologyOptions) (t *Topology, err error) {
	ms, subs, err := planMesh(spec)
	if err != nil {
		return nil, fmt.Errorf("kind mesh %s: %w", spec.RunID, err)
	}
	dir := opts.Dir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "fastpath-"+spec.RunID+"-"); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(filepath.Join(dir, "state"), 0o755); err != nil {
		return nil, err
	}
	t = &Topology{spec: spec, opts: opts, dir: dir, mesh: ms, meshOf: map[string]*meshMember{}}
	if err := ensureNetwork(ctx); err != nil { // refused early, before anything is made
		return nil, err
	}
	for _, m := range ms {
		for _, n := range m.spec.Nodes {
			t.meshOf[n] = m
		}
	}
	defer func() {
		if err != nil {
			_ = t.Destroy(context.Background())
			t = nil
		}
	}()
	// The clusters are created at once (the network exists by then; kind
	// copes with concurrent creators): on 2 cores about as long as one.
	opts.Logf("creating a mesh of %d kind clusters (%s)", len(ms), spec.RunID)
	errs := make([]error, len(ms))
	var wg sync.WaitGroup
	for i, m := range ms {
		wg.Go(func() {
			o := opts
			o.Dir = filepath.Join(dir, m.spec.Name)
			o.member = true
			o.PodSubnet, o.ServiceSubnet = m.podSubnet.String(), m.serviceCIDR.String()
			o.Logf = func(f string, a ...any) { opts.Logf("["+m.spec.Name+"] "+f, a...) }
			m.topo, errs[i] = Build(ctx, subs[i], o)
			if errs[i] != nil {
				errs[i] = fmt.Errorf("cluster %s: %w", m.spec.Name, errs[i])
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return t, err
	}
	for _, m := range ms {
		m.topo.kubeNode = t.KindNode
	}
	if err := t.addExternal(ctx); err != nil {
		return t, err
	}
	// Datapaths without a mesh route other clusters' pods by address.
	if err := t.addUnderlayRoutes(ctx); err != nil {
		return t, err
	}
	for _, m := range ms {
		if err := t.startEtcd(ctx, m); err != nil {
			return t, fmt.Errorf("cluster %s: etcd: %w", m.spec.Name, err)
		}
	}
	if _, err := t.updateMeshConfigs(); err != nil {
		return t, err
	}
	return t, t.writeMeshClusterState()
}

// etcdPod is the mesh etcd of a cluster: host network on its
// control-plane node (ip), from the image kubeadm runs its own etcd
// from, data on the node (a restarted etcd has it).
func etcdPod(image, node, ip string) *corev1.Pod {
	url := fmt.Sprintf("http://%s:%d", ip, EtcdPort)
	peer := fmt.Sprintf("http://127.0.0.1:%d", EtcdPort+1)
	return &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: etcdPodName, Labels: map[string]string{"app.kubernetes.io/name": etcdPodName}},
		Spec: corev1.PodSpec{
			NodeName:                      node,
			HostNetwork:                   true,
			TerminationGracePeriodSeconds: ptr.To[int64](1),
			Tolerations:                   []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
			Containers: []corev1.Container{{
				Name:            "etcd",
				Image:           image,
				ImagePullPolicy: corev1.PullNever,
				Command: []string{"etcd", "--name=fastpath-mesh", "--data-dir=/var/lib/fastpath-mesh-etcd",
					"--listen-client-urls=" + url, "--advertise-client-urls=" + url,
					"--listen-peer-urls=" + peer, "--initial-advertise-peer-urls=" + peer,
					"--initial-cluster=fastpath-mesh=" + peer, "--unsafe-no-fsync"},
				ReadinessProbe: &corev1.Probe{
					ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/health", Port: intstr.FromInt32(EtcdPort)}},
					PeriodSeconds: 1,
				},
				VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/var/lib/fastpath-mesh-etcd"}},
			}},
			Volumes: []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{
				Path: "/var/lib/fastpath-mesh-etcd", Type: ptr.To(corev1.HostPathDirectoryOrCreate)}}}},
		},
	}
}

// startEtcd creates cluster m's etcd pod and waits until it is ready.
func (t *Topology) startEtcd(ctx context.Context, m *meshMember) error {
	core := m.topo.client.Kube.CoreV1()
	cp := m.topo.kind.Name + "-control-plane"
	kubeadm, err := core.Pods("kube-system").Get(ctx, "etcd-"+cp, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("kubeadm's etcd pod (for its image): %w", err)
	}
	pod := etcdPod(kubeadm.Spec.Containers[0].Image, cp, m.topo.apiHost)
	if _, err := core.Pods("kube-system").Create(ctx, pod, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	m.etcdURL = fmt.Sprintf("http://%s:%d", m.topo.apiHost, EtcdPort)
	err = poll(ctx, 2*time.Minute, "etcd pod of cluster "+m.spec.Name+" ready", func() (bool, error) {
		p, err := core.Pods("kube-system").Get(ctx, etcdPodName, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		return fmt.Errorf("%w%s", err, m.topo.podEvents(ctx, "kube-system", etcdPodName))
	}
	return nil
}

// stopEtcd deletes cluster m's etcd pod and waits until it is gone.
func (t *Topology) stopEtcd(ctx context.Context, m *meshMember) error {
	core := m.topo.client.Kube.CoreV1()
	err := core.Pods("kube-system").Delete(ctx, etcdPodName, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](1)})
	if err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	return poll(ctx, time.Minute, "etcd pod of cluster "+m.spec.Name+" gone", func() (bool, error) {
		_, err := core.Pods("kube-system").Get(ctx, etcdPodName, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
}

// meshConfig is cluster self's --clustermesh configuration: each
// cluster's pod subnet, plus /32s for its pods at requested addresses
// outside it, its service CIDR and its etcd.
func meshConfig(ms []*meshMember, self *meshMember, ttl time.Duration) *clustermesh.Config {
	members := make([]cluster.MeshMember, len(ms))
	at := 0
	for i, m := range ms {
		if m == self {
			at = i
		}
		ep := m.etcdURL
		if ep == "" {
			ep = fmt.Sprintf("http://0.0.0.0:%d", EtcdPort)
		}
		cidrs := []netip.Prefix{m.podSubnet}
		if m.topo != nil {
			var extra []netip.Prefix
			for _, p := range m.topo.spec.Pods {
				if p.IP.IsValid() && !m.podSubnet.Contains(p.IP) {
					extra = append(extra, netip.PrefixFrom(p.IP, 32))
				}
			}
			slices.SortFunc(extra, netip.Prefix.Compare)
			cidrs = append(cidrs, slices.Compact(extra)...)
		}
		members[i] = cluster.MeshMember{Name: m.spec.Name, ID: m.spec.ID, PodCIDRs: cidrs, ServiceCIDR: m.serviceCIDR, Endpoint: ep}
	}
	return cluster.MeshConfig(members, at, ttl)
}

// updateMeshConfigs renders every member's mesh configuration into it
// (the DaemonSet's ConfigMap, at the next StartAgents) and says whether
// any changed.
func (t *Topology) updateMeshConfigs() (changed bool, err error) {
	for _, m := range t.mesh {
		cfg := meshConfig(t.mesh, m, t.spec.MeshLeaseTTL)
		if err := cfg.Validate(); err != nil {
			return false, fmt.Errorf("cluster %s: mesh configuration: %w", m.spec.Name, err)
		}
		data, err := yaml.Marshal(cfg)
		if err != nil {
			return false, err
		}
		m.topo.mu.Lock()
		if string(m.topo.meshCfg) != string(data) {
			changed = true
		}
		m.topo.meshCfg = data
		m.topo.publishNode = m.topo.kindWorkers[0]
		m.topo.mu.Unlock()
		if err := os.WriteFile(filepath.Join(t.dir, "mesh-"+m.spec.Name+".yaml"), data, 0o644); err != nil {
			return false, err
		}
	}
	return changed, nil
}

// MeshConfig is the --clustermesh configuration of cluster name's agents
// (nil outside a mesh).
func (t *Topology) MeshConfig(name string) []byte {
	for _, m := range t.mesh {
		if m.spec.Name == name {
			m.topo.mu.Lock()
			defer m.topo.mu.Unlock()
			return append([]byte(nil), m.topo.meshCfg...)
		}
	}
	return nil
}

// meshAgentOptions adds the overlay to a member's agent options when
// the datapath joins the mesh (ebpf); other datapaths have no mesh.
func meshAgentArgs(extra []string) []string {
	for _, a := range extra {
		if a == "--tunnel" || strings.HasPrefix(a, "--tunnel=") {
			return extra
		}
	}
	return append(append([]string(nil), extra...), "--tunnel=vxlan")
}

// ClusterOf names the mesh cluster of node ("" outside a mesh).
func (t *Topology) ClusterOf(node string) string {
	if m := t.meshOf[node]; m != nil {
		return m.spec.Name
	}
	return ""
}

// ClusterStateDir is the state copy of mesh cluster name.
func (t *Topology) ClusterStateDir(name string) string {
	for _, m := range t.mesh {
		if m.spec.Name == name {
			return m.topo.StateDir()
		}
	}
	return ""
}

// Member is the topology of mesh cluster name (nil when there is none).
func (t *Topology) Member(name string) *Topology {
	for _, m := range t.mesh {
		if m.spec.Name == name {
			return m.topo
		}
	}
	return nil
}

func (t *Topology) member(name string) (*meshMember, error) {
	for _, m := range t.mesh {
		if m.spec.Name == name {
			return m, nil
		}
	}
	return nil, fmt.Errorf("no cluster %q in the mesh", name)
}

// StopControlPlane deletes cluster name's etcd pod: the other clusters
// can no longer read its state (a partition).
func (t *Topology) StopControlPlane(name string) error {
	m, err := t.member(name)
	if err != nil {
		return err
	}
	return t.stopEtcd(context.Background(), m)
}

// StartControlPlane creates cluster name's etcd pod again (its data is
// on the node) and waits until it is ready.
func (t *Topology) StartControlPlane(name string) error {
	m, err := t.member(name)
	if err != nil {
		return err
	}
	return t.startEtcd(context.Background(), m)
}

// memberOfPod is the member holding pod ("namespace/name").
func (t *Topology) memberOfPod(pod string) *meshMember {
	for _, m := range t.mesh {
		for _, p := range m.topo.Pods() {
			if p.Key() == pod {
				return m
			}
		}
	}
	return nil
}

// meshStartAgents rolls every cluster's agents out with the datapath (at
// once), the mesh configuration with ebpf, and waits until every agent
// has programmed every peer's pods.
func (t *Topology) meshStartAgents(ctx context.Context, opts cluster.AgentOptions) error {
	errs := make([]error, len(t.mesh))
	var wg sync.WaitGroup
	for i, m := range t.mesh {
		wg.Go(func() {
			if errs[i] = m.topo.StartAgents(ctx, opts); errs[i] != nil {
				errs[i] = fmt.Errorf("cluster %s: %w", m.spec.Name, errs[i])
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	t.mu.Lock()
	t.datapath = opts.Datapath
	t.meshOpts = opts
	t.mu.Unlock()
	return t.waitMesh(ctx)
}

// waitMesh waits, with the ebpf datapath, until every agent of the spec's
// nodes has programmed every peer cluster's pods (the peers' published
// endpoint counts).
func (t *Topology) waitMesh(ctx context.Context) error {
	t.mu.Lock()
	dp := t.datapath
	t.mu.Unlock()
	if base, _, _ := strings.Cut(dp, "+"); base != "ebpf" {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	for _, n := range t.spec.Nodes {
		self := t.meshOf[n]
		want := map[string]int{}
		for _, m := range t.mesh {
			if m != self {
				want[m.spec.Name] = len(m.topo.Pods())
			}
		}
		if err := t.AgentClient(n).WaitMeshPeers(ctx, 50*time.Millisecond, want); err != nil {
			return fmt.Errorf("agent on %s (cluster %s) did not program its peers' pods: %w%s", n, self.spec.Name, err, self.topo.agentDiagnosis(ctx, n))
		}
	}
	return nil
}

// meshWriteState splits data by cluster.ClusterAnnotation and writes each
// cluster's part to its API server (removing the set where a cluster
// gets nothing); the token holds every cluster's.
func (t *Topology) meshWriteState(name string, data []byte) (string, error) {
	names := make([]string, 0, len(t.mesh))
	for _, m := range t.mesh {
		names = append(names, m.spec.Name)
	}
	parts, err := cluster.SplitByCluster(data, names)
	if err != nil {
		return "", fmt.Errorf("state %s: %w", name, err)
	}
	toks := make([]string, 0, len(t.mesh))
	for _, m := range t.mesh {
		var tok string
		if len(strings.TrimSpace(string(parts[m.spec.Name]))) == 0 {
			tok, err = m.topo.RemoveState(name)
		} else {
			tok, err = m.topo.WriteState(name, parts[m.spec.Name])
		}
		if err != nil {
			return "", fmt.Errorf("cluster %s: %w", m.spec.Name, err)
		}
		toks = append(toks, tok)
	}
	if err := writeFileAtomic(filepath.Join(t.dir, "state", name), data); err != nil {
		return "", err
	}
	return cluster.MeshToken(names, toks), nil
}

func (t *Topology) meshRemoveState(name string) (string, error) {
	var names, toks []string
	for _, m := range t.mesh {
		tok, err := m.topo.RemoveState(name)
		if err != nil {
			return "", fmt.Errorf("cluster %s: %w", m.spec.Name, err)
		}
		names, toks = append(names, m.spec.Name), append(toks, tok)
	}
	_ = os.Remove(filepath.Join(t.dir, "state", name))
	return cluster.MeshToken(names, toks), nil
}

// meshWaitProgrammed waits per cluster for its token, then (ebpf) until
// every agent has every peer's pods.
func (t *Topology) meshWaitProgrammed(ctx context.Context, token string, since time.Time) (map[string]time.Duration, error) {
	names := make([]string, 0, len(t.mesh))
	for _, m := range t.mesh {
		names = append(names, m.spec.Name)
	}
	toks := cluster.SplitMeshToken(token, names)
	out := map[string]time.Duration{}
	for _, m := range t.mesh {
		d, err := m.topo.WaitProgrammed(ctx, toks[m.spec.Name], since)
		for k, v := range d {
			out[k] = v
		}
		if err != nil {
			return out, fmt.Errorf("cluster %s: %w", m.spec.Name, err)
		}
	}
	return out, t.waitMesh(ctx)
}

// meshReset resets every cluster to its part of spec (its clusters must
// be the mesh's, by name and id, each with at most as many nodes); the
// mesh configurations follow the pods' requested addresses, and agents
// running the mesh roll when theirs changed.
func (t *Topology) meshReset(ctx context.Context, spec cluster.Spec) error {
	if len(spec.Clusters) != len(t.mesh) {
		return fmt.Errorf("reset: %d clusters, the mesh has %d", len(spec.Clusters), len(t.mesh))
	}
	for i, cs := range spec.Clusters {
		m := t.mesh[i]
		if cs.Name != m.spec.Name || cs.ID != m.spec.ID {
			return fmt.Errorf("reset: clusters[%d] is %s (id %d), the mesh's is %s (id %d)", i, cs.Name, cs.ID, m.spec.Name, m.spec.ID)
		}
		if len(cs.Nodes) > len(m.topo.kindWorkers) {
			return fmt.Errorf("reset: cluster %s: %d nodes, it has %d workers", cs.Name, len(cs.Nodes), len(m.topo.kindWorkers))
		}
	}
	errs := make([]error, len(t.mesh))
	var wg sync.WaitGroup
	for i, m := range t.mesh {
		wg.Go(func() {
			if errs[i] = m.topo.Reset(ctx, memberSpec(spec, spec.Clusters[i])); errs[i] != nil {
				errs[i] = fmt.Errorf("cluster %s: %w", m.spec.Name, errs[i])
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	runID := t.spec.RunID
	t.spec = spec
	t.spec.RunID = runID
	t.meshOf = map[string]*meshMember{}
	for i, cs := range spec.Clusters {
		t.mesh[i].spec.Nodes = cs.Nodes
		for _, n := range cs.Nodes {
			t.meshOf[n] = t.mesh[i]
		}
	}
	entries, _ := os.ReadDir(t.StateDir())
	for _, e := range entries {
		_ = os.Remove(filepath.Join(t.StateDir(), e.Name()))
	}
	changed, err := t.updateMeshConfigs()
	if err != nil {
		return err
	}
	t.mu.Lock()
	dp, opts := t.datapath, t.meshOpts
	t.mu.Unlock()
	if changed && dp != "" && dp != "none" {
		if err := t.meshStartAgents(ctx, opts); err != nil {
			return err
		}
	}
	return t.writeMeshClusterState()
}

// writeMeshClusterState copies the clusters' cluster.yaml into the
// mesh's state (one file per cluster).
func (t *Topology) writeMeshClusterState() error {
	for _, m := range t.mesh {
		data, err := os.ReadFile(filepath.Join(m.topo.StateDir(), "cluster.yaml"))
		if err != nil {
			return err
		}
		if err := writeFileAtomic(filepath.Join(t.StateDir(), "cluster-"+m.spec.Name+".yaml"), data); err != nil {
			return err
		}
	}
	return nil
}

// meshDestroy deletes every cluster (at once; the last one's Delete
// removes the Docker network) and the external host.
func (t *Topology) meshDestroy(ctx context.Context) error {
	var routesErr error
	if !t.opts.Retain {
		routesErr = t.removeUnderlayRoutes(ctx)
	}
	errs := make([]error, len(t.mesh))
	var wg sync.WaitGroup
	for i, m := range t.mesh {
		if m.topo == nil {
			continue
		}
		wg.Go(func() { errs[i] = m.topo.Destroy(ctx) })
	}
	wg.Wait()
	err := errors.Join(append(errs, routesErr, t.removeExternal())...)
	if t.opts.Dir == "" && !t.opts.Retain {
		_ = os.RemoveAll(t.dir)
	}
	return err
}
