// Package netns builds clusters out of network namespaces on one machine:
// a fabric namespace with a bridge joins the nodes; every node is a
// namespace running its agent; every pod is a namespace joined to its node
// by a veth pair (pod side eth0, node side lxc<hash>) with a /32 route on
// the node side, as Cilium wires pods. Every name carries the run id, so
// Clean removes exactly what runs created.
package netns

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/fastpath-bench/fastpath/datapath/agentapi"
	"github.com/fastpath-bench/fastpath/datapath/model"
	"github.com/fastpath-bench/fastpath/datapath/podnet"
	"github.com/fastpath-bench/fastpath/harness/cluster"
	"github.com/fastpath-bench/fastpath/harness/execx"
)

// Prefix starts every name the provider creates.
const Prefix = "fp-"

// Directories for run state and pinned maps.
const (
	RunRoot   = "/run/fastpath"
	BPFFSRoot = "/sys/fs/bpf"
)

// Addressing: nodes on 198.18.0.0/24 and pods on 198.19.<node>.0/24, inside
// 198.18.0.0/15, the range set aside for benchmarking (RFC 2544); nothing
// of it is routed outside the run's namespaces.
var (
	nodeNet = netip.MustParsePrefix("198.18.0.0/24")
	// externalIP is the host outside the cluster on the nodes' network
	// (north-south clients: NodePorts).
	externalIP = netip.MustParseAddr("198.18.0.254")
	// gatewayIP is the pods' next hop; the node side of each veth answers
	// for it through a permanent neighbour entry.
	gatewayIP = "169.254.1.1"
)

// Options configure the provider.
type Options struct {
	// AgentBinary is the fastpath-agent executable; empty: next to this
	// executable, then PATH.
	AgentBinary string
}

// Provider creates netns clusters.
type Provider struct{ opts Options }

// NewProvider returns a netns provider.
func NewProvider(opts Options) *Provider { return &Provider{opts: opts} }

// Cluster is a netns cluster.
type Cluster struct {
	spec     cluster.Spec
	opts     Options
	runDir   string
	stateDir string
	// hasher digests the state directory after every write, reading only
	// the files that changed.
	hasher  model.Hasher
	logDir  string
	pinRoot string
	fabric  string
	nodes   []nodeInfo
	pods    []cluster.Pod
	// cgroupRoot is the cgroup2 mount ("" when none could be had: then
	// pods' processes stay in the harness's cgroup and agents get no
	// --cgroup).
	cgroupRoot string

	mu     sync.Mutex
	agents map[string]*cluster.Process
	// wireXDPOn: the bridge-side veths run a pass-through XDP program.
	wireXDPOn bool
	procs     []*cluster.Process

	// mesh are the clusters of a cluster mesh (Spec.Clusters; mesh.go),
	// meshOf each node's.
	mesh   []*meshCluster
	meshOf map[string]*meshCluster
}

type nodeInfo struct {
	name    string
	ns      string
	ip      netip.Addr
	podCIDR netip.Prefix
}

// NewRunID returns a run id: Prefix and 6 hex digits of the clock.
func NewRunID() string {
	return fmt.Sprintf("%s%06x", Prefix, time.Now().UnixNano()&0xffffff)
}

// NodeNS is the network namespace name of a node.
func NodeNS(runID, node string) string { return runID + "-" + node }

// PodNS is the network namespace name of a pod.
func PodNS(runID, namespace, name string) string { return runID + "-pod-" + namespace + "-" + name }

func validate(spec cluster.Spec) error {
	var errs []error
	if !strings.HasPrefix(spec.RunID, Prefix) {
		errs = append(errs, fmt.Errorf("run id %q must start with %q", spec.RunID, Prefix))
	}
	if len(spec.Nodes) == 0 || len(spec.Nodes) > 200 {
		errs = append(errs, fmt.Errorf("nodes: want 1 to 200, have %d", len(spec.Nodes)))
	}
	nodes := map[string]bool{}
	for _, n := range spec.Nodes {
		if nodes[n] {
			errs = append(errs, fmt.Errorf("nodes: %q twice", n))
		}
		nodes[n] = true
	}
	perNode := map[string]int{}
	seen := map[string]bool{}
	for _, p := range spec.Pods {
		if !nodes[p.Node] {
			errs = append(errs, fmt.Errorf("pod %s/%s: node %q is not a node of the cluster", p.Namespace, p.Name, p.Node))
		}
		if seen[p.Namespace+"/"+p.Name] {
			errs = append(errs, fmt.Errorf("pod %s/%s: defined twice", p.Namespace, p.Name))
		}
		seen[p.Namespace+"/"+p.Name] = true
		perNode[p.Node]++
		if perNode[p.Node] > 240 {
			errs = append(errs, fmt.Errorf("node %s: more than 240 pods", p.Node))
		}
	}
	if len(errs) == 0 {
		errs = append(errs, validateMesh(spec))
	}
	return errors.Join(errs...)
}

