package clustermesh

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"
)

// DefaultLeaseTTL is the TTL of the lease a cluster's keys are attached to
// when the configuration names none.
const DefaultLeaseTTL = 15 * time.Second

// Bounds of Config.LeaseTTL: etcd grants leases in whole seconds and
// raises shorter ones to its minimum (1.5 election timeouts, 2 s with the
// default settings).
const (
	MinLeaseTTL = 2 * time.Second
	MaxLeaseTTL = time.Hour
)

// Cluster is one member of the mesh: its name (the key prefix
// /fastpath/clusters/<name>/), its id (1..255, the upper bits of its pods'
// global identities), its address ranges and the client URLs of its etcd.
type Cluster struct {
	// Name is a DNS label (RFC 1123).
	Name string `json:"name"`
	// ID is the cluster id, 1..255.
	ID int `json:"id"`
	// PodCIDRs are the ranges the cluster's pod addresses come from
	// (one per IP family, or more).
	PodCIDRs []string `json:"podCIDRs"`
	// ServiceCIDR is the range of the cluster's ClusterIPs.
	ServiceCIDR string `json:"serviceCIDR"`
	// Endpoints are the client URLs of the cluster's etcd
	// (http://host:port, or host:port).
	Endpoints []string `json:"endpoints"`
}

// Config is one cluster's view of the mesh: the cluster itself (whose
// etcd it publishes to) and its peers (whose etcd it watches).
type Config struct {
	Cluster `json:",inline"`
	// LeaseTTL is the TTL of the lease this cluster's keys are attached to
	// (a Go duration in whole seconds, 2s..1h; default 15s). A peer's
	// TTL is read from its own cluster key.
	LeaseTTL string `json:"leaseTTL,omitempty"`
	// AllowOverlappingPodCIDRs accepts pod CIDRs shared between clusters.
	// Identities stay distinct (they are keyed by cluster id, not by
	// address), but an address then names a pod in each of the clusters
	// that use it: a consumer must not route or resolve such remote
	// addresses by IP alone. Off by default: overlapping pod CIDRs are
	// refused.
	AllowOverlappingPodCIDRs bool `json:"allowOverlappingPodCIDRs,omitempty"`
	// Peers are the other clusters of the mesh.
	Peers []Cluster `json:"peers"`
}

// FieldError is a problem with one field of a Config; Field is its path
// ("peers[1].serviceCIDR").
type FieldError struct {
	Field   string
	Message string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Message }

