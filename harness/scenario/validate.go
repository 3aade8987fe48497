package scenario

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/validate/content"
)

// FieldError is one problem with a suite: the file, the path of the field
// at fault ("spec.scenarios[1].load.qps") and what is wrong with it.
type FieldError struct {
	// File is the suite file's name as given to LoadFile or Decode.
	File string
	// Field is the path of the field; empty for the whole document.
	Field string
	// Message says what is wrong.
	Message string
}

// Error formats e as "file: field: message".
func (e *FieldError) Error() string {
	if e.Field == "" {
		return e.File + ": " + e.Message
	}
	return e.File + ": " + e.Field + ": " + e.Message
}

// problems collects the FieldErrors of one suite file.
type problems struct {
	file string
	errs []error
}

func (p *problems) add(field, format string, args ...any) {
	p.errs = append(p.errs, &FieldError{File: p.file, Field: field, Message: fmt.Sprintf(format, args...)})
}

// Validate checks the whole suite and returns every problem found, joined
// with errors.Join, each one a *FieldError naming the file name and the
// field. Zero-valued options are valid (they mean their defaults), so a
// suite validates the same before and after Default. Policy files are
// checked to exist, relative to the working directory unless absolute.
func (s *Suite) Validate(name string) error {
	p := &problems{file: name}
	if s.APIVersion != APIVersion {
		p.add("apiVersion", "must be %q, have %q", APIVersion, s.APIVersion)
	}
	if s.Kind != Kind {
		p.add("kind", "must be %q, have %q", Kind, s.Kind)
	}
	if s.Metadata.Name == "" {
		p.add("metadata.name", "is required")
	} else {
		checkDNSLabel(p, "metadata.name", s.Metadata.Name)
	}
	spec := &s.Spec
	if spec.Provider != "" && !slices.Contains(KnownProviders, spec.Provider) {
		p.add("spec.provider", "unknown provider %q (known: %s)", spec.Provider, strings.Join(KnownProviders, ", "))
	}
	s.validateDatapaths(p)
	if spec.Repetitions < 0 || spec.Repetitions > MaxRepetitions {
		p.add("spec.repetitions", "must be between 1 and %d (0 means %d), have %d", MaxRepetitions, DefaultRepetitions, spec.Repetitions)
	}
	checkDuration(p, "spec.warmup", spec.Warmup)
	s.validateCluster(p)
	s.validatePolicies(p)
	s.validateScenarios(p)
	s.validatePropagation(p)
	s.validatePartition(p)
	return errors.Join(p.errs...)
}

func (s *Suite) validatePartition(p *problems) {
	pt := s.Spec.Partition
	if pt == nil {
		return
	}
	const f = "spec.partition"
	c := &s.Spec.Cluster
	if len(c.Clusters) == 0 {
		p.add(f, "needs spec.cluster.clusters (a cluster mesh)")
		return
	}
	from, fromOK := s.PodByRef(pt.From)
	to, toOK := s.PodByRef(pt.To)
	if !fromOK {
		p.add(f+".from", "no pod %q in spec.cluster.pods", pt.From)
	}
	if !toOK {
		p.add(f+".to", "no pod %q in spec.cluster.pods", pt.To)
	}
	if fromOK && toOK && c.ClusterOfNode(from.Node) == c.ClusterOfNode(to.Node) {
		p.add(f+".to", "must be in another cluster than from (both in %q)", c.ClusterOfNode(to.Node))
	}
	if pt.Cut != "" {
		found := false
		for _, cl := range c.Clusters {
			found = found || cl.Name == pt.Cut
		}
		if !found {
			p.add(f+".cut", "no cluster %q in spec.cluster.clusters", pt.Cut)
		}
	}
	if pt.Port < 0 || pt.Port > 65535 {
		p.add(f+".port", "must be between 1 and 65535 (0 means %d), have %d", DefaultPartitionPort, pt.Port)
	}
	port := pt.Port
	if port == 0 {
		port = DefaultPartitionPort
	}
	for _, sc := range s.Spec.Scenarios {
		if sc.To == pt.To && (sc.Load.Port == port || sc.Load.Port+1 == port) {
			p.add(f+".port", "%d is taken by scenario %s on %s", port, sc.Name, sc.To)
		}
	}
	if pr := s.Spec.Propagation; pr != nil && pr.To == pt.To && pr.Port == port {
		p.add(f+".port", "%d is taken by spec.propagation on %s", port, pt.To)
	}
	if pt.Established < 0 || pt.Established > 64 {
		p.add(f+".established", "must be between 0 and 64 (0 means %d), have %d", DefaultPartitionEstablished, pt.Established)
	}
	if d := pt.Duration.Duration; d != 0 && (d < time.Second || d > 5*time.Minute) {
		p.add(f+".duration", "must be between 1s and 5m (0 means three lease TTLs), have %s", d)
	}
	if d := pt.ProbeInterval.Duration; d != 0 && (d < 10*time.Millisecond || d > time.Second) {
		p.add(f+".probeInterval", "must be between 10ms and 1s (0 means %s), have %s", DefaultPartitionProbeInterval, d)
	}
}