// Create builds the topology. On error everything created so far is
// removed.
func (p *Provider) Create(ctx context.Context, spec cluster.Spec) (c *Cluster, err error) {
	if err := validate(spec); err != nil {
		return nil, err
	}
	c = &Cluster{
		spec:    spec,
		opts:    p.opts,
		runDir:  filepath.Join(RunRoot, spec.RunID),
		pinRoot: filepath.Join(BPFFSRoot, spec.RunID),
		fabric:  spec.RunID + "-fabric",
		agents:  map[string]*cluster.Process{},
	}
	c.stateDir = filepath.Join(c.runDir, "state")
	c.logDir = spec.LogDir
	if c.logDir == "" {
		c.logDir = filepath.Join(c.runDir, "logs")
	}
	defer func() {
		if err != nil {
			_ = c.Destroy(context.Background())
			c = nil
		}
	}()
	for _, d := range []string{c.stateDir, c.logDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return c, err
		}
	}
	if err := ensureBPFFS(ctx); err != nil {
		return c, err
	}
	if root, err := Cgroup2Root(); err == nil {
		c.cgroupRoot = root
	}
	if err := c.build(ctx); err != nil {
		return c, err
	}
	if len(spec.Clusters) > 0 {
		if err := c.startMesh(); err != nil {
			return c, err
		}
	}
	if err := c.writeClusterState(); err != nil {
		return c, err
	}
	return c, nil
}

// ensureBPFFS mounts a bpffs at /sys/fs/bpf when none is there.
func ensureBPFFS(ctx context.Context) error {
	var st syscall.Statfs_t
	const bpfMagic = 0xcafe4a11
	if err := syscall.Statfs(BPFFSRoot, &st); err == nil && st.Type == bpfMagic {
		return nil
	}
	if _, err := execx.Run(ctx, "mount", "-t", "bpf", "bpf", BPFFSRoot); err != nil {
		return fmt.Errorf("mount bpffs at %s: %w", BPFFSRoot, err)
	}
	return nil
}

