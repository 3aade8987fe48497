package lxc

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"sort"

	"github.com/cilium/ebpf/btf"

	"github.com/fastpath-bench/fastpath/datapath/model"
)

// Key widths, in bits, of the policy trie key after its prefix length:
// identity (32), direction (8), protocol (8), port (16).
const (
	policyBitsAll   = 64
	policyBitsProto = 48 // identity, direction, protocol: every port
	policyBitsDir   = 40 // identity, direction: every protocol
)

// PolicyEntry is one key of an endpoint's policy trie, in Go terms.
type PolicyEntry struct {
	Identity  model.Identity
	Direction model.Direction
	Protocol  model.Protocol
	// Port and PrefixBits: PrefixBits 16 means exactly Port; fewer bits
	// cover an aligned block of ports. Ignored for ProtoAny and port 0.
	Port       uint16
	PortBits   uint8
	AnyPort    bool
	AnyProto   bool
	RuleID     uint32
	PolicyName string
	// Deny makes the entry deny what it matches.
	Deny bool
	// Allow makes it admit what it matches (an L4 allow rule, or an L7
	// allow rule whose requests the proxy then checks).
	Allow bool
	// Proxy sends what it matches, when admitted, through the L7 proxy
	// (the entry comes from an L7 rule, allow or deny).
	Proxy bool
}

// action is the entry's policy value bits (enum policy_action).
func (e PolicyEntry) action() uint8 {
	var a uint8
	if e.Allow {
		a |= uint8(lxcPolicyActionPOLICY_ALLOW)
	}
	if e.Deny {
		a |= uint8(lxcPolicyActionPOLICY_DENY)
	}
	if e.Proxy {
		a |= uint8(lxcPolicyActionPOLICY_PROXY)
	}
	return a
}

func (e PolicyEntry) key() lxcPolicyKey {
	k := lxcPolicyKey{
		Identity:  uint32(e.Identity),
		Direction: uint8(e.Direction),
	}
	switch {
	case e.AnyProto:
		k.Prefixlen = policyBitsDir
	case e.AnyPort:
		k.Prefixlen = policyBitsProto
		k.Protocol = uint8(e.Protocol)
	default:
		k.Prefixlen = policyBitsProto + uint32(e.PortBits)
		k.Protocol = uint8(e.Protocol)
		k.Dport = htons(e.Port)
	}
	return k
}

func htons(v uint16) uint16 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], v)
	return binary.NativeEndian.Uint16(b[:])
}

func ntohs(v uint16) uint16 { return htons(v) }

// be32 returns an IPv4 address as the uint32 whose memory is in network
// byte order, as the BPF side compares it.
func be32(a netip.Addr) uint32 {
	b := a.As4()
	return binary.NativeEndian.Uint32(b[:])
}

func addrFromBE32(v uint32) netip.Addr {
	var b [4]byte
	binary.NativeEndian.PutUint32(b[:], v)
	return netip.AddrFrom4(b)
}

// portBlocks splits the inclusive range [lo, hi] into the fewest aligned
// power-of-two blocks, each given as (start, prefix bits of 16).
func portBlocks(lo, hi uint16) [][2]uint32 {
	var out [][2]uint32
	start, end := uint32(lo), uint32(hi)
	for start <= end {
		size := uint32(1)
		// Grow the block while it stays aligned and inside the range.
		for start&(size*2-1) == 0 && start+size*2-1 <= end && size < 1<<16 {
			size *= 2
		}
		bits := uint32(16)
		for s := size; s > 1; s >>= 1 {
			bits--
		}
		out = append(out, [2]uint32{start, bits})
		start += size
	}
	return out
}

// PolicyEntries expands an endpoint's rules into trie keys. Rules of an
// enforced direction contribute entries; an unenforced direction needs none
// (the BPF side does not consult the map for it).
func PolicyEntries(ep *model.Endpoint) []PolicyEntry {
	return expandRules(map[model.Direction][]model.Rule{model.Ingress: ep.Ingress, model.Egress: ep.Egress})
}

// MeshEntries expands an endpoint's mesh-layer (AuthorizationPolicy) rules
// into the keys of its second trie (ingress only).
func MeshEntries(ep *model.Endpoint) []PolicyEntry {
	return expandRules(map[model.Direction][]model.Rule{model.Ingress: ep.Mesh})
}

func expandRules(byDir map[model.Direction][]model.Rule) []PolicyEntry {
	var out []PolicyEntry
	add := func(dir model.Direction, rules []model.Rule) {
		for ri, r := range rules {
			peers := r.Peers
			if r.AnyPeer {
				peers = []model.Identity{model.IdentityAny}
			}
			for _, peer := range peers {
				for _, p := range r.Ports {
					base := PolicyEntry{Identity: peer, Direction: dir, Protocol: p.Protocol, RuleID: RuleID(dir, ri), PolicyName: r.Policy}
					// An L7 deny rule cannot deny the connection (only the
					// proxy can tell which requests it denies); an L7
					// allow rule admits it, for the proxy to check.
					switch {
					case r.IsL7():
						base.Proxy, base.Allow = true, !r.Deny
					case r.Deny:
						base.Deny = true
					default:
						base.Allow = true
					}
					switch {
					case p.Protocol == model.ProtoAny:
						base.AnyProto = true
						out = append(out, base)
					case p.Port == 0:
						base.AnyPort = true
						out = append(out, base)
					default:
						end := p.EndPort
						if end < p.Port {
							end = p.Port
						}
						for _, b := range portBlocks(p.Port, end) {
							e := base
							e.Port, e.PortBits = uint16(b[0]), uint8(b[1])
							out = append(out, e)
						}
					}
				}
			}
		}
	}
	add(model.Ingress, byDir[model.Ingress])
	add(model.Egress, byDir[model.Egress])
	out = mergeCovering(out)
	// Deterministic order (map updates are idempotent anyway).
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i].key(), out[j].key()
		if a.Identity != b.Identity {
			return a.Identity < b.Identity
		}
		if a.Direction != b.Direction {
			return a.Direction < b.Direction
		}
		if a.Protocol != b.Protocol {
			return a.Protocol < b.Protocol
		}
		return ntohs(a.Dport) < ntohs(b.Dport)
	})
	return out
}