func (s *Suite) validatePropagation(p *problems) {
	pr := s.Spec.Propagation
	if pr == nil {
		return
	}
	const f = "spec.propagation"
	from, fromOK := s.PodByRef(pr.From)
	to, toOK := s.PodByRef(pr.To)
	if !fromOK {
		p.add(f+".from", "no pod %q in spec.cluster.pods", pr.From)
	}
	if !toOK {
		p.add(f+".to", "no pod %q in spec.cluster.pods", pr.To)
	}
	if fromOK && toOK && from.Ref() == to.Ref() {
		p.add(f+".to", "must differ from from")
	}
	if toOK && len(to.Labels) == 0 {
		p.add(f+".to", "pod %q has no labels for the toggle policy to select", pr.To)
	}
	if fromOK && len(from.Labels) == 0 {
		p.add(f+".from", "pod %q has no labels for the toggle policy to admit", pr.From)
	}
	if pr.Port < 0 || pr.Port > 65535 {
		p.add(f+".port", "must be between 1 and 65535 (0 means %d), have %d", DefaultPropagationPort, pr.Port)
	}
	for _, sc := range s.Spec.Scenarios {
		if pr.Port != 0 && sc.To == pr.To && (sc.Load.Port == pr.Port || sc.Load.Port+1 == pr.Port) {
			p.add(f+".port", "%d is taken by scenario %s on %s", pr.Port, sc.Name, sc.To)
		}
	}
	if pr.Relabel {
		c := &s.Spec.Cluster
		switch {
		case len(c.Clusters) == 0:
			p.add(f+".relabel", "needs spec.cluster.clusters (a cluster mesh)")
		case fromOK && toOK && c.ClusterOfNode(from.Node) == c.ClusterOfNode(to.Node):
			p.add(f+".relabel", "needs from and to in different clusters (both in %q)", c.ClusterOfNode(to.Node))
		}
	}
	if pr.Changes < 0 || pr.Changes > 1000 {
		p.add(f+".changes", "must be between 1 and 1000 (0 means %d), have %d", DefaultPropagationChanges, pr.Changes)
	}
	for i, n := range pr.Bulk {
		if n < 1 || n > MaxGeneratedPolicies {
			p.add(fmt.Sprintf("%s.bulk[%d]", f, i), "must be between 1 and %d, have %d", MaxGeneratedPolicies, n)
		}
	}
	if pr.BulkRepetitions < 0 || pr.BulkRepetitions > 100 {
		p.add(f+".bulkRepetitions", "must be between 1 and 100 (0 means %d), have %d", DefaultBulkRepetitions, pr.BulkRepetitions)
	}
	if d := pr.ProbeInterval.Duration; d != 0 && (d < 100*time.Microsecond || d > 100*time.Millisecond) {
		p.add(f+".probeInterval", "must be between 100µs and 100ms, have %s", d)
	}
	if d := pr.Timeout.Duration; d < 0 || d > 5*time.Minute {
		p.add(f+".timeout", "must be at most 5m, have %s", d)
	}
}

func (s *Suite) validateDatapaths(p *problems) {
	dps := s.Spec.Datapaths
	if len(dps) == 0 {
		p.add("spec.datapaths", "at least one datapath is required (known: %s)", strings.Join(KnownDatapaths, ", "))
	}
	seen := map[string]int{}
	for i, dp := range dps {
		field := fmt.Sprintf("spec.datapaths[%d]", i)
		if _, _, err := AgentArgs(dp); err != nil {
			p.add(field, "%v", err)
		}
		if j, dup := seen[dp]; dup {
			p.add(field, "duplicate datapath %q (also spec.datapaths[%d])", dp, j)
			continue
		}
		seen[dp] = i
	}
}