func (c *Cluster) build(ctx context.Context) error {
	run := c.spec.RunID
	if err := addNetns(c.fabric); err != nil {
		return err
	}
	fabric, err := openNL(c.fabric)
	if err != nil {
		return err
	}
	defer fabric.close()
	if err := fabric.addBridge("br0"); err != nil {
		return err
	}
	nodes := map[string]*nl{}
	defer func() {
		for _, h := range nodes {
			h.close()
		}
	}()
	for i, name := range c.spec.Nodes {
		n := nodeInfo{name: name, ns: NodeNS(run, name)}
		n.ip = NodeIP(i)
		n.podCIDR = PodCIDR(i)
		c.nodes = append(c.nodes, n)
		fab := fmt.Sprintf("n%d", i+1)
		if err := addNetns(n.ns); err != nil {
			return fmt.Errorf("node %s: %w", name, err)
		}
		if cg := c.NodeCgroup(name); cg != "" {
			if err := os.MkdirAll(cg, 0o755); err != nil {
				return fmt.Errorf("node %s: cgroup: %w", name, err)
			}
		}
		h, err := openNL(n.ns)
		if err != nil {
			return fmt.Errorf("node %s: %w", name, err)
		}
		nodes[name] = h
		for _, step := range []func() error{
			func() error { return h.up("lo") },
			func() error { return fabric.addVeth(fab, "", h, "eth0", "") },
			func() error { return fabric.setMaster(fab, "br0") },
			func() error { return fabric.up(fab) },
			func() error { return h.addAddr("eth0", netip.PrefixFrom(n.ip, 24)) },
			func() error { return h.up("eth0") },
			func() error {
				return sysctls(n.ns, "net.ipv4.ip_forward=1", "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0")
			},
		} {
			if err := step(); err != nil {
				return fmt.Errorf("node %s: %w", name, err)
			}
		}
	}
	// A host outside the cluster, on the nodes' network: it reaches the
	// nodes' addresses (NodePorts), not the pods.
	if err := c.addExternal(fabric); err != nil {
		return err
	}
	// Routes between nodes' pod CIDRs.
	for _, n := range c.nodes {
		for _, o := range c.nodes {
			if o.name == n.name {
				continue
			}
			if err := nodes[n.name].addRoute(o.podCIDR, "eth0", o.ip); err != nil {
				return fmt.Errorf("node %s: %w", n.name, err)
			}
		}
	}
	// Pods.
	addrs := AssignAddresses(c.spec)
	for i, ps := range c.spec.Pods {
		if err := ctx.Err(); err != nil {
			return err
		}
		var node nodeInfo
		for _, n := range c.nodes {
			if n.name == ps.Node {
				node = n
			}
		}
		addr := addrs[i]
		if err := c.addPod(node, ps, addr); err != nil {
			return fmt.Errorf("pod %s/%s: %w", ps.Namespace, ps.Name, err)
		}
		if cg := c.PodCgroup(ps.Node, ps.Namespace, ps.Name); cg != "" {
			if err := os.Mkdir(cg, 0o755); err != nil && !os.IsExist(err) {
				return fmt.Errorf("pod %s/%s: cgroup: %w", ps.Namespace, ps.Name, err)
			}
		}
		// An address outside the node's pod CIDR needs a route on the
		// other nodes (of its cluster, in a mesh: other clusters may use
		// the same address).
		if !node.podCIDR.Contains(addr) {
			for _, o := range c.nodes {
				if o.name != node.name && c.specSameCluster(o.name, node.name) {
					if err := nodes[o.name].addRoute(netip.PrefixFrom(addr, 32), "eth0", node.ip); err != nil {
						return fmt.Errorf("pod %s/%s: %w", ps.Namespace, ps.Name, err)
					}
				}
			}
		}
		c.pods = append(c.pods, cluster.Pod{PodSpec: ps, IP: addr})
	}
	return nil
}

// specSameCluster reports whether nodes a and b are in one cluster of
// the spec (always without a mesh).
func (c *Cluster) specSameCluster(a, b string) bool {
	for _, cs := range c.spec.Clusters {
		if slices.Contains(cs.Nodes, a) {
			return slices.Contains(cs.Nodes, b)
		}
	}
	return true
}

// ExternalNS is the network namespace of the run's host outside the
// cluster.
func ExternalNS(runID string) string { return runID + "-external" }

// ExternalNetns is the namespace of the host outside the cluster, on the
// nodes' network (198.18.0.254): the client of north-south traffic.
func (c *Cluster) ExternalNetns() string { return ExternalNS(c.spec.RunID) }

// ExternalIP is the address of the host outside the cluster.
func (c *Cluster) ExternalIP() netip.Addr { return externalIP }

// ExternalAddr is the address every cluster gives its external host.
func ExternalAddr() netip.Addr { return externalIP }

// ExternalHostLink makes dev, in namespace ns, the link of a host outside
// the cluster (here and on the kind provider): a host on a wire sends
// complete checksums (a veth would pass on the partial ones of checksum
// offload, which a datapath that rewrites and retransmits frames in XDP,
// XDP_TX, cannot finish); and it takes replies of direct server return,
// which come from the node the client connected to but are sent by the
// backend's node (no reverse-path filter).
func ExternalHostLink(ns, dev string) error {
	if err := ethtoolSet(ns, dev, ethtoolSTXCSUM, 0); err != nil {
		return err
	}
	return sysctls(ns, "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0", "net.ipv4.conf."+dev+".rp_filter=0")
}

func (c *Cluster) addExternal(fabric *nl) error {
	ns := c.ExternalNetns()
	if err := addNetns(ns); err != nil {
		return fmt.Errorf("external host: %w", err)
	}
	h, err := openNL(ns)
	if err != nil {
		return fmt.Errorf("external host: %w", err)
	}
	defer h.close()
	for _, step := range []func() error{
		func() error { return h.up("lo") },
		func() error { return fabric.addVeth("ext", "", h, "eth0", "") },
		func() error { return fabric.setMaster("ext", "br0") },
		func() error { return fabric.up("ext") },
		func() error { return h.addAddr("eth0", netip.PrefixFrom(externalIP, 24)) },
		func() error { return h.up("eth0") },
		func() error { return ExternalHostLink(ns, "eth0") },
	} {
		if err := step(); err != nil {
			return fmt.Errorf("external host: %w", err)
		}
	}
	return nil
}

