package clustermesh

import (
	"errors"
	"strings"
	"testing"
	"time"
)

const validYAML = `
name: east
id: 1
podCIDRs: [10.1.0.0/16, fd00:1::/64]
serviceCIDR: 10.96.0.0/16
endpoints: [http://127.0.0.1:2379]
leaseTTL: 10s
peers:
- name: west
  id: 2
  podCIDRs: [10.2.0.0/16]
  serviceCIDR: 10.97.0.0/16
  endpoints: ["127.0.0.1:12379", "http://[::1]:2379"]
`

func TestDecodeConfig(t *testing.T) {
	c, err := DecodeConfig([]byte(validYAML))
	if err != nil {
		t.Fatal(err)
	}
	if c.Name != "east" || c.ClusterID() != 1 || c.TTL() != 10*time.Second || len(c.Peers) != 1 || c.Peers[0].Name != "west" {
		t.Errorf("decoded %+v", c)
	}
	if p, ok := c.Peer("west"); !ok || p.ID != 2 || len(p.Endpoints) != 2 {
		t.Errorf("Peer(west) = %+v, %v", p, ok)
	}
	if got := c.PodPrefixes(); len(got) != 2 || got[1].String() != "fd00:1::/64" {
		t.Errorf("PodPrefixes %v", got)
	}
	// Default TTL.
	c, err = DecodeConfig([]byte(strings.Replace(validYAML, "leaseTTL: 10s\n", "", 1)))
	if err != nil || c.TTL() != DefaultLeaseTTL || c.LeaseTTL != "15s" {
		t.Errorf("default TTL: %v, %v", c, err)
	}
	// JSON is YAML.
	if _, err := DecodeConfig([]byte(`{"name":"a","id":3,"podCIDRs":["10.0.0.0/16"],"serviceCIDR":"10.9.0.0/16","endpoints":["127.0.0.1:2379"],"peers":[]}`)); err != nil {
		t.Errorf("JSON: %v", err)
	}
	// Strict: unknown and duplicate fields.
	for _, bad := range []string{
		validYAML + "color: blue\n",
		strings.Replace(validYAML, "  id: 2\n", "  id: 2\n  clusterID: 2\n", 1),
		strings.Replace(validYAML, "id: 1\n", "id: 1\nid: 3\n", 1),
	} {
		if _, err := DecodeConfig([]byte(bad)); err == nil {
			t.Errorf("no error for\n%s", bad)
		}
	}
}

