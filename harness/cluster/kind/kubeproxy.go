package kind

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/kind/pkg/apis/config/v1alpha4"

	"github.com/fastpath-bench/fastpath/datapath/agentapi"
	"github.com/fastpath-bench/fastpath/deploy"
)

// The cluster is created without kube-proxy (kind's kubeProxyMode none):
// the eBPF datapath is the Services' load balancer, and the none datapath
// has none. The iptables baseline is kube-proxy in iptables mode next to
// the agent's iptables NetworkPolicy chains: StartAgents deploys
// kube-proxy on demand (deploy.RenderKubeProxy) before the agents roll
// to iptables, and, when another datapath follows, deletes it and runs
// `kube-proxy --cleanup` on every node before the agents roll, so that
// no KUBE-* rule is left behind for the eBPF datapath.

// wantsKubeProxy says whether datapath runs with kube-proxy (and in
// which mode): the decision of KubeProxyMode, which also sets kind's
// kube-proxy for clusters created for a datapath.
func wantsKubeProxy(datapath string) (bool, v1alpha4.ProxyMode, error) {
	mode, err := KubeProxyMode(datapath)
	if err != nil {
		return false, "", err
	}
	return mode != noProxy, mode, nil
}

// KubeProxy reports kube-proxy in the cluster now: its mode ("none" when
// it does not run) and image.
func (t *Topology) KubeProxy() (mode, image string) {
	if t.mesh != nil {
		return t.mesh[0].topo.KubeProxy()
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.kubeProxy == nil {
		return string(noProxy), ""
	}
	return string(t.kubeProxy.mode), t.kubeProxy.image
}

// kubeProxyState is a kube-proxy the topology deployed.
type kubeProxyState struct {
	mode  v1alpha4.ProxyMode
	image string
	opts  deploy.KubeProxyOptions
	// manifest is what RenderKubeProxy rendered: removed again.
	manifest []byte
	// before are, per node, the KUBE-* chains there before kube-proxy
	// (the kubelet's): after the cleanup, the nodes have these only.
	before map[string][]string
	// synced are the services and endpointslices revisions kube-proxy's
	// rules were last found to reflect (waitKubeProxySynced).
	synced map[string]int64
}

// KubeProxyImage is the kube-proxy image of the cluster's Kubernetes
// version, as kubeadm names it (the kind node images have it).
func (t *Topology) KubeProxyImage() (string, error) {
	v, err := t.client.Kube.Discovery().ServerVersion()
	if err != nil {
		return "", fmt.Errorf("kube-proxy image: API server version: %w", err)
	}
	return "registry.k8s.io/kube-proxy:" + strings.ReplaceAll(v.GitVersion, "+", "_"), nil
}

// startKubeProxy deploys kube-proxy in mode and waits until it runs on
// every node and has programmed the kubernetes Service there.
func (t *Topology) startKubeProxy(ctx context.Context, mode v1alpha4.ProxyMode, timeout time.Duration) error {
	image, err := t.KubeProxyImage()
	if err != nil {
		return err
	}
	o := deploy.KubeProxyOptions{Image: image, Mode: string(mode), ClusterCIDR: t.opts.PodSubnet, APIServer: t.apiHost + ":6443"}
	data, err := deploy.RenderKubeProxy(o)
	if err != nil {
		return err
	}
	nodes, err := t.kind.Nodes()
	if err != nil {
		return err
	}
	before := map[string][]string{}
	for _, n := range nodes {
		out, err := dockerOut(ctx, "exec", n, "iptables-save")
		if err != nil {
			return fmt.Errorf("kube-proxy: iptables-save on node %s: %w", n, err)
		}
		before[n] = kubeChains(out)
	}
	t.opts.Logf("deploying kube-proxy (%s mode, %s)", mode, image)
	start := time.Now()
	// Recorded before applying: a failure part way is removed too.
	t.mu.Lock()
	t.kubeProxy = &kubeProxyState{mode: mode, image: image, opts: o, manifest: data, before: before, synced: map[string]int64{}}
	t.mu.Unlock()
	if err := t.applyAll(ctx, data); err != nil {
		return fmt.Errorf("kube-proxy: %w", err)
	}
	if err := t.waitDaemonSet(ctx, deploy.KubeProxyName, timeout, func() string {
		return t.podDiagnosis(ctx, deploy.KubeProxyLabel+"="+deploy.KubeProxyName, "kube-proxy")
	}); err != nil {
		return fmt.Errorf("kube-proxy: %w", err)
	}
	svc, err := t.client.Kube.CoreV1().Services("default").Get(ctx, "kubernetes", metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("kube-proxy: Service default/kubernetes: %w", err)
	}
	rule := "-d " + svc.Spec.ClusterIP + "/32"
	for _, n := range nodes {
		var last string
		err := poll(ctx, timeout, "kube-proxy's rules on node "+n, func() (bool, error) {
			out, err := dockerOut(ctx, "exec", n, "iptables", "-w", "-t", "nat", "-S", "KUBE-SERVICES")
			last = strings.TrimSpace(out)
			return err == nil && strings.Contains(out, rule), nil
		})
		if err != nil {
			return fmt.Errorf("kube-proxy: no rule for the kubernetes Service (%s) in node %s's nat KUBE-SERVICES, as the node's iptables lists it: %w\n%s%s",
				rule, n, err, last, t.podDiagnosis(ctx, deploy.KubeProxyLabel+"="+deploy.KubeProxyName, "kube-proxy"))
		}
	}
	t.opts.Logf("kube-proxy ready on %d nodes in %s", len(nodes), time.Since(start).Round(100*time.Millisecond))
	return nil
}

// stopKubeProxy deletes kube-proxy, waits until its pods are gone, runs
// `kube-proxy --cleanup` on every node and checks that every node has
// the KUBE-* chains it had before kube-proxy, and no other.
func (t *Topology) stopKubeProxy(ctx context.Context, timeout time.Duration) error {
	t.mu.Lock()
	kp := t.kubeProxy
	t.mu.Unlock()
	if kp == nil {
		return nil
	}
	start := time.Now()
	objs, err := Decode(kp.manifest)
	if err != nil {
		return err
	}
	for _, u := range objs {
		if _, _, err := t.client.Delete(ctx, u); err != nil {
			return fmt.Errorf("kube-proxy: %w", err)
		}
	}
	pods := t.client.Kube.CoreV1().Pods(deploy.DefaultNamespace)
	sel := deploy.KubeProxyLabel + "=" + deploy.KubeProxyName
	if err := poll(ctx, timeout, "kube-proxy's pods to be gone", func() (bool, error) {
		l, err := pods.List(ctx, metav1.ListOptions{LabelSelector: sel})
		return err == nil && len(l.Items) == 0, nil
	}); err != nil {
		return fmt.Errorf("kube-proxy: %w%s", err, t.podDiagnosis(ctx, sel, "kube-proxy"))
	}
	nodes, err := t.kind.Nodes()
	if err != nil {
		return err
	}
	if err := t.cleanupKubeProxy(ctx, kp.opts, nodes, timeout); err != nil {
		return err
	}
	for _, n := range nodes {
		out, err := dockerOut(ctx, "exec", n, "iptables-save")
		if err != nil {
			return fmt.Errorf("kube-proxy cleanup: iptables-save on node %s: %w", n, err)
		}
		var left []string
		for _, c := range kubeChains(out) {
			if !slices.Contains(kp.before[n], c) {
				left = append(left, c)
			}
		}
		if len(left) > 0 {
			return fmt.Errorf("kube-proxy cleanup: node %s still has kube-proxy's chains %s", n, strings.Join(left, ", "))
		}
	}
	t.mu.Lock()
	t.kubeProxy = nil
	t.mu.Unlock()
	t.opts.Logf("kube-proxy removed and its rules cleaned up on %d nodes in %s", len(nodes), time.Since(start).Round(100*time.Millisecond))
	return nil
}

// cleanupKubeProxy runs a cleanup pod on each node, waits until all have
// succeeded, and deletes them.
func (t *Topology) cleanupKubeProxy(ctx context.Context, o deploy.KubeProxyOptions, nodes []string, timeout time.Duration) (err error) {
	pods := t.client.Kube.CoreV1().Pods(deploy.DefaultNamespace)
	var created []string
	defer func() {
		for _, name := range created {
			if derr := pods.Delete(context.Background(), name, metav1.DeleteOptions{}); derr != nil && !apierrors.IsNotFound(derr) && err == nil {
				err = fmt.Errorf("kube-proxy cleanup: delete pod %s: %w", name, derr)
			}
		}
	}()
	for _, n := range nodes {
		data, err := deploy.RenderKubeProxyCleanup(o, n)
		if err != nil {
			return err
		}
		// A pod of an earlier, interrupted cleanup goes first.
		name := deploy.KubeProxyCleanupPod(n)
		if err := pods.Delete(ctx, name, metav1.DeleteOptions{}); err == nil {
			_ = poll(ctx, timeout, "pod "+name+" to be gone", func() (bool, error) {
				_, err := pods.Get(ctx, name, metav1.GetOptions{})
				return apierrors.IsNotFound(err), nil
			})
		}
		if err := t.applyAll(ctx, data); err != nil {
			return fmt.Errorf("kube-proxy cleanup on node %s: %w", n, err)
		}
		created = append(created, name)
	}
	for _, name := range created {
		var phase corev1.PodPhase
		err := poll(ctx, timeout, "pod "+name, func() (bool, error) {
			p, err := pods.Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return false, nil
			}
			phase = p.Status.Phase
			return phase == corev1.PodSucceeded || phase == corev1.PodFailed, nil
		})
		if err == nil && phase == corev1.PodFailed {
			err = fmt.Errorf("pod %s failed", name)
		}
		if err != nil {
			return fmt.Errorf("kube-proxy cleanup: %w%s", err, t.podDiagnosis(ctx, deploy.KubeProxyLabel+"="+deploy.KubeProxyCleanupName, "cleanup"))
		}
	}
	return nil
}

