package deploy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/fastpath-bench/fastpath/datapath/model"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/install"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/validation"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

func validOptions() Options {
	return Options{
		Image:     "fastpath/agent:abc123",
		APIServer: "172.18.0.2:6443",
	}
}

// splitDocs splits multi-document YAML, dropping empty documents.
func splitDocs(t *testing.T, b []byte) [][]byte {
	t.Helper()
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(b)))
	var out [][]byte
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("splitting documents: %v", err)
		}
		if len(bytes.TrimSpace(stripComments(doc))) > 0 {
			out = append(out, doc)
		}
	}
}

func stripComments(doc []byte) []byte {
	var b bytes.Buffer
	for _, l := range strings.Split(string(doc), "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			b.WriteString(l + "\n")
		}
	}
	return b.Bytes()
}

// decodeStrict decodes one YAML document into obj, failing on duplicate
// keys, unknown fields and case-mismatched fields.
func decodeStrict(t *testing.T, doc []byte, obj any) {
	t.Helper()
	j, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		t.Fatalf("YAML to JSON: %v\n%s", err, doc)
	}
	strict, err := sigsjson.UnmarshalStrict(j, obj)
	if err != nil {
		t.Fatalf("decoding %T: %v\n%s", obj, err, doc)
	}
	if len(strict) > 0 {
		t.Fatalf("decoding %T strictly: %v\n%s", obj, errors.Join(strict...), doc)
	}
}

type rendered struct {
	sa    *corev1.ServiceAccount
	role  *rbacv1.ClusterRole
	bind  *rbacv1.ClusterRoleBinding
	ds    *appsv1.DaemonSet
	cm    *corev1.ConfigMap
	kinds []string
}

// render renders o and decodes every document strictly by kind.
func render(t *testing.T, o Options) rendered {
	t.Helper()
	b, err := Render(o)
	if err != nil {
		t.Fatalf("Render: %v", err)
	}
	var r rendered
	for _, doc := range splitDocs(t, b) {
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal(doc, &tm); err != nil {
			t.Fatalf("reading kind: %v\n%s", err, doc)
		}
		r.kinds = append(r.kinds, tm.APIVersion+"/"+tm.Kind)
		switch tm.APIVersion + "/" + tm.Kind {
		case "v1/ServiceAccount":
			r.sa = &corev1.ServiceAccount{}
			decodeStrict(t, doc, r.sa)
		case "rbac.authorization.k8s.io/v1/ClusterRole":
			r.role = &rbacv1.ClusterRole{}
			decodeStrict(t, doc, r.role)
		case "rbac.authorization.k8s.io/v1/ClusterRoleBinding":
			r.bind = &rbacv1.ClusterRoleBinding{}
			decodeStrict(t, doc, r.bind)
		case "apps/v1/DaemonSet":
			r.ds = &appsv1.DaemonSet{}
			decodeStrict(t, doc, r.ds)
		case "v1/ConfigMap":
			r.cm = &corev1.ConfigMap{}
			decodeStrict(t, doc, r.cm)
		default:
			t.Fatalf("unexpected document %s/%s", tm.APIVersion, tm.Kind)
		}
	}
	want := []string{"v1/ServiceAccount", "rbac.authorization.k8s.io/v1/ClusterRole", "rbac.authorization.k8s.io/v1/ClusterRoleBinding", "apps/v1/DaemonSet"}
	if len(o.ClusterMesh) > 0 {
		want = slices.Insert(want, 3, "v1/ConfigMap")
	}
	if !slices.Equal(r.kinds, want) {
		t.Fatalf("documents %v, want %v", r.kinds, want)
	}
	return r
}