func TestValidate(t *testing.T) {
	base := func() *Config {
		c, err := DecodeConfig([]byte(validYAML))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	peer := func(name string, id int, pod, svc string) Cluster {
		return Cluster{Name: name, ID: id, PodCIDRs: []string{pod}, ServiceCIDR: svc, Endpoints: []string{"http://127.0.0.1:2379"}}
	}
	for _, c := range []struct {
		name string
		edit func(*Config)
		want []string // field: message fragment, one per expected error
	}{
		{"valid", func(*Config) {}, nil},
		{"duplicate id", func(c *Config) { c.Peers = append(c.Peers, peer("north", 2, "10.3.0.0/16", "10.98.0.0/16")) },
			[]string{"peers[1].id: duplicate cluster id 2 (also peers[0].id)"}},
		{"duplicate id with self", func(c *Config) { c.Peers[0].ID = 1 },
			[]string{"peers[0].id: duplicate cluster id 1 (also id)"}},
		{"duplicate name", func(c *Config) { c.Peers[0].Name = "east" },
			[]string{`peers[0].name: duplicate cluster name "east" (also name)`}},
		{"id 0", func(c *Config) { c.ID = 0 }, []string{"id: cluster id 0 is outside 1..255"}},
		{"id 256", func(c *Config) { c.Peers[0].ID = 256 }, []string{"peers[0].id: cluster id 256 is outside 1..255"}},
		{"id negative", func(c *Config) { c.ID = -1 }, []string{"id: cluster id -1 is outside"}},
		{"name missing", func(c *Config) { c.Name = "" }, []string{"name: required"}},
		{"name not a label", func(c *Config) { c.Peers[0].Name = "West/1" }, []string{`peers[0].name: "West/1" is not a DNS label`}},
		{"overlapping service CIDRs", func(c *Config) { c.Peers[0].ServiceCIDR = "10.96.128.0/20" },
			[]string{`peers[0].serviceCIDR: service CIDR 10.96.128.0/20 of cluster "west" overlaps service CIDR 10.96.0.0/16 of cluster "east" (serviceCIDR)`}},
		{"service CIDR over a pod CIDR", func(c *Config) { c.ServiceCIDR = "10.2.5.0/24" },
			[]string{`serviceCIDR: service CIDR 10.2.5.0/24 of cluster "east" overlaps pod CIDR 10.2.0.0/16 of cluster "west" (peers[0].podCIDRs[0])`}},
		{"overlapping pod CIDRs", func(c *Config) { c.Peers[0].PodCIDRs = []string{"10.1.128.0/17"} },
			[]string{`peers[0].podCIDRs[0]: pod CIDR 10.1.128.0/17 of cluster "west" overlaps pod CIDR 10.1.0.0/16 of cluster "east" (podCIDRs[0]); set allowOverlappingPodCIDRs`}},
		{"overlapping pod CIDRs allowed", func(c *Config) {
			c.Peers[0].PodCIDRs = []string{"10.1.128.0/17"}
			c.AllowOverlappingPodCIDRs = true
		}, nil},
		{"pod CIDRs of one cluster overlap", func(c *Config) { c.PodCIDRs = []string{"10.1.0.0/16", "10.1.3.0/24"} },
			[]string{"podCIDRs[1]: 10.1.3.0/24 overlaps 10.1.0.0/16 (podCIDRs[0]) of the same cluster"}},
		{"no pod CIDR", func(c *Config) { c.Peers[0].PodCIDRs = nil }, []string{"peers[0].podCIDRs: at least one pod CIDR is required"}},
		{"bad pod CIDR", func(c *Config) { c.PodCIDRs[1] = "10.1.0.0" }, []string{"podCIDRs[1]: netip.ParsePrefix"}},
		{"no service CIDR", func(c *Config) { c.ServiceCIDR = "" }, []string{"serviceCIDR: required"}},
		{"bad service CIDR", func(c *Config) { c.Peers[0].ServiceCIDR = "10.97.0.0/33" }, []string{"peers[0].serviceCIDR: netip.ParsePrefix"}},
		{"no endpoints", func(c *Config) { c.Peers[0].Endpoints = nil }, []string{"peers[0].endpoints: at least one etcd endpoint is required"}},
		{"empty endpoint", func(c *Config) { c.Endpoints = []string{""} }, []string{"endpoints[0]: empty endpoint"}},
		{"endpoint without port", func(c *Config) { c.Peers[0].Endpoints[1] = "http://etcd.west" }, []string{"peers[0].endpoints[1]: \"http://etcd.west\": address etcd.west: missing port"}},
		{"endpoint bad scheme", func(c *Config) { c.Endpoints = []string{"grpc://1.2.3.4:2379"} }, []string{`endpoints[0]: "grpc://1.2.3.4:2379": scheme "grpc"`}},
		{"endpoint TLS", func(c *Config) { c.Endpoints = []string{"https://1.2.3.4:2379"} }, []string{"endpoints[0]: \"https://1.2.3.4:2379\": TLS endpoints are not supported yet"}},
		{"endpoint bad port", func(c *Config) { c.Endpoints = []string{"1.2.3.4:99999"} }, []string{`endpoints[0]: "1.2.3.4:99999": port "99999" is not 1..65535`}},
		{"TTL not seconds", func(c *Config) { c.LeaseTTL = "2500ms" }, []string{"leaseTTL: 2.5s is not a whole number of seconds"}},
		{"TTL too short", func(c *Config) { c.LeaseTTL = "1s" }, []string{"leaseTTL: 1s is outside 2s..1h0m0s"}},
		{"TTL garbage", func(c *Config) { c.LeaseTTL = "soon" }, []string{"leaseTTL: time: invalid duration"}},
		{"all at once", func(c *Config) {
			c.ID = 300
			c.Peers[0].Endpoints = nil
			c.Peers[0].ServiceCIDR = c.ServiceCIDR
		}, []string{"id: cluster id 300", "peers[0].endpoints: at least one", "peers[0].serviceCIDR: service CIDR 10.96.0.0/16"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := base()
			c.edit(cfg)
			err := cfg.Validate()
			if len(c.want) == 0 {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error, want %q", c.want)
			}
			var got []string
			for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
				var fe *FieldError
				if !errors.As(e, &fe) {
					t.Errorf("%v is not a *FieldError", e)
				}
				got = append(got, e.Error())
			}
			if len(got) != len(c.want) {
				t.Errorf("errors:\n%s\nwant %d: %q", strings.Join(got, "\n"), len(c.want), c.want)
				return
			}
			for i, w := range c.want {
				if !strings.HasPrefix(got[i], w) {
					t.Errorf("error %d: %q, want prefix %q", i, got[i], w)
				}
			}
		})
	}
}