//go:embed xdp_pass.o
var xdpPassObj []byte

// wireXDP attaches (on) or removes a pass-through XDP program on the
// bridge side of every node's veth: frames a node sends with XDP_TX
// (--xdp-nodeport) are delivered only to a veth peer that runs XDP. A NIC
// needs no such thing; the bridge-side veths stand in for the wire. The
// program is attached only while such agents run: XDP on a veth moves it
// to NAPI receive for every frame.
func (c *Cluster) wireXDP(on bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if on == c.wireXDPOn {
		return nil
	}
	obj := filepath.Join(c.runDir, "xdp_pass.o")
	if on {
		if err := os.WriteFile(obj, xdpPassObj, 0o644); err != nil {
			return err
		}
	}
	for i := range c.nodes {
		args := []string{"-n", c.fabric, "link", "set", "dev", fmt.Sprintf("n%d", i+1), "xdp", "off"}
		if on {
			args = []string{"-n", c.fabric, "link", "set", "dev", fmt.Sprintf("n%d", i+1), "xdpdrv", "obj", obj, "sec", "xdp"}
		}
		if _, err := execx.Run(context.Background(), "ip", args...); err != nil {
			return fmt.Errorf("XDP on the wire side of node %s: %w", c.nodes[i].name, err)
		}
	}
	c.wireXDPOn = on
	return nil
}

// NodeIP is the address of the node at index i of Spec.Nodes.
func NodeIP(i int) netip.Addr {
	a := nodeNet.Addr().As4()
	a[3] = byte(i + 1)
	return netip.AddrFrom4(a)
}

// PodCIDR is the pod CIDR of the node at index i of Spec.Nodes.
func PodCIDR(i int) netip.Prefix {
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 19, byte(i + 1), 0}), 24)
}

// AssignAddresses returns the address of every pod of spec, in order: the
// requested one, or the next free host of its node's pod CIDR from .11 on.
func AssignAddresses(spec cluster.Spec) []netip.Addr {
	taken := map[netip.Addr]bool{}
	for _, p := range spec.Pods {
		if p.IP.IsValid() {
			taken[p.IP] = true
		}
	}
	nodeIdx := map[string]int{}
	for i, n := range spec.Nodes {
		nodeIdx[n] = i
	}
	next := map[string]int{}
	out := make([]netip.Addr, len(spec.Pods))
	for i, p := range spec.Pods {
		if p.IP.IsValid() {
			out[i] = p.IP
			continue
		}
		for {
			next[p.Node]++
			a := PodCIDR(nodeIdx[p.Node]).Addr().As4()
			a[3] = byte(10 + next[p.Node])
			addr := netip.AddrFrom4(a)
			if !taken[addr] {
				taken[addr] = true
				out[i] = addr
				break
			}
		}
	}
	return out
}

// addPod makes the pod's namespace and wires it to its node as the CNI
// plugin does on Kubernetes (datapath/podnet): a veth whose node side is
// model.InterfaceName, the address as a /32, the link-local gateway.
func (c *Cluster) addPod(node nodeInfo, ps cluster.PodSpec, addr netip.Addr) error {
	ns := PodNS(c.spec.RunID, ps.Namespace, ps.Name)
	if err := addNetns(ns); err != nil {
		return err
	}
	_, err := podnet.Setup(podnet.Options{
		NodeNetns:  filepath.Join(netnsRunDir, node.ns),
		PodNetns:   filepath.Join(netnsRunDir, ns),
		HostIfName: model.InterfaceName(ps.Namespace, ps.Name),
		IP:         addr,
		Gateway:    netip.MustParseAddr(gatewayIP),
	})
	return err
}

// writeClusterState writes Namespaces, Nodes and Pods as Kubernetes YAML
// (in a mesh: each cluster gets every Namespace, its own Nodes and Pods).
func (c *Cluster) writeClusterState() error {
	if len(c.mesh) == 0 {
		data, err := c.clusterState(func(string) bool { return true })
		if err != nil {
			return err
		}
		_, err = c.WriteState("00-cluster.yaml", data)
		return err
	}
	for _, m := range c.mesh {
		data, err := c.clusterState(func(node string) bool { return c.meshOf[node] == m })
		if err != nil {
			return err
		}
		if err := writeFileAtomic(filepath.Join(m.stateDir, "00-cluster.yaml"), data); err != nil {
			return err
		}
	}
	return nil
}

