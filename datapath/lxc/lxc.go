package lxc

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/rlimit"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/fastpath-bench/fastpath/datapath/attach"
	"github.com/fastpath-bench/fastpath/datapath/model"
)

// Options configure a Datapath. The zero value loads unpinned maps and
// attaches with TCX where available.
type Options struct {
	// PinPath is a directory on a bpffs where maps are pinned by name, so
	// that they (and the connections tracked in them) survive an agent
	// restart. Empty means no pinning.
	PinPath string
	// AttachMode picks TCX or netlink tc; zero means automatic.
	AttachMode attach.Mode
	// InterfaceName maps an endpoint to the name of its node-side veth.
	// Nil means model.InterfaceName.
	InterfaceName func(ep *model.Endpoint) string
	// LB chooses how service backends are selected.
	LB LBOptions
}

// ErrOverflow is returned (wrapped) when a desired state does not fit a map.
var ErrOverflow = errors.New("map would overflow")

// Datapath is the loaded endpoint datapath of one node.
type Datapath struct {
	opts Options
	objs lxcObjects
	// innerSpec describes a per-endpoint policy trie, egwSpec the egress
	// gateway trie.
	innerSpec *ebpf.MapSpec
	egwSpec   *ebpf.MapSpec

	mu        sync.Mutex
	endpoints map[string]*endpointState // by model key ns/name
	uplinks   []attach.Attachment
	tunnel    *tunnelState
	nextEpID  uint32
	ipcache   map[netip.Prefix]lxcIpcacheValue
	// lb mirrors the load balancer's ids (lb.go); nil until first used.
	lb *lbState
	// nl asks for links by name on every apply; one socket, opened in the
	// network namespace the datapath was loaded in, on first use.
	nl *netlink.Handle
	// sock holds the socket programs while attached (sock.go).
	sock *sockState
	// egw mirrors the egress gateway trie (nil: not programmed yet),
	// egwInfo says what it does per policy (egressgw.go).
	egw     egwTrie
	egwInfo []EgressGatewayInfo
}

type endpointState struct {
	id       uint32
	ifname   string
	ifindex  int
	attached []attach.Attachment
	entries  int
	ip       netip.Addr
	// net and mesh mirror the contents of the endpoint's tries (network
	// and mesh layer); nil when there is none.
	net, mesh trie
	// rules is a digest of the endpoint's rule lists: per-rule counters
	// are reset when it changes, since rule numbers then mean other rules;
	// while it stays the same (and net is programmed) the entries are not
	// expanded again.
	rules [sha256.Size]byte
}

// meshOn says whether the endpoint has a mesh-layer trie.
func meshOn(ep *model.Endpoint) bool { return ep.MeshEnforced || len(ep.Mesh) > 0 }

// ApplyStats tells what an Apply did.
type ApplyStats struct {
	// Endpoints programmed on this node, and those whose interface does
	// not exist yet (they are retried on the next Apply).
	Endpoints int
	Pending   []string
	// PolicyEntries written across all endpoints.
	PolicyEntries int
	// AttachMode actually used ("tcx" or "tc").
	AttachMode attach.Mode
	// SwapDuration is the time spent building and swapping policy maps.
	SwapDuration time.Duration
	// Swapped counts endpoints whose policy changed (the others' entries
	// did not), and InPlace those of them whose tries were updated in
	// place instead of replaced (see programTrie).
	Swapped int
	InPlace int
	// Overflows counts endpoints programmed closed because their policy
	// does not fit.
	Overflows int
	// Services is what the load balancer programming did.
	Services LBStats
}

