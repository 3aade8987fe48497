// Package agentapi is the agent's debug and status API: the types it serves
// as JSON over a unix socket, and a small client. It imports nothing that
// touches the kernel, so the harness can use it without the datapath.
package agentapi

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Status is what GET /v1/status returns.
type Status struct {
	Node     string `json:"node"`
	Datapath string `json:"datapath"`
	// AttachMode is how programs are attached: "tcx", "tc", or "" when
	// nothing is attached.
	AttachMode string `json:"attachMode,omitempty"`
	// Kernel is the release the agent runs on; Features the kernel
	// features the ebpf datapath probed and found (datapath/features).
	Kernel   string   `json:"kernel,omitempty"`
	Features []string `json:"features,omitempty"`
	PID      int      `json:"pid"`
	// GoMaxProcs is the agent's GOMAXPROCS: how many CPUs its Go code
	// runs on at once.
	GoMaxProcs int       `json:"goMaxProcs,omitempty"`
	StartedAt  time.Time `json:"startedAt"`

	// Ready is true once a desired state has been programmed.
	Ready bool `json:"ready"`
	// Generation counts successful applies.
	Generation int64 `json:"generation"`
	// StateHash is the digest of the state programmed now (model.HashDir
	// for a directory; the kubernetes source digests its revisions).
	StateHash string `json:"stateHash,omitempty"`
	// AppliedAt is when StateHash was programmed, and ApplySeconds how
	// long loading, resolving and programming it took.
	AppliedAt    time.Time `json:"appliedAt,omitempty"`
	ApplySeconds float64   `json:"applySeconds"`
	// ProgramSeconds is the part of it spent programming the datapath:
	// building and swapping eBPF maps, or ipset and iptables-restore.
	ProgramSeconds float64 `json:"programSeconds"`
	// LoadSeconds and ResolveSeconds are the parts spent reading the
	// state directory and resolving it (identities, rules); DatapathSeconds
	// is the whole datapath call, of which ProgramSeconds is the swap.
	LoadSeconds     float64 `json:"loadSeconds"`
	ResolveSeconds  float64 `json:"resolveSeconds"`
	DatapathSeconds float64 `json:"datapathSeconds"`
	// LastError is the error of the newest attempt, empty when it
	// succeeded; FailedHash is the digest of the state it refused. The
	// previous state stays programmed.
	LastError  string `json:"lastError,omitempty"`
	FailedHash string `json:"failedHash,omitempty"`
	// Source is where the desired state comes from: "dir" (a watched
	// directory) or "kubernetes" (the API server).
	Source string `json:"source,omitempty"`
	// Revisions are, from the kubernetes source, the newest
	// resourceVersion per resource in the state programmed now;
	// FailedRevisions those of the state refused (with LastError).
	Revisions       map[string]int64 `json:"revisions,omitempty"`
	FailedRevisions map[string]int64 `json:"failedRevisions,omitempty"`

	// RefusedOverflow counts states refused because a policy map would
	// overflow; PolicyOverflows counts new endpoints that were programmed
	// closed (dropping everything) for that reason.
	RefusedOverflow int64 `json:"refusedOverflow,omitempty"`
	PolicyOverflows int64 `json:"policyOverflows,omitempty"`

	Endpoints     int      `json:"endpoints"`
	Pending       []string `json:"pending,omitempty"`
	PolicyEntries int      `json:"policyEntries"`
	Identities    int      `json:"identities"`
	Policies      int      `json:"policies"`

	// Uplinks are the devices the uplink program is attached to (ebpf):
	// connections from other nodes that L7 rules apply to are taken there.
	Uplinks []string `json:"uplinks,omitempty"`
	// Tunnel is the overlay device (--tunnel), "" when routed;
	// TunnelType its encapsulation, "vxlan" or "geneve".
	Tunnel     string `json:"tunnel,omitempty"`
	TunnelType string `json:"tunnelType,omitempty"`
	// Mesh is the cluster mesh as the agent last programmed it
	// (--clustermesh); nil without one.
	Mesh *MeshStatus `json:"mesh,omitempty"`
	// PrefilterDevices carry the XDP prefilter (ebpf), which drops
	// PrefilterPrefixes source prefixes.
	PrefilterDevices  []string `json:"prefilterDevices,omitempty"`
	PrefilterPrefixes int      `json:"prefilterPrefixes,omitempty"`
	// SocketLB and Sockmap say whether the socket programs are attached
	// (ebpf, --socket-lb, --sockmap); SockmapFlows counts connection ends
	// in the sockhash and SockmapDenied those the policy now refuses.
	SocketLB      bool `json:"socketLB,omitempty"`
	Sockmap       bool `json:"sockmap,omitempty"`
	SockmapFlows  int  `json:"sockmapFlows,omitempty"`
	SockmapDenied int  `json:"sockmapDenied,omitempty"`
	// SidecarProxy names the sidecar proxy and its version, SidecarPIDs
	// its processes (sidecar datapath), so that their CPU and memory are
	// measured like every component's.
	SidecarProxy string `json:"sidecarProxy,omitempty"`
	SidecarPIDs  []int  `json:"sidecarPIDs,omitempty"`
	// Proxy counts the node's L7 proxy's work (ebpf); nil without one.
	Proxy *ProxyStats `json:"proxy,omitempty"`
	// EgressGateways is how the node programmed the
	// EgressGatewayPolicies (ebpf), by name.
	EgressGateways []EgressGateway `json:"egressGateways,omitempty"`
}