func container(t *testing.T, cs []corev1.Container, name string) corev1.Container {
	t.Helper()
	for _, c := range cs {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no container %q", name)
	return corev1.Container{}
}

func envValue(t *testing.T, c corev1.Container, name string) (corev1.EnvVar, bool) {
	t.Helper()
	for _, e := range c.Env {
		if e.Name == name {
			return e, true
		}
	}
	return corev1.EnvVar{}, false
}

func TestRenderDefaults(t *testing.T) {
	r := render(t, validOptions())

	// ServiceAccount and binding.
	if r.sa.Name != AgentName || r.sa.Namespace != "kube-system" {
		t.Errorf("ServiceAccount %s/%s", r.sa.Namespace, r.sa.Name)
	}
	if r.bind.Name != AgentName || r.bind.RoleRef != (rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: AgentName}) {
		t.Errorf("ClusterRoleBinding %s roleRef %+v", r.bind.Name, r.bind.RoleRef)
	}
	if len(r.bind.Subjects) != 1 || r.bind.Subjects[0] != (rbacv1.Subject{Kind: "ServiceAccount", Name: AgentName, Namespace: "kube-system"}) {
		t.Errorf("ClusterRoleBinding subjects %+v", r.bind.Subjects)
	}

	// ClusterRole: everything the agent reads, listed and watched.
	if r.role.Name != AgentName {
		t.Errorf("ClusterRole name %q", r.role.Name)
	}
	for _, gr := range []struct{ group, resource string }{
		{"", "namespaces"}, {"", "nodes"}, {"", "pods"}, {"", "services"},
		{"discovery.k8s.io", "endpointslices"},
		{"networking.k8s.io", "networkpolicies"},
		{"cilium.io", "ciliumnetworkpolicies"},
		{"security.istio.io", "authorizationpolicies"},
		{"fastpath.dev", "prefilters"},
		{"fastpath.dev", "egressgatewaypolicies"},
	} {
		for _, verb := range []string{"get", "list", "watch"} {
			if !allowed(r.role.Rules, gr.group, gr.resource, verb) {
				t.Errorf("ClusterRole does not allow %s on %q %s", verb, gr.group, gr.resource)
			}
		}
	}
	if !allowed(r.role.Rules, "", "events", "create") {
		t.Errorf("ClusterRole does not allow creating events")
	}
	if allowed(r.role.Rules, "", "pods", "delete") || allowed(r.role.Rules, "", "secrets", "get") {
		t.Errorf("ClusterRole grants more than reads: %+v", r.role.Rules)
	}

	// DaemonSet.
	ds := r.ds
	if ds.Name != AgentName || ds.Namespace != "kube-system" {
		t.Errorf("DaemonSet %s/%s", ds.Namespace, ds.Name)
	}
	if ds.Labels[AgentLabel] != AgentName {
		t.Errorf("DaemonSet labels %v", ds.Labels)
	}
	sel, err := metav1.LabelSelectorAsSelector(ds.Spec.Selector)
	if err != nil || sel.Empty() {
		t.Fatalf("DaemonSet selector %v: %v", ds.Spec.Selector, err)
	}
	if !sel.Matches(labelSet(ds.Spec.Template.Labels)) {
		t.Errorf("selector %v does not match the pod template's labels %v", sel, ds.Spec.Template.Labels)
	}
	if ds.Spec.Template.Labels[AgentLabel] != AgentName {
		t.Errorf("pod labels %v", ds.Spec.Template.Labels)
	}
	us := ds.Spec.UpdateStrategy
	if us.Type != appsv1.RollingUpdateDaemonSetStrategyType || us.RollingUpdate == nil ||
		us.RollingUpdate.MaxUnavailable == nil || *us.RollingUpdate.MaxUnavailable != intstr.FromString("100%") {
		t.Errorf("updateStrategy %+v", us)
	}
	ps := ds.Spec.Template.Spec
	if !ps.HostNetwork {
		t.Error("hostNetwork is not set")
	}
	if ps.DNSPolicy != corev1.DNSClusterFirstWithHostNet {
		t.Errorf("dnsPolicy %q", ps.DNSPolicy)
	}
	if ps.PriorityClassName != "system-node-critical" {
		t.Errorf("priorityClassName %q", ps.PriorityClassName)
	}
	if ps.ServiceAccountName != AgentName {
		t.Errorf("serviceAccountName %q", ps.ServiceAccountName)
	}
	if ps.TerminationGracePeriodSeconds == nil || *ps.TerminationGracePeriodSeconds != 10 {
		t.Errorf("terminationGracePeriodSeconds %v", ps.TerminationGracePeriodSeconds)
	}
	if !slices.ContainsFunc(ps.Tolerations, func(tl corev1.Toleration) bool {
		return tl.Operator == corev1.TolerationOpExists && tl.Key == "" && tl.Effect == ""
	}) {
		t.Errorf("no toleration of every taint: %+v", ps.Tolerations)
	}

	// The agent container.
	if len(ps.Containers) != 1 {
		t.Fatalf("%d containers", len(ps.Containers))
	}
	a := container(t, ps.Containers, "agent")
	if a.Image != "fastpath/agent:abc123" || a.ImagePullPolicy != corev1.PullNever {
		t.Errorf("agent image %q pull %q", a.Image, a.ImagePullPolicy)
	}
	if !slices.Equal(a.Command, []string{"/fastpath-agent"}) {
		t.Errorf("agent command %q", a.Command)
	}
	wantArgs := []string{
		"--source=kubernetes",
		"--node=$(NODE_NAME)",
		"--datapath=ebpf",
		"--api-socket=/var/run/fastpath/agent.sock",
		"--listen=$(NODE_IP):9965",
	}
	if !slices.Equal(a.Args, wantArgs) {
		t.Errorf("agent args\n got %q\nwant %q", a.Args, wantArgs)
	}
	if a.SecurityContext == nil || a.SecurityContext.Privileged == nil || !*a.SecurityContext.Privileged {
		t.Errorf("agent is not privileged: %+v", a.SecurityContext)
	}
	for name, path := range map[string]string{"NODE_NAME": "spec.nodeName", "NODE_IP": "status.hostIP"} {
		e, ok := envValue(t, a, name)
		if !ok || e.ValueFrom == nil || e.ValueFrom.FieldRef == nil || e.ValueFrom.FieldRef.FieldPath != path {
			t.Errorf("env %s = %+v, want fieldRef %s", name, e, path)
		}
	}
	for name, want := range map[string]string{"KUBERNETES_SERVICE_HOST": "172.18.0.2", "KUBERNETES_SERVICE_PORT": "6443"} {
		if e, ok := envValue(t, a, name); !ok || e.Value != want {
			t.Errorf("env %s = %+v, want %q", name, e, want)
		}
	}
	if e, ok := envValue(t, a, "GOMAXPROCS"); ok {
		t.Errorf("GOMAXPROCS set by default: %+v", e)
	}
	// $(VAR) in args expands only for variables defined in env.
	for _, arg := range a.Args {
		for _, v := range []string{"NODE_NAME", "NODE_IP"} {
			if strings.Contains(arg, "$("+v+")") {
				if _, ok := envValue(t, a, v); !ok {
					t.Errorf("arg %q refers to undefined env %s", arg, v)
				}
			}
		}
	}
	rp := a.ReadinessProbe
	if rp == nil || rp.HTTPGet == nil || rp.HTTPGet.Path != "/readyz" || rp.HTTPGet.Port != intstr.FromInt32(9965) ||
		rp.PeriodSeconds != 1 || rp.FailureThreshold != 3 {
		t.Errorf("readinessProbe %+v", rp)
	}
	lp := a.LivenessProbe
	if lp == nil || lp.HTTPGet == nil || lp.HTTPGet.Path != "/healthz" || lp.HTTPGet.Port != intstr.FromInt32(9965) ||
		lp.PeriodSeconds != 10 || lp.FailureThreshold != 6 {
		t.Errorf("livenessProbe %+v", lp)
	}
	if len(a.Ports) != 1 || a.Ports[0].Name != "metrics" || a.Ports[0].ContainerPort != 9965 {
		t.Errorf("ports %+v", a.Ports)
	}

	// The install-cni init container.
	ic := container(t, ps.InitContainers, "install-cni")
	if ic.Image != a.Image || ic.ImagePullPolicy != corev1.PullNever {
		t.Errorf("install-cni image %q pull %q", ic.Image, ic.ImagePullPolicy)
	}
	wantCmd := []string{
		"/fastpath-agent", "install-cni",
		"--bin-dir=/host/opt/cni/bin",
		"--conf-dir=/host/etc/cni/net.d",
		"--agent-socket=/var/run/fastpath/agent.sock",
		"--plugin=/fastpath-cni",
	}
	if got := append(slices.Clone(ic.Command), ic.Args...); !slices.Equal(got, wantCmd) {
		t.Errorf("install-cni command\n got %q\nwant %q", got, wantCmd)
	}

	// Mounts: each refers to a volume, from the expected host path.
	vols := map[string]corev1.Volume{}
	for _, v := range ps.Volumes {
		if _, dup := vols[v.Name]; dup {
			t.Errorf("duplicate volume %q", v.Name)
		}
		vols[v.Name] = v
	}
	type mount struct {
		hostPath string
		prop     corev1.MountPropagationMode
	}
	mounts := func(c corev1.Container) map[string]mount {
		out := map[string]mount{}
		for _, m := range c.VolumeMounts {
			v, ok := vols[m.Name]
			if !ok || v.HostPath == nil {
				t.Errorf("container %s mounts %q: no such hostPath volume", c.Name, m.Name)
				continue
			}
			var p corev1.MountPropagationMode
			if m.MountPropagation != nil {
				p = *m.MountPropagation
			}
			out[m.MountPath] = mount{v.HostPath.Path, p}
		}
		return out
	}
	wantAgent := map[string]mount{
		"/sys/fs/bpf":       {"/sys/fs/bpf", corev1.MountPropagationBidirectional},
		"/sys/fs/cgroup":    {"/sys/fs/cgroup", ""},
		"/var/run/fastpath": {"/var/run/fastpath", ""},
	}
	if got := mounts(a); !reflect.DeepEqual(got, wantAgent) {
		t.Errorf("agent mounts\n got %v\nwant %v", got, wantAgent)
	}
	wantInit := map[string]mount{
		"/host/opt/cni/bin":   {"/opt/cni/bin", ""},
		"/host/etc/cni/net.d": {"/etc/cni/net.d", ""},
	}
	if got := mounts(ic); !reflect.DeepEqual(got, wantInit) {
		t.Errorf("install-cni mounts\n got %v\nwant %v", got, wantInit)
	}
	for _, n := range []string{"cni-bin", "cni-conf", "run"} {
		if tp := vols[n].HostPath.Type; tp == nil || *tp != corev1.HostPathDirectoryOrCreate {
			t.Errorf("volume %s type %v, want DirectoryOrCreate", n, tp)
		}
	}
}