// Load loads the BPF objects (creating or reusing pinned maps).
func Load(opts Options) (*Datapath, error) {
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("raise RLIMIT_MEMLOCK for BPF maps (kernels before 5.11 charge them to it): %w", err)
	}
	spec, err := loadLxc()
	if err != nil {
		return nil, fmt.Errorf("load lxc spec: %w", err)
	}
	inner := spec.Maps["fp_policy"].InnerMap
	if inner == nil {
		return nil, errors.New("lxc spec: fp_policy has no inner map")
	}
	egwInner := spec.Maps["fp_egress_gw"].InnerMap
	if egwInner == nil {
		return nil, errors.New("lxc spec: fp_egress_gw has no inner map")
	}
	copts := &ebpf.CollectionOptions{}
	if opts.PinPath != "" {
		if err := os.MkdirAll(opts.PinPath, 0o700); err != nil {
			return nil, fmt.Errorf("create pin path: %w", err)
		}
		copts.Maps.PinPath = opts.PinPath
	} else {
		for _, m := range spec.Maps {
			m.Pinning = ebpf.PinNone
		}
	}
	d := &Datapath{
		opts:      opts,
		innerSpec: inner.Copy(),
		egwSpec:   egwInner.Copy(),
		endpoints: map[string]*endpointState{},
		nextEpID:  1,
		ipcache:   map[netip.Prefix]lxcIpcacheValue{},
	}
	if err := spec.LoadAndAssign(&d.objs, copts); err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			return nil, fmt.Errorf("load lxc programs: %+v", ve)
		}
		if errors.Is(err, ebpf.ErrMapIncompatible) && opts.PinPath != "" {
			return nil, fmt.Errorf("load lxc maps: pinned maps in %s are of another layout (remove them): %w", opts.PinPath, err)
		}
		return nil, fmt.Errorf("load lxc objects: %w", err)
	}
	// Pinned maps may hold the state of an earlier agent: forget the
	// endpoints and policies (they are rebuilt by the first Apply) but keep
	// conntrack, so established connections survive.
	if err := d.resetTables(); err != nil {
		d.objs.Close()
		return nil, err
	}
	return d, nil
}

func (d *Datapath) resetTables() error {
	for _, m := range []*ebpf.Map{d.objs.FpEndpoints, d.objs.FpEndpointsByIp, d.objs.FpPolicy} {
		var k uint32
		var keys []uint32
		it := m.Iterate()
		var v []byte
		for it.Next(&k, &v) {
			keys = append(keys, k)
		}
		for _, key := range keys {
			_ = m.Delete(key)
		}
	}
	// No egress gateway until the first Apply programs it.
	if err := d.objs.FpEgressGw.Delete(uint32(0)); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("reset fp_egress_gw: %w", err)
	}
	// No reader yet (a crashed agent may have left events on).
	return d.setEvents(false)
}

// Programs returns the two endpoint programs (from and to the container),
// for tests and benchmarks that run them with BPF_PROG_RUN.
func (d *Datapath) Programs() (from, to *ebpf.Program) {
	return d.objs.FpFromContainer, d.objs.FpToContainer
}

func (d *Datapath) ifname(ep *model.Endpoint) string {
	if d.opts.InterfaceName != nil {
		return d.opts.InterfaceName(ep)
	}
	return model.InterfaceName(ep.Namespace, ep.Name)
}