// EgressGateway is one EgressGatewayPolicy as a node programmed it.
type EgressGateway struct {
	Name string `json:"name"`
	// Cluster and Node name the gateway; EgressIP is the source it gives
	// the traffic ("" when the traffic is dropped).
	Cluster  string `json:"cluster,omitempty"`
	Node     string `json:"node"`
	EgressIP string `json:"egressIP,omitempty"`
	// Gateway says this node is the gateway: it SNATs the traffic of
	// Sources identities (local and remote pods); otherwise it sends its
	// selected pods' traffic (Sources identities) to the gateway.
	Gateway bool `json:"gateway,omitempty"`
	Sources int  `json:"sources"`
	// Dropped says why the selected traffic is dropped (fail closed): the
	// gateway node is not known, or the egress IP is not the gateway's.
	Dropped string `json:"dropped,omitempty"`
}

// ProxyStats counts what the node's L7 proxy did.
type ProxyStats struct {
	// Listen is the transparent listener's address.
	Listen         string `json:"listen"`
	Connections    int64  `json:"connections"`
	Requests       int64  `json:"requests"`
	Allowed        int64  `json:"allowed"`
	Denied         int64  `json:"denied"`
	UpstreamErrors int64  `json:"upstreamErrors"`
}

// Client talks to one agent over its unix socket (every endpoint) or
// over TCP (NewTCPClient: the read-only ones).
type Client struct {
	Socket string
	http   *http.Client
}

// NewClient returns a client for the agent listening on socket.
func NewClient(socket string) *Client {
	return &Client{
		Socket: socket,
		http: &http.Client{
			Timeout: 5 * time.Second,
			Transport: &http.Transport{
				DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
					var d net.Dialer
					return d.DialContext(ctx, "unix", socket)
				},
			},
		},
	}
}

// NewTCPClient returns a client for the read-only API an agent serves on
// addr ("ip:port", its --listen): status, metrics, health.
func NewTCPClient(addr string) *Client {
	return &Client{
		Socket: addr,
		http: &http.Client{
			Timeout: 5 * time.Second,
			Transport: &http.Transport{
				DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
					var d net.Dialer
					return d.DialContext(ctx, "tcp", addr)
				},
			},
		},
	}
}

// Status fetches the agent's status.
func (c *Client) Status(ctx context.Context) (*Status, error) {
	var st Status
	if err := c.getJSON(ctx, "/v1/status", &st); err != nil {
		return nil, err
	}
	return &st, nil
}

// Get fetches path and returns the body.
func (c *Client) Get(ctx context.Context, path string) ([]byte, error) {
	return c.get(ctx, path, 0)
}

