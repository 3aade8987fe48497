package deploy

import (
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	kubeproxyv1alpha1 "k8s.io/kube-proxy/config/v1alpha1"
	"sigs.k8s.io/yaml"
)

func validKubeProxyOptions() KubeProxyOptions {
	return KubeProxyOptions{
		Image:       "registry.k8s.io/kube-proxy:v1.35.0",
		ClusterCIDR: "10.244.0.0/16",
		APIServer:   "172.18.0.2:6443",
	}
}

type renderedKubeProxy struct {
	sa     *corev1.ServiceAccount
	bind   *rbacv1.ClusterRoleBinding
	cm     *corev1.ConfigMap
	config *kubeproxyv1alpha1.KubeProxyConfiguration
	ds     *appsv1.DaemonSet
}

// renderKubeProxy renders o and decodes every document, and the
// ConfigMap's KubeProxyConfiguration, strictly into the API types.
func renderKubeProxy(t *testing.T, o KubeProxyOptions) renderedKubeProxy {
	t.Helper()
	b, err := RenderKubeProxy(o)
	if err != nil {
		t.Fatalf("RenderKubeProxy: %v", err)
	}
	var r renderedKubeProxy
	var kinds []string
	for _, doc := range splitDocs(t, b) {
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal(doc, &tm); err != nil {
			t.Fatalf("reading kind: %v\n%s", err, doc)
		}
		kinds = append(kinds, tm.APIVersion+"/"+tm.Kind)
		switch tm.APIVersion + "/" + tm.Kind {
		case "v1/ServiceAccount":
			r.sa = &corev1.ServiceAccount{}
			decodeStrict(t, doc, r.sa)
		case "rbac.authorization.k8s.io/v1/ClusterRoleBinding":
			r.bind = &rbacv1.ClusterRoleBinding{}
			decodeStrict(t, doc, r.bind)
		case "v1/ConfigMap":
			r.cm = &corev1.ConfigMap{}
			decodeStrict(t, doc, r.cm)
		case "apps/v1/DaemonSet":
			r.ds = &appsv1.DaemonSet{}
			decodeStrict(t, doc, r.ds)
		default:
			t.Fatalf("unexpected document %s/%s", tm.APIVersion, tm.Kind)
		}
	}
	want := []string{"v1/ServiceAccount", "rbac.authorization.k8s.io/v1/ClusterRoleBinding", "v1/ConfigMap", "apps/v1/DaemonSet"}
	if !slices.Equal(kinds, want) {
		t.Fatalf("documents %v, want %v", kinds, want)
	}
	conf, ok := r.cm.Data["config.conf"]
	if !ok {
		t.Fatalf("ConfigMap %s has no config.conf: %v", r.cm.Name, r.cm.Data)
	}
	r.config = &kubeproxyv1alpha1.KubeProxyConfiguration{}
	decodeStrict(t, []byte(conf), r.config)
	return r
}

