package conformance

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/fastpath-bench/fastpath/datapath/model"
	"github.com/fastpath-bench/fastpath/harness/cluster"
	"github.com/fastpath-bench/fastpath/harness/cluster/netns"
	"github.com/fastpath-bench/fastpath/harness/probe"
	"github.com/fastpath-bench/fastpath/harness/scenario"
)

// Datapaths the runner can check.
var Datapaths = []string{"model", "ebpf", "iptables"}

// Options configure Run. Zero values mean defaults.
type Options struct {
	// Datapath: "model" (reference evaluator only) or "ebpf"; "" means ebpf.
	Datapath string
	// AgentBinary for datapath runs; empty: next to this executable, then
	// PATH.
	AgentBinary string
	// Timeout of one probe; 0 means 1s. A probe that should connect and
	// does not within it fails.
	Timeout time.Duration
	// Parallel probes at once; 0 means 512 (a denied probe waits out its
	// timeout, so a case costs about one timeout when all run at once).
	Parallel int
	// Clusters is how many clusters run at once; 0 means 4.
	Clusters int
	// Progress receives a line as each cluster's cases finish; nil: none.
	Progress io.Writer
	// Out receives one line per failing probe (and progress); nil: none.
	Out io.Writer
	// RunID prefixes what the run creates; empty: generated.
	RunID string
	// LogDir for agent logs; empty: the run's state directory.
	LogDir string
	// Provider builds the clusters: "netns" (default) or "kind" (one kind
	// cluster for every case, the agent as its CNI DaemonSet).
	Provider string
	// Kind configures the kind provider.
	Kind KindOptions
}

// ProbeResult is the outcome of one probe.
type ProbeResult struct {
	Probe
	// ResolvedPort is the number a named port resolved to.
	ResolvedPort int  `json:"resolvedPort"`
	Got          bool `json:"got"`
	Passed       bool `json:"passed"`
	// Model is the reference evaluator's verdict on the same probe.
	Model   bool   `json:"model"`
	Skipped string `json:"skipped,omitempty"`
	Error   string `json:"error,omitempty"`
}

// CaseResult is the outcome of one case.
type CaseResult struct {
	Name   string        `json:"name"`
	Probes []ProbeResult `json:"probes"`
	// Error is set when the case could not run at all (all its probes
	// count as failed).
	Error string `json:"error,omitempty"`
}

// Result is the outcome of a run.
type Result struct {
	Datapath string       `json:"datapath"`
	Cases    []CaseResult `json:"cases"`
	Passed   int          `json:"passed"`
	Failed   int          `json:"failed"`
	Skipped  int          `json:"skipped"`
	Seconds  float64      `json:"seconds"`
}

// Summary is the closing line: "N passed, M failed[, K skipped]".
func (r *Result) Summary() string {
	s := fmt.Sprintf("%d passed, %d failed", r.Passed, r.Failed)
	if r.Skipped > 0 {
		s += fmt.Sprintf(", %d skipped", r.Skipped)
	}
	return s
}