// RuleID numbers a rule for the per-rule counters: its direction in bit 30
// and its index in the endpoint's rule list of that direction.
func RuleID(dir model.Direction, index int) uint32 { return uint32(dir)<<30 | uint32(index) }

// mergeCovering gives every key the bits of all the entries whose keys
// contain it, and leaves one entry per key. The longest-prefix match
// returns only the narrowest key, so without this a narrow allow (TCP/80)
// would hide a broader deny (TCP/*) or a broader L7 rule. A key that a deny
// covers counts for the deny's rule. (Across identities the BPF side looks
// all of them up and combines their bits.)
func mergeCovering(entries []PolicyEntry) []PolicyEntry {
	byKey := map[lxcPolicyKey]int{}
	var out []PolicyEntry
	for _, e := range entries {
		k := e.key()
		if i, ok := byKey[k]; ok {
			out[i] = merge(out[i], e)
			continue
		}
		byKey[k] = len(out)
		out = append(out, e)
	}
	// A key's containing keys are its shorter port blocks, every port of
	// its protocol, and every protocol: look each up.
	merged := make([]PolicyEntry, len(out))
	copy(merged, out)
	for i, e := range out {
		for _, anc := range e.ancestors() {
			if j, ok := byKey[anc.key()]; ok {
				merged[i] = merge(merged[i], out[j])
			}
		}
	}
	return merged
}

// ancestors returns entries with the keys that strictly contain e's key.
func (e PolicyEntry) ancestors() []PolicyEntry {
	var out []PolicyEntry
	if e.AnyProto {
		return nil
	}
	up := e
	up.AnyProto = true
	out = append(out, up)
	if e.AnyPort {
		return out
	}
	up = e
	up.AnyPort = true
	out = append(out, up)
	for bits := int(e.PortBits) - 1; bits > 0; bits-- {
		up = e
		up.PortBits = uint8(bits)
		up.Port = e.Port & (uint16(0xffff) << (16 - bits))
		out = append(out, up)
	}
	return out
}

// merge ORs b's bits into a; a deny's rule and policy name win.
func merge(a, b PolicyEntry) PolicyEntry {
	if b.Deny && !a.Deny {
		a.RuleID, a.PolicyName = b.RuleID, b.PolicyName
	}
	a.Deny = a.Deny || b.Deny
	a.Allow = a.Allow || b.Allow
	a.Proxy = a.Proxy || b.Proxy
	return a
}

// reasonNames is read from the object's BTF: the C enum is the one
// definition of verdict reasons.
var reasonNames = func() map[uint32]string {
	spec, err := loadLxc()
	if err != nil {
		panic(fmt.Sprintf("lxc: embedded BPF object does not load: %v", err))
	}
	var enum *btf.Enum
	if err := spec.Types.TypeByName("reason", &enum); err != nil {
		panic(fmt.Sprintf("lxc: enum reason missing from BTF: %v", err))
	}
	out := map[uint32]string{}
	for _, v := range enum.Values {
		out[uint32(v.Value)] = v.Name
	}
	return out
}()

// Reason is a verdict reason as counted by the datapath.
type Reason uint32

// Reasons Go code refers to; the full list comes from BTF.
const (
	ReasonForwarded      = Reason(lxcReasonREASON_FORWARDED)
	ReasonEstablished    = Reason(lxcReasonREASON_CT_ESTABLISHED)
	ReasonReply          = Reason(lxcReasonREASON_CT_REPLY)
	DropPolicy           = Reason(lxcReasonDROP_POLICY)
	DropInvalidSource    = Reason(lxcReasonDROP_INVALID_SOURCE)
	DropUnknownEndpoint  = Reason(lxcReasonDROP_UNKNOWN_ENDPOINT)
	DropTruncated        = Reason(lxcReasonDROP_TRUNCATED)
	DropMalformed        = Reason(lxcReasonDROP_MALFORMED)
	DropUnsupportedL3    = Reason(lxcReasonDROP_UNSUPPORTED_L3)
	DropFragment         = Reason(lxcReasonDROP_FRAGMENT)
	DropNoServiceBackend = Reason(lxcReasonDROP_NO_SERVICE_BACKEND)
	DropNoEgressGateway  = Reason(lxcReasonDROP_NO_EGRESS_GATEWAY)
	DropEgressGatewayNAT = Reason(lxcReasonDROP_EGRESS_GW_NAT)
	DropNoTunnelKey      = Reason(lxcReasonDROP_NO_TUNNEL_KEY)
	DropNoTunnelOpt      = Reason(lxcReasonDROP_NO_TUNNEL_OPT)
	reasonMax            = Reason(lxcReasonREASON_MAX)
)

func (r Reason) String() string {
	if n, ok := reasonNames[uint32(r)]; ok {
		return n
	}
	return fmt.Sprintf("REASON_%d", uint32(r))
}

// IsDrop reports whether packets with this reason are dropped.
func (r Reason) IsDrop() bool { return r >= DropPolicy }