// Apply programs the datapath for the endpoints of node in r. It checks that
// everything fits before it changes anything; a policy map is replaced as a
// whole with one update of the outer map, so packets see the old policy or
// the new one. On error the previous state stays in force.
func (d *Datapath) Apply(r *model.Resolved, node string) (ApplyStats, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var st ApplyStats
	start := time.Now()

	// 1. Plan and check everything before touching the kernel.
	innerMax := int(d.innerSpec.MaxEntries)
	type planned struct {
		ep      *model.Endpoint
		ifname  string
		ifindex int
		rules   [sha256.Size]byte
		// same: the endpoint's rules are those programmed already, so its
		// entries are not expanded again (entries and mesh stay nil).
		same    bool
		entries []PolicyEntry
		mesh    []PolicyEntry
	}
	var plan []planned
	var errs []error
	var closed []*model.Endpoint
	for _, ep := range r.NodeEndpoints(node) {
		name := d.ifname(ep)
		ifindex, ifErr := d.ifindexByName(name)
		p := planned{ep: ep, ifname: name, ifindex: ifindex, rules: rulesDigest(ep)}
		if es, ok := d.endpoints[ep.Key()]; ok && ifErr == nil && es.ifindex == ifindex && es.net != nil &&
			es.rules == p.rules && (es.mesh != nil) == meshOn(ep) {
			p.same = true
		} else {
			p.entries, p.mesh = PolicyEntries(ep), MeshEntries(ep)
			if len(p.entries) > innerMax || len(p.mesh) > innerMax {
				errs = append(errs, fmt.Errorf("Pod %s: policy needs %d (mesh %d) map entries, more than the %d an endpoint's policy map holds: %w",
					ep.Key(), len(p.entries), len(p.mesh), innerMax, ErrOverflow))
				if _, programmed := d.endpoints[ep.Key()]; !programmed {
					closed = append(closed, ep)
				}
				continue
			}
		}
		if ifErr != nil {
			st.Pending = append(st.Pending, ep.Key())
			continue
		}
		plan = append(plan, p)
	}
	desiredIPs := desiredIPCache(r, node)
	if max := int(d.objs.FpIpcache.MaxEntries()); len(desiredIPs) > max {
		errs = append(errs, fmt.Errorf("ipcache needs %d entries, more than its %d: %w", len(desiredIPs), max, ErrOverflow))
	}
	if max := int(d.objs.FpEndpoints.MaxEntries()); len(plan) > max {
		errs = append(errs, fmt.Errorf("node %s has %d endpoints, more than the %d the endpoint map holds: %w", node, len(plan), max, ErrOverflow))
	}
	egw, egwInfo := egressPlan(r, node, d.localAddrs())
	if max := int(d.egwSpec.MaxEntries); len(egw) > max {
		errs = append(errs, fmt.Errorf("egress gateway policies need %d (identity, CIDR) entries, more than the %d the gateway trie holds: %w", len(egw), max, ErrOverflow))
	}
	if len(errs) > 0 {
		// Refused: endpoints already programmed keep their policy; a new
		// endpoint whose policy does not fit fails closed.
		for _, ep := range closed {
			if err := d.programClosed(ep); err != nil {
				errs = append(errs, err)
			}
		}
		st.Overflows = len(closed)
		return st, errors.Join(errs...)
	}

	// Services: their capacity is checked before any write too.
	var nodeIPs []netip.Addr
	for _, n := range r.Nodes {
		nodeIPs = append(nodeIPs, n.IP)
	}
	lbst, err := d.applyServices(r.Services, nodeIPs, d.opts.LB)
	st.Services = lbst
	if err != nil {
		return st, fmt.Errorf("services: %w", err)
	}

	// 2. ipcache: add and update first, so new policy never refers to an
	// identity the ipcache cannot produce yet.
	for p, v := range desiredIPs {
		if old, ok := d.ipcache[p]; ok && old == v {
			continue
		}
		k := lxcIpcacheKey{Prefixlen: uint32(p.Bits()), Addr: be32(p.Addr())}
		if err := d.objs.FpIpcache.Put(k, v); err != nil {
			return st, fmt.Errorf("update ipcache %s: %w", p, err)
		}
		d.ipcache[p] = v
	}

	// The egress gateway, whole: the old set of policies or the new one.
	if err := d.programEgress(egw); err != nil {
		return st, err
	}
	d.egwInfo = egwInfo

	// 3. Per endpoint: build a new policy trie, swap it in, then the
	// endpoint record, then attach programs if not yet attached.
	seen := map[string]bool{}
	var resetCounters []uint32
	for _, p := range plan {
		key := p.ep.Key()
		seen[key] = true
		es, ok := d.endpoints[key]
		if ok && es.ifindex != p.ifindex {
			// The interface was re-created: start over for it.
			d.removeEndpoint(key, es)
			ok = false
		}
		if !ok {
			es = &endpointState{id: d.allocID(), ifname: p.ifname, ifindex: p.ifindex}
			d.endpoints[key] = es
		}
		// An endpoint whose entries did not change keeps its tries: most
		// changes touch few endpoints.
		if !p.same {
			net, changed, inPlace, err := d.programTrie(es.id, es.net, p.entries)
			if err != nil {
				return st, fmt.Errorf("Pod %s: %w", key, err)
			}
			es.net = net
			if meshOn(p.ep) {
				mesh, mc, mi, err := d.programTrie(es.id|meshBit, es.mesh, p.mesh)
				if err != nil {
					return st, fmt.Errorf("Pod %s: mesh layer: %w", key, err)
				}
				es.mesh = mesh
				changed, inPlace = changed || mc, inPlace || mi
			} else if es.mesh != nil || !ok {
				_ = d.objs.FpPolicy.Delete(es.id | meshBit)
				changed = changed || es.mesh != nil
				es.mesh = nil
			}
			if changed {
				st.Swapped++
				if inPlace {
					st.InPlace++
				}
			}
			es.entries = len(p.entries) + len(p.mesh)
		}
		if p.rules != es.rules {
			if es.rules != ([sha256.Size]byte{}) {
				resetCounters = append(resetCounters, es.id)
			}
			es.rules = p.rules
		}
		st.PolicyEntries += es.entries
		flags := endpointFlags(p.ep)
		info := lxcEndpointInfo{EpId: es.id, Identity: uint32(p.ep.Identity), Ipv4: be32(p.ep.IP), Flags: flags}
		if err := d.objs.FpEndpoints.Put(uint32(p.ifindex), info); err != nil {
			return st, fmt.Errorf("Pod %s: update endpoint map: %w", key, err)
		}
		if err := d.objs.FpEndpointsByIp.Put(be32(p.ep.IP), info); err != nil {
			return st, fmt.Errorf("Pod %s: update endpoint map by address: %w", key, err)
		}
		es.ip = p.ep.IP
		if es.attached == nil {
			if err := d.attach(es); err != nil {
				return st, fmt.Errorf("Pod %s: %w", key, err)
			}
		}
		st.AttachMode = es.attached[0].Mode()
		st.Endpoints++
	}

	d.resetRuleCounters(resetCounters...)

	// 4. Remove what is no longer desired.
	for key, es := range d.endpoints {
		if !seen[key] {
			d.removeEndpoint(key, es)
		}
	}
	for p := range d.ipcache {
		if _, ok := desiredIPs[p]; !ok {
			k := lxcIpcacheKey{Prefixlen: uint32(p.Bits()), Addr: be32(p.Addr())}
			if err := d.objs.FpIpcache.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
				return st, fmt.Errorf("delete ipcache %s: %w", p, err)
			}
			delete(d.ipcache, p)
		}
	}
	// Hooks that cached a verdict (sockmap) check it again.
	if err := d.bumpPolicyRevision(); err != nil {
		return st, err
	}
	st.SwapDuration = time.Since(start)
	sort.Strings(st.Pending)
	return st, nil
}

