package netns

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/fastpath-bench/fastpath/datapath/clustermesh"
	"github.com/fastpath-bench/fastpath/datapath/clustermesh/embedetcd"
	"github.com/fastpath-bench/fastpath/datapath/model"
	"github.com/fastpath-bench/fastpath/harness/cluster"
	"github.com/fastpath-bench/fastpath/harness/execx"
)

// A netns cluster mesh (Spec.Clusters, issue #10): the clusters' nodes
// share the fabric (node addresses and node pod CIDRs are distinct across
// the mesh, and routed between all nodes, as a flat underlay); each
// cluster has its own state directory, its own etcd (in the harness
// process, listening on the external host's address, so that every node
// reaches it and stopping it is a partition), and its own agents, which
// join the mesh with --clustermesh (ebpf: over the VXLAN overlay, with
// the first node of each cluster publishing). Other datapaths have no
// mesh: their agents see only their own cluster, and cross-cluster
// traffic is routed by address.

// meshCluster is one cluster of a mesh.
type meshCluster struct {
	spec        cluster.ClusterSpec
	stateDir    string
	hasher      model.Hasher
	serviceCIDR netip.Prefix
	podCIDRs    []netip.Prefix
	pods        int
	configPath  string

	mu   sync.Mutex
	etcd *embedetcd.Server
	// closed is closed once a killed etcd has released its ports.
	closed <-chan struct{}
	// clientURL and peerURL are the bound URLs, to start etcd again on
	// the same ports after StopControlPlane.
	clientURL, peerURL string
}

// validateMesh checks Spec.Clusters, and the mesh configurations the
// agents would get (duplicate ids, overlapping service CIDRs...), before
// anything is created.
func validateMesh(spec cluster.Spec) error {
	if len(spec.Clusters) == 0 {
		return nil
	}
	errs := spec.CheckClusterNodes()
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	// The agents' configurations, with a stand-in etcd endpoint: the
	// control plane's own validation (names, ids, CIDRs).
	ms := planMesh(spec, "")
	for _, m := range ms {
		cfg := meshConfig(ms, m, spec.MeshLeaseTTL)
		if err := cfg.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("cluster %q: %w", m.spec.Name, err))
			break // every cluster's view repeats the same problems
		}
	}
	return errors.Join(errs...)
}

// planMesh derives each cluster's ranges: its nodes' pod CIDRs, and /32s
// for requested pod addresses outside them.
func planMesh(spec cluster.Spec, runDir string) []*meshCluster {
	idx := map[string]int{}
	for i, n := range spec.Nodes {
		idx[n] = i
	}
	addrs := AssignAddresses(spec)
	var out []*meshCluster
	for _, cs := range spec.Clusters {
		m := &meshCluster{spec: cs, serviceCIDR: cs.ServiceCIDR}
		if !m.serviceCIDR.IsValid() {
			m.serviceCIDR = cluster.DefaultServiceCIDR(cs.ID)
		}
		in := map[string]bool{}
		for _, n := range cs.Nodes {
			in[n] = true
			m.podCIDRs = append(m.podCIDRs, PodCIDR(idx[n]))
		}
		for i, p := range spec.Pods {
			if !in[p.Node] {
				continue
			}
			m.pods++
			covered := false
			for _, pc := range m.podCIDRs {
				covered = covered || pc.Contains(addrs[i])
			}
			if !covered {
				m.podCIDRs = append(m.podCIDRs, netip.PrefixFrom(addrs[i], 32))
			}
		}
		if runDir != "" {
			m.stateDir = filepath.Join(runDir, "state", cs.Name)
			m.configPath = filepath.Join(runDir, "mesh-"+cs.Name+".yaml")
		}
		out = append(out, m)
	}
	return out
}

// meshConfig is cluster self's --clustermesh configuration (its etcd not
// started yet: a stand-in endpoint on the external host).
func meshConfig(ms []*meshCluster, self *meshCluster, ttl time.Duration) *clustermesh.Config {
	members := make([]cluster.MeshMember, len(ms))
	at := 0
	for i, m := range ms {
		if m == self {
			at = i
		}
		ep := m.clientURL
		if ep == "" {
			ep = "http://" + externalIP.String() + ":2379"
		}
		members[i] = cluster.MeshMember{Name: m.spec.Name, ID: m.spec.ID, PodCIDRs: m.podCIDRs, ServiceCIDR: m.serviceCIDR, Endpoint: ep}
	}
	return cluster.MeshConfig(members, at, ttl)
}