type labelSet map[string]string

func (l labelSet) Has(k string) bool              { _, ok := l[k]; return ok }
func (l labelSet) Get(k string) string            { return l[k] }
func (l labelSet) Lookup(k string) (string, bool) { v, ok := l[k]; return v, ok }

// allowed reports whether rules grant verb on group/resource.
func allowed(rules []rbacv1.PolicyRule, group, resource, verb string) bool {
	for _, r := range rules {
		if slices.Contains(r.APIGroups, group) && slices.Contains(r.Resources, resource) && slices.Contains(r.Verbs, verb) {
			return true
		}
	}
	return false
}

func TestRenderOptions(t *testing.T) {
	o := Options{
		Image:      "registry.example/fastpath/agent@sha256:0123",
		PullPolicy: "IfNotPresent",
		Namespace:  "fastpath-system",
		Datapath:   "none",
		Socket:     "/run/fp/a.sock",
		Port:       10001,
		APIServer:  "[fd00::2]:443",
		GoMaxProcs: 4,
		ExtraArgs:  []string{"--log-level=debug", "--resync=5s"},
	}
	r := render(t, o)
	if r.sa.Namespace != o.Namespace || r.ds.Namespace != o.Namespace || r.bind.Subjects[0].Namespace != o.Namespace {
		t.Errorf("namespace not applied: sa %q ds %q binding %q", r.sa.Namespace, r.ds.Namespace, r.bind.Subjects[0].Namespace)
	}
	ps := r.ds.Spec.Template.Spec
	a := container(t, ps.Containers, "agent")
	if a.Image != o.Image || a.ImagePullPolicy != corev1.PullIfNotPresent {
		t.Errorf("image %q pull %q", a.Image, a.ImagePullPolicy)
	}
	wantArgs := []string{
		"--source=kubernetes", "--node=$(NODE_NAME)", "--datapath=none",
		"--api-socket=/run/fp/a.sock", "--listen=$(NODE_IP):10001",
		"--log-level=debug", "--resync=5s",
	}
	if !slices.Equal(a.Args, wantArgs) {
		t.Errorf("args\n got %q\nwant %q", a.Args, wantArgs)
	}
	for name, want := range map[string]string{"KUBERNETES_SERVICE_HOST": "fd00::2", "KUBERNETES_SERVICE_PORT": "443", "GOMAXPROCS": "4"} {
		if e, ok := envValue(t, a, name); !ok || e.Value != want {
			t.Errorf("env %s = %+v, want %q", name, e, want)
		}
	}
	if a.ReadinessProbe.HTTPGet.Port != intstr.FromInt32(10001) || a.LivenessProbe.HTTPGet.Port != intstr.FromInt32(10001) || a.Ports[0].ContainerPort != 10001 {
		t.Errorf("port not applied: readiness %v liveness %v ports %+v", a.ReadinessProbe.HTTPGet.Port, a.LivenessProbe.HTTPGet.Port, a.Ports)
	}
	ic := container(t, ps.InitContainers, "install-cni")
	if !slices.Contains(ic.Command, "--agent-socket=/run/fp/a.sock") {
		t.Errorf("install-cni command %q lacks the socket", ic.Command)
	}
	var runDir string
	for _, m := range a.VolumeMounts {
		if m.Name == "run" {
			runDir = m.MountPath
		}
	}
	for _, v := range ps.Volumes {
		if v.Name == "run" && (v.HostPath == nil || v.HostPath.Path != "/run/fp") {
			t.Errorf("run volume %+v, want hostPath /run/fp", v)
		}
	}
	if runDir != "/run/fp" {
		t.Errorf("socket directory mounted at %q, want /run/fp", runDir)
	}
}

