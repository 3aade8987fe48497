package kind

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/kind/pkg/cluster/nodeutils"

	"github.com/fastpath-bench/fastpath/datapath/agentapi"
	"github.com/fastpath-bench/fastpath/deploy"
	"github.com/fastpath-bench/fastpath/harness/cluster"
	"github.com/fastpath-bench/fastpath/harness/cluster/netns"
	"github.com/fastpath-bench/fastpath/harness/execx"
)

// Defaults of a topology's CIDRs (kind's own).
const (
	DefaultPodSubnet     = "10.244.0.0/16"
	DefaultServiceSubnet = "10.96.0.0/16"
)

// TopologyOptions configure Build; zero values mean defaults.
type TopologyOptions struct {
	// NodeImage is the kind node image (required).
	NodeImage string
	// AgentImage is the project's image (harness/images), loaded into the
	// nodes: the agent DaemonSet and the pods' container run it.
	AgentImage string
	// IptablesAgentImage is the agent image of the iptables datapath
	// (harness/images.BuildIptables), loaded into the nodes when that
	// datapath first starts; required for it.
	IptablesAgentImage string
	// PodSubnet and ServiceSubnet: DefaultPodSubnet, DefaultServiceSubnet.
	PodSubnet, ServiceSubnet string
	// Retain keeps the cluster after Destroy (debugging).
	Retain bool
	// Dir holds the kubeconfig and the copy of the desired state; empty:
	// a directory under os.TempDir().
	Dir string
	// Logf reports progress.
	Logf func(string, ...any)

	// member is set on the clusters of a mesh (the mesh has the
	// external host).
	member bool
}

// Topology is a kind cluster built from a cluster.Spec, with the agent
// DaemonSet as its CNI and datapath. It implements cluster.Cluster: the
// spec's nodes are the workers, pods are real pods (their container is
// `fastpath workload pause` from the project's image), wired by the CNI
// plugin, and workloads run as ephemeral containers of the pods
// (StartIn).
type Topology struct {
	spec    cluster.Spec
	opts    TopologyOptions
	kind    *Cluster
	client  *Client
	dir     string
	workers map[string]string // spec node → kind node
	nodeIPs map[string]netip.Addr
	// kindWorkers are the workers in order, kindIPs their addresses.
	kindWorkers []string
	kindIPs     []netip.Addr
	apiHost     string

	mu sync.Mutex
	// agentPIDs caches each node's agent host PID by the agent's own PID
	// and start time: Agents runs for every CPU snapshot, and finding a
	// host PID means a docker inspect and a walk of /proc.
	agentPIDs map[string]agentPID
	pods      []cluster.Pod
	procs     []*cluster.Process
	// applied are the objects each WriteState name applied.
	applied map[string][]*unstructured.Unstructured
	// revs are the resourceVersions the harness's own writes got back,
	// the newest per resource.
	revs     map[string]int64
	datapath string
	// manifest is the agent manifest applied last: applying the same
	// again rolls nothing out.
	manifest []byte
	netnses  []string
	// iptablesLoaded is set once IptablesAgentImage is in the nodes.
	iptablesLoaded bool
	// kubeProxy is the kube-proxy StartAgents deployed for the datapath
	// (nil: none runs).
	kubeProxy *kubeProxyState
	// external is the network namespace of the host outside the
	// clusters (external.go; "" on a cluster of a mesh).
	external string
	// kubeNode maps a spec node name to its Kubernetes node name (the
	// kind worker's) for the objects WriteState applies; on a cluster
	// of a mesh it knows every cluster's nodes (nil: this cluster's).
	kubeNode func(string) string

	// mesh are the clusters of a mesh topology (Spec.Clusters; mesh.go),
	// meshOf each spec node's; nil for one cluster. meshOpts are the
	// agent options the mesh's agents run with.
	mesh     []*meshMember
	meshOf   map[string]*meshMember
	meshOpts cluster.AgentOptions
	// meshCfg is, on a cluster of a mesh, its agents' --clustermesh
	// configuration (with the ebpf datapath), publishNode the kind node
	// whose agent publishes.
	meshCfg     []byte
	publishNode string
	// underlayOn are, on a mesh, the kind nodes given the flat
	// underlay's routes (underlay.go).
	underlayOn []string
}