// ClusterOf names the cluster of node ("" without a mesh).
func (c *Cluster) ClusterOf(node string) string {
	if m := c.meshOf[node]; m != nil {
		return m.spec.Name
	}
	return ""
}

// ClusterStateDir is the state directory of cluster name.
func (c *Cluster) ClusterStateDir(name string) string {
	for _, m := range c.mesh {
		if m.spec.Name == name {
			return m.stateDir
		}
	}
	return ""
}

// stateDirOf is the state directory node's agent watches.
func (c *Cluster) stateDirOf(node string) string {
	if m := c.meshOf[node]; m != nil {
		return m.stateDir
	}
	return c.stateDir
}

// startMesh creates the clusters' state directories and starts their
// etcds on the external host's address; then it writes each cluster's
// --clustermesh configuration.
func (c *Cluster) startMesh() error {
	c.mesh = planMesh(c.spec, c.runDir)
	c.meshOf = map[string]*meshCluster{}
	for _, m := range c.mesh {
		for _, n := range m.spec.Nodes {
			c.meshOf[n] = m
		}
		if err := os.MkdirAll(m.stateDir, 0o755); err != nil {
			return err
		}
		if err := m.start(c.runDir, c.ExternalNetns(), c.logDir); err != nil {
			return fmt.Errorf("cluster %s: control plane: %w", m.spec.Name, err)
		}
	}
	// The etcds are the provider's own, started and ready: no Preflight
	// (which would dial from the harness's namespace, where the external
	// host's address is not routed).
	for _, m := range c.mesh {
		cfg := meshConfig(c.mesh, m, c.spec.MeshLeaseTTL)
		if err := cfg.Validate(); err != nil {
			return fmt.Errorf("cluster %s: %w", m.spec.Name, err)
		}
		data, err := yaml.Marshal(cfg)
		if err != nil {
			return err
		}
		if err := os.WriteFile(m.configPath, data, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// start runs the cluster's etcd in the external namespace (again on the
// ports it had, after a stop).
func (m *meshCluster) start(runDir, externalNS, logDir string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.etcd != nil {
		return nil
	}
	if m.closed != nil {
		<-m.closed
	}
	client, peer := m.clientURL, m.peerURL
	if client == "" {
		client = "http://" + externalIP.String() + ":0"
		peer = "http://" + externalIP.String() + ":0"
	}
	var s *embedetcd.Server
	err := execx.RunInNetns(externalNS, func() (err error) {
		s, err = embedetcd.Start(embedetcd.Options{
			Name: m.spec.Name, Dir: filepath.Join(runDir, "etcd-"+m.spec.Name),
			ClientURL: client, PeerURL: peer, NoFsync: true,
			LogFile: filepath.Join(logDir, "etcd-"+m.spec.Name+".log"),
		})
		return err
	})
	if err != nil {
		return err
	}
	m.etcd, m.clientURL, m.peerURL = s, s.Endpoint(), s.PeerURL()
	return nil
}

// stop kills the cluster's etcd (at once: clients see it gone, as in a
// partition); wait then waits until its ports are free.
func (m *meshCluster) stop() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.etcd != nil {
		m.closed = m.etcd.Kill()
		m.etcd = nil
	}
}

func (m *meshCluster) wait() {
	m.mu.Lock()
	closed := m.closed
	m.mu.Unlock()
	if closed != nil {
		<-closed
	}
}

func (c *Cluster) meshCluster(name string) (*meshCluster, error) {
	for _, m := range c.mesh {
		if m.spec.Name == name {
			return m, nil
		}
	}
	return nil, fmt.Errorf("no cluster %q in the mesh", name)
}

// StopControlPlane stops cluster name's etcd: the other clusters can no
// longer read its state (a partition).
func (c *Cluster) StopControlPlane(name string) error {
	m, err := c.meshCluster(name)
	if err != nil {
		return err
	}
	m.stop()
	return nil
}

// StartControlPlane starts cluster name's etcd again, with its data, on
// its ports.
func (c *Cluster) StartControlPlane(name string) error {
	m, err := c.meshCluster(name)
	if err != nil {
		return err
	}
	return m.start(c.runDir, c.ExternalNetns(), c.logDir)
}

// stopMesh stops every etcd (at once: each close waits for its streams).
func (c *Cluster) stopMesh() {
	for _, m := range c.mesh {
		m.stop()
	}
	for _, m := range c.mesh {
		m.wait()
	}
}

// meshAgentArgs are the mesh flags of node's agent for datapath (none for
// datapaths without a mesh).
func (c *Cluster) meshAgentArgs(node, datapath string, extra []string) []string {
	m := c.meshOf[node]
	if m == nil || datapath != "ebpf" {
		return nil
	}
	var args []string
	hasTunnel := false
	for _, a := range extra {
		hasTunnel = hasTunnel || a == "--tunnel" || strings.HasPrefix(a, "--tunnel=")
	}
	if !hasTunnel {
		args = append(args, "--tunnel", "vxlan")
	}
	args = append(args, "--clustermesh", m.configPath)
	if m.spec.Nodes[0] == node {
		args = append(args, "--clustermesh-publish")
	}
	return args
}

// writeMeshState splits data (YAML documents) by ClusterAnnotation and
// writes each cluster's part as file name of its state directory
// (removing the file where a cluster gets nothing); it returns the mesh
// token.
func (c *Cluster) writeMeshState(name string, data []byte) (string, error) {
	names := make([]string, 0, len(c.mesh))
	for _, m := range c.mesh {
		names = append(names, m.spec.Name)
	}
	parts, err := cluster.SplitByCluster(data, names)
	if err != nil {
		return "", fmt.Errorf("state %s: %w", name, err)
	}
	for _, m := range c.mesh {
		path := filepath.Join(m.stateDir, name)
		if len(bytes.TrimSpace(parts[m.spec.Name])) == 0 {
			if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
				return "", err
			}
			continue
		}
		if err := writeFileAtomic(path, parts[m.spec.Name]); err != nil {
			return "", err
		}
	}
	return c.meshToken()
}

// removeMeshState removes file name from every cluster's state.
func (c *Cluster) removeMeshState(name string) (string, error) {
	for _, m := range c.mesh {
		if err := os.Remove(filepath.Join(m.stateDir, name)); err != nil && !os.IsNotExist(err) {
			return "", err
		}
	}
	return c.meshToken()
}

func (c *Cluster) meshToken() (string, error) {
	var names, digests []string
	for _, m := range c.mesh {
		h, err := m.hasher.HashDir(m.stateDir)
		if err != nil {
			return "", err
		}
		names, digests = append(names, m.spec.Name), append(digests, h)
	}
	return cluster.MeshToken(names, digests), nil
}

// digestFor is the state digest node's agent must report for token.
func (c *Cluster) digestFor(token, node string) string {
	if len(c.mesh) == 0 {
		return token
	}
	want := c.ClusterOf(node)
	return cluster.SplitMeshToken(token, []string{want})[want]
}

// waitMesh waits until every agent has programmed every peer cluster's
// pods (the peers' published endpoint counts).
func (c *Cluster) waitMesh(ctx context.Context) error {
	if len(c.mesh) < 2 {
		return nil
	}
	for _, n := range c.nodes {
		self := c.meshOf[n.name]
		want := map[string]int{}
		for _, m := range c.mesh {
			if m != self {
				want[m.spec.Name] = m.pods
			}
		}
		if err := c.AgentClient(n.name).WaitMeshPeers(ctx, 20*time.Millisecond, want); err != nil {
			return fmt.Errorf("agent on %s (cluster %s) did not program its peers' pods (see %s): %w",
				n.name, self.spec.Name, filepath.Join(c.logDir, "agent-"+n.name+".log"), err)
		}
	}
	return nil
}

func writeFileAtomic(path string, data []byte) error {
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
