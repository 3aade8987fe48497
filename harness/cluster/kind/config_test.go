package kind

import (
	"strings"
	"testing"

	"sigs.k8s.io/kind/pkg/apis/config/v1alpha4"
	"sigs.k8s.io/yaml"
)

func validConfig() Config {
	return Config{Name: "fp-abc123", Workers: 2, PodSubnet: "10.244.0.0/16", ServiceSubnet: "10.96.0.0/16",
		Datapath: "ebpf", CgroupV1: true, Image: "fastpath/kind-node:v1.35.0-0123456789ab"}
}

func TestKindConfig(t *testing.T) {
	cfg, err := validConfig().KindConfig()
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Nodes) != 3 || cfg.Nodes[0].Role != v1alpha4.ControlPlaneRole || cfg.Nodes[2].Role != v1alpha4.WorkerRole {
		t.Fatalf("nodes %+v", cfg.Nodes)
	}
	for _, n := range cfg.Nodes {
		if n.Image != "fastpath/kind-node:v1.35.0-0123456789ab" {
			t.Errorf("node image %q", n.Image)
		}
	}
	if cfg.Nodes[1].Labels["fastpath.dev/node"] != "node1" || cfg.Nodes[2].Labels["fastpath.dev/node"] != "node2" {
		t.Errorf("worker labels %v %v", cfg.Nodes[1].Labels, cfg.Nodes[2].Labels)
	}
	if !cfg.Networking.DisableDefaultCNI || cfg.Networking.KubeProxyMode != "none" {
		t.Errorf("networking %+v", cfg.Networking)
	}
	// The rendered YAML is what kind would read from a file.
	out, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"kind: Cluster", "apiVersion: kind.x-k8s.io/v1alpha4", "disableDefaultCNI: true", "kubeProxyMode: none",
		"podSubnet: 10.244.0.0/16", "serviceSubnet: 10.96.0.0/16", "failCgroupV1: false"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("config lacks %q:\n%s", want, out)
		}
	}
	ipt := validConfig()
	ipt.Datapath, ipt.CgroupV1 = "iptables", false
	cfg, err = ipt.KindConfig()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Networking.KubeProxyMode != v1alpha4.IPTablesProxyMode || len(cfg.KubeadmConfigPatches) != 0 {
		t.Errorf("iptables: mode %q patches %v", cfg.Networking.KubeProxyMode, cfg.KubeadmConfigPatches)
	}
}

func TestValidateNamesEveryField(t *testing.T) {
	c := Config{Name: "Bad_Name", Workers: 0, PodSubnet: "10.0.0.0/16", ServiceSubnet: "10.0.0.0/24", Datapath: "cilium"}
	err := c.Validate()
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{`name "Bad_Name"`, "workers: 0", "overlap", `datapath "cilium"`, "image:"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
	c = validConfig()
	c.PodSubnet = "10.244.0.0/24"
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "podSubnet") {
		t.Errorf("a /24 pod subnet: %v", err)
	}
	if _, err := c.KindConfig(); err == nil || !strings.Contains(err.Error(), "fp-abc123") {
		t.Errorf("KindConfig of an invalid config: %v", err)
	}
}