// desiredIPCache is the ipcache of node: the policy CIDRs, and /32s for
// pods and nodes carrying both their identity and the identity of the
// longest policy CIDR that contains them; a pod of another node also
// carries its node's address (the overlay's tunnel endpoint).
func desiredIPCache(r *model.Resolved, node string) map[netip.Prefix]lxcIpcacheValue {
	out := map[netip.Prefix]lxcIpcacheValue{}
	for p, id := range r.CIDRs {
		out[p] = lxcIpcacheValue{Identity: uint32(id)}
	}
	nodeIPs := map[string]netip.Addr{}
	for _, n := range r.Nodes {
		nodeIPs[n.Name] = n.IP
	}
	for _, ep := range r.Endpoints {
		v := lxcIpcacheValue{Identity: uint32(ep.Identity), CidrIdentity: uint32(r.CIDRIdentityOf(ep.IP))}
		// Pods of other nodes: where the overlay sends their packets.
		if ip := nodeIPs[ep.Node]; ep.Node != node && ip.Is4() {
			v.TunnelEndpoint = be32(ip)
		}
		out[netip.PrefixFrom(ep.IP, 32)] = v
	}
	// Pods of other clusters (issue #10): their global identity, and
	// their node as tunnel endpoint. An address a local pod or node also
	// has stays theirs (the overlay's identity tells such pods apart).
	for _, ep := range r.RemoteEndpoints {
		if ep.Shadowed {
			continue
		}
		v := lxcIpcacheValue{Identity: uint32(ep.Identity), CidrIdentity: uint32(r.CIDRIdentityOf(ep.IP))}
		if ep.NodeIP.Is4() {
			v.TunnelEndpoint = be32(ep.NodeIP)
		}
		out[netip.PrefixFrom(ep.IP, 32)] = v
	}
	for _, n := range r.Nodes {
		if !n.IP.IsValid() {
			continue
		}
		id := model.IdentityRemoteNode
		if n.Name == node {
			id = model.IdentityHost
		}
		out[netip.PrefixFrom(n.IP, 32)] = lxcIpcacheValue{Identity: uint32(id), CidrIdentity: uint32(r.CIDRIdentityOf(n.IP))}
	}
	for _, n := range r.RemoteNodes {
		// After everything local and the remote pods, as the model's
		// address lookups have it.
		if p := netip.PrefixFrom(n.IP, 32); n.IP.IsValid() && out[p].Identity == 0 {
			out[p] = lxcIpcacheValue{Identity: uint32(model.IdentityRemoteNode), CidrIdentity: uint32(r.CIDRIdentityOf(n.IP))}
		}
	}
	return out
}