var (
	_ cluster.Cluster = (*Topology)(nil)
	_ cluster.Mesh    = (*Topology)(nil)
)

func (o *TopologyOptions) defaults() {
	if o.PodSubnet == "" {
		o.PodSubnet = DefaultPodSubnet
	}
	if o.ServiceSubnet == "" {
		o.ServiceSubnet = DefaultServiceSubnet
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
}

// Build creates the cluster of spec: kind nodes (a control plane and a
// worker per spec node), the CRDs, the agent DaemonSet (datapath none: it
// is the CNI) and the spec's namespaces and pods. On error everything
// created is removed.
func Build(ctx context.Context, spec cluster.Spec, opts TopologyOptions) (t *Topology, err error) {
	opts.defaults()
	if opts.AgentImage == "" {
		return nil, errors.New("kind topology: no agent image (make image)")
	}
	if len(spec.Clusters) > 0 {
		return buildMesh(ctx, spec, opts)
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
	t = &Topology{spec: spec, opts: opts, dir: dir, workers: map[string]string{}, nodeIPs: map[string]netip.Addr{},
		applied: map[string][]*unstructured.Unstructured{}, revs: map[string]int64{}}
	// Create makes (or checks) the Docker network first, under its lock.
	opts.Logf("creating kind cluster %s: %d workers, node image %s", spec.RunID, len(spec.Nodes), opts.NodeImage)
	kc, err := Create(ctx, Config{Name: spec.RunID, Workers: len(spec.Nodes), PodSubnet: opts.PodSubnet, ServiceSubnet: opts.ServiceSubnet,
		Datapath: "ebpf", CgroupV1: CgroupV1(), Image: opts.NodeImage}, CreateOptions{Kubeconfig: filepath.Join(dir, "kubeconfig"), Logf: opts.Logf})
	if err != nil {
		return nil, err
	}
	t.kind = kc
	defer func() {
		if err != nil {
			_ = t.Destroy(context.Background())
			t = nil
		}
	}()
	if t.client, err = NewClient(kc.Kubeconfig); err != nil {
		return t, err
	}
	if err := t.mapNodes(ctx); err != nil {
		return t, err
	}
	if !opts.member {
		if err := t.addExternal(ctx); err != nil {
			return t, err
		}
	}
	if err := t.LoadImage(ctx, opts.AgentImage); err != nil {
		return t, err
	}
	crds, err := deploy.CRDs()
	if err != nil {
		return t, err
	}
	if err := t.applyAll(ctx, crds); err != nil {
		return t, fmt.Errorf("CRDs: %w", err)
	}
	if err := t.StartAgents(ctx, cluster.AgentOptions{Datapath: "none"}); err != nil {
		return t, err
	}
	if err := t.removeDNS(ctx); err != nil {
		return t, err
	}
	if err := t.createPods(ctx); err != nil {
		return t, err
	}
	return t, t.writeClusterState()
}

// CgroupV1 says whether this host mounts cgroup v1 at /sys/fs/cgroup
// (kubelet 1.35 then needs failCgroupV1: false).
func CgroupV1() bool {
	_, err := os.Stat("/sys/fs/cgroup/cgroup.controllers")
	return err != nil
}

// mapNodes maps the spec's nodes onto the workers in order, and finds
// the API server's address on the nodes' network. A worker whose join
// kind has reported may take a moment more to appear (a loaded host):
// it is waited for.
func (t *Topology) mapNodes(ctx context.Context) error {
	var workers []corev1.Node
	var listErr error
	_ = poll(ctx, 3*time.Minute, "the workers to register", func() (bool, error) {
		nodes, err := t.client.Kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if listErr = err; err != nil {
			return false, nil
		}
		workers = nil
		for _, n := range nodes.Items {
			ip := internalIP(&n)
			if _, cp := n.Labels["node-role.kubernetes.io/control-plane"]; cp {
				if ip.IsValid() {
					t.apiHost = ip.String()
				}
				continue
			}
			if ip.IsValid() {
				workers = append(workers, n)
			}
		}
		return len(workers) >= len(t.spec.Nodes) && t.apiHost != "", nil
	})
	if listErr != nil {
		return listErr
	}
	sort.Slice(workers, func(i, j int) bool { return workerIndex(workers[i].Name) < workerIndex(workers[j].Name) })
	if len(workers) < len(t.spec.Nodes) || t.apiHost == "" {
		return fmt.Errorf("kind cluster %s has %d workers and control plane %q; want %d workers", t.spec.RunID, len(workers), t.apiHost, len(t.spec.Nodes))
	}
	for _, w := range workers {
		t.kindWorkers = append(t.kindWorkers, w.Name)
		t.kindIPs = append(t.kindIPs, internalIP(&w))
	}
	return t.assignNodes(t.spec.Nodes)
}

// assignNodes maps spec nodes onto the workers in order.
func (t *Topology) assignNodes(nodes []string) error {
	if len(nodes) > len(t.kindWorkers) {
		return fmt.Errorf("kind cluster %s has %d workers; the spec asks for %d nodes", t.spec.RunID, len(t.kindWorkers), len(nodes))
	}
	t.workers, t.nodeIPs = map[string]string{}, map[string]netip.Addr{}
	for i, n := range nodes {
		t.workers[n] = t.kindWorkers[i]
		t.nodeIPs[n] = t.kindIPs[i]
	}
	return nil
}

// NodeIP is a spec node's address (its worker's).
func (t *Topology) NodeIP(node string) netip.Addr {
	if m := t.meshOf[node]; m != nil {
		return m.topo.NodeIP(node)
	}
	return t.nodeIPs[node]
}

// workerIndex orders kind's worker names: "x-worker", "x-worker2", ...
func workerIndex(name string) int {
	i := strings.LastIndex(name, "worker")
	n, err := strconv.Atoi(name[i+len("worker"):])
	if err != nil {
		return 1
	}
	return n
}

func internalIP(n *corev1.Node) netip.Addr {
	for _, a := range n.Status.Addresses {
		if a.Type == corev1.NodeInternalIP {
			if ip, err := netip.ParseAddr(a.Address); err == nil {
				return ip
			}
		}
	}
	return netip.Addr{}
}

// LoadImage copies an image from Docker's store into every node's
// containerd (there is no registry to pull from), into the nodes at
// once.
func (t *Topology) LoadImage(ctx context.Context, ref string) error {
	if t.mesh != nil {
		var errs []error
		for _, m := range t.mesh {
			errs = append(errs, m.topo.LoadImage(ctx, ref))
		}
		return errors.Join(errs...)
	}
	tar := filepath.Join(t.dir, "image.tar")
	if _, err := execx.Run(ctx, "docker", "save", "-o", tar, ref); err != nil {
		return err
	}
	defer os.Remove(tar)
	nodes, err := t.kind.provider.ListNodes(t.kind.Name)
	if err != nil {
		return err
	}
	errs := make([]error, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f, err := os.Open(tar)
			if err != nil {
				errs[i] = err
				return
			}
			defer f.Close()
			if err := nodeutils.LoadImageArchive(n, f); err != nil {
				errs[i] = fmt.Errorf("load %s into node %s: %w", ref, n.String(), err)
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// applyAll applies every object of data.
func (t *Topology) applyAll(ctx context.Context, data []byte) error {
	objs, err := Decode(data)
	if err != nil {
		return err
	}
	for _, u := range objs {
		if _, _, err := t.client.Apply(ctx, u); err != nil {
			return err
		}
		if u.GetKind() == "CustomResourceDefinition" {
			if err := t.waitEstablished(ctx, u.GetName()); err != nil {
				return err
			}
		}
	}
	return nil
}

func (t *Topology) waitEstablished(ctx context.Context, name string) error {
	gvr := crdGVR
	return poll(ctx, time.Minute, "CRD "+name+" established", func() (bool, error) {
		u, err := t.client.Dynamic.Resource(gvr).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
		for _, c := range conds {
			m, _ := c.(map[string]any)
			if m["type"] == "Established" && m["status"] == "True" {
				return true, nil
			}
		}
		return false, nil
	})
}

// poll calls f until it is done, fails, or timeout passes.
func poll(ctx context.Context, timeout time.Duration, what string, f func() (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		done, err := f()
		if err != nil {
			return err
		}
		if done {
			return nil
		}
		select {
		case <-ctx.Done():
			if last != nil {
				return fmt.Errorf("waiting for %s: %w (%v)", what, ctx.Err(), last)
			}
			return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// Nodes lists the spec's nodes.
func (t *Topology) Nodes() []string { return append([]string(nil), t.spec.Nodes...) }

// KindNode is the kind node a spec node is.
func (t *Topology) KindNode(node string) string {
	if m := t.meshOf[node]; m != nil {
		return m.topo.KindNode(node)
	}
	return t.workers[node]
}

// Kubeconfig is the cluster's kubeconfig file (a mesh's first cluster's).
func (t *Topology) Kubeconfig() string {
	if t.mesh != nil {
		return t.mesh[0].topo.Kubeconfig()
	}
	return t.kind.Kubeconfig
}

// Client is the cluster's API client (a mesh's first cluster's; Member
// gives the others).
func (t *Topology) Client() *Client {
	if t.mesh != nil {
		return t.mesh[0].topo.Client()
	}
	return t.client
}

// Pods lists the pods with their addresses.
func (t *Topology) Pods() []cluster.Pod {
	if t.mesh != nil {
		var out []cluster.Pod
		for _, m := range t.mesh {
			out = append(out, m.topo.Pods()...)
		}
		return out
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]cluster.Pod(nil), t.pods...)
}

// AgentClient talks to a node's agent on its read-only port.
func (t *Topology) AgentClient(node string) *agentapi.Client {
	if m := t.meshOf[node]; m != nil {
		return m.topo.AgentClient(node)
	}
	return agentapi.NewTCPClient(netip.AddrPortFrom(t.nodeIPs[node], deploy.DefaultPort).String())
}

// StartAgents rolls the agent DaemonSet out with the datapath and waits
// until every agent runs it and has programmed the current state. The
// iptables datapath runs with kube-proxy in iptables mode, which is
// deployed first (and its image loaded); any other datapath runs without
// it: a kube-proxy that runs is deleted, and its rules removed from the
// nodes, before the agents roll.
func (t *Topology) StartAgents(ctx context.Context, opts cluster.AgentOptions) error {
	if t.mesh != nil {
		return t.meshStartAgents(ctx, opts)
	}
	timeout := max(opts.ReadyTimeout, 3*time.Minute)
	start := time.Now()
	proxy, mode, err := wantsKubeProxy(opts.Datapath)
	if err != nil {
		return err
	}
	t.mu.Lock()
	running := t.kubeProxy
	t.mu.Unlock()
	if running != nil && (!proxy || running.mode != mode) {
		if err := t.stopKubeProxy(ctx, timeout); err != nil {
			return err
		}
		running = nil
	}
	var iptablesImage string
	if NeedsBaselinesImage(opts.Datapath) {
		if iptablesImage = t.opts.IptablesAgentImage; iptablesImage == "" {
			return fmt.Errorf("kind topology: datapath %s needs TopologyOptions.IptablesAgentImage, the baselines' agent image (make image builds it)", opts.Datapath)
		}
		t.mu.Lock()
		loaded := t.iptablesLoaded
		t.mu.Unlock()
		if !loaded {
			load := time.Now()
			if err := t.LoadImage(ctx, iptablesImage); err != nil {
				return err
			}
			t.opts.Logf("loaded the baselines agent image %s into the nodes in %s", iptablesImage, time.Since(load).Round(100*time.Millisecond))
			t.mu.Lock()
			t.iptablesLoaded = true
			t.mu.Unlock()
		}
	}
	if proxy && running == nil {
		if err := t.startKubeProxy(ctx, mode, timeout); err != nil {
			return err
		}
	}
	do := deploy.Options{Image: t.opts.AgentImage, IptablesImage: iptablesImage, Datapath: opts.Datapath,
		APIServer: t.apiHost + ":6443", GoMaxProcs: opts.GoMaxProcs, ExtraArgs: opts.ExtraArgs}
	t.mu.Lock()
	if len(t.meshCfg) > 0 && opts.Datapath == "ebpf" {
		// A cluster of a mesh: its agents join it over the overlay.
		do.ClusterMesh, do.ClusterMeshPublishNode = t.meshCfg, t.publishNode
		do.ExtraArgs = meshAgentArgs(opts.ExtraArgs)
	}
	t.mu.Unlock()
	data, err := deploy.Render(do)
	if err != nil {
		return err
	}
	t.mu.Lock()
	same := bytes.Equal(t.manifest, data)
	t.mu.Unlock()
	if same {
		// Running already as asked: nothing rolls out.
		start = time.Time{}
	} else {
		if err := t.applyAll(ctx, data); err != nil {
			return fmt.Errorf("agent DaemonSet: %w", err)
		}
		t.mu.Lock()
		t.manifest = data
		t.mu.Unlock()
		if err := t.waitRollout(ctx, timeout); err != nil {
			return err
		}
		// The new datapath starts from empty conntrack tables (see
		// netns.FlushConntrack: what the previous one left made allowed
		// connections fail).
		if err := t.flushConntrack(ctx); err != nil {
			return err
		}
	}
	for _, n := range t.spec.Nodes {
		cl := t.AgentClient(n)
		wctx, cancel := context.WithTimeout(ctx, timeout)
		_, err := cl.WaitFor(wctx, 200*time.Millisecond, func(st *agentapi.Status) bool {
			return st.Datapath == opts.Datapath && st.StartedAt.After(start.Add(-time.Second)) && st.Ready
		})
		cancel()
		if err != nil {
			return fmt.Errorf("agent on %s (%s) with datapath %s: %w%s", n, t.workers[n], opts.Datapath, err, t.agentDiagnosis(ctx, n))
		}
	}
	t.mu.Lock()
	t.datapath = opts.Datapath
	tok := agentapi.RevisionToken(t.revs)
	t.mu.Unlock()
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	_, err = t.WaitProgrammed(wctx, tok, time.Now())
	return err
}

// flushConntrack empties the conntrack table of every node container of
// the cluster.
func (t *Topology) flushConntrack(ctx context.Context) error {
	nodes, err := t.kind.Nodes()
	if err != nil {
		return fmt.Errorf("kind cluster %s: list nodes: %w", t.kind.Name, err)
	}
	for _, n := range nodes {
		pid, err := nodeContainerPID(ctx, n)
		if err != nil {
			return err
		}
		if err := netns.FlushConntrack(fmt.Sprintf("/proc/%d/ns/net", pid)); err != nil {
			return fmt.Errorf("node %s: %w", n, err)
		}
	}
	return nil
}

// waitRollout waits until the DaemonSet's pods all run the newest
// template and are ready.
func (t *Topology) waitRollout(ctx context.Context, timeout time.Duration) error {
	var last *appsv1.DaemonSet
	err := poll(ctx, timeout, "agent DaemonSet rollout", func() (bool, error) {
		ds, err := t.client.Kube.AppsV1().DaemonSets(deploy.DefaultNamespace).Get(ctx, deploy.AgentName, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		last = ds
		s := ds.Status
		return s.ObservedGeneration >= ds.Generation && s.DesiredNumberScheduled > 0 &&
			s.UpdatedNumberScheduled == s.DesiredNumberScheduled && s.NumberReady == s.DesiredNumberScheduled && s.NumberUnavailable == 0, nil
	})
	if err != nil && last != nil {
		s := last.Status
		err = fmt.Errorf("%w: desired %d, updated %d, ready %d%s", err, s.DesiredNumberScheduled, s.UpdatedNumberScheduled, s.NumberReady, t.agentDiagnosis(ctx, ""))
	}
	return err
}

// agentDiagnosis tells why agents are not ready: their pods' states and
// the last lines of their logs.
func (t *Topology) agentDiagnosis(ctx context.Context, node string) string {
	pods, err := t.client.Kube.CoreV1().Pods(deploy.DefaultNamespace).List(ctx, metav1.ListOptions{LabelSelector: deploy.AgentLabel + "=" + deploy.AgentName})
	if err != nil {
		return ""
	}
	var b strings.Builder
	for _, p := range pods.Items {
		if node != "" && p.Spec.NodeName != t.workers[node] {
			continue
		}
		fmt.Fprintf(&b, "\n  pod %s on %s: %s", p.Name, p.Spec.NodeName, p.Status.Phase)
		for _, cs := range append(p.Status.InitContainerStatuses, p.Status.ContainerStatuses...) {
			fmt.Fprintf(&b, "; %s ready=%v restarts=%d", cs.Name, cs.Ready, cs.RestartCount)
			if w := cs.State.Waiting; w != nil {
				fmt.Fprintf(&b, " waiting %s: %s", w.Reason, w.Message)
			}
		}
		tail := int64(5)
		logs, err := t.client.Kube.CoreV1().Pods(p.Namespace).GetLogs(p.Name, &corev1.PodLogOptions{Container: "agent", TailLines: &tail}).Do(ctx).Raw()
		if err == nil && len(logs) > 0 {
			fmt.Fprintf(&b, "\n    %s", strings.ReplaceAll(strings.TrimSpace(string(logs)), "\n", "\n    "))
		}
	}
	return b.String()
}

// WaitProgrammed waits until every node's agent has programmed the state
// named by token (and, when kube-proxy runs, until its rules have the
// Services of a state that changed them), and returns per node how long
// after since the agent did.
func (t *Topology) WaitProgrammed(ctx context.Context, token string, since time.Time) (map[string]time.Duration, error) {
	if t.mesh != nil {
		return t.meshWaitProgrammed(ctx, token, since)
	}
	out := map[string]time.Duration{}
	for _, n := range t.spec.Nodes {
		st, err := t.AgentClient(n).WaitProgrammed(ctx, token)
		if err != nil {
			if st != nil {
				return out, fmt.Errorf("agent on %s did not program state %s: %w (it has %s, %d endpoints pending)",
					n, token, err, agentapi.RevisionToken(st.Revisions), len(st.Pending))
			}
			return out, fmt.Errorf("agent on %s did not program state %s: %w", n, token, err)
		}
		if agentapi.Refused(st, token) {
			return out, fmt.Errorf("agent on %s refused state %s: %s", n, token, st.LastError)
		}
		out[n] = st.AppliedAt.Sub(since)
	}
	// With the iptables datapath the Services are kube-proxy's: the
	// state is programmed once its rules have them too.
	return out, t.waitKubeProxySynced(ctx, token)
}

// StopAgents rolls the agents back to the none datapath: they are also
// the cluster's CNI and IPAM, so they keep running. A kube-proxy the
// datapath ran with is removed, with its rules.
func (t *Topology) StopAgents(ctx context.Context) error {
	if t.mesh != nil {
		var errs []error
		for _, m := range t.mesh {
			errs = append(errs, m.topo.StopAgents(ctx))
		}
		t.mu.Lock()
		t.datapath = "none"
		t.mu.Unlock()
		return errors.Join(errs...)
	}
	t.mu.Lock()
	dp, proxy := t.datapath, t.kubeProxy
	t.mu.Unlock()
	if (dp == "none" || dp == "") && proxy == nil {
		return nil
	}
	return t.StartAgents(ctx, cluster.AgentOptions{Datapath: "none"})
}

// Agents returns the agents' processes (host PIDs) by node.
func (t *Topology) Agents() map[string]*cluster.Process {
	out := map[string]*cluster.Process{}
	if t.mesh != nil {
		for _, m := range t.mesh {
			for k, v := range m.topo.Agents() {
				out[k] = v
			}
		}
		return out
	}
	for _, n := range t.spec.Nodes {
		st, err := t.AgentClient(n).Status(context.Background())
		if err != nil {
			continue
		}
		pid, err := t.agentHostPID(n, st.PID, st.StartedAt)
		if err != nil {
			continue
		}
		p, err := os.FindProcess(pid)
		if err != nil {
			continue
		}
		out[n] = &cluster.Process{Name: "agent-" + n, Cmd: &exec.Cmd{Process: p}}
	}
	return out
}

// agentPID is an agent's PID in its container, its start and its host
// PID.
type agentPID struct {
	pid, host int
	started   time.Time
}

// agentHostPID maps node's agent (pid in its container, started at) to
// its host PID, from the cache while that process is still the agent.
func (t *Topology) agentHostPID(node string, pid int, started time.Time) (int, error) {
	t.mu.Lock()
	c, ok := t.agentPIDs[node]
	t.mu.Unlock()
	if ok && c.pid == pid && c.started.Equal(started) {
		if comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", c.host)); err == nil && strings.TrimSpace(string(comm)) == "fastpath-agent" {
			return c.host, nil
		}
	}
	host, err := hostPID(t.spec.RunID, t.workers[node], pid)
	if err != nil {
		return 0, err
	}
	t.mu.Lock()
	if t.agentPIDs == nil {
		t.agentPIDs = map[string]agentPID{}
	}
	t.agentPIDs[node] = agentPID{pid: pid, host: host, started: started}
	t.mu.Unlock()
	return host, nil
}

// WriteState applies the objects of data to the API server, deletes
// those an earlier WriteState of name applied and data no longer has,
// keeps a copy for StateDir, and returns the revision token of the
// writes.
func (t *Topology) WriteState(name string, data []byte) (string, error) {
	if t.mesh != nil {
		return t.meshWriteState(name, data)
	}
	objs, err := Decode(data)
	if err != nil {
		return "", fmt.Errorf("state %s: %w", name, err)
	}
	selectors := map[string]bool{}
	for _, u := range objs {
		if u.GetKind() == "Service" {
			sel, _, _ := unstructured.NestedMap(u.Object, "spec", "selector")
			selectors[namespaceOf(u)+"/"+u.GetName()] = len(sel) > 0
		}
	}
	var apply []*unstructured.Unstructured
	// wantAddrs are, per Service with a selector, the endpoint addresses
	// its generated slices list: the controller manager makes the real
	// ones, and the token must cover them.
	wantAddrs := map[string]map[string]bool{}
	for _, u := range objs {
		switch u.GetKind() {
		case "Pod", "Node":
			return "", fmt.Errorf("state %s: %s %s: the kind provider creates pods and nodes from the spec only", name, u.GetKind(), objectName(u))
		case "EndpointSlice":
			svc := namespaceOf(u) + "/" + u.GetLabels()["kubernetes.io/service-name"]
			if selectors[svc] {
				if wantAddrs[svc] == nil {
					wantAddrs[svc] = map[string]bool{}
				}
				eps, _, _ := unstructured.NestedSlice(u.Object, "endpoints")
				for _, ep := range eps {
					m, _ := ep.(map[string]any)
					addrs, _, _ := unstructured.NestedStringSlice(m, "addresses")
					for _, a := range addrs {
						wantAddrs[svc][a] = true
					}
				}
				continue
			}
		}
		apply = append(apply, u)
	}
	if err := t.toKubeNodeNames(apply); err != nil {
		return "", fmt.Errorf("state %s: %w", name, err)
	}
	ctx := context.Background()
	t.mu.Lock()
	defer t.mu.Unlock()
	want := map[string]bool{}
	for _, u := range apply {
		want[key(u)] = true
	}
	for _, old := range t.applied[name] {
		if want[key(old)] {
			continue
		}
		if err := t.deleteLocked(ctx, old); err != nil {
			return "", err
		}
	}
	t.applied[name] = nil
	for _, u := range apply {
		res, rv, err := t.client.Apply(ctx, u.DeepCopy())
		if err != nil {
			return "", fmt.Errorf("state %s: %w", name, err)
		}
		t.applied[name] = append(t.applied[name], u)
		t.revs[res] = max(t.revs[res], rv)
	}
	for svc, addrs := range wantAddrs {
		rv, err := t.waitSlices(ctx, svc, addrs)
		if err != nil {
			return "", fmt.Errorf("state %s: %w", name, err)
		}
		t.revs["endpointslices"] = max(t.revs["endpointslices"], rv)
	}
	if err := writeFileAtomic(filepath.Join(t.dir, "state", name), data); err != nil {
		return "", err
	}
	return agentapi.RevisionToken(t.revs), nil
}

// toKubeNodeNames rewrites the spec node names objects give as a node's
// name into the Kubernetes names (the kind workers'), so that state
// written for any provider holds on kind: an EgressGatewayPolicy's
// spec.gateway.node. Names that are no spec node's are left as given.
func (t *Topology) toKubeNodeNames(objs []*unstructured.Unstructured) error {
	kube := t.kubeNode
	if kube == nil {
		kube = t.KindNode
	}
	for _, u := range objs {
		if u.GetKind() != "EgressGatewayPolicy" {
			continue
		}
		n, found, err := unstructured.NestedString(u.Object, "spec", "gateway", "node")
		if err != nil || !found {
			continue // the agent reports a malformed one
		}
		if k := kube(n); k != "" {
			if err := unstructured.SetNestedField(u.Object, k, "spec", "gateway", "node"); err != nil {
				return fmt.Errorf("EgressGatewayPolicy %s: spec.gateway.node: %w", u.GetName(), err)
			}
		}
	}
	return nil
}

// waitSlices waits until the controller manager's EndpointSlices of
// Service svc ("namespace/name") list exactly addrs, and returns their
// newest resourceVersion.
func (t *Topology) waitSlices(ctx context.Context, svc string, addrs map[string]bool) (int64, error) {
	ns, name, _ := strings.Cut(svc, "/")
	var rv int64
	var got []string
	err := poll(ctx, 30*time.Second, "EndpointSlices of Service "+svc, func() (bool, error) {
		list, err := t.client.Kube.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{LabelSelector: "kubernetes.io/service-name=" + name})
		if err != nil {
			return false, nil
		}
		seen := map[string]bool{}
		rv, got = 0, nil
		for _, es := range list.Items {
			n, _ := strconv.ParseInt(es.ResourceVersion, 10, 64)
			rv = max(rv, n)
			for _, ep := range es.Endpoints {
				for _, a := range ep.Addresses {
					if !seen[a] {
						seen[a] = true
						got = append(got, a)
					}
				}
			}
		}
		if len(seen) != len(addrs) {
			return false, nil
		}
		for a := range addrs {
			if !seen[a] {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		return 0, fmt.Errorf("%w (listed: %v)", err, got)
	}
	return rv, nil
}

// deleteLocked deletes an object and records the revision the agents
// must reach to have seen it go: the deletion's own, or one past the
// newest revision of its resource the harness knows of.
func (t *Topology) deleteLocked(ctx context.Context, u *unstructured.Unstructured) error {
	res, rv, err := t.client.Delete(ctx, u)
	if err != nil {
		return err
	}
	if rv == 0 {
		rv = t.revs[res] + 1
	}
	t.revs[res] = max(t.revs[res], rv)
	return nil
}

// RemoveState deletes what WriteState(name) applied; a name never
// written is no error.
func (t *Topology) RemoveState(name string) (string, error) {
	if t.mesh != nil {
		return t.meshRemoveState(name)
	}
	ctx := context.Background()
	t.mu.Lock()
	defer t.mu.Unlock()
	objs, ok := t.applied[name]
	if !ok {
		// Nothing written under name: nothing to remove (as for a missing
		// file on netns).
		return agentapi.RevisionToken(t.revs), nil
	}
	for _, u := range objs {
		if err := t.deleteLocked(ctx, u); err != nil {
			return "", err
		}
	}
	delete(t.applied, name)
	_ = os.Remove(filepath.Join(t.dir, "state", name))
	return agentapi.RevisionToken(t.revs), nil
}

// StateDir holds the spec's pods and what WriteState wrote, as YAML.
func (t *Topology) StateDir() string { return filepath.Join(t.dir, "state") }

func key(u *unstructured.Unstructured) string {
	return u.GetAPIVersion() + "/" + u.GetKind() + "/" + namespaceOf(u) + "/" + u.GetName()
}

func namespaceOf(u *unstructured.Unstructured) string {
	if u.GetNamespace() == "" {
		return "default"
	}
	return u.GetNamespace()
}

func writeFileAtomic(path string, data []byte) error {
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// Destroy stops the workload processes, removes the pods' namespace
// names, and deletes the cluster (unless Retain).
func (t *Topology) Destroy(ctx context.Context) error {
	if t.mesh != nil {
		return t.meshDestroy(ctx)
	}
	var errs []error
	t.mu.Lock()
	procs, netnses := t.procs, t.netnses
	t.procs, t.netnses = nil, nil
	t.mu.Unlock()
	for _, p := range procs {
		stopProcess(p)
	}
	for _, n := range netnses {
		if err := unmountNetns(n); err != nil {
			errs = append(errs, err)
		}
	}
	if err := t.removeExternal(); err != nil {
		errs = append(errs, err)
	}
	if t.kind != nil && !t.opts.Retain {
		// Delete also removes the network once no cluster is on it.
		if err := t.kind.Delete(); err != nil {
			errs = append(errs, fmt.Errorf("delete kind cluster %s: %w", t.kind.Name, err))
		}
	}
	if t.opts.Dir == "" && !t.opts.Retain {
		_ = os.RemoveAll(t.dir)
	}
	return errors.Join(errs...)
}