// kubeChains lists the KUBE-* chains of an iptables-save listing as
// "table/chain".
func kubeChains(save string) []string {
	var out []string
	table := ""
	for _, line := range strings.Split(save, "\n") {
		if t, ok := strings.CutPrefix(line, "*"); ok {
			table = strings.TrimSpace(t)
			continue
		}
		name, ok := strings.CutPrefix(line, ":")
		if !ok {
			continue
		}
		name, _, _ = strings.Cut(name, " ")
		if strings.HasPrefix(name, "KUBE-") {
			out = append(out, table+"/"+name)
		}
	}
	sort.Strings(out)
	return slices.Compact(out)
}

// waitDaemonSet waits until DaemonSet name (in the agents' namespace) has
// all its pods on the newest template and ready; diag explains a
// timeout.
func (t *Topology) waitDaemonSet(ctx context.Context, name string, timeout time.Duration, diag func() string) error {
	var last string
	err := poll(ctx, timeout, "DaemonSet "+name+" rollout", func() (bool, error) {
		ds, err := t.client.Kube.AppsV1().DaemonSets(deploy.DefaultNamespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		s := ds.Status
		last = fmt.Sprintf("desired %d, updated %d, ready %d", s.DesiredNumberScheduled, s.UpdatedNumberScheduled, s.NumberReady)
		return s.ObservedGeneration >= ds.Generation && s.DesiredNumberScheduled > 0 &&
			s.UpdatedNumberScheduled == s.DesiredNumberScheduled && s.NumberReady == s.DesiredNumberScheduled && s.NumberUnavailable == 0, nil
	})
	if err != nil && last != "" {
		err = fmt.Errorf("%w: %s%s", err, last, diag())
	}
	return err
}

// podDiagnosis tells why pods (by label selector) are not ready or
// failed: their states and the last lines of container's log.
func (t *Topology) podDiagnosis(ctx context.Context, selector, container string) string {
	pods, err := t.client.Kube.CoreV1().Pods(deploy.DefaultNamespace).List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		return ""
	}
	var b strings.Builder
	for _, p := range pods.Items {
		fmt.Fprintf(&b, "\n  pod %s on %s: %s", p.Name, p.Spec.NodeName, p.Status.Phase)
		for _, cs := range append(p.Status.InitContainerStatuses, p.Status.ContainerStatuses...) {
			fmt.Fprintf(&b, "; %s ready=%v restarts=%d", cs.Name, cs.Ready, cs.RestartCount)
			if w := cs.State.Waiting; w != nil {
				fmt.Fprintf(&b, " waiting %s: %s", w.Reason, w.Message)
			}
			if x := cs.State.Terminated; x != nil {
				fmt.Fprintf(&b, " exited %d (%s)", x.ExitCode, x.Reason)
			}
		}
		tail := int64(8)
		logs, err := t.client.Kube.CoreV1().Pods(p.Namespace).GetLogs(p.Name, &corev1.PodLogOptions{Container: container, TailLines: &tail}).Do(ctx).Raw()
		if err == nil && len(logs) > 0 {
			fmt.Fprintf(&b, "\n    %s", strings.ReplaceAll(strings.TrimSpace(string(logs)), "\n", "\n    "))
		}
	}
	return b.String()
}