func endpointFlags(ep *model.Endpoint) uint32 {
	var f lxcEndpointFlags
	if ep.IngressEnforced {
		f |= lxcEndpointFlagsEP_F_INGRESS_ENFORCED
	}
	if ep.EgressEnforced {
		f |= lxcEndpointFlagsEP_F_EGRESS_ENFORCED
	}
	if len(ep.Ingress) > 0 {
		f |= lxcEndpointFlagsEP_F_INGRESS_POLICY
	}
	if len(ep.Egress) > 0 {
		f |= lxcEndpointFlagsEP_F_EGRESS_POLICY
	}
	if ep.MeshEnforced {
		f |= lxcEndpointFlagsEP_F_MESH_ENFORCED
	}
	if len(ep.Mesh) > 0 {
		f |= lxcEndpointFlagsEP_F_MESH_POLICY
	}
	for _, r := range append(append([]model.Rule(nil), ep.Ingress...), ep.Mesh...) {
		if r.IsL7() {
			f |= lxcEndpointFlagsEP_F_INGRESS_L7
		}
	}
	return uint32(f)
}

// programClosed attaches a new endpoint with both directions in default
// deny and no policy map, so that the datapath drops every new connection
// (DROP_NO_POLICY_MAP) until a policy that fits is programmed.
func (d *Datapath) programClosed(ep *model.Endpoint) error {
	name := d.ifname(ep)
	ifindex, err := d.ifindexByName(name)
	if err != nil {
		return nil // no interface yet: nothing can pass anyway
	}
	es := &endpointState{id: d.allocID(), ifname: name, ifindex: ifindex}
	d.endpoints[ep.Key()] = es
	_ = d.objs.FpPolicy.Delete(es.id)
	_ = d.objs.FpPolicy.Delete(es.id | meshBit)
	flags := uint32(lxcEndpointFlagsEP_F_INGRESS_ENFORCED | lxcEndpointFlagsEP_F_EGRESS_ENFORCED)
	info := lxcEndpointInfo{EpId: es.id, Identity: uint32(ep.Identity), Ipv4: be32(ep.IP), Flags: flags}
	if err := d.objs.FpEndpoints.Put(uint32(ifindex), info); err != nil {
		return fmt.Errorf("Pod %s: program closed: %w", ep.Key(), err)
	}
	_ = d.objs.FpEndpointsByIp.Delete(be32(ep.IP))
	if err := d.attach(es); err != nil {
		return fmt.Errorf("Pod %s: program closed: %w", ep.Key(), err)
	}
	return nil
}

// meshBit marks the key of an endpoint's mesh-layer trie in fp_policy
// (POLICY_MESH_BIT in bpf/lib/policy.h); endpoint ids stay below it.
const meshBit = 0x80000000

func (d *Datapath) allocID() uint32 {
	used := map[uint32]bool{}
	for _, es := range d.endpoints {
		used[es.id] = true
	}
	for used[d.nextEpID] || d.nextEpID == 0 {
		d.nextEpID++
	}
	id := d.nextEpID
	d.nextEpID++
	return id
}

// trie mirrors the contents of one policy trie in the kernel.
type trie map[lxcPolicyKey]lxcPolicyValue