func (s *Suite) validateCluster(p *problems) {
	c := &s.Spec.Cluster
	if len(c.Nodes) == 0 || len(c.Nodes) > MaxNodes {
		p.add("spec.cluster.nodes", "must list 1 to %d nodes, have %d", MaxNodes, len(c.Nodes))
	}
	nodes := map[string]int{}
	for i, n := range c.Nodes {
		field := fmt.Sprintf("spec.cluster.nodes[%d]", i)
		switch {
		case n == "":
			p.add(field, "must not be empty")
		case len(n) > MaxNodeNameLength:
			p.add(field, "%q is longer than %d characters (node names become parts of interface names)", n, MaxNodeNameLength)
		default:
			checkDNSLabel(p, field, n)
		}
		if j, dup := nodes[n]; dup {
			p.add(field, "duplicate node %q (also spec.cluster.nodes[%d])", n, j)
			continue
		}
		nodes[n] = i
	}

	namespaces := map[string]int{}
	for i, ns := range c.Namespaces {
		field := fmt.Sprintf("spec.cluster.namespaces[%d]", i)
		if ns.Name == "" {
			p.add(field+".name", "is required")
		} else {
			checkDNSLabel(p, field+".name", ns.Name)
		}
		if j, dup := namespaces[ns.Name]; dup {
			p.add(field+".name", "duplicate namespace %q (also spec.cluster.namespaces[%d])", ns.Name, j)
		} else {
			namespaces[ns.Name] = i
		}
		checkLabels(p, field+".labels", ns.Labels)
	}

	s.validateMesh(p)

	if len(c.Pods) == 0 {
		p.add("spec.cluster.pods", "at least one pod is required")
	}
	pods := map[string]int{}
	for i, pod := range c.Pods {
		field := fmt.Sprintf("spec.cluster.pods[%d]", i)
		if pod.Name == "" {
			p.add(field+".name", "is required")
		} else {
			checkDNSLabel(p, field+".name", pod.Name)
		}
		if pod.Namespace != "" {
			checkDNSLabel(p, field+".namespace", pod.Namespace)
		}
		switch {
		case pod.Node == "":
			p.add(field+".node", "is required (nodes: %s)", strings.Join(c.Nodes, ", "))
		case !slices.Contains(c.Nodes, pod.Node):
			p.add(field+".node", "unknown node %q (nodes: %s)", pod.Node, strings.Join(c.Nodes, ", "))
		}
		checkLabels(p, field+".labels", pod.Labels)
		if pod.Name == "" {
			continue
		}
		ref := pod.Ref()
		if j, dup := pods[ref]; dup {
			p.add(field, "duplicate pod %q (also spec.cluster.pods[%d])", ref, j)
			continue
		}
		pods[ref] = i
	}
}