func (c *Client) get(ctx context.Context, path string, timeout time.Duration) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://agent"+path, nil)
	if err != nil {
		return nil, err
	}
	hc := c.http
	if timeout > 0 {
		cp := *c.http
		cp.Timeout = timeout
		hc = &cp
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("agent at %s: %w", c.Socket, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return body, fmt.Errorf("agent at %s: GET %s: %s: %s", c.Socket, path, resp.Status, body)
	}
	return body, nil
}

func (c *Client) getJSON(ctx context.Context, path string, into any) error {
	return c.getJSONTimeout(ctx, path, into, 0)
}

// getJSONTimeout is getJSON with a request timeout other than the client's
// (long polls); 0 keeps the client's.
func (c *Client) getJSONTimeout(ctx context.Context, path string, into any, timeout time.Duration) error {
	body, err := c.get(ctx, path, timeout)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(body, into); err != nil {
		return fmt.Errorf("agent at %s: decode %s: %w", c.Socket, path, err)
	}
	return nil
}

// Programmed is true when st shows state hash programmed with no endpoint
// pending, or refused (then st.LastError says why). A revision token
// (RevisionToken) is programmed once the agent's state holds at least
// those revisions of every resource it names.
func Programmed(st *Status, hash string) bool {
	if want, ok := ParseRevisionToken(hash); ok {
		if covers(st.Revisions, want) {
			return len(st.Pending) == 0 || Refused(st, hash)
		}
		return Refused(st, hash)
	}
	return st.StateHash == hash && len(st.Pending) == 0 || st.FailedHash == hash
}

// Refused is true when st shows the state hash (or a newer state covering
// revision token hash) refused.
func Refused(st *Status, hash string) bool {
	if st.LastError == "" {
		return false
	}
	if want, ok := ParseRevisionToken(hash); ok {
		return covers(st.FailedRevisions, want)
	}
	return st.FailedHash == hash
}

// covers is true when have holds at least the revisions of want.
func covers(have, want map[string]int64) bool {
	for k, v := range want {
		if have[k] < v {
			return false
		}
	}
	return true
}

// revisionPrefix starts a revision token.
const revisionPrefix = "rv:"

// RevisionToken names a state of the kubernetes source by the newest
// resourceVersion seen per resource: "rv:networkpolicies=123,pods=5",
// sorted by resource. A writer that got revision 123 back from the API
// server waits for RevisionToken({"networkpolicies": 123}).
func RevisionToken(revs map[string]int64) string {
	keys := make([]string, 0, len(revs))
	for k := range revs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString(revisionPrefix)
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%s=%d", k, revs[k])
	}
	return b.String()
}

// ParseRevisionToken reads a RevisionToken; ok is false for anything else
// (a directory digest).
func ParseRevisionToken(s string) (map[string]int64, bool) {
	rest, ok := strings.CutPrefix(s, revisionPrefix)
	if !ok {
		return nil, false
	}
	out := map[string]int64{}
	if rest == "" {
		return out, true
	}
	for _, kv := range strings.Split(rest, ",") {
		k, v, ok := strings.Cut(kv, "=")
		n, err := strconv.ParseInt(v, 10, 64)
		if !ok || k == "" || err != nil {
			return nil, false
		}
		out[k] = n
	}
	return out, true
}

