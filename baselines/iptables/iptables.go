package iptables

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"sort"
	"strings"
	"time"

	"github.com/fastpath-bench/fastpath/datapath/model"
)

// Chain and set names.
const (
	forwardChain = "FP-FORWARD"
	proxyChain   = "FP-PROXY" // mangle PREROUTING: TPROXY to the L7 proxy
	// prefilterChain (raw PREROUTING) drops sources in prefilterSet.
	prefilterChain = "FP-PREFILTER"
	prefilterSet   = "fp-prefilter"
	setPrefix      = "fp-id-"
)

// Options configure the baseline. Zero values mean defaults.
type Options struct {
	// IptablesRestore and Ipset are the commands; empty: from PATH.
	IptablesRestore string
	Iptables        string
	Ipset           string
	// InterfaceName maps an endpoint to its node-side veth; nil:
	// model.InterfaceName.
	InterfaceName func(ep *model.Endpoint) string
	// ProxyPort is where the node's L7 proxy listens (a transparent
	// socket on the wildcard address); new TCP connections to the ports of
	// a pod's L7 rules are sent there with TPROXY, as iptables-based
	// proxies (Istio's TPROXY mode, Calico's L7) do. 0: no proxy, and a
	// state with L7 rules is refused.
	ProxyPort uint16
	// ProxyMark and ProxyMask mark packets for the proxy; the policy
	// routing that delivers them locally is the caller's (the agent sets
	// up the same as for the eBPF datapath).
	ProxyMark, ProxyMask uint32
	// SkipServices leaves Services to someone else (kube-proxy, on
	// kind): no nat rules, no REJECT of frontends without backends, no
	// nat hooks; only the NetworkPolicy (filter), L7 (mangle) and
	// prefilter (raw) parts, as an iptables NetworkPolicy controller
	// (Calico, kube-router) next to kube-proxy does.
	SkipServices bool
}

// Stats tells what an Apply did.
type Stats struct {
	Endpoints int
	// Pending endpoints have no interface yet (their rules are in place
	// and take effect when it appears).
	Pending []string
	Rules   int
	Sets    int
	// RestoreDuration is the time iptables-restore took.
	RestoreDuration time.Duration
	// SetsDuration is the time ipset restore took.
	SetsDuration time.Duration
}

// Datapath is the iptables baseline of one node.
type Datapath struct {
	opts Options
	sets map[string]bool
	// nat and raw are the tables' rules last restored: a policy change
	// leaves the service rules alone, as kube-proxy syncs only on Service
	// and EndpointSlice changes (and the NetworkPolicy controller never
	// touches them).
	nat, raw string
}