// validateMesh checks spec.cluster.clusters and meshLeaseTTL.
func (s *Suite) validateMesh(p *problems) {
	c := &s.Spec.Cluster
	if len(c.Clusters) == 0 {
		if c.MeshLeaseTTL.Duration != 0 {
			p.add("spec.cluster.meshLeaseTTL", "needs spec.cluster.clusters (a cluster mesh)")
		}
		return
	}
	if len(c.Clusters) < 2 {
		p.add("spec.cluster.clusters", "a mesh needs at least 2 clusters, have %d", len(c.Clusters))
	}
	if d := c.MeshLeaseTTL.Duration; d != 0 && (d < MinMeshLeaseTTL || d > MaxMeshLeaseTTL) {
		p.add("spec.cluster.meshLeaseTTL", "must be between %s and %s (0 means the default), have %s", MinMeshLeaseTTL, MaxMeshLeaseTTL, d)
	}
	names := map[string]int{}
	ids := map[int]int{}
	nodeOf := map[string]string{} // node -> field that placed it
	type cidr struct {
		field string
		pfx   netip.Prefix
	}
	var cidrs []cidr
	for i, mc := range c.Clusters {
		field := fmt.Sprintf("spec.cluster.clusters[%d]", i)
		if mc.Name == "" {
			p.add(field+".name", "is required")
		} else {
			checkDNSLabel(p, field+".name", mc.Name)
			if j, dup := names[mc.Name]; dup {
				p.add(field+".name", "duplicate cluster %q (also spec.cluster.clusters[%d])", mc.Name, j)
			} else {
				names[mc.Name] = i
			}
		}
		if mc.ID < 1 || mc.ID > MaxClusterID {
			p.add(field+".id", "must be between 1 and %d, have %d", MaxClusterID, mc.ID)
		} else if j, dup := ids[mc.ID]; dup {
			p.add(field+".id", "duplicate cluster id %d (also spec.cluster.clusters[%d])", mc.ID, j)
		} else {
			ids[mc.ID] = i
		}
		if len(mc.Nodes) == 0 {
			p.add(field+".nodes", "at least one node is required")
		}
		for k, n := range mc.Nodes {
			nf := fmt.Sprintf("%s.nodes[%d]", field, k)
			if !slices.Contains(c.Nodes, n) {
				p.add(nf, "unknown node %q (nodes: %s)", n, strings.Join(c.Nodes, ", "))
				continue
			}
			if other, dup := nodeOf[n]; dup {
				p.add(nf, "node %q is already in %s", n, other)
				continue
			}
			nodeOf[n] = nf
		}
		if mc.ServiceCIDR != "" {
			pfx, err := netip.ParsePrefix(mc.ServiceCIDR)
			switch {
			case err != nil:
				p.add(field+".serviceCIDR", "%v", err)
			case !pfx.Addr().Is4():
				p.add(field+".serviceCIDR", "must be IPv4, have %s", mc.ServiceCIDR)
			case pfx.Masked() != pfx:
				p.add(field+".serviceCIDR", "%s has host bits set (the range is %s)", mc.ServiceCIDR, pfx.Masked())
			default:
				for _, o := range cidrs {
					if o.pfx.Overlaps(pfx) {
						p.add(field+".serviceCIDR", "%s overlaps %s (%s)", pfx, o.field, o.pfx)
					}
				}
				cidrs = append(cidrs, cidr{field + ".serviceCIDR", pfx})
			}
		}
	}
	for _, n := range c.Nodes {
		if _, ok := nodeOf[n]; !ok && n != "" {
			p.add("spec.cluster.clusters", "node %q is in no cluster (every node of spec.cluster.nodes must be in exactly one)", n)
		}
	}
}

func (s *Suite) validatePolicies(p *problems) {
	pol := &s.Spec.Policies
	for i, f := range pol.Files {
		field := fmt.Sprintf("spec.policies.files[%d]", i)
		if f == "" {
			p.add(field, "must not be empty")
			continue
		}
		fi, err := os.Stat(f)
		switch {
		case errors.Is(err, os.ErrNotExist):
			p.add(field, "%s does not exist", f)
		case err != nil:
			p.add(field, "%v", err)
		case !fi.Mode().IsRegular():
			p.add(field, "%s is not a regular file", f)
		}
	}
	if pol.Generated < 0 || pol.Generated > MaxGeneratedPolicies {
		p.add("spec.policies.generated", "must be between 0 and %d, have %d", MaxGeneratedPolicies, pol.Generated)
	}
}

func (s *Suite) validateScenarios(p *problems) {
	if len(s.Spec.Scenarios) == 0 {
		p.add("spec.scenarios", "at least one scenario is required")
	}
	names := map[string]int{}
	for i, sc := range s.Spec.Scenarios {
		field := fmt.Sprintf("spec.scenarios[%d]", i)
		if sc.Name == "" {
			p.add(field+".name", "is required")
		} else {
			checkDNSLabel(p, field+".name", sc.Name)
			if j, dup := names[sc.Name]; dup {
				p.add(field+".name", "duplicate scenario %q (also spec.scenarios[%d])", sc.Name, j)
			} else {
				names[sc.Name] = i
			}
		}
		fromOK := s.checkPodRef(p, field+".from", sc.From)
		toOK := s.checkPodRef(p, field+".to", sc.To)
		if fromOK && toOK && sc.From == sc.To {
			p.add(field+".to", "must differ from from (%q)", sc.From)
		}
		sc.Load.validate(p, field+".load")
		switch sc.Via {
		case "", "pod":
		case "service":
			if sc.Services < 1 {
				p.add(field+".services", "must be at least 1 with via: service (the scenario's own Service counts)")
			}
		default:
			p.add(field+".via", "must be pod or service, have %q", sc.Via)
		}
		if sc.Services < 0 || sc.Services > MaxServices {
			p.add(field+".services", "must be between 0 and %d, have %d", MaxServices, sc.Services)
		}
		if sc.Backends < 0 || sc.Backends > MaxBackends {
			p.add(field+".backends", "must be between 1 and %d (0: 2), have %d", MaxBackends, sc.Backends)
		}
		if sc.Backends*sc.Services > 200000 {
			p.add(field+".backends", "%d Services × %d backends is more than 200000 backends", sc.Services, sc.Backends)
		}
		if sc.Policies != nil && (*sc.Policies < 0 || *sc.Policies > MaxGeneratedPolicies) {
			p.add(field+".policies", "must be between 0 and %d, have %d", MaxGeneratedPolicies, *sc.Policies)
		}
		if c := sc.Churn; c != nil {
			if c.PoliciesPerSecond < 0 || c.PoliciesPerSecond > 1000 {
				p.add(field+".churn.policiesPerSecond", "must be between 0 and 1000, have %g", c.PoliciesPerSecond)
			}
			if c.PodsPerSecond < 0 || c.PodsPerSecond > 1000 {
				p.add(field+".churn.podsPerSecond", "must be between 0 and 1000, have %g", c.PodsPerSecond)
			}
			if c.PoliciesPerSecond == 0 && c.PodsPerSecond == 0 {
				p.add(field+".churn", "needs policiesPerSecond or podsPerSecond")
			}
			if c.Window < 0 || c.Window > 1000 {
				p.add(field+".churn.window", "must be between 1 and 1000 (0 means %d), have %d", DefaultChurnWindow, c.Window)
			}
			if to, ok := s.PodByRef(sc.To); ok && len(to.Labels) == 0 && c.PoliciesPerSecond > 0 {
				p.add(field+".churn.policiesPerSecond", "the server pod %q has no labels for churned policies to select", sc.To)
			}
		}
	}
}