func TestRenderKubeProxy(t *testing.T) {
	r := renderKubeProxy(t, validKubeProxyOptions())

	// RBAC: the ServiceAccount bound to the bootstrap node-proxier role.
	if r.sa.Name != "kube-proxy" || r.sa.Namespace != "kube-system" {
		t.Errorf("ServiceAccount %s/%s", r.sa.Namespace, r.sa.Name)
	}
	if r.bind.RoleRef != (rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "system:node-proxier"}) {
		t.Errorf("roleRef %+v", r.bind.RoleRef)
	}
	if len(r.bind.Subjects) != 1 || r.bind.Subjects[0] != (rbacv1.Subject{Kind: "ServiceAccount", Name: "kube-proxy", Namespace: "kube-system"}) {
		t.Errorf("subjects %+v", r.bind.Subjects)
	}

	// The configuration.
	c := r.config
	if c.APIVersion != "kubeproxy.config.k8s.io/v1alpha1" || c.Kind != "KubeProxyConfiguration" {
		t.Errorf("config %s/%s", c.APIVersion, c.Kind)
	}
	if c.Mode != kubeproxyv1alpha1.ProxyMode("iptables") {
		t.Errorf("mode %q", c.Mode)
	}
	if c.ClusterCIDR != "10.244.0.0/16" {
		t.Errorf("clusterCIDR %q", c.ClusterCIDR)
	}
	if c.ClientConnection.Kubeconfig != "" {
		t.Errorf("kubeconfig %q: the in-cluster configuration is meant", c.ClientConnection.Kubeconfig)
	}
	if c.HealthzBindAddress != "0.0.0.0:10256" {
		t.Errorf("healthzBindAddress %q", c.HealthzBindAddress)
	}
	if c.IPTables.LocalhostNodePorts == nil || *c.IPTables.LocalhostNodePorts {
		t.Errorf("localhostNodePorts %v: would set route_localnet", c.IPTables.LocalhostNodePorts)
	}
	ct := c.Conntrack
	if ct.MaxPerCore == nil || *ct.MaxPerCore != 0 || ct.TCPEstablishedTimeout == nil || ct.TCPEstablishedTimeout.Duration != 0 ||
		ct.TCPCloseWaitTimeout == nil || ct.TCPCloseWaitTimeout.Duration != 0 {
		t.Errorf("conntrack %+v: kube-proxy would change the node's sysctls", ct)
	}

	// The DaemonSet.
	ds := r.ds
	if ds.Name != "kube-proxy" || ds.Namespace != "kube-system" {
		t.Errorf("DaemonSet %s/%s", ds.Namespace, ds.Name)
	}
	sel, err := metav1.LabelSelectorAsSelector(ds.Spec.Selector)
	if err != nil || sel.Empty() || !sel.Matches(labelSet(ds.Spec.Template.Labels)) {
		t.Errorf("selector %v does not match the template's labels %v (%v)", ds.Spec.Selector, ds.Spec.Template.Labels, err)
	}
	if ds.Spec.Template.Labels[KubeProxyLabel] != KubeProxyName {
		t.Errorf("pod labels %v", ds.Spec.Template.Labels)
	}
	ps := ds.Spec.Template.Spec
	if !ps.HostNetwork || ps.ServiceAccountName != "kube-proxy" || ps.PriorityClassName != "system-node-critical" {
		t.Errorf("hostNetwork %v serviceAccount %q priority %q", ps.HostNetwork, ps.ServiceAccountName, ps.PriorityClassName)
	}
	if !slices.ContainsFunc(ps.Tolerations, func(tl corev1.Toleration) bool { return tl.Operator == corev1.TolerationOpExists && tl.Key == "" }) {
		t.Errorf("tolerations %+v", ps.Tolerations)
	}
	kp := container(t, ps.Containers, "kube-proxy")
	if kp.Image != "registry.k8s.io/kube-proxy:v1.35.0" || kp.ImagePullPolicy != corev1.PullNever {
		t.Errorf("image %q pull %q", kp.Image, kp.ImagePullPolicy)
	}
	wantCmd := []string{"/usr/local/bin/kube-proxy", "--config=/var/lib/kube-proxy/config.conf", "--hostname-override=$(NODE_NAME)"}
	if got := append(slices.Clone(kp.Command), kp.Args...); !slices.Equal(got, wantCmd) {
		t.Errorf("command\n got %q\nwant %q", got, wantCmd)
	}
	if e, ok := envValue(t, kp, "NODE_NAME"); !ok || e.ValueFrom == nil || e.ValueFrom.FieldRef == nil || e.ValueFrom.FieldRef.FieldPath != "spec.nodeName" {
		t.Errorf("NODE_NAME %+v: --hostname-override needs the node's name", e)
	}
	for name, want := range map[string]string{"KUBERNETES_SERVICE_HOST": "172.18.0.2", "KUBERNETES_SERVICE_PORT": "6443"} {
		if e, ok := envValue(t, kp, name); !ok || e.Value != want {
			t.Errorf("env %s = %+v, want %q", name, e, want)
		}
	}
	if e, ok := envValue(t, kp, "PATH"); !ok || !strings.Contains(e.Value, "/usr/sbin") {
		t.Errorf("PATH %+v: iptables is in /usr/sbin", e)
	}
	if kp.SecurityContext == nil || kp.SecurityContext.Privileged == nil || !*kp.SecurityContext.Privileged {
		t.Errorf("not privileged: %+v", kp.SecurityContext)
	}
	rp := kp.ReadinessProbe
	if rp == nil || rp.HTTPGet == nil || rp.HTTPGet.Path != "/healthz" || rp.HTTPGet.Port != intstr.FromInt32(10256) {
		t.Errorf("readinessProbe %+v", rp)
	}
	vols := map[string]corev1.Volume{}
	for _, v := range ps.Volumes {
		vols[v.Name] = v
	}
	mounts := map[string]string{}
	for _, m := range kp.VolumeMounts {
		v, ok := vols[m.Name]
		switch {
		case !ok:
			t.Errorf("mount %q: no such volume", m.Name)
		case v.HostPath != nil:
			mounts[m.MountPath] = v.HostPath.Path
		case v.ConfigMap != nil:
			mounts[m.MountPath] = "configmap:" + v.ConfigMap.Name
		}
	}
	want := map[string]string{
		"/var/lib/kube-proxy": "configmap:kube-proxy",
		"/run/xtables.lock":   "/run/xtables.lock",
		"/etc/alternatives":   "/etc/alternatives",
	}
	if !mapsEqual(mounts, want) {
		t.Errorf("mounts\n got %v\nwant %v", mounts, want)
	}
	if r.cm.Name != "kube-proxy" {
		t.Errorf("ConfigMap %q", r.cm.Name)
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func TestRenderKubeProxyOptions(t *testing.T) {
	o := validKubeProxyOptions()
	o.Namespace, o.PullPolicy, o.ClusterCIDR, o.HealthzPort = "proxy", "IfNotPresent", "10.32.0.0/12", 10300
	r := renderKubeProxy(t, o)
	if r.sa.Namespace != "proxy" || r.ds.Namespace != "proxy" || r.cm.Namespace != "proxy" || r.bind.Subjects[0].Namespace != "proxy" {
		t.Errorf("namespace not applied")
	}
	if r.config.ClusterCIDR != "10.32.0.0/12" || r.config.HealthzBindAddress != "0.0.0.0:10300" {
		t.Errorf("config %q %q", r.config.ClusterCIDR, r.config.HealthzBindAddress)
	}
	kp := container(t, r.ds.Spec.Template.Spec.Containers, "kube-proxy")
	if kp.ImagePullPolicy != corev1.PullIfNotPresent || kp.ReadinessProbe.HTTPGet.Port != intstr.FromInt32(10300) {
		t.Errorf("pull %q probe port %v", kp.ImagePullPolicy, kp.ReadinessProbe.HTTPGet.Port)
	}
}

func TestKubeProxyValidate(t *testing.T) {
	bad := KubeProxyOptions{Image: "a b", PullPolicy: "Sometimes", Namespace: "Bad", Mode: "ipvs", ClusterCIDR: "10.244.0.1/16", APIServer: "api:6443", HealthzPort: -1}
	_, err := RenderKubeProxy(bad)
	if err == nil {
		t.Fatal("invalid options accepted")
	}
	fields := []string{"Image", "PullPolicy", "Namespace", "Mode", "ClusterCIDR", "APIServer", "HealthzPort"}
	if n := len(unwrapAll(err)); n != len(fields) {
		t.Errorf("%d errors, want one per field (%d):\n%v", n, len(fields), err)
	}
	for _, f := range fields {
		if !strings.Contains(err.Error(), "KubeProxyOptions."+f+":") {
			t.Errorf("error does not name %s:\n%v", f, err)
		}
	}
	for _, cidr := range []string{"", "fd00::/64", "10.244.0.0"} {
		o := validKubeProxyOptions()
		o.ClusterCIDR = cidr
		if _, err := RenderKubeProxy(o); err == nil || !strings.Contains(err.Error(), "KubeProxyOptions.ClusterCIDR:") {
			t.Errorf("ClusterCIDR %q: error %v", cidr, err)
		}
	}
}

func TestRenderKubeProxyCleanup(t *testing.T) {
	b, err := RenderKubeProxyCleanup(validKubeProxyOptions(), "fp-abc-worker2")
	if err != nil {
		t.Fatal(err)
	}
	docs := splitDocs(t, b)
	if len(docs) != 1 {
		t.Fatalf("%d documents", len(docs))
	}
	p := &corev1.Pod{}
	decodeStrict(t, docs[0], p)
	if p.APIVersion != "v1" || p.Kind != "Pod" || p.Name != "kube-proxy-cleanup-fp-abc-worker2" || p.Namespace != "kube-system" {
		t.Errorf("pod %s/%s %s/%s", p.APIVersion, p.Kind, p.Namespace, p.Name)
	}
	if p.Labels[KubeProxyLabel] != KubeProxyCleanupName {
		t.Errorf("labels %v", p.Labels)
	}
	s := p.Spec
	if s.NodeName != "fp-abc-worker2" || !s.HostNetwork || s.RestartPolicy != corev1.RestartPolicyNever {
		t.Errorf("nodeName %q hostNetwork %v restartPolicy %q", s.NodeName, s.HostNetwork, s.RestartPolicy)
	}
	c := container(t, s.Containers, "cleanup")
	if got := append(slices.Clone(c.Command), c.Args...); !slices.Equal(got, []string{"/usr/local/bin/kube-proxy", "--cleanup"}) {
		t.Errorf("command %q", got)
	}
	if c.Image != "registry.k8s.io/kube-proxy:v1.35.0" || c.SecurityContext == nil || c.SecurityContext.Privileged == nil || !*c.SecurityContext.Privileged {
		t.Errorf("image %q securityContext %+v", c.Image, c.SecurityContext)
	}
	for _, v := range s.Volumes {
		if v.HostPath != nil && v.HostPath.Path == "/lib/modules" {
			t.Error("/lib/modules mounted: the IPVS cleanup would load ip_vs into the host's kernel")
		}
	}
	if !slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.MountPath == "/etc/alternatives" }) {
		t.Errorf("mounts %+v: the cleanup must use the node's iptables backend", c.VolumeMounts)
	}
	if _, err := RenderKubeProxyCleanup(validKubeProxyOptions(), "Bad_Node"); err == nil || !strings.Contains(err.Error(), `node "Bad_Node"`) {
		t.Errorf("bad node name: %v", err)
	}
}