// The agents acknowledge the state they programmed; with the iptables
// datapath the Services are kube-proxy's, which acknowledges nothing. A
// state with Service or EndpointSlice writes is therefore programmed
// once, besides the agents, every node's kube-proxy rules carry the
// Services and endpoints the API server has: checked by reading the
// rules (the node's iptables-save), as kube-proxy would program them.

// kubeProxyPort is what kube-proxy programs for one Service port.
type kubeProxyPort struct {
	// key is kube-proxy's name of the port ("ns/name:port").
	key                string
	ip, proto          string
	port, nodePort     int32
	endpoints          []string // "ip:port", sorted; empty: REJECT
	localEndpointsOnly bool
}

// kubeProxyWant is what kube-proxy on node programs for svcs and their
// slices: per IPv4 ClusterIP port (TCP or UDP), the endpoints kube-proxy
// picks — the ready ones, else the serving terminating ones (KEP-1669);
// only node's own with internalTrafficPolicy Local.
func kubeProxyWant(svcs []corev1.Service, slices []discoveryv1.EndpointSlice, node string) []kubeProxyPort {
	bySvc := map[string][]discoveryv1.EndpointSlice{}
	for _, s := range slices {
		if s.AddressType != discoveryv1.AddressTypeIPv4 {
			continue
		}
		k := s.Namespace + "/" + s.Labels[discoveryv1.LabelServiceName]
		bySvc[k] = append(bySvc[k], s)
	}
	var out []kubeProxyPort
	for _, svc := range svcs {
		ip, err := netip.ParseAddr(svc.Spec.ClusterIP)
		if err != nil || !ip.Is4() || svc.Spec.Type == corev1.ServiceTypeExternalName {
			continue
		}
		local := svc.Spec.InternalTrafficPolicy != nil && *svc.Spec.InternalTrafficPolicy == corev1.ServiceInternalTrafficPolicyLocal
		for _, sp := range svc.Spec.Ports {
			if sp.Protocol != corev1.ProtocolTCP && sp.Protocol != corev1.ProtocolUDP && sp.Protocol != "" {
				continue
			}
			proto := strings.ToLower(string(sp.Protocol))
			if proto == "" {
				proto = "tcp"
			}
			key := svc.Namespace + "/" + svc.Name
			if sp.Name != "" {
				key += ":" + sp.Name
			}
			var ready, terminating []string
			seen := map[string]bool{}
			for _, s := range bySvc[svc.Namespace+"/"+svc.Name] {
				var port int32 = -1
				for _, p := range s.Ports {
					name := ""
					if p.Name != nil {
						name = *p.Name
					}
					if name == sp.Name && p.Port != nil && (p.Protocol == nil || *p.Protocol == sp.Protocol || sp.Protocol == "" && *p.Protocol == corev1.ProtocolTCP) {
						port = *p.Port
					}
				}
				if port < 0 {
					continue
				}
				for _, ep := range s.Endpoints {
					if local && (ep.NodeName == nil || *ep.NodeName != node) {
						continue
					}
					isReady := ep.Conditions.Ready == nil || *ep.Conditions.Ready
					serving := isReady
					if ep.Conditions.Serving != nil {
						serving = *ep.Conditions.Serving
					}
					term := ep.Conditions.Terminating != nil && *ep.Conditions.Terminating
					for _, a := range ep.Addresses {
						dst := fmt.Sprintf("%s:%d", a, port)
						if seen[dst] {
							continue
						}
						seen[dst] = true
						switch {
						case isReady:
							ready = append(ready, dst)
						case serving && term:
							terminating = append(terminating, dst)
						}
					}
				}
			}
			eps := ready
			if len(eps) == 0 {
				eps = terminating
			}
			sort.Strings(eps)
			np := int32(0)
			if svc.Spec.Type == corev1.ServiceTypeNodePort || svc.Spec.Type == corev1.ServiceTypeLoadBalancer {
				np = sp.NodePort
			}
			out = append(out, kubeProxyPort{key: key, ip: ip.String(), proto: proto, port: sp.Port, nodePort: np, endpoints: eps, localEndpointsOnly: local})
		}
	}
	return out
}

