package kind

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/kind/pkg/apis/config/v1alpha4"
	"sigs.k8s.io/yaml"

	"github.com/fastpath-bench/fastpath/datapath/clustermesh"
	"github.com/fastpath-bench/fastpath/harness/cluster"
)

func meshTestSpec() cluster.Spec {
	return cluster.Spec{RunID: "fp-abc123", Nodes: []string{"e1", "w1", "w2"},
		Clusters: []cluster.ClusterSpec{{Name: "east", ID: 1, Nodes: []string{"e1"}}, {Name: "west", ID: 2, Nodes: []string{"w1", "w2"}}},
		Pods: []cluster.PodSpec{{Namespace: "a", Name: "x", Node: "e1", IP: netip.MustParseAddr("198.19.1.50")},
			{Namespace: "a", Name: "y", Node: "w2", IP: netip.MustParseAddr("198.19.1.50")}, {Namespace: "a", Name: "z", Node: "w1"}}}
}

// A mesh's clusters: distinct kind cluster names carrying the run id,
// distinct pod and service CIDRs in kind's configuration, each its nodes
// and pods.
func TestPlanMesh(t *testing.T) {
	ms, subs, err := planMesh(meshTestSpec())
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 2 || subs[0].RunID != "fp-abc123-east" || subs[1].RunID != "fp-abc123-west" {
		t.Fatalf("members %v %v", ms, subs)
	}
	if !slices.Equal(subs[1].Nodes, []string{"w1", "w2"}) || len(subs[0].Pods) != 1 || len(subs[1].Pods) != 2 {
		t.Errorf("parts %+v", subs)
	}
	var nets []netip.Prefix
	for i, m := range ms {
		kc, err := Config{Name: subs[i].RunID, Workers: len(subs[i].Nodes), PodSubnet: m.podSubnet.String(), ServiceSubnet: m.serviceCIDR.String(),
			Datapath: "ebpf", Image: "fastpath/kind-node:x"}.KindConfig()
		if err != nil {
			t.Fatal(err)
		}
		// As kind reads it.
		data, err := yaml.Marshal(kc)
		if err != nil {
			t.Fatal(err)
		}
		var back v1alpha4.Cluster
		if err := yaml.UnmarshalStrict(data, &back); err != nil {
			t.Fatalf("%v\n%s", err, data)
		}
		if back.Name != subs[i].RunID || back.Networking.PodSubnet != m.podSubnet.String() || back.Networking.ServiceSubnet != m.serviceCIDR.String() {
			t.Errorf("kind config %+v", back.Networking)
		}
		nets = append(nets, m.podSubnet, m.serviceCIDR)
	}
	for i := range nets {
		for j := range i {
			if nets[i].Overlaps(nets[j]) {
				t.Errorf("%s overlaps %s", nets[i], nets[j])
			}
		}
	}
	if ms[0].serviceCIDR.String() != "10.96.0.0/16" || ms[1].serviceCIDR.String() != "10.97.0.0/16" {
		t.Errorf("service CIDRs %s %s", ms[0].serviceCIDR, ms[1].serviceCIDR)
	}
	// Refused before anything is created.
	bad := meshTestSpec()
	bad.Clusters[1].Nodes = []string{"w1", "e1"}
	_, _, err = planMesh(bad)
	for _, want := range []string{`node "e1" is also in cluster "east"`, `node "w2" is in no cluster`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v, want %q", err, want)
		}
	}
	bad = meshTestSpec()
	bad.Clusters[1].ServiceCIDR = netip.MustParsePrefix("10.96.0.0/12")
	if _, _, err = planMesh(bad); err == nil || !strings.Contains(err.Error(), "service CIDRs of east (10.96.0.0/16) and west (10.96.0.0/12) overlap") {
		t.Errorf("overlapping service CIDRs: %v", err)
	}
	long := cluster.ClusterSpec{Name: "a-very-long-cluster-name-indeed", ID: 7}
	if n := MemberName("fp-abc123", long); n != "fp-abc123-c7" || !nameRE.MatchString(n) {
		t.Errorf("MemberName %q", n)
	}
}

// The agents' mesh configurations: every cluster's etcd, pod subnet and
// /32s of requested addresses outside it, valid for the control plane.
func TestKindMeshConfig(t *testing.T) {
	spec := meshTestSpec()
	ms, subs, err := planMesh(spec)
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range ms {
		m.topo = &Topology{spec: subs[i]}
		m.etcdURL = "http://172.18.0." + string(rune('2'+i)) + ":12379"
	}
	cfg := meshConfig(ms, ms[1], 0)
	data, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	back, err := clustermesh.DecodeConfig(data)
	if err != nil {
		t.Fatalf("%v\n%s", err, data)
	}
	if back.Name != "west" || back.ID != 2 || !slices.Equal(back.Endpoints, []string{"http://172.18.0.3:12379"}) ||
		!slices.Equal(back.PodCIDRs, []string{"10.245.0.0/16", "198.19.1.50/32"}) || !back.AllowOverlappingPodCIDRs {
		t.Errorf("config %+v", back.Cluster)
	}
	if len(back.Peers) != 1 || back.Peers[0].Name != "east" || back.Peers[0].Endpoints[0] != "http://172.18.0.2:12379" {
		t.Errorf("peers %+v", back.Peers)
	}
	if tok := cluster.SplitMeshToken("mesh|east=rv:pods=3,services=4|west=rv:pods=9", []string{"east", "west"}); tok["east"] != "rv:pods=3,services=4" || tok["west"] != "rv:pods=9" {
		t.Errorf("split token %v", tok)
	}
}

// The etcd pod, as the API server would decode it.
func TestEtcdPod(t *testing.T) {
	data, err := yaml.Marshal(etcdPod("registry.k8s.io/etcd:3.6.6-0", "fp-x-east-control-plane", "172.18.0.2"))
	if err != nil {
		t.Fatal(err)
	}
	var p corev1.Pod
	if err := yaml.UnmarshalStrict(data, &p); err != nil {
		t.Fatal(err)
	}
	c := p.Spec.Containers[0]
	if !p.Spec.HostNetwork || p.Spec.NodeName != "fp-x-east-control-plane" || c.Image != "registry.k8s.io/etcd:3.6.6-0" ||
		!slices.Contains(c.Command, "--listen-client-urls=http://172.18.0.2:12379") || c.ReadinessProbe.HTTPGet.Port.IntValue() != EtcdPort {
		t.Errorf("etcd pod %+v", p.Spec)
	}
}