func trieOf(entries []PolicyEntry) trie {
	t := make(trie, len(entries))
	for _, e := range entries {
		t[e.key()] = lxcPolicyValue{Action: e.action(), RuleId: e.RuleID}
	}
	return t
}

// programTrie makes trie id of fp_policy hold entries; cur is what it holds
// now (nil: none). A change of the verdict bits of at most one key (an
// entry added, removed, or given other actions; any number of entries may
// change only the rule they are counted for) is made in place: a packet
// looks up each identity once, so it sees the old verdict or the new one
// either way, and updating an LPM trie does not wait for the RCU grace
// period that replacing an inner map does (milliseconds, the bulk of a
// single-policy change). Any larger change builds a new trie and swaps it
// in with one update of the outer map, so that a packet never sees a mix.
func (d *Datapath) programTrie(id uint32, cur trie, entries []PolicyEntry) (next trie, changed, inPlace bool, err error) {
	want := trieOf(entries)
	if cur != nil {
		verdict, counting := trieDiff(cur, want)
		switch {
		case len(verdict) == 0 && len(counting) == 0:
			return cur, false, false, nil
		case len(verdict) <= 1:
			if err := d.updateTrie(id, want, counting, verdict); err == nil {
				return want, true, true, nil
			}
			// Whatever went wrong, a complete new trie repairs it.
		}
	}
	if err := d.swapPolicy(id, want); err != nil {
		return cur, false, false, err
	}
	return want, true, false, nil
}

// trieDiff returns the keys whose verdict bits differ between cur and want
// (present in one only, or other actions) and those whose rule id alone
// differs.
func trieDiff(cur, want trie) (verdict, counting []lxcPolicyKey) {
	for k, w := range want {
		c, ok := cur[k]
		switch {
		case !ok || c.Action != w.Action:
			verdict = append(verdict, k)
		case c.RuleId != w.RuleId:
			counting = append(counting, k)
		}
	}
	for k := range cur {
		if _, ok := want[k]; !ok {
			verdict = append(verdict, k)
		}
	}
	return verdict, counting
}

// updateTrie changes trie id in place: the counting-only keys first (no
// verdict moves), then the one verdict change, to want.
func (d *Datapath) updateTrie(id uint32, want trie, counting, verdict []lxcPolicyKey) error {
	var inner *ebpf.Map
	if err := d.objs.FpPolicy.Lookup(id, &inner); err != nil {
		return fmt.Errorf("open policy map of %d: %w", id, err)
	}
	defer inner.Close()
	for _, k := range append(counting, verdict...) {
		if v, ok := want[k]; ok {
			if err := inner.Put(k, v); err != nil {
				return err
			}
		} else if err := inner.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return err
		}
	}
	return nil
}

// swapPolicy builds a complete trie for an endpoint and installs it with a
// single update of the outer map.
func (d *Datapath) swapPolicy(epID uint32, t trie) error {
	inner, err := ebpf.NewMap(d.innerSpec)
	if err != nil {
		return fmt.Errorf("create policy map: %w", err)
	}
	defer inner.Close() // the outer map holds its own reference
	if err := fillPolicy(inner, t); err != nil {
		return fmt.Errorf("fill policy map: %w", err)
	}
	if err := d.objs.FpPolicy.Put(epID, inner); err != nil {
		return fmt.Errorf("swap policy map: %w", err)
	}
	return nil
}

// fillPolicy writes t into a new policy trie: in one batch where the
// kernel can (LPM tries take batch updates since 5.x), else one by one.
func fillPolicy(m *ebpf.Map, t trie) error {
	if len(t) == 0 {
		return nil
	}
	keys := make([]lxcPolicyKey, 0, len(t))
	vals := make([]lxcPolicyValue, 0, len(t))
	for k, v := range t {
		keys = append(keys, k)
		vals = append(vals, v)
	}
	if !noBatch.Load() {
		n, err := m.BatchUpdate(keys, vals, nil)
		if err == nil && n == len(keys) {
			return nil
		}
		if !errors.Is(err, ebpf.ErrNotSupported) {
			return fmt.Errorf("batch update: %d of %d written: %w", n, len(keys), err)
		}
		noBatch.Store(true)
	}
	for i := range keys {
		if err := m.Put(keys[i], vals[i]); err != nil {
			return err
		}
	}
	return nil
}