// TestRenderIptables: the iptables datapath runs from its own image next
// to kube-proxy, which owns the Services.
func TestRenderIptables(t *testing.T) {
	o := validOptions()
	o.Datapath = "iptables"
	if err := o.Validate(); err == nil || !strings.Contains(err.Error(), "Options.IptablesImage: required with datapath iptables") {
		t.Fatalf("no IptablesImage: %v", err)
	}
	o.IptablesImage = "fastpath/agent-iptables:def456"
	r := render(t, o)
	ps := r.ds.Spec.Template.Spec
	a := container(t, ps.Containers, "agent")
	if a.Image != "fastpath/agent-iptables:def456" {
		t.Errorf("agent image %q", a.Image)
	}
	if ic := container(t, ps.InitContainers, "install-cni"); ic.Image != "fastpath/agent:abc123" {
		t.Errorf("install-cni image %q", ic.Image)
	}
	if !slices.Contains(a.Args, "--datapath=iptables") || !slices.Contains(a.Args, "--iptables-services=false") {
		t.Errorf("args %q", a.Args)
	}
	var paths []string
	for _, m := range a.VolumeMounts {
		paths = append(paths, m.MountPath)
		if m.MountPath == "/etc/alternatives" && !m.ReadOnly {
			t.Error("/etc/alternatives is mounted writable")
		}
	}
	for _, want := range []string{"/run/xtables.lock", "/etc/alternatives"} {
		if !slices.Contains(paths, want) {
			t.Errorf("agent mounts %q lack %s", paths, want)
		}
	}
	// Other datapaths: neither the image nor the flag nor the mounts.
	o.Datapath = "ebpf"
	a = container(t, render(t, o).ds.Spec.Template.Spec.Containers, "agent")
	if a.Image != "fastpath/agent:abc123" || slices.Contains(a.Args, "--iptables-services=false") || len(a.VolumeMounts) != 3 {
		t.Errorf("ebpf: image %q args %q mounts %d", a.Image, a.Args, len(a.VolumeMounts))
	}
}