// iptablesRule is one "-A chain ..." line of iptables-save, in words
// (a quoted comment is one word).
type iptablesRule []string

// value is the argument of flag; a negated match ("! -d x") has none.
func (r iptablesRule) value(flag string) string {
	for i := 0; i+1 < len(r); i++ {
		if r[i] == flag {
			if i > 0 && r[i-1] == "!" {
				return ""
			}
			return r[i+1]
		}
	}
	return ""
}

// parseSave reads iptables-save output into table → chain → rules.
func parseSave(save string) map[string]map[string][]iptablesRule {
	out := map[string]map[string][]iptablesRule{}
	table := ""
	for _, line := range strings.Split(save, "\n") {
		switch {
		case strings.HasPrefix(line, "*"):
			table = strings.TrimSpace(line[1:])
			out[table] = map[string][]iptablesRule{}
		case strings.HasPrefix(line, "-A ") && table != "":
			w := splitWords(line)
			if len(w) >= 2 {
				out[table][w[1]] = append(out[table][w[1]], iptablesRule(w[2:]))
			}
		}
	}
	return out
}

// splitWords splits on spaces, keeping a double-quoted word whole
// (without the quotes).
func splitWords(s string) []string {
	var out []string
	var b strings.Builder
	quoted, any := false, false
	for _, c := range s {
		switch {
		case c == '"':
			quoted, any = !quoted, true
		case c == ' ' && !quoted:
			if any {
				out = append(out, b.String())
			}
			b.Reset()
			any = false
		default:
			b.WriteRune(c)
			any = true
		}
	}
	if any {
		out = append(out, b.String())
	}
	return out
}