// noBatch is set once the kernel refused a batch update of a policy trie.
var noBatch atomic.Bool

func (d *Datapath) attach(es *endpointState) error {
	for _, h := range []struct {
		prog *ebpf.Program
		dir  attach.Direction
	}{
		{d.objs.FpFromContainer, attach.Ingress},
		{d.objs.FpToContainer, attach.Egress},
	} {
		a, err := attach.TC(attach.TCOptions{Ifindex: es.ifindex, Program: h.prog, Direction: h.dir, Mode: d.opts.AttachMode, Name: "fastpath-lxc"})
		if err != nil {
			for _, prev := range es.attached {
				_ = prev.Detach()
			}
			es.attached = nil
			return fmt.Errorf("attach to %s: %w", es.ifname, err)
		}
		es.attached = append(es.attached, a)
	}
	return nil
}

func (d *Datapath) removeEndpoint(key string, es *endpointState) {
	for _, a := range es.attached {
		_ = a.Detach()
	}
	_ = d.objs.FpEndpoints.Delete(uint32(es.ifindex))
	if es.ip.IsValid() {
		_ = d.objs.FpEndpointsByIp.Delete(be32(es.ip))
	}
	_ = d.objs.FpPolicy.Delete(es.id)
	_ = d.objs.FpPolicy.Delete(es.id | meshBit)
	d.resetRuleCounters(es.id)
	delete(d.endpoints, key)
}

// Close detaches every program and closes the objects. Pinned maps stay
// pinned: removing the pin directory is the caller's decision.
func (d *Datapath) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.detachSockets()
	for key, es := range d.endpoints {
		d.removeEndpoint(key, es)
	}
	for _, a := range d.uplinks {
		_ = a.Detach()
	}
	d.uplinks = nil
	if d.tunnel != nil {
		_ = d.tunnel.close()
		d.tunnel = nil
	}
	if d.nl != nil {
		d.nl.Close()
		d.nl = nil
	}
	return d.objs.Close()
}

// ifindexByName asks the kernel for one link by name (net.InterfaceByName
// dumps every link of the namespace: on a node with many pods that
// dominated an apply).
func (d *Datapath) ifindexByName(name string) (int, error) {
	if d.nl == nil {
		h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
		if err != nil {
			return 0, fmt.Errorf("netlink: %w", err)
		}
		d.nl = h
	}
	l, err := d.nl.LinkByName(name)
	if err != nil {
		return 0, err
	}
	return l.Attrs().Index, nil
}

// AttachUplink attaches the uplink program (tc ingress) to the node's
// device ifname, through which packets from other nodes arrive: it hands
// connections that L7 rules apply to to the proxy (SetProxy).
func (d *Datapath) AttachUplink(ifname string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	ifindex, err := d.ifindexByName(ifname)
	if err != nil {
		return fmt.Errorf("uplink %s: %w", ifname, err)
	}
	a, err := attach.TC(attach.TCOptions{Ifindex: ifindex, Program: d.objs.FpFromNetdev, Direction: attach.Ingress, Mode: d.opts.AttachMode, Name: "fastpath-netdev"})
	if err != nil {
		return fmt.Errorf("attach to uplink %s: %w", ifname, err)
	}
	d.uplinks = append(d.uplinks, a)
	return nil
}

// SetProxyPort tells the datapath where the L7 proxy listens: a TCP
// socket with IP_TRANSPARENT on the wildcard address and this port, in the
// node's network namespace. The datapath assigns the first packet of every
// connection that an L7 rule applies to to it. Port 0, the initial value,
// means no proxy: such connections are dropped (DROP_PROXY_UNAVAILABLE).
func (d *Datapath) SetProxyPort(port uint16) error {
	if err := d.objs.FpProxy.Put(uint32(0), lxcProxyConfig{Port: htons(port)}); err != nil {
		return fmt.Errorf("set proxy port in fp_proxy: %w", err)
	}
	return nil
}