// clusterState is the Namespaces, and the Nodes and Pods of the nodes in
// (by name), as Kubernetes YAML.
func (c *Cluster) clusterState(in func(node string) bool) ([]byte, error) {
	var docs []any
	nsSeen := map[string]bool{}
	var nsNames []string
	for _, p := range c.pods {
		if !nsSeen[p.Namespace] {
			nsSeen[p.Namespace] = true
			nsNames = append(nsNames, p.Namespace)
		}
	}
	sort.Strings(nsNames)
	for _, ns := range nsNames {
		docs = append(docs, &corev1.Namespace{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"},
			ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: mergeLabels(map[string]string{"kubernetes.io/metadata.name": ns}, c.spec.Namespaces[ns])},
		})
	}
	for _, n := range c.nodes {
		if !in(n.name) {
			continue
		}
		docs = append(docs, &corev1.Node{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Node"},
			ObjectMeta: metav1.ObjectMeta{Name: n.name},
			Spec:       corev1.NodeSpec{PodCIDR: n.podCIDR.String()},
			Status:     corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: n.ip.String()}}},
		})
	}
	for _, p := range c.pods {
		if !in(p.Node) {
			continue
		}
		pod := &corev1.Pod{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
			ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace, Labels: p.Labels},
			Spec:       corev1.PodSpec{NodeName: p.Node, ServiceAccountName: p.ServiceAccount, Containers: []corev1.Container{{Name: "main", Image: "fastpath"}}},
			Status:     corev1.PodStatus{PodIP: p.IP.String(), Phase: corev1.PodRunning},
		}
		for _, port := range p.Ports {
			pod.Spec.Containers[0].Ports = append(pod.Spec.Containers[0].Ports, corev1.ContainerPort{
				Name: port.Name, ContainerPort: int32(port.Port), Protocol: corev1.Protocol(strings.ToUpper(orDefault(port.Protocol, "TCP"))),
			})
		}
		docs = append(docs, pod)
	}
	return MarshalDocs(docs)
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

func mergeLabels(a, b map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		out[k] = v
	}
	return out
}

// MarshalDocs renders objects as one multi-document YAML.
func MarshalDocs(docs []any) ([]byte, error) {
	var b strings.Builder
	for _, d := range docs {
		y, err := yaml.Marshal(d)
		if err != nil {
			return nil, err
		}
		b.WriteString("---\n")
		b.Write(y)
	}
	return []byte(b.String()), nil
}

// Pods lists the pods.
func (c *Cluster) Pods() []cluster.Pod { return append([]cluster.Pod(nil), c.pods...) }

// Nodes are the node names, in creation order.
func (c *Cluster) Nodes() []string {
	var out []string
	for _, n := range c.nodes {
		out = append(out, n.name)
	}
	return out
}

// StateDir is the directory agents watch.
func (c *Cluster) StateDir() string { return c.stateDir }

// WriteState writes a state file atomically (temporary name starting with
// ".", then rename) and returns the digest of the whole state. In a mesh
// the documents go to the clusters their cluster.ClusterAnnotation names
// (every cluster without it) and the token holds each cluster's digest.
func (c *Cluster) WriteState(name string, data []byte) (string, error) {
	if len(c.mesh) > 0 {
		return c.writeMeshState(name, data)
	}
	tmp := filepath.Join(c.stateDir, "."+name+".tmp")
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, filepath.Join(c.stateDir, name)); err != nil {
		return "", err
	}
	return c.hasher.HashDir(c.stateDir)
}

// RemoveState deletes a state file and returns the new digest.
func (c *Cluster) RemoveState(name string) (string, error) {
	if len(c.mesh) > 0 {
		return c.removeMeshState(name)
	}
	if err := os.Remove(filepath.Join(c.stateDir, name)); err != nil && !os.IsNotExist(err) {
		return "", err
	}
	return c.hasher.HashDir(c.stateDir)
}