// kubeProxyDiff compares what kube-proxy programmed (iptables-save of
// all tables) with want; empty: in sync.
func kubeProxyDiff(save string, want []kubeProxyPort) []string {
	tables := parseSave(save)
	nat, filter := tables["nat"], tables["filter"]
	var diff []string
	frontend := func(rules []iptablesRule, ip, proto string, port int32) (iptablesRule, bool) {
		for _, r := range rules {
			if r.value("-d") == ip+"/32" && r.value("-p") == proto && r.value("--dport") == fmt.Sprint(port) {
				return r, true
			}
		}
		return nil, false
	}
	wanted := map[string]bool{}
	for _, w := range want {
		front := fmt.Sprintf("%s (%s:%d/%s)", w.key, w.ip, w.port, w.proto)
		if len(w.endpoints) == 0 {
			if _, ok := frontend(nat["KUBE-SERVICES"], w.ip, w.proto, w.port); ok {
				diff = append(diff, front+": load-balanced, but it has no endpoints")
			}
			if _, ok := frontend(filter["KUBE-SERVICES"], w.ip, w.proto, w.port); !ok {
				diff = append(diff, front+": no REJECT for a Service without endpoints")
			}
			continue
		}
		wanted[fmt.Sprintf("%s:%d/%s", w.ip, w.port, w.proto)] = true
		r, ok := frontend(nat["KUBE-SERVICES"], w.ip, w.proto, w.port)
		if !ok {
			diff = append(diff, front+": no rule")
			continue
		}
		var got []string
		for _, sr := range nat[r.value("-j")] {
			for _, er := range nat[sr.value("-j")] {
				if er.value("-j") == "DNAT" {
					got = append(got, er.value("--to-destination"))
				}
			}
		}
		sort.Strings(got)
		got = slices.Compact(got)
		if !slices.Equal(got, w.endpoints) {
			diff = append(diff, fmt.Sprintf("%s: endpoints %v, want %v", front, got, w.endpoints))
		}
		if w.nodePort > 0 {
			found := false
			for _, r := range nat["KUBE-NODEPORTS"] {
				found = found || (r.value("-p") == w.proto && r.value("--dport") == fmt.Sprint(w.nodePort))
			}
			if !found {
				diff = append(diff, fmt.Sprintf("%s: no NodePort %d rule", front, w.nodePort))
			}
		}
	}
	for _, r := range nat["KUBE-SERVICES"] {
		d := r.value("-d")
		if d == "" || r.value("--dport") == "" {
			continue
		}
		if k := fmt.Sprintf("%s:%s/%s", strings.TrimSuffix(d, "/32"), r.value("--dport"), r.value("-p")); !wanted[k] {
			diff = append(diff, k+": a rule for a Service port the API server does not have (or without endpoints)")
		}
	}
	return diff
}