// WriteJSON writes the result.
func (r *Result) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// Run runs every case against the datapath.
func Run(ctx context.Context, cases []*Case, opts Options) (*Result, error) {
	if opts.Datapath == "" {
		opts.Datapath = "ebpf"
	}
	if opts.Timeout == 0 {
		opts.Timeout = time.Second
	}
	if opts.Parallel == 0 {
		opts.Parallel = 512
	}
	if opts.Clusters == 0 {
		opts.Clusters = 4
	}
	if opts.Out == nil {
		opts.Out = io.Discard
	}
	switch opts.Provider {
	case "", "netns", "kind":
	default:
		return nil, fmt.Errorf("--provider %q: want netns or kind", opts.Provider)
	}
	start := time.Now()
	res := &Result{Datapath: opts.Datapath}
	var err error
	switch base, _, _ := strings.Cut(opts.Datapath, "+"); base {
	case "model":
		for _, c := range cases {
			res.Cases = append(res.Cases, runModel(c, topologyOf(c, "")))
		}
	case "ebpf", "iptables", "none":
		// Options after "+" as in suites: ebpf+xdp-nodeport.
		if _, _, err := scenario.AgentArgs(opts.Datapath); err != nil {
			return nil, fmt.Errorf("--datapath: %w", err)
		}
		if opts.Provider == "kind" {
			err = runKind(ctx, cases, opts, res)
		} else {
			err = runDatapath(ctx, cases, opts, res)
		}
	default:
		return nil, fmt.Errorf("--datapath %q: unknown (want one of %v, ebpf with options such as ebpf+xdp-nodeport)", opts.Datapath, Datapaths)
	}
	for _, cr := range res.Cases {
		for _, p := range cr.Probes {
			switch {
			case p.Skipped != "":
				res.Skipped++
			case p.Passed:
				res.Passed++
			default:
				res.Failed++
				fmt.Fprintf(opts.Out, "FAIL %s: %s: want connected=%v, got %v%s\n", cr.Name, p.Probe, p.Connected, p.Got, errNote(p.Error))
			}
		}
	}
	res.Seconds = time.Since(start).Seconds()
	return res, err
}

func errNote(e string) string {
	if e == "" {
		return ""
	}
	return " (" + e + ")"
}

// topology is the cluster a case runs on: the provider's spec and every
// pod's address.
type topology struct {
	spec  cluster.Spec
	addrs map[string]netip.Addr
	pods  map[string]*corev1.Pod
	// nodeIPs are the nodes' addresses where the provider chose them
	// (kind); nil: the netns provider's (netns.NodeIP).
	nodeIPs map[string]netip.Addr
}

// topologyOf derives nodes, pods and addresses from cluster.yaml: nodes are
// the pods' spec.nodeName values (node1 and node2 when none is named), pods
// without a node are spread over the nodes, and a pod's status.podIP is
// kept as its address.
func topologyOf(c *Case, runID string) *topology {
	t := &topology{addrs: map[string]netip.Addr{}, pods: map[string]*corev1.Pod{}}
	nodeSet := map[string]bool{}
	for _, p := range c.Cluster.Pods {
		if p.Spec.NodeName != "" {
			nodeSet[p.Spec.NodeName] = true
		}
	}
	for n := range nodeSet {
		t.spec.Nodes = append(t.spec.Nodes, n)
	}
	sort.Strings(t.spec.Nodes)
	if len(t.spec.Nodes) == 0 {
		t.spec.Nodes = []string{"node1", "node2"}
	}
	if len(c.Mesh) > 0 {
		meshSpec(c, &t.spec)
	}
	t.spec.RunID = runID
	t.spec.Namespaces = map[string]map[string]string{}
	for _, ns := range c.Cluster.Namespaces {
		t.spec.Namespaces[ns.Name] = ns.Labels
	}
	for i := range c.Cluster.Pods {
		p := &c.Cluster.Pods[i]
		node := p.Spec.NodeName
		if node == "" {
			node = t.spec.Nodes[i%len(t.spec.Nodes)]
		}
		ps := cluster.PodSpec{Namespace: p.Namespace, Name: p.Name, Node: node, Labels: p.Labels, ServiceAccount: p.Spec.ServiceAccountName}
		if p.Status.PodIP != "" {
			ps.IP, _ = netip.ParseAddr(p.Status.PodIP)
		}
		for _, ctr := range p.Spec.Containers {
			for _, port := range ctr.Ports {
				ps.Ports = append(ps.Ports, cluster.Port{Name: port.Name, Port: int(port.ContainerPort), Protocol: string(port.Protocol)})
			}
		}
		t.spec.Pods = append(t.spec.Pods, ps)
		t.pods[p.Namespace+"/"+p.Name] = p
	}
	for i, a := range netns.AssignAddresses(t.spec) {
		ps := t.spec.Pods[i]
		t.addrs[ps.Namespace+"/"+ps.Name] = a
	}
	return t
}