func (c *Cluster) agentBinary() (string, error) {
	if c.opts.AgentBinary != "" {
		return c.opts.AgentBinary, nil
	}
	if exe, err := os.Executable(); err == nil {
		cand := filepath.Join(filepath.Dir(exe), "fastpath-agent")
		if _, err := os.Stat(cand); err == nil {
			return cand, nil
		}
	}
	p, err := exec.LookPath("fastpath-agent")
	if err != nil {
		return "", errors.New("fastpath-agent binary not found next to this executable nor on PATH (build it with make build, or pass --agent-binary)")
	}
	return p, nil
}

// AgentSocket is the status socket of a node's agent.
func (c *Cluster) AgentSocket(node string) string {
	return filepath.Join(c.runDir, "agent-"+node+".sock")
}

// AgentClient talks to the agent of node over its socket.
func (c *Cluster) AgentClient(node string) *agentapi.Client {
	return agentapi.NewClient(c.AgentSocket(node))
}

// StartAgents starts an agent in every node namespace and waits until every
// one has programmed the current state.
func (c *Cluster) StartAgents(ctx context.Context, opts cluster.AgentOptions) error {
	bin, err := c.agentBinary()
	if err != nil {
		return err
	}
	c.mu.Lock()
	if len(c.agents) > 0 {
		c.mu.Unlock()
		return errors.New("agents already running")
	}
	c.mu.Unlock()
	// The datapath starts from empty conntrack tables (FlushConntrack:
	// what the previous one left made allowed connections fail).
	for _, n := range c.nodes {
		if err := FlushConntrack(filepath.Join(netnsRunDir, n.ns)); err != nil {
			return fmt.Errorf("node %s: %w", n.name, err)
		}
	}
	if slices.Contains(opts.ExtraArgs, "--xdp-nodeport") {
		if err := c.wireXDP(true); err != nil {
			return err
		}
	}
	for _, n := range c.nodes {
		args := []string{
			"--node", n.name,
			"--state-dir", c.stateDirOf(n.name),
			"--datapath", opts.Datapath,
			"--pin-path", filepath.Join(c.pinRoot, n.name),
			"--api-socket", c.AgentSocket(n.name),
		}
		if cg := c.NodeCgroup(n.name); cg != "" {
			args = append(args, "--cgroup", cg)
		}
		args = append(args, "--pod-netns", PodNS(c.spec.RunID, "{namespace}", "{name}"))
		args = append(args, opts.ExtraArgs...)
		args = append(args, c.meshAgentArgs(n.name, opts.Datapath, opts.ExtraArgs)...)
		cmd := exec.Command(bin, args...)
		// The nodes share the machine's CPUs: each agent's Go code runs on
		// one at a time, as it would with a one-CPU limit on a node of its
		// own. (With every agent and the harness free to spread over all
		// CPUs, their threads wake each other across CPUs and policy
		// changes took twice as long on a 2-CPU machine.)
		procs := opts.GoMaxProcs
		if procs == 0 {
			procs = 1
		}
		cmd.Env = append(os.Environ(), fmt.Sprintf("GOMAXPROCS=%d", procs))
		logf, err := os.OpenFile(filepath.Join(c.logDir, "agent-"+n.name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return err
		}
		cmd.Stdout, cmd.Stderr = logf, logf
		err = execx.StartInNetns(n.ns, cmd)
		logf.Close()
		if err != nil {
			return fmt.Errorf("agent on %s: %w", n.name, err)
		}
		proc := &cluster.Process{Name: "agent-" + n.name, Cmd: cmd}
		c.mu.Lock()
		c.agents[n.name] = proc
		c.mu.Unlock()
	}
	var hash string
	if len(c.mesh) > 0 {
		hash, err = c.meshToken()
	} else {
		hash, err = c.hasher.HashDir(c.stateDir)
	}
	if err != nil {
		return err
	}
	timeout := opts.ReadyTimeout
	if timeout == 0 {
		timeout = 30 * time.Second
	}
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if _, err = c.WaitProgrammed(wctx, hash, time.Now()); err != nil {
		return err
	}
	if opts.Datapath == "ebpf" {
		return c.waitMesh(wctx)
	}
	return nil
}

// WaitProgrammed waits until every agent reports the state digest token
// programmed with no endpoint pending (in a mesh: its cluster's digest of
// the token).
func (c *Cluster) WaitProgrammed(ctx context.Context, token string, since time.Time) (map[string]time.Duration, error) {
	out := map[string]time.Duration{}
	for _, n := range c.nodes {
		cl := agentapi.NewClient(c.AgentSocket(n.name))
		hash := c.digestFor(token, n.name)
		st, err := cl.WaitProgrammed(ctx, hash)
		if err != nil {
			return out, fmt.Errorf("agent on %s did not program state %s (see %s): %w", n.name, hash,
				filepath.Join(c.logDir, "agent-"+n.name+".log"), err)
		}
		if agentapi.Refused(st, hash) {
			return out, fmt.Errorf("agent on %s refused state %s: %s", n.name, hash, st.LastError)
		}
		out[n.name] = st.AppliedAt.Sub(since)
	}
	return out, nil
}

// StopAgents stops every agent (SIGTERM, then SIGKILL after 5s).
func (c *Cluster) StopAgents(ctx context.Context) error {
	c.mu.Lock()
	agents := c.agents
	c.agents = map[string]*cluster.Process{}
	c.mu.Unlock()
	var errs []error
	for node, p := range agents {
		if err := stopProcess(p, 5*time.Second); err != nil {
			errs = append(errs, fmt.Errorf("agent on %s: %w", node, err))
		}
	}
	if err := c.wireXDP(false); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Agents returns the running agents by node.
func (c *Cluster) Agents() map[string]*cluster.Process {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]*cluster.Process{}
	for k, v := range c.agents {
		out[k] = v
	}
	return out
}

func stopProcess(p *cluster.Process, grace time.Duration) error {
	if p.Cmd.Process == nil {
		return nil
	}
	if p.Cmd.ProcessState != nil {
		return nil
	}
	_ = p.Cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- p.Cmd.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			return err
		}
		return nil
	case <-time.After(grace):
		_ = p.Cmd.Process.Kill()
		<-done
		return fmt.Errorf("%s did not stop within %s; killed", p.Name, grace)
	}
}