// checkPodRef reports whether ref names an existing pod, reporting why not.
func (s *Suite) checkPodRef(p *problems, field, ref string) bool {
	ns, name, ok := strings.Cut(ref, "/")
	switch {
	case ref == "":
		p.add(field, `is required ("namespace/pod")`)
		return false
	case !ok || ns == "" || name == "" || strings.Contains(name, "/"):
		p.add(field, `must be "namespace/pod", have %q`, ref)
		return false
	}
	if _, found := s.PodByRef(ref); !found {
		p.add(field, "no pod %q in spec.cluster.pods", ref)
		return false
	}
	return true
}

func (l Load) validate(p *problems, field string) {
	if l.Protocol != "" && !slices.Contains(KnownProtocols, l.Protocol) {
		p.add(field+".protocol", "unknown protocol %q (known: %s)", l.Protocol, strings.Join(KnownProtocols, ", "))
	}
	switch {
	case math.IsNaN(l.QPS) || math.IsInf(l.QPS, 0):
		p.add(field+".qps", "must be a finite number, have %v", l.QPS)
	case l.QPS < 0:
		p.add(field+".qps", "must be >= 0 (0 means as fast as possible), have %v", l.QPS)
	}
	if l.Connections < 0 || l.Connections > MaxConnections {
		p.add(field+".connections", "must be between 1 and %d (0 means %d), have %d", MaxConnections, DefaultConnections, l.Connections)
	}
	checkDuration(p, field+".duration", l.Duration)
	maxPort := 65535
	switch l.Protocol {
	case "tcp":
		maxPort = 65534 // the TCP echo server listens on port+1
	case "grpc":
		maxPort = 65533 // the gRPC ping server listens on port+2
	}
	if l.Port < 0 || l.Port > maxPort {
		p.add(field+".port", "must be between 1 and %d (0 means %d), have %d", maxPort, DefaultPort, l.Port)
	}
	if l.PayloadBytes < 0 || l.PayloadBytes > MaxPayloadBytes {
		p.add(field+".payloadBytes", "must be between 0 and %d, have %d", MaxPayloadBytes, l.PayloadBytes)
	}
}

func checkDuration(p *problems, field string, d Duration) {
	if d.Duration < 0 || d.Duration > MaxDuration {
		p.add(field, "must be between 0s and %v, have %v", MaxDuration, d.Duration)
	}
}

func checkDNSLabel(p *problems, field, v string) {
	if msgs := content.IsDNS1123Label(v); len(msgs) > 0 {
		p.add(field, "%q is not a valid name: %s", v, strings.Join(msgs, "; "))
	}
}

func checkLabels(p *problems, field string, labels map[string]string) {
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if msgs := content.IsLabelKey(k); len(msgs) > 0 {
			p.add(field, "invalid label key %q: %s", k, strings.Join(msgs, "; "))
		}
		if msgs := content.IsLabelValue(labels[k]); len(msgs) > 0 {
			p.add(field+"."+k, "invalid label value %q: %s", labels[k], strings.Join(msgs, "; "))
		}
	}
}