// objects returns the case's objects with the topology's addresses.
func (t *topology) objects(c *Case) (*model.Objects, error) {
	objs := &model.Objects{Namespaces: c.Cluster.Namespaces}
	for _, p := range c.Cluster.Pods {
		p := *p.DeepCopy()
		p.Status.PodIP = t.addrs[p.Namespace+"/"+p.Name].String()
		objs.Pods = append(objs.Pods, p)
	}
	for _, n := range t.spec.Nodes {
		objs.Nodes = append(objs.Nodes, corev1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: n},
			Status:     corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: t.nodeIP(n).String()}}},
		})
	}
	objs.Services = append(objs.Services, c.Cluster.Services...)
	objs.EndpointSlices = append(objs.EndpointSlices, c.Cluster.EndpointSlices...)
	objs.EndpointSlices = append(objs.EndpointSlices, endpointSlicesFor(objs)...)
	if err := objs.Decode("policies.yaml", c.Policies); err != nil {
		return nil, err
	}
	return objs, nil
}

// resolvePort turns a probe's port (number or name) into a number, using
// the destination pod's container ports for names.
func (t *topology) resolvePort(p Probe, objs *model.Objects) (int, error) {
	if p.Port.Type == intstr.Int {
		return int(p.Port.IntVal), nil
	}
	if p.Service != "" {
		svc := findService(objs, p.Service)
		for _, sp := range svc.Spec.Ports {
			if sp.Name == p.Port.StrVal {
				return int(sp.Port), nil
			}
		}
		return 0, fmt.Errorf("Service %s has no port named %q", p.Service, p.Port.StrVal)
	}
	pod := t.pods[p.To]
	for _, c := range pod.Spec.Containers {
		for _, cp := range c.Ports {
			proto := string(cp.Protocol)
			if proto == "" {
				proto = "TCP"
			}
			if cp.Name == p.Port.StrVal && strings.EqualFold(proto, p.transport()) {
				return int(cp.ContainerPort), nil
			}
		}
	}
	return 0, fmt.Errorf("pod %s has no %s port named %q", p.To, p.transport(), p.Port.StrVal)
}

func modelVerdicts(c *Case, t *topology) ([]ProbeResult, error) {
	if len(c.Mesh) > 0 {
		return meshModelVerdicts(c, t)
	}
	objs, err := t.objects(c)
	if err != nil {
		return nil, err
	}
	if err := objs.Validate(); err != nil {
		return nil, err
	}
	out := make([]ProbeResult, len(c.Probes))
	for i, p := range c.Probes {
		out[i] = ProbeResult{Probe: p}
		port, err := t.resolvePort(p, objs)
		if err != nil {
			out[i].Error = err.Error()
			continue
		}
		out[i].ResolvedPort = port
		if p.Service != "" || p.Node != "" {
			dst := serviceIP(objs, p.Service)
			if p.Node != "" {
				dst = t.nodeIP(p.Node)
			}
			out[i].Model, err = expectedService(objs, p, t.source(p.From), dst, uint16(port))
			if err != nil {
				out[i].Error = err.Error()
			}
			continue
		}
		out[i].Model = expected(objs, p, t.addrs[p.From], t.addrs[p.To], uint16(port))
	}
	return out, nil
}

// expected is the reference evaluator's answer for a probe: an HTTP probe
// gets through when its request is allowed; a TCP echo gets through when
// the connection is allowed and no L7 proxy sits in it (the proxy answers
// only HTTP).
func expected(objs *model.Objects, p Probe, from, to netip.Addr, port uint16) bool {
	if p.proto() == "HTTP" {
		return model.EvaluateRequest(objs, from, to, port, model.Request{Method: p.method(), Path: p.path()}).Allowed
	}
	proto, _ := model.ParseProtocol(p.proto())
	v := model.Evaluate(objs, from, to, proto, port)
	return v.Allowed && !v.Proxied
}