// WaitProgrammed waits until the agent has programmed state hash with no
// endpoint pending, or refused it, or ctx ends. The agent answers as soon
// as it is done (a long poll), so waiting costs it nothing.
func (c *Client) WaitProgrammed(ctx context.Context, hash string) (*Status, error) {
	var last *Status
	var lastErr error
	for {
		wait := 10 * time.Second
		if dl, ok := ctx.Deadline(); ok {
			wait = min(wait, max(time.Until(dl), time.Millisecond))
		}
		var st Status
		err := c.getJSONTimeout(ctx, "/v1/status?programmed="+url.QueryEscape(hash)+"&wait="+wait.String(), &st, wait+5*time.Second)
		if err == nil {
			last = &st
			if Programmed(&st, hash) {
				return &st, nil
			}
		} else {
			lastErr = err
		}
		select {
		case <-ctx.Done():
			return last, waitErr(ctx, last, lastErr)
		default:
		}
		if err != nil {
			// Not up yet, or restarting: try again shortly.
			select {
			case <-ctx.Done():
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
}

// waitErr says why a wait ended without its condition: the context's
// error, with the agent's last error or the last request's.
func waitErr(ctx context.Context, last *Status, lastErr error) error {
	if last != nil && last.LastError != "" {
		return fmt.Errorf("agent %s: %w; its last error: %s", last.Node, ctx.Err(), last.LastError)
	}
	if last == nil && lastErr != nil {
		return fmt.Errorf("%w (last: %v)", ctx.Err(), lastErr)
	}
	return ctx.Err()
}

// WaitFor polls the agent until cond holds for its status or ctx ends. It
// returns the last status seen.
func (c *Client) WaitFor(ctx context.Context, interval time.Duration, cond func(*Status) bool) (*Status, error) {
	var last *Status
	var lastErr error
	for {
		st, err := c.Status(ctx)
		if err == nil {
			last = st
			if cond(st) {
				return st, nil
			}
		} else {
			lastErr = err
		}
		select {
		case <-ctx.Done():
			return last, waitErr(ctx, last, lastErr)
		case <-time.After(interval):
		}
	}
}

// Peer is one end of a flow.
type Peer struct {
	Address  string `json:"address"`
	Pod      string `json:"pod,omitempty"`
	Identity uint32 `json:"identity,omitempty"`
}

// FlowEvent is one line of GET /v1/monitor.
type FlowEvent struct {
	Time      time.Time `json:"time"`
	Type      string    `json:"type"` // verdict or drop
	Node      string    `json:"node"`
	Direction string    `json:"direction"` // as the local endpoint sees it
	Protocol  string    `json:"protocol"`
	Reason    string    `json:"reason"`
	Src       Peer      `json:"src"`
	Dst       Peer      `json:"dst"`
	SrcPort   uint16    `json:"srcPort"`
	DstPort   uint16    `json:"dstPort"`
}

// Rule is a resolved rule as GET /v1/policy shows it.
type Rule struct {
	Direction string   `json:"direction"`
	Policy    string   `json:"policy"`
	Deny      bool     `json:"deny,omitempty"`
	AnyPeer   bool     `json:"anyPeer,omitempty"`
	Peers     []uint32 `json:"peers,omitempty"`
	Ports     []string `json:"ports"`
	// HTTP lists an L7 rule's request matches (the L7 proxy enforces
	// them); empty for an L3/L4 rule.
	HTTP []string `json:"http,omitempty"`
}

// EndpointPolicy is what GET /v1/policy/{namespace}/{name} returns: the
// endpoint's resolved rules and, on its own node, the live map contents.
type EndpointPolicy struct {
	Pod             string            `json:"pod"`
	Node            string            `json:"node"`
	Address         string            `json:"address"`
	Identity        uint32            `json:"identity"`
	Labels          map[string]string `json:"labels"`
	IngressEnforced bool              `json:"ingressDefaultDeny"`
	EgressEnforced  bool              `json:"egressDefaultDeny"`
	Rules           []Rule            `json:"rules"`
	Live            any               `json:"live,omitempty"`
	LiveError       string            `json:"liveError,omitempty"`
}

// Stream calls GET path and hands every line of the response to line until
// ctx ends or the agent closes the stream.
func (c *Client) Stream(ctx context.Context, path string, line func([]byte) error) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://agent"+path, nil)
	if err != nil {
		return err
	}
	hc := &http.Client{Transport: c.http.Transport}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("agent at %s: %w", c.Socket, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("agent at %s: GET %s: %s: %s", c.Socket, path, resp.Status, bytes.TrimSpace(body))
	}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if err := line(sc.Bytes()); err != nil {
			return err
		}
	}
	if ctx.Err() != nil {
		return nil
	}
	return sc.Err()
}

// LBFrontend is one service frontend as GET /v1/lb returns it.
type LBFrontend struct {
	// Service is "namespace/name" ("" when the desired state no longer
	// names it).
	Service  string `json:"service"`
	Frontend string `json:"frontend"` // "10.96.0.10:80/TCP"
	ID       uint32 `json:"id"`
	// Algorithm is "random" or "maglev".
	Algorithm       string      `json:"algorithm"`
	AffinitySeconds uint32      `json:"affinitySeconds,omitempty"`
	Backends        []LBBackend `json:"backends"`
	// TableSize is the selection array's length (Maglev's M).
	TableSize int `json:"tableSize"`
}

// LB returns the agent's service frontends (GET /v1/lb).
func (c *Client) LB(ctx context.Context) ([]LBFrontend, error) {
	var out []LBFrontend
	if err := c.getJSON(ctx, "/v1/lb", &out); err != nil {
		return nil, err
	}
	return out, nil
}

// Choices are the frontend's backends as name gives them (by address):
// those new flows go to as the name, those on standby as "name
// standby"; others are left out. Sorted.
func (f LBFrontend) Choices(name func(address string) string) []string {
	var out []string
	for _, be := range f.Backends {
		switch {
		case be.Slots > 0:
			out = append(out, name(be.Address))
		case be.Standby:
			out = append(out, name(be.Address)+" standby")
		}
	}
	sort.Strings(out)
	return out
}

// LBBackend is one backend of a frontend.
type LBBackend struct {
	Address string `json:"address"` // "10.0.0.5:8080"
	ID      uint32 `json:"id"`
	// State is active, terminating or quarantined (from the desired state).
	State string `json:"state,omitempty"`
	// Cluster is the remote cluster of a global Service's backend ("":
	// the local cluster's); Standby is set while the Service's affinity
	// keeps new flows from it (cluster mesh).
	Cluster string `json:"cluster,omitempty"`
	Standby bool   `json:"standby,omitempty"`
	// Slots is how many entries of the selection array name it: new
	// flows go to it with probability Slots/TableSize.
	Slots int `json:"slots"`
}

// Prefilter is what GET /v1/prefilter returns: the XDP prefilter's
// devices, its denied prefixes as the map holds them, and its counters.
type Prefilter struct {
	Devices        []string `json:"devices"`
	Prefixes       []string `json:"prefixes"`
	PassedPackets  uint64   `json:"passedPackets"`
	DroppedPackets uint64   `json:"droppedPackets"`
	DroppedBytes   uint64   `json:"droppedBytes"`
}

// MeshStatus is an agent's view of its cluster mesh.
type MeshStatus struct {
	// Cluster is the agent's own cluster; Publishing is set on the agent
	// that writes the cluster's state to its etcd.
	Cluster    string `json:"cluster"`
	Publishing bool   `json:"publishing,omitempty"`
	// Version is the watcher's snapshot version last programmed.
	Version uint64 `json:"version"`
	// Peers are the other clusters with the pods programmed as peers.
	Peers []MeshPeer `json:"peers,omitempty"`
}

// MeshPeer is one remote cluster as last programmed: its pods, its
// global Services and their backends (every port's).
type MeshPeer struct {
	Name      string `json:"name"`
	ID        uint8  `json:"id"`
	Endpoints int    `json:"endpoints"`
	Services  int    `json:"services,omitempty"`
	Backends  int    `json:"backends,omitempty"`
}

// WaitMeshPeers polls the agent until its status shows, for every peer
// cluster of want, that many of the peer's pods programmed
// (status.mesh.peers), or ctx ends; the error then names what it has.
func (c *Client) WaitMeshPeers(ctx context.Context, interval time.Duration, want map[string]int) error {
	var last *Status
	_, err := c.WaitFor(ctx, interval, func(s *Status) bool {
		last = s
		if s.Mesh == nil {
			return false
		}
		got := map[string]int{}
		for _, p := range s.Mesh.Peers {
			got[p.Name] = p.Endpoints
		}
		for k, v := range want {
			if got[k] != v {
				return false
			}
		}
		return true
	})
	if err == nil {
		return nil
	}
	var peers []string
	if last != nil && last.Mesh != nil {
		for _, p := range last.Mesh.Peers {
			peers = append(peers, fmt.Sprintf("%s: %d", p.Name, p.Endpoints))
		}
	}
	sort.Strings(peers)
	return fmt.Errorf("peers' pods programmed: want %v, has [%s]: %w", want, strings.Join(peers, ", "), err)
}