// TestRenderQuoting: option values are data, never YAML structure.
func TestRenderQuoting(t *testing.T) {
	nasty := []string{
		`--x=a": #b`,
		`--y='single' "double" \back`,
		"--z=line1\nline2",
		`--t={{ .Image }}`,
		`- item`,
		`--k: v`,
		`--yes=yes`,
		`*alias`,
	}
	o := validOptions()
	o.ExtraArgs = nasty
	r := render(t, o)
	a := container(t, r.ds.Spec.Template.Spec.Containers, "agent")
	if got := a.Args[len(a.Args)-len(nasty):]; !slices.Equal(got, nasty) {
		t.Errorf("extra args\n got %q\nwant %q", got, nasty)
	}
	if len(a.Args) != 5+len(nasty) {
		t.Errorf("%d args, want %d: %q", len(a.Args), 5+len(nasty), a.Args)
	}
}

func TestValidate(t *testing.T) {
	if err := validOptions().Validate(); err != nil {
		t.Fatalf("valid options: %v", err)
	}
	for _, dp := range Datapaths {
		o := validOptions()
		o.Datapath = dp
		o.IptablesImage = "fastpath/agent-iptables:abc123"
		if err := o.Validate(); err != nil {
			t.Errorf("datapath %q: %v", dp, err)
		}
	}

	bad := Options{
		Image:      "",
		PullPolicy: "Sometimes",
		Namespace:  "Bad_NS",
		Datapath:   "istio",
		Socket:     "relative.sock",
		Port:       70000,
		APIServer:  "",
		GoMaxProcs: -1,
		ExtraArgs:  []string{"--ok", ""},
	}
	err := bad.Validate()
	if err == nil {
		t.Fatal("invalid options accepted")
	}
	fields := []string{"Image", "PullPolicy", "Namespace", "Datapath", "Socket", "Port", "APIServer", "GoMaxProcs", "ExtraArgs[1]"}
	errs := unwrapAll(err)
	if len(errs) != len(fields) {
		t.Errorf("%d errors, want one per field (%d):\n%v", len(errs), len(fields), err)
	}
	for _, f := range fields {
		if !strings.Contains(err.Error(), "Options."+f+":") {
			t.Errorf("error does not name %s:\n%v", f, err)
		}
	}
	if !strings.Contains(err.Error(), `"istio"`) {
		t.Errorf("error does not show the bad datapath:\n%v", err)
	}
	if _, rerr := Render(bad); rerr == nil || rerr.Error() != err.Error() {
		t.Errorf("Render error %v, want the Validate error", rerr)
	}

	for _, api := range []string{"172.18.0.2", "kind-control-plane:6443", "172.18.0.2:0", "172.18.0.2:http", "172.18.0.2:65536"} {
		o := validOptions()
		o.APIServer = api
		err := o.Validate()
		if err == nil || len(unwrapAll(err)) != 1 || !strings.Contains(err.Error(), "Options.APIServer:") {
			t.Errorf("APIServer %q: error %v, want one naming APIServer", api, err)
		}
	}
	for _, port := range []int{-1, 65536} {
		o := validOptions()
		o.Port = port
		if err := o.Validate(); err == nil || !strings.Contains(err.Error(), "Options.Port:") {
			t.Errorf("Port %d: error %v", port, err)
		}
	}
	for _, s := range []string{"/agent.sock", "/var/run/fastpath/", "var/run/a.sock"} {
		o := validOptions()
		o.Socket = s
		if err := o.Validate(); err == nil || !strings.Contains(err.Error(), "Options.Socket:") {
			t.Errorf("Socket %q: error %v", s, err)
		}
	}
}