// expectedService is the reference evaluator's answer for a probe to a
// Service: connected when every backend new flows may go to lets the
// connection through (policy applies after translation); an error when
// the answer depends on which backend is chosen.
func expectedService(objs *model.Objects, p Probe, from, vip netip.Addr, port uint16) (bool, error) {
	proto, _ := model.ParseProtocol(p.proto())
	v := model.EvaluateService(objs, from, vip, proto, port)
	if v.Service == "" {
		// Not a frontend: no pod holds the ClusterIP, so nothing answers.
		return false, nil
	}
	if v.Mixed {
		return false, fmt.Errorf("the outcome depends on the backend chosen (%s): make the backends agree", v.Reason)
	}
	if v.NoBackends {
		return false, nil
	}
	for _, b := range v.Backends {
		if !b.Verdict.Allowed || b.Verdict.Proxied {
			return false, nil
		}
	}
	return true, nil
}

// source is the address a probe's from names: a pod's, or the external
// host's.
func (t *topology) source(from string) netip.Addr {
	if from == External {
		return netns.ExternalAddr()
	}
	return t.addrs[from]
}

// nodeIP is a node's address.
func (t *topology) nodeIP(name string) netip.Addr {
	if t.nodeIPs != nil {
		return t.nodeIPs[name]
	}
	for i, n := range t.spec.Nodes {
		if n == name {
			return netns.NodeIP(i)
		}
	}
	return netip.Addr{}
}

// serviceIP is a Service's ClusterIP.
func serviceIP(objs *model.Objects, key string) netip.Addr {
	if s := findService(objs, key); s != nil {
		a, _ := netip.ParseAddr(s.Spec.ClusterIP)
		return a
	}
	return netip.Addr{}
}

func runModel(c *Case, t *topology) CaseResult {
	cr := CaseResult{Name: c.Name}
	probes, err := modelVerdicts(c, t)
	if err != nil {
		return failAll(c, err)
	}
	for _, p := range probes {
		p.Got = p.Model
		p.Passed = p.Error == "" && p.Got == p.Connected
		cr.Probes = append(cr.Probes, p)
	}
	return cr
}