// StartIn starts cmd in the network namespace of pod "namespace/name". The
// process is stopped by Destroy if still running.
func (c *Cluster) StartIn(pod string, cmd *exec.Cmd) (*cluster.Process, error) {
	var found *cluster.Pod
	for i := range c.pods {
		if c.pods[i].Key() == pod {
			found = &c.pods[i]
		}
	}
	if found == nil {
		return nil, fmt.Errorf("no pod %s", pod)
	}
	// No Pdeathsig: it fires when the forking thread ends, and the thread
	// locked into the namespace ends right after the start. Destroy, the
	// interrupt handler and `fastpath clean` stop processes instead.
	if cg := c.PodCgroup(found.Node, found.Namespace, found.Name); cg != "" {
		// Created in the pod's cgroup (clone3 CLONE_INTO_CGROUP), so the
		// node's socket programs see its sockets from the first one.
		fd, err := syscall.Open(cg, syscall.O_DIRECTORY|syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("pod %s: open cgroup: %w", pod, err)
		}
		defer syscall.Close(fd)
		if cmd.SysProcAttr == nil {
			cmd.SysProcAttr = &syscall.SysProcAttr{}
		}
		cmd.SysProcAttr.UseCgroupFD = true
		cmd.SysProcAttr.CgroupFD = fd
	}
	if err := execx.StartInNetns(PodNS(c.spec.RunID, found.Namespace, found.Name), cmd); err != nil {
		return nil, err
	}
	p := &cluster.Process{Name: pod, Cmd: cmd}
	c.mu.Lock()
	c.procs = append(c.procs, p)
	c.mu.Unlock()
	return p, nil
}

// PodNetns returns the network namespace name of pod "namespace/name".
func (c *Cluster) PodNetns(pod string) string {
	for _, p := range c.pods {
		if p.Key() == pod {
			return PodNS(c.spec.RunID, p.Namespace, p.Name)
		}
	}
	return ""
}

// Destroy stops every process and removes every namespace, pin and file of
// the run.
func (c *Cluster) Destroy(ctx context.Context) error {
	var errs []error
	if err := c.StopAgents(ctx); err != nil {
		errs = append(errs, err)
	}
	c.stopMesh()
	c.mu.Lock()
	procs := c.procs
	c.procs = nil
	c.mu.Unlock()
	for _, p := range procs {
		if p.Cmd.ProcessState == nil && p.Cmd.Process != nil {
			_ = p.Cmd.Process.Kill()
			_ = p.Cmd.Wait()
		}
	}
	if err := CleanRun(ctx, c.spec.RunID); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