// waitKubeProxySynced waits, when a kube-proxy runs and token has
// Service or EndpointSlice revisions newer than those last checked,
// until every spec node's kube-proxy rules match the API server's
// Services and EndpointSlices.
func (t *Topology) waitKubeProxySynced(ctx context.Context, token string) error {
	t.mu.Lock()
	kp := t.kubeProxy
	t.mu.Unlock()
	if kp == nil {
		return nil
	}
	revs, ok := agentapi.ParseRevisionToken(token)
	if !ok {
		return nil
	}
	newer := false
	for _, res := range []string{"services", "endpointslices"} {
		newer = newer || revs[res] > kp.synced[res]
	}
	if !newer {
		return nil
	}
	var diff []string
	var node string
	err := poll(ctx, 2*time.Minute, "kube-proxy to program the Services", func() (bool, error) {
		svcs, err := t.client.Kube.CoreV1().Services("").List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, nil
		}
		sl, err := t.client.Kube.DiscoveryV1().EndpointSlices("").List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, nil
		}
		for _, n := range t.spec.Nodes {
			node = t.workers[n]
			save, err := dockerOut(ctx, "exec", node, "iptables-save")
			if err != nil {
				return false, fmt.Errorf("kube-proxy: iptables-save on node %s: %w", node, err)
			}
			if diff = kubeProxyDiff(save, kubeProxyWant(svcs.Items, sl.Items, node)); len(diff) > 0 {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("%w: on node %s: %s", err, node, strings.Join(diff, "; "))
	}
	t.mu.Lock()
	for _, res := range []string{"services", "endpointslices"} {
		kp.synced[res] = max(kp.synced[res], revs[res])
	}
	t.mu.Unlock()
	return nil
}