// runDatapath runs cases on netns clusters with real agents; consecutive
// cases with the same cluster.yaml share one cluster, and up to
// opts.Clusters clusters run at once (a case mostly waits for denied probes
// to time out, so clusters overlap well even on few cores).
func runDatapath(ctx context.Context, cases []*Case, opts Options, res *Result) error {
	base := opts.RunID
	if base == "" {
		base = netns.NewRunID()
	}
	type group struct {
		cases   []*Case
		runID   string
		results []CaseResult
		err     error
	}
	var groups []*group
	for i := 0; i < len(cases); {
		j := i + 1
		for j < len(cases) && cases[j].ClusterKey == cases[i].ClusterKey {
			j++
		}
		groups = append(groups, &group{cases: cases[i:j], runID: fmt.Sprintf("%s-%d", base, i)})
		i = j
	}
	sem := make(chan struct{}, opts.Clusters)
	var wg sync.WaitGroup
	var mu sync.Mutex
	done := 0
	for _, g := range groups {
		if ctx.Err() != nil {
			break
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			g.results, g.err = runGroup(ctx, g.cases, g.runID, opts)
			if opts.Progress != nil {
				mu.Lock()
				done += len(g.cases)
				fmt.Fprintf(opts.Progress, "conformance (%s): %d/%d cases\n", opts.Datapath, done, len(cases))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	var errs []error
	for _, g := range groups {
		res.Cases = append(res.Cases, g.results...)
		if g.err != nil {
			errs = append(errs, g.err)
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return errors.Join(errs...)
}

// skipAll skips every probe of a case, saying why.
func skipAll(c *Case, why string) CaseResult {
	cr := CaseResult{Name: c.Name}
	for _, p := range c.Probes {
		cr.Probes = append(cr.Probes, ProbeResult{Probe: p, Skipped: why})
	}
	return cr
}

func failAll(c *Case, err error) CaseResult {
	cr := CaseResult{Name: c.Name, Error: err.Error()}
	for _, p := range c.Probes {
		cr.Probes = append(cr.Probes, ProbeResult{Probe: p, Error: err.Error()})
	}
	return cr
}

func runGroup(ctx context.Context, cases []*Case, runID string, opts Options) (out []CaseResult, err error) {
	if base, _, _ := strings.Cut(opts.Datapath, "+"); len(cases[0].Mesh) > 0 && base != "ebpf" {
		for _, cs := range cases {
			out = append(out, skipAll(cs, "datapath "+base+" has no cluster mesh (cross-cluster rules by cluster label or identity)"))
		}
		return out, nil
	}
	t := topologyOf(cases[0], runID)
	t.spec.LogDir = opts.LogDir
	c, err := netns.NewProvider(netns.Options{AgentBinary: opts.AgentBinary}).Create(ctx, t.spec)
	if err != nil {
		for _, cs := range cases {
			out = append(out, failAll(cs, err))
		}
		return out, fmt.Errorf("case %s: build cluster: %w", cases[0].Name, err)
	}
	defer func() {
		if derr := c.Destroy(context.Background()); derr != nil {
			err = errors.Join(err, derr)
		}
	}()
	stop, err := setupCluster(c, t, cases[0])
	if err != nil {
		for _, cs := range cases {
			out = append(out, failAll(cs, err))
		}
		return out, err
	}
	defer stop()
	base, flags, err := scenario.AgentArgs(opts.Datapath)
	if err != nil {
		return out, err
	}
	if err := c.StartAgents(ctx, cluster.AgentOptions{Datapath: base, ExtraArgs: flags}); err != nil {
		for _, cs := range cases {
			out = append(out, failAll(cs, err))
		}
		return out, err
	}
	for _, cs := range cases {
		out = append(out, runCase(ctx, c, t, cs, opts))
	}
	return out, nil
}

// setupCluster takes the pods' addresses from the built cluster, starts
// echo servers on every container port of every pod, and writes the
// case's Services (and EndpointSlices listing the pods' addresses). stop
// closes the servers.
func setupCluster(c cluster.Cluster, t *topology, first *Case) (stop func(), err error) {
	var servers []*probe.Server
	stop = func() {
		for _, s := range servers {
			s.Close()
		}
	}
	for _, p := range c.Pods() {
		t.addrs[p.Key()] = p.IP
	}
	// Echo servers on every container port of every pod.
	for _, p := range c.Pods() {
		byPort := map[int][]string{}
		for _, port := range p.Ports {
			proto := strings.ToUpper(port.Protocol)
			if proto == "" {
				proto = "TCP"
			}
			if proto == "SCTP" {
				continue // no SCTP sockets on every kernel: probes say so
			}
			byPort[port.Port] = append(byPort[port.Port], proto)
		}
		for port, protos := range byPort {
			s, err := probe.Serve(c.PodNetns(p.Key()), port, dedup(protos)...)
			if err != nil {
				stop()
				return func() {}, err
			}
			servers = append(servers, s)
		}
	}
	// Services and their EndpointSlices (generated ones list the pods'
	// addresses in this cluster) are one more state file.
	if len(first.Cluster.Services) > 0 {
		objs, err := t.objects(&Case{Cluster: first.Cluster})
		if err == nil {
			var state []byte
			if state, err = servicesState(objs); err == nil {
				_, err = c.WriteState(ServicesState, state)
			}
		}
		if err != nil {
			stop()
			return func() {}, fmt.Errorf("case %s: services: %w", first.Name, err)
		}
	}
	return stop, nil
}

// sourcePorts hands out source ports for probes in turn, from a range
// outside the usual ephemeral one, so that consecutive probes never share a
// 5-tuple.
var sourcePort atomic.Uint32

func nextSourcePort() int {
	const lo, n = 10000, 22000
	return lo + int(sourcePort.Add(1)%n)
}

func dedup(in []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range in {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

// externalHost is a cluster with a host outside it (netns).
type externalHost interface{ ExternalNetns() string }

// skipReason says why a probe cannot run on cluster c ("" when it can).
func skipReason(c cluster.Cluster, cs *Case, p Probe) string {
	if _, ok := c.(cluster.Mesh); len(cs.Mesh) > 0 && !ok {
		return "this provider builds no cluster meshes (mesh cases: netns)"
	}
	if _, ok := c.(overlayForger); p.Spoof != "" && !ok {
		return "spoofed probes need servers in the harness process and a provider that forges overlay packets (netns, kind)"
	}
	if p.proto() == "SCTP" {
		return "SCTP probes need SCTP sockets, which this kernel lacks"
	}
	if _, ok := c.(externalHost); p.From == External && !ok {
		return "this provider has no host outside the cluster to probe from"
	}
	return ""
}

// runProbe makes probe p (its port resolved, its model verdict set) on
// cluster c and records what it got.
func runProbe(ctx context.Context, c cluster.Cluster, t *topology, cs *Case, p *ProbeResult, timeout time.Duration) {
	var r probe.Result
	dst := t.addrs[p.To]
	if p.Service != "" {
		dst = serviceIP(cs.Cluster, p.Service)
	}
	if p.Node != "" {
		dst = t.nodeIP(p.Node)
	}
	ns := c.PodNetns(p.From)
	if p.From == External {
		ns = c.(externalHost).ExternalNetns()
	}
	switch {
	case p.Spoof != "" && p.spoofLayer() == SpoofOverlay:
		r = forgeOverlay(ctx, c, cs, t, p.Probe, p.ResolvedPort, timeout)
	case p.Spoof != "":
		r = probe.Spoofed(ctx, ns, t.addrs[p.Spoof], dst, p.ResolvedPort, timeout)
	case p.proto() == "HTTP":
		r = probe.HTTP(ctx, ns, nextSourcePort(), dst, p.ResolvedPort, p.method(), p.path(), timeout)
	default:
		r = probe.ConnectFrom(ctx, ns, nextSourcePort(), dst, p.ResolvedPort, p.proto(), timeout)
	}
	p.Got = r.Connected
	p.Passed = p.Got == p.Connected
	if !p.Passed && r.Err != nil {
		p.Error = r.Err.Error()
	}
	if p.Passed && p.Got != p.Model {
		p.Error = ModelDisagrees
	}
}

// ModelDisagrees is a passed probe's Error when the reference evaluator's
// verdict differs from expect.yaml's (a case to fix).
const ModelDisagrees = "the datapath agrees with expect.yaml but the model does not"

func runCase(ctx context.Context, c cluster.Cluster, t *topology, cs *Case, opts Options) CaseResult {
	cr := CaseResult{Name: cs.Name}
	probes, err := modelVerdicts(cs, t)
	if err != nil {
		return failAll(cs, err)
	}
	since := time.Now()
	var hash string
	if len(strings.TrimSpace(string(cs.Policies))) == 0 {
		hash, err = c.RemoveState(PoliciesState)
	} else {
		hash, err = c.WriteState(PoliciesState, cs.Policies)
	}
	if err != nil {
		return failAll(cs, err)
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	_, err = c.WaitProgrammed(wctx, hash, since)
	cancel()
	if err != nil {
		return failAll(cs, err)
	}
	sem := make(chan struct{}, opts.Parallel)
	var wg sync.WaitGroup
	for i := range probes {
		p := &probes[i]
		if p.Error != "" {
			continue
		}
		if p.Skipped = skipReason(c, cs, p.Probe); p.Skipped != "" {
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			runProbe(ctx, c, t, cs, p, opts.Timeout)
		}()
	}
	wg.Wait()
	cr.Probes = probes
	return cr
}