// New checks the tools and returns the baseline.
func New(opts Options) (*Datapath, error) {
	if opts.IptablesRestore == "" {
		opts.IptablesRestore = "iptables-restore"
	}
	if opts.Iptables == "" {
		opts.Iptables = "iptables"
	}
	if opts.Ipset == "" {
		opts.Ipset = "ipset"
	}
	var errs []error
	for _, c := range []string{opts.IptablesRestore, opts.Iptables, opts.Ipset} {
		if _, err := exec.LookPath(c); err != nil {
			errs = append(errs, fmt.Errorf("iptables datapath needs %s (Debian packages iptables and ipset): %w", c, err))
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return &Datapath{opts: opts, sets: map[string]bool{}}, nil
}

func run(ctx context.Context, stdin []byte, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdin = bytes.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func short(s string) string {
	sum := sha256.Sum256([]byte(s))
	return strings.ToUpper(hex.EncodeToString(sum[:])[:10])
}

func setName(id model.Identity) string { return fmt.Sprintf("%s%x", setPrefix, uint32(id)) }

// Plan is the generated state: ipset and iptables-restore inputs.
type Plan struct {
	Sets      map[string][]string // set name -> entries ("10.0.0.0/8", "10.1.0.0/16 nomatch")
	Filter    string              // iptables-restore input for the filter table
	Mangle    string              // iptables-restore input for the mangle table
	Nat       string              // iptables-restore input for the nat table (services)
	Raw       string              // iptables-restore input for the raw table (prefilter)
	Rules     int
	Endpoints int
}

// Build generates the plan for node.
func (d *Datapath) Build(r *model.Resolved, node string) (*Plan, error) {
	p := &Plan{Sets: map[string][]string{}}
	var chains []string
	var body []string
	var fwd []string
	var reject []string
	svcRules := 0
	if !d.opts.SkipServices {
		p.Nat, reject, svcRules = serviceRules(r)
	}
	// The prefilter's equivalent: a raw-table DROP by source set, before
	// conntrack, for packets that do not come from the node's own pods
	// (the XDP program sits on the uplink only).
	var raw strings.Builder
	fmt.Fprintf(&raw, "*raw\n:%s - [0:0]\n", prefilterChain)
	if len(r.PrefilterDeny) > 0 {
		for _, pr := range r.PrefilterDeny {
			p.Sets[prefilterSet] = append(p.Sets[prefilterSet], pr.String())
		}
		fmt.Fprintf(&raw, "-A %s ! -i lxc+ -m set --match-set %s src -j DROP\n", prefilterChain, prefilterSet)
		svcRules++
	}
	raw.WriteString("COMMIT\n")
	p.Raw = raw.String()
	fwd = append(fwd, reject...)
	fwd = append(fwd, "-A "+forwardChain+" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT")
	fwd = append(fwd, "-A "+forwardChain+" -m conntrack --ctstate INVALID -j DROP")
	ifname := model.InterfaceName
	eps := r.NodeEndpoints(node)
	sort.Slice(eps, func(i, j int) bool { return eps[i].Key() < eps[j].Key() })
	var egress, toPod, selfHairpin []string
	for _, ep := range eps {
		name := ifname(ep.Namespace, ep.Name)
		if d.opts.InterfaceName != nil {
			name = d.opts.InterfaceName(ep)
		}
		h := short(ep.Key())
		eg, in, mesh := "FP-EG-"+h, "FP-IN-"+h, "FP-MESH-"+h
		chains = append(chains, eg, in, mesh)
		fwd = append(fwd, fmt.Sprintf("-A %s -i %s ! -s %s/32 -m comment --comment \"%s: spoofed source\" -j DROP", forwardChain, name, ep.IP, ep.Key()))
		egress = append(egress, fmt.Sprintf("-A %s -i %s -j %s", forwardChain, name, eg))
		if d.opts.SkipServices {
			// kube-proxy's hairpin carries its masquerade mark, not
			// hairpinMark: a packet the node sends back out of the
			// veth it came from is the pod reaching itself through a
			// Service (only a DNAT makes that route).
			selfHairpin = append(selfHairpin, fmt.Sprintf("-A %s -i %s -o %s -m comment --comment \"%s: hairpin through a Service\" -j ACCEPT", forwardChain, name, name, ep.Key()))
		}
		toPod = append(toPod, fmt.Sprintf("-A %s -o %s -j %s", forwardChain, name, in))
		toPod = append(toPod, fmt.Sprintf("-A %s -o %s -p tcp -j %s", forwardChain, name, mesh))
		body = d.chain(p, r, node, body, eg, ep, ep.Egress, ep.EgressEnforced, "dst", "")
		body = d.chain(p, r, node, body, in, ep, ep.Ingress, ep.IngressEnforced, "src", "")
		body = d.chain(p, r, node, body, mesh, ep, ep.Mesh, ep.MeshEnforced, "src", "tcp")
		p.Endpoints++
	}
	// After every spoofing check: a pod's connection to itself through a
	// Service (marked in its FP-SEP chain) passes whatever its policy.
	fwd = append(fwd, fmt.Sprintf("-A %s -m mark --mark %#x/%#x -m comment --comment \"hairpin: a pod reaches itself\" -j ACCEPT", forwardChain, hairpinMark, hairpinMark))
	fwd = append(fwd, selfHairpin...)
	fwd = append(fwd, egress...)
	fwd = append(fwd, toPod...)
	proxy, err := d.proxyRules(p, r, node, eps)
	if err != nil {
		return nil, err
	}
	var m strings.Builder
	m.WriteString("*mangle\n")
	fmt.Fprintf(&m, ":%s - [0:0]\n", proxyChain)
	for _, l := range proxy {
		m.WriteString(l + "\n")
	}
	m.WriteString("COMMIT\n")
	p.Mangle = m.String()
	var b strings.Builder
	b.WriteString("*filter\n")
	fmt.Fprintf(&b, ":%s - [0:0]\n", forwardChain)
	for _, c := range chains {
		fmt.Fprintf(&b, ":%s - [0:0]\n", c)
	}
	for _, l := range fwd {
		b.WriteString(l + "\n")
	}
	for _, l := range body {
		b.WriteString(l + "\n")
	}
	b.WriteString("COMMIT\n")
	p.Filter = b.String()
	p.Rules = len(fwd) + len(body) + len(proxy) + svcRules - len(reject)
	return p, nil
}

// proxyRules sends connections that L7 rules apply to to the L7 proxy:
// packets of connections the proxy already holds (its transparent sockets)
// are marked for local delivery; new connections to a pod's L7 ports are
// TPROXYed to the proxy's port when they come from a peer of the L7 rule.
// The proxy decides every request with the pod's full ingress policy
// (L3/L4 included), so a peer that a deny rule also matches gets no
// answer from the pod either way.
func (d *Datapath) proxyRules(p *Plan, r *model.Resolved, node string, eps []*model.Endpoint) ([]string, error) {
	var out []string
	var l7 []string
	for _, ep := range eps {
		seen := map[string]bool{}
		for _, rule := range append(append([]model.Rule(nil), ep.Ingress...), ep.Mesh...) {
			if !rule.IsL7() {
				continue
			}
			if d.opts.ProxyPort == 0 {
				return nil, fmt.Errorf("Pod %s: policy %s has L7 rules, and this iptables datapath has no L7 proxy", ep.Key(), rule.Policy)
			}
			peers := p.peerMatches(r, node, rule, "src")
			for _, pr := range rule.Ports {
				if pr.Protocol != model.ProtoTCP && pr.Protocol != model.ProtoAny {
					continue
				}
				tcp := pr
				tcp.Protocol = model.ProtoTCP
				if pr.Protocol == model.ProtoAny {
					tcp.Port, tcp.EndPort = 0, 0
				}
				for _, peer := range peers {
					match := portMatch(tcp, "tcp") + peer
					if seen[match] {
						continue
					}
					seen[match] = true
					l7 = append(l7, fmt.Sprintf("-A %s -d %s/32 %s-m conntrack --ctstate NEW -m comment --comment \"%s: L7 rule of %s\" -j TPROXY --on-port %d --on-ip 0.0.0.0 --tproxy-mark %#x/%#x",
						proxyChain, ep.IP, match, ep.Key(), rule.Policy, d.opts.ProxyPort, d.opts.ProxyMark, d.opts.ProxyMask))
				}
			}
		}
	}
	if len(l7) == 0 {
		return nil, nil
	}
	out = append(out, fmt.Sprintf("-A %s -p tcp -m socket --transparent -j MARK --set-xmark %#x/%#x", proxyChain, d.opts.ProxyMark, d.opts.ProxyMask))
	out = append(out, fmt.Sprintf("-A %s -m mark --mark %#x/%#x -j RETURN", proxyChain, d.opts.ProxyMark, d.opts.ProxyMask))
	return append(out, l7...), nil
}

// peerMatches returns one iptables match per peer of rule (the ipset of
// each peer identity, on the source or destination address per peerDir),
// or a single empty match for a rule that admits every peer. It adds the
// sets the plan does not have yet.
func (p *Plan) peerMatches(r *model.Resolved, node string, rule model.Rule, peerDir string) []string {
	if rule.AnyPeer {
		return []string{""}
	}
	var out []string
	for _, id := range rule.Peers {
		set := setName(id)
		if _, ok := p.Sets[set]; !ok {
			p.Sets[set] = setMembers(r, id, node)
		}
		out = append(out, fmt.Sprintf("-m set --match-set %s %s ", set, peerDir))
	}
	return out
}

// chain writes one endpoint chain: deny rules, allow rules, default.
func (d *Datapath) chain(p *Plan, r *model.Resolved, node string, out []string, chain string, ep *model.Endpoint, rules []model.Rule, enforced bool, peerDir, onlyProto string) []string {
	for _, pass := range []bool{true, false} { // denies first
		for ri, rule := range rules {
			if rule.Deny != pass {
				continue
			}
			target := "RETURN"
			if rule.Deny {
				target = "DROP"
			}
			comment := fmt.Sprintf("-m comment --comment \"%s rule %d of %s\"", chain, ri, rule.Policy)
			peers := p.peerMatches(r, node, rule, peerDir)
			for _, peer := range peers {
				for _, pr := range rule.Ports {
					if onlyProto != "" && pr.Protocol != model.ProtoAny && pr.Protocol.String() != strings.ToUpper(onlyProto) {
						continue
					}
					out = append(out, fmt.Sprintf("-A %s %s%s %s -j %s", chain, portMatch(pr, onlyProto), peer, comment, target))
				}
			}
		}
	}
	if enforced {
		out = append(out, fmt.Sprintf("-A %s -m comment --comment \"%s: default deny\" -j DROP", chain, ep.Key()))
	}
	return out
}

func portMatch(pr model.PortRange, onlyProto string) string {
	switch {
	case pr.Protocol == model.ProtoAny && onlyProto == "":
		return ""
	case pr.Protocol == model.ProtoAny:
		return "-p " + onlyProto + " "
	case pr.Port == 0:
		return "-p " + strings.ToLower(pr.Protocol.String()) + " "
	}
	end := pr.EndPort
	if end < pr.Port {
		end = pr.Port
	}
	proto := strings.ToLower(pr.Protocol.String())
	if end == pr.Port {
		return fmt.Sprintf("-p %s --dport %d ", proto, pr.Port)
	}
	return fmt.Sprintf("-p %s --dport %d:%d ", proto, pr.Port, end)
}

// setMembers lists the addresses behind identity id, with nested
// exclusions as "nomatch" entries.
func setMembers(r *model.Resolved, id model.Identity, node string) []string {
	var out []string
	podAndNodeIPs := func(inside netip.Prefix) []string {
		var x []string
		for _, ep := range r.Endpoints {
			if inside.Contains(ep.IP) {
				x = append(x, ep.IP.String()+"/32 nomatch")
			}
		}
		for _, n := range r.Nodes {
			if n.IP.IsValid() && inside.Contains(n.IP) {
				x = append(x, n.IP.String()+"/32 nomatch")
			}
		}
		return x
	}
	nested := func(p netip.Prefix) []string {
		var x []string
		for q := range r.CIDRs {
			if q != p && q.Bits() > p.Bits() && p.Contains(q.Addr()) {
				x = append(x, q.String()+" nomatch")
			}
		}
		return x
	}
	switch {
	case id == model.IdentityHost || id == model.IdentityRemoteNode:
		// Node addresses: host is this node, remote-node the others.
		for _, n := range r.Nodes {
			if n.IP.IsValid() && (n.Name == node) == (id == model.IdentityHost) {
				out = append(out, n.IP.String()+"/32")
			}
		}
	case id == model.IdentityWorld:
		for _, half := range []string{"0.0.0.0/1", "128.0.0.0/1"} {
			out = append(out, half)
		}
		for q := range r.CIDRs {
			out = append(out, q.String()+" nomatch")
		}
		out = append(out, podAndNodeIPs(netip.MustParsePrefix("0.0.0.0/0"))...)
	case id >= model.IdentityCIDRWorldBase:
		for p, cid := range r.CIDRs {
			if cid&^model.IdentityCIDRBase == id&^model.IdentityCIDRWorldBase {
				out = append(out, cidrEntry(p))
				out = append(out, nested(p)...)
				out = append(out, podAndNodeIPs(p)...)
			}
		}
	case id >= model.IdentityCIDRBase:
		for p, cid := range r.CIDRs {
			if cid == id {
				out = append(out, cidrEntry(p))
				out = append(out, nested(p)...)
			}
		}
	default:
		for _, ep := range r.Endpoints {
			if ep.Identity == id {
				out = append(out, ep.IP.String()+"/32")
			}
		}
	}
	sort.Strings(out)
	return out
}

// cidrEntry writes a prefix for hash:net, which takes /1 to /32: 0.0.0.0/0
// becomes its two halves.
func cidrEntry(p netip.Prefix) string {
	if p.Bits() == 0 {
		return "0.0.0.0/1\n128.0.0.0/1"
	}
	return p.String()
}

// Apply programs the plan: sets (built under a temporary name and swapped
// in), then the filter rules in one iptables-restore, then the FORWARD jump,
// then removal of sets no longer used.
func (d *Datapath) Apply(ctx context.Context, r *model.Resolved, node string) (Stats, error) {
	var st Stats
	p, err := d.Build(r, node)
	if err != nil {
		return st, err
	}
	st.Endpoints, st.Rules, st.Sets = p.Endpoints, p.Rules, len(p.Sets)
	for _, ep := range r.NodeEndpoints(node) {
		name := model.InterfaceName(ep.Namespace, ep.Name)
		if d.opts.InterfaceName != nil {
			name = d.opts.InterfaceName(ep)
		}
		if _, err := net.InterfaceByName(name); err != nil {
			st.Pending = append(st.Pending, ep.Key())
		}
	}
	sort.Strings(st.Pending)
	var sets bytes.Buffer
	names := make([]string, 0, len(p.Sets))
	for n := range p.Sets {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		tmp := n + "-t"
		fmt.Fprintf(&sets, "create %s hash:net family inet maxelem 1048576 -exist\nflush %s\n", tmp, tmp)
		for _, m := range p.Sets[n] {
			for _, line := range strings.Split(m, "\n") {
				fmt.Fprintf(&sets, "add %s %s -exist\n", tmp, line)
			}
		}
		fmt.Fprintf(&sets, "create %s hash:net family inet maxelem 1048576 -exist\nswap %s %s\ndestroy %s\n", n, tmp, n, tmp)
	}
	start := time.Now()
	if sets.Len() > 0 {
		if err := run(ctx, sets.Bytes(), d.opts.Ipset, "restore"); err != nil {
			return st, fmt.Errorf("program ipsets: %w", err)
		}
	}
	st.SetsDuration = time.Since(start)
	start = time.Now()
	if err := run(ctx, []byte(p.Filter), d.opts.IptablesRestore, "--noflush", "-w"); err != nil {
		return st, fmt.Errorf("program filter rules: %w", err)
	}
	st.RestoreDuration = time.Since(start)
	if err := run(ctx, []byte(p.Mangle), d.opts.IptablesRestore, "--noflush", "-w"); err != nil {
		return st, fmt.Errorf("program mangle rules: %w", err)
	}
	natChanged := p.Nat != d.nat
	if natChanged && p.Nat != "" {
		if err := run(ctx, []byte(p.Nat), d.opts.IptablesRestore, "--noflush", "-w"); err != nil {
			d.nat = ""
			return st, fmt.Errorf("program service (nat) rules: %w", err)
		}
	}
	if p.Raw != d.raw {
		if err := run(ctx, []byte(p.Raw), d.opts.IptablesRestore, "--noflush", "-w"); err != nil {
			d.raw = ""
			return st, fmt.Errorf("program prefilter (raw) rules: %w", err)
		}
		d.raw = p.Raw
	}
	st.RestoreDuration = time.Since(start)
	for _, hook := range d.hooks() {
		if err := d.ensureFirst(ctx, hook); err != nil {
			return st, err
		}
	}
	// Service chains of services that are gone: nothing jumps to them
	// any more (FP-SERVICES was replaced above).
	if natChanged && p.Nat != "" {
		if listing, err := exec.CommandContext(ctx, d.opts.Iptables, "-w", "-t", "nat", "-S").Output(); err == nil {
			if err := d.deleteChains(ctx, "nat", staleNatChains(string(listing), p.Nat)); err != nil {
				return st, fmt.Errorf("remove stale service chains: %w", err)
			}
		}
		d.nat = p.Nat
	}
	// Sets nothing refers to any more (rules were replaced above).
	var stale bytes.Buffer
	for n := range d.sets {
		if _, ok := p.Sets[n]; !ok {
			fmt.Fprintf(&stale, "destroy %s\n", n)
		}
	}
	if stale.Len() > 0 {
		_ = run(ctx, stale.Bytes(), d.opts.Ipset, "restore")
	}
	d.sets = map[string]bool{}
	for n := range p.Sets {
		d.sets[n] = true
	}
	return st, nil
}

// hooks are the jumps from the built-in chains into fastpath's, each as
// iptables arguments after -A/-C/-D: FORWARD into the policy chains; nat
// PREROUTING and POSTROUTING into the service chains (unless
// SkipServices); INPUT for connections delivered to the L7 proxy (their
// source pod's egress policy still applies); mangle PREROUTING into the
// TPROXY chain.
func (d *Datapath) hooks() [][]string {
	hooks := [][]string{{"FORWARD", "-j", forwardChain}}
	if !d.opts.SkipServices {
		hooks = append(hooks, []string{"-t", "nat", "PREROUTING", "-j", servicesChain}, []string{"-t", "nat", "POSTROUTING", "-j", postroutingChain})
	}
	hooks = append(hooks, []string{"-t", "raw", "PREROUTING", "-j", prefilterChain})
	if d.opts.ProxyPort == 0 {
		return hooks
	}
	return append(hooks,
		[]string{"INPUT", "-m", "mark", "--mark", fmt.Sprintf("%#x/%#x", d.opts.ProxyMark, d.opts.ProxyMask), "-j", forwardChain},
		[]string{"-t", "mangle", "PREROUTING", "-j", proxyChain})
}

// ensureFirst makes hook the first rule of its built-in chain. Another
// writer of the chain (kube-proxy, which prepends its own jumps when they
// are missing) may have put rules before it: in FORWARD, kube-proxy's
// KUBE-FORWARD accepts the packets it marked for masquerading, which
// would then pass without the policy. As Calico does, the hook is moved
// back to the top; the check costs one listing per hook.
func (d *Datapath) ensureFirst(ctx context.Context, hook []string) error {
	table, chain, target := "filter", hook[0], hook[len(hook)-1]
	if hook[0] == "-t" {
		table, chain = hook[1], hook[2]
	}
	out, err := exec.CommandContext(ctx, d.opts.Iptables, "-w", "-t", table, "-S", chain).Output()
	if err != nil {
		return fmt.Errorf("hook %s: list %s %s: %w", strings.Join(hook, " "), table, chain, err)
	}
	first, ours := firstRule(string(out), chain)
	if first == target && ours == 1 {
		return nil
	}
	// Missing, not first, or there twice: remove every copy, insert one.
	for range ours {
		if err := run(ctx, nil, d.opts.Iptables, append([]string{"-w"}, hookArgs("-D", hook)...)...); err != nil {
			break
		}
	}
	if err := run(ctx, nil, d.opts.Iptables, append([]string{"-w"}, hookArgs("-I", hook)...)...); err != nil {
		return fmt.Errorf("hook %s: %w", strings.Join(hook, " "), err)
	}
	return nil
}

// firstRule reads `iptables -S chain`: the target of the chain's first
// rule ("" when it has none), and how many rules jump to an FP-* chain.
func firstRule(listing, chain string) (first string, ours int) {
	prefix := "-A " + chain + " "
	for _, line := range strings.Split(listing, "\n") {
		if !strings.HasPrefix(line, prefix) {
			continue
		}
		f := strings.Fields(line)
		target := ""
		for i := range len(f) - 1 {
			if f[i] == "-j" || f[i] == "-g" {
				target = f[i+1]
			}
		}
		if first == "" {
			first = target
			if first == "" {
				first = "-"
			}
		}
		if strings.HasPrefix(target, "FP-") {
			ours++
		}
	}
	return first, ours
}

// hookArgs turns hook arguments into the rule operation op ("-I" inserts
// at the head of the chain, "-C" checks, "-D" deletes), placed after an
// optional "-t table".
func hookArgs(op string, hook []string) []string {
	var out []string
	if hook[0] == "-t" {
		out, hook = append(out, hook[0], hook[1]), hook[2:]
	}
	out = append(out, op, hook[0])
	if op == "-I" {
		out = append(out, "1")
	}
	return append(out, hook[1:]...)
}

// listChains returns the table's FP-* chains.
func (d *Datapath) listChains(table string) []string {
	out, err := exec.Command(d.opts.Iptables, "-w", "-t", table, "-S").Output()
	if err != nil {
		return nil
	}
	var chains []string
	for _, line := range strings.Split(string(out), "\n") {
		if name, ok := strings.CutPrefix(line, "-N "); ok && strings.HasPrefix(name, "FP-") {
			chains = append(chains, name)
		}
	}
	return chains
}

// deleteChains flushes and deletes chains of a table in one restore
// (declaring a chain in a restore flushes it).
func (d *Datapath) deleteChains(ctx context.Context, table string, chains []string) error {
	if len(chains) == 0 {
		return nil
	}
	var b strings.Builder
	fmt.Fprintf(&b, "*%s\n", table)
	for _, c := range chains {
		fmt.Fprintf(&b, ":%s - [0:0]\n", c)
	}
	for _, c := range chains {
		fmt.Fprintf(&b, "-X %s\n", c)
	}
	b.WriteString("COMMIT\n")
	return run(ctx, []byte(b.String()), d.opts.IptablesRestore, "--noflush", "-w")
}

// Close removes the hooks, the chains and the sets.
func (d *Datapath) Close() error {
	ctx := context.Background()
	for _, hook := range d.hooks() {
		_ = run(ctx, nil, d.opts.Iptables, append([]string{"-w"}, hookArgs("-D", hook)...)...)
	}
	// Every FP-* chain of every table we use: flushed, then deleted.
	var errs []error
	for _, table := range []string{"raw", "mangle", "nat", "filter"} {
		if err := d.deleteChains(ctx, table, d.listChains(table)); err != nil {
			errs = append(errs, err)
		}
	}
	var sets bytes.Buffer
	for n := range d.sets {
		fmt.Fprintf(&sets, "destroy %s\n", n)
	}
	if sets.Len() > 0 {
		if err := run(ctx, sets.Bytes(), d.opts.Ipset, "restore"); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