func unwrapAll(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

func TestCRDs(t *testing.T) {
	b, err := CRDs()
	if err != nil {
		t.Fatal(err)
	}
	scheme := runtime.NewScheme()
	install.Install(scheme)

	type want struct {
		group, kind, plural string
		scope               apiextensionsv1.ResourceScope
		versions            []string // first is the storage version
		model               any      // the agent's type: its top-level fields must be in the schema
	}
	wants := map[string]want{
		"ciliumnetworkpolicies.cilium.io": {"cilium.io", "CiliumNetworkPolicy", "ciliumnetworkpolicies",
			apiextensionsv1.NamespaceScoped, []string{"v2"}, model.CiliumNetworkPolicy{}},
		"authorizationpolicies.security.istio.io": {"security.istio.io", "AuthorizationPolicy", "authorizationpolicies",
			apiextensionsv1.NamespaceScoped, []string{"v1", "v1beta1"}, model.AuthorizationPolicy{}},
		"prefilters.fastpath.dev": {"fastpath.dev", "Prefilter", "prefilters",
			apiextensionsv1.ClusterScoped, []string{"v1alpha1"}, model.Prefilter{}},
		"egressgatewaypolicies.fastpath.dev": {"fastpath.dev", "EgressGatewayPolicy", "egressgatewaypolicies",
			apiextensionsv1.ClusterScoped, []string{"v1alpha1"}, model.EgressGatewayPolicy{}},
	}
	seen := map[string]bool{}
	for _, doc := range splitDocs(t, b) {
		crd := &apiextensionsv1.CustomResourceDefinition{}
		decodeStrict(t, doc, crd)
		if crd.APIVersion != "apiextensions.k8s.io/v1" || crd.Kind != "CustomResourceDefinition" {
			t.Errorf("%s: %s/%s", crd.Name, crd.APIVersion, crd.Kind)
		}
		w, ok := wants[crd.Name]
		if !ok {
			t.Errorf("unexpected CRD %q", crd.Name)
			continue
		}
		if seen[crd.Name] {
			t.Errorf("CRD %q twice", crd.Name)
		}
		seen[crd.Name] = true
		s := crd.Spec
		if s.Group != w.group || s.Names.Kind != w.kind || s.Names.Plural != w.plural || s.Scope != w.scope {
			t.Errorf("%s: group %q kind %q plural %q scope %q", crd.Name, s.Group, s.Names.Kind, s.Names.Plural, s.Scope)
		}
		var names []string
		for _, v := range s.Versions {
			names = append(names, v.Name)
			if !v.Served {
				t.Errorf("%s: version %s not served", crd.Name, v.Name)
			}
			if v.Storage != (v.Name == w.versions[0]) {
				t.Errorf("%s: version %s storage %v", crd.Name, v.Name, v.Storage)
			}
			if v.Schema == nil || v.Schema.OpenAPIV3Schema == nil {
				t.Errorf("%s %s: no schema", crd.Name, v.Name)
				continue
			}
			props := v.Schema.OpenAPIV3Schema.Properties
			for _, f := range topLevelFields(reflect.TypeOf(w.model)) {
				p, ok := props[f]
				if !ok {
					t.Errorf("%s %s: schema lacks %q, a field of %T", crd.Name, v.Name, f, w.model)
					continue
				}
				if p.Type == "array" && p.Items != nil && p.Items.Schema != nil {
					p = *p.Items.Schema
				}
				if p.XPreserveUnknownFields == nil || !*p.XPreserveUnknownFields {
					t.Errorf("%s %s: %q does not preserve unknown fields: the agent validates it", crd.Name, v.Name, f)
				}
			}
			checkStructural(t, crd.Name+" "+v.Name, v.Schema.OpenAPIV3Schema)
		}
		if !slices.Equal(names, w.versions) {
			t.Errorf("%s: versions %q, want %q", crd.Name, names, w.versions)
		}

		// What the API server checks on create.
		scheme.Default(crd)
		internal := &apiextensions.CustomResourceDefinition{}
		if err := scheme.Convert(crd, internal, nil); err != nil {
			t.Fatalf("%s: converting: %v", crd.Name, err)
		}
		internal.Status.StoredVersions = []string{w.versions[0]}
		if errs := validation.ValidateCustomResourceDefinition(context.Background(), internal); len(errs) > 0 {
			t.Errorf("%s: invalid: %v", crd.Name, errs.ToAggregate())
		}
	}
	for n := range wants {
		if !seen[n] {
			t.Errorf("CRD %q missing", n)
		}
	}
}

// topLevelFields are the JSON names of t's fields other than the type
// and object metadata.
func topLevelFields(t reflect.Type) []string {
	var out []string
	for i := range t.NumField() {
		f := t.Field(i)
		if f.Anonymous {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "" || name == "-" || name == "metadata" {
			continue
		}
		out = append(out, name)
	}
	return out
}

func checkStructural(t *testing.T, what string, s *apiextensionsv1.JSONSchemaProps) {
	t.Helper()
	var internal apiextensions.JSONSchemaProps
	if err := apiextensionsv1.Convert_v1_JSONSchemaProps_To_apiextensions_JSONSchemaProps(s, &internal, nil); err != nil {
		t.Fatalf("%s: converting schema: %v", what, err)
	}
	st, err := schema.NewStructural(&internal)
	if err != nil {
		t.Errorf("%s: schema not structural: %v", what, err)
		return
	}
	if errs := schema.ValidateStructural(nil, st); len(errs) > 0 {
		t.Errorf("%s: schema not structural: %v", what, errs.ToAggregate())
	}
}

// TestCRDsMatchModelKinds: every served group/version/kind is one the
// agent's model decodes.
func TestCRDsMatchModelKinds(t *testing.T) {
	b, err := CRDs()
	if err != nil {
		t.Fatal(err)
	}
	var gvks []string
	for _, doc := range splitDocs(t, b) {
		crd := &apiextensionsv1.CustomResourceDefinition{}
		decodeStrict(t, doc, crd)
		for _, v := range crd.Spec.Versions {
			gvk := crd.Spec.Group + "/" + v.Name + "/" + crd.Spec.Names.Kind
			gvks = append(gvks, gvk)
			obj := "apiVersion: " + crd.Spec.Group + "/" + v.Name + "\nkind: " + crd.Spec.Names.Kind + "\nmetadata:\n  name: x\n"
			if crd.Spec.Scope == apiextensionsv1.NamespaceScoped {
				obj += "  namespace: default\n"
			}
			if err := new(model.Objects).Decode("crd.yaml", []byte(obj)); err != nil && strings.Contains(err.Error(), "unknown kind") {
				t.Errorf("%s: the model does not know it: %v", gvk, err)
			}
		}
	}
	slices.Sort(gvks)
	want := []string{
		"cilium.io/v2/CiliumNetworkPolicy",
		"fastpath.dev/v1alpha1/EgressGatewayPolicy",
		"fastpath.dev/v1alpha1/Prefilter",
		"security.istio.io/v1/AuthorizationPolicy",
		"security.istio.io/v1beta1/AuthorizationPolicy",
	}
	if !slices.Equal(gvks, want) {
		t.Errorf("CRD kinds %q, want %q", gvks, want)
	}
}