// LoadConfig reads a Config from a YAML or JSON file (see DecodeConfig).
func LoadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	c, err := DecodeConfig(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// DecodeConfig decodes a YAML or JSON Config strictly (unknown and
// duplicate fields are errors), applies defaults and validates it.
func DecodeConfig(data []byte) (*Config, error) {
	var c Config
	if err := yaml.UnmarshalStrict(data, &c); err != nil {
		return nil, fmt.Errorf("clustermesh config: %w", err)
	}
	c.Default()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// Default fills in the fields left empty.
func (c *Config) Default() {
	if c.LeaseTTL == "" {
		c.LeaseTTL = DefaultLeaseTTL.String()
	}
}

// TTL returns the parsed LeaseTTL (DefaultLeaseTTL when empty or invalid:
// call Validate first).
func (c *Config) TTL() time.Duration {
	d, err := parseTTL(c.LeaseTTL)
	if err != nil || c.LeaseTTL == "" {
		return DefaultLeaseTTL
	}
	return d
}

// Peer returns the peer called name.
func (c *Config) Peer(name string) (Cluster, bool) {
	for _, p := range c.Peers {
		if p.Name == name {
			return p, true
		}
	}
	return Cluster{}, false
}

// ClusterID returns the cluster id as the uint8 the identity layout uses
// (valid once Validate passed).
func (c Cluster) ClusterID() uint8 { return uint8(c.ID) }

// PodPrefixes returns the parsed pod CIDRs (those that parse).
func (c Cluster) PodPrefixes() []netip.Prefix {
	var out []netip.Prefix
	for _, s := range c.PodCIDRs {
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
		}
	}
	return out
}

// ServicePrefix returns the parsed service CIDR (invalid when it does not
// parse).
func (c Cluster) ServicePrefix() netip.Prefix {
	p, _ := netip.ParsePrefix(c.ServiceCIDR)
	return p.Masked()
}

// InPodCIDRs reports whether ip falls in one of the cluster's pod CIDRs.
func (c Cluster) InPodCIDRs(ip netip.Addr) bool {
	for _, p := range c.PodPrefixes() {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

func parseTTL(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, err
	}
	if d%time.Second != 0 {
		return 0, fmt.Errorf("%s is not a whole number of seconds (etcd leases have a TTL in seconds)", d)
	}
	if d < MinLeaseTTL || d > MaxLeaseTTL {
		return 0, fmt.Errorf("%s is outside %s..%s", d, MinLeaseTTL, MaxLeaseTTL)
	}
	return d, nil
}

// Validate checks the whole configuration and returns every problem
// found, joined, each a *FieldError naming its field: names (DNS labels,
// unique), ids (1..255, unique), CIDRs (valid; service CIDRs never
// overlap each other or any pod CIDR; pod CIDRs of different clusters
// do not overlap unless AllowOverlappingPodCIDRs), etcd endpoints (at
// least one per cluster, each http://host:port or host:port) and the lease
// TTL.
func (c *Config) Validate() error {
	var errs []error
	add := func(field, format string, args ...any) {
		errs = append(errs, &FieldError{Field: field, Message: fmt.Sprintf(format, args...)})
	}
	if c.LeaseTTL != "" {
		if _, err := parseTTL(c.LeaseTTL); err != nil {
			add("leaseTTL", "%v", err)
		}
	}

	type rangeRef struct {
		field   string
		cluster int // index in all
		prefix  netip.Prefix
	}
	var pods, svcs []rangeRef
	all := append([]Cluster{c.Cluster}, c.Peers...)
	names := map[string]string{}
	ids := map[int]string{}
	for i, cl := range all {
		path := ""
		if i > 0 {
			path = fmt.Sprintf("peers[%d].", i-1)
		}
		switch {
		case cl.Name == "":
			add(path+"name", "required")
		case len(validation.IsDNS1123Label(cl.Name)) > 0:
			add(path+"name", "%q is not a DNS label: %s", cl.Name, strings.Join(validation.IsDNS1123Label(cl.Name), "; "))
		case names[cl.Name] != "":
			add(path+"name", "duplicate cluster name %q (also %s)", cl.Name, names[cl.Name])
		default:
			names[cl.Name] = path + "name"
		}
		switch {
		case cl.ID < MinClusterID || cl.ID > MaxClusterID:
			add(path+"id", "cluster id %d is outside %d..%d", cl.ID, MinClusterID, MaxClusterID)
		case ids[cl.ID] != "":
			add(path+"id", "duplicate cluster id %d (also %s)", cl.ID, ids[cl.ID])
		default:
			ids[cl.ID] = path + "id"
		}
		if len(cl.PodCIDRs) == 0 {
			add(path+"podCIDRs", "at least one pod CIDR is required")
		}
		for j, s := range cl.PodCIDRs {
			f := fmt.Sprintf("%spodCIDRs[%d]", path, j)
			p, err := netip.ParsePrefix(s)
			if err != nil {
				add(f, "%v", err)
				continue
			}
			for _, o := range pods {
				if o.cluster == i && o.prefix.Overlaps(p) {
					add(f, "%s overlaps %s (%s) of the same cluster", s, o.prefix, o.field)
				}
			}
			pods = append(pods, rangeRef{f, i, p.Masked()})
		}
		if cl.ServiceCIDR == "" {
			add(path+"serviceCIDR", "required")
		} else if p, err := netip.ParsePrefix(cl.ServiceCIDR); err != nil {
			add(path+"serviceCIDR", "%v", err)
		} else {
			svcs = append(svcs, rangeRef{path + "serviceCIDR", i, p.Masked()})
		}
		if len(cl.Endpoints) == 0 {
			add(path+"endpoints", "at least one etcd endpoint is required")
		}
		for j, e := range cl.Endpoints {
			if err := checkEndpoint(e); err != nil {
				add(fmt.Sprintf("%sendpoints[%d]", path, j), "%v", err)
			}
		}
	}
	for i, s := range svcs {
		for _, o := range svcs[:i] {
			if s.prefix.Overlaps(o.prefix) {
				add(s.field, "service CIDR %s of cluster %q overlaps service CIDR %s of cluster %q (%s)", s.prefix, all[s.cluster].Name, o.prefix, all[o.cluster].Name, o.field)
			}
		}
		for _, o := range pods {
			if s.prefix.Overlaps(o.prefix) {
				add(s.field, "service CIDR %s of cluster %q overlaps pod CIDR %s of cluster %q (%s)", s.prefix, all[s.cluster].Name, o.prefix, all[o.cluster].Name, o.field)
			}
		}
	}
	if !c.AllowOverlappingPodCIDRs {
		for i, p := range pods {
			for _, o := range pods[:i] {
				if o.cluster != p.cluster && p.prefix.Overlaps(o.prefix) {
					add(p.field, "pod CIDR %s of cluster %q overlaps pod CIDR %s of cluster %q (%s); set allowOverlappingPodCIDRs to accept it", p.prefix, all[p.cluster].Name, o.prefix, all[o.cluster].Name, o.field)
				}
			}
		}
	}
	return errors.Join(errs...)
}

// checkEndpoint accepts http://host:port and host:port.
func checkEndpoint(e string) error {
	if e == "" {
		return errors.New("empty endpoint")
	}
	hostport := e
	if strings.Contains(e, "://") {
		u, err := url.Parse(e)
		if err != nil {
			return err
		}
		switch u.Scheme {
		case "http":
		case "https", "unixs":
			return fmt.Errorf("%q: TLS endpoints are not supported yet (no client certificates in the configuration)", e)
		default:
			return fmt.Errorf("%q: scheme %q: want http://host:port", e, u.Scheme)
		}
		if u.Path != "" && u.Path != "/" || u.RawQuery != "" || u.User != nil {
			return fmt.Errorf("%q: want http://host:port, without user, path or query", e)
		}
		hostport = u.Host
	}
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return fmt.Errorf("%q: %v", e, err)
	}
	if host == "" {
		return fmt.Errorf("%q: no host", e)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("%q: port %q is not 1..65535", e, port)
	}
	return nil
}
