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
					base := PolicyEntry{Identity: peer, Direction: dir, Protocol: p.Protocol, RuleID: RuleID(dir, ri), PolicyName: r.Policy, Deny: r.Deny}
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
	out = applyDenyPrecedence(out)
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

// covers reports whether every packet key e matches is also matched by d
// (same identity and direction).
func (d PolicyEntry) covers(e PolicyEntry) bool {
	if d.Identity != e.Identity || d.Direction != e.Direction {
		return false
	}
	if d.AnyProto {
		return true
	}
	if e.AnyProto || d.Protocol != e.Protocol {
		return false
	}
	if d.AnyPort {
		return true
	}
	if e.AnyPort || e.PortBits < d.PortBits {
		return false
	}
	mask := uint16(0xffff) << (16 - d.PortBits)
	if d.PortBits == 0 {
		mask = 0
	}
	return e.Port&mask == d.Port&mask
}

// applyDenyPrecedence makes deny win inside one identity's trie: the
// longest-prefix match would let a narrow allow (TCP/80) hide a broader deny
// (TCP/*), so such allows become denies; an allow and a deny on the same key
// leave the deny. (Across identities the BPF side looks all of them up and
// lets any deny win.)
func applyDenyPrecedence(entries []PolicyEntry) []PolicyEntry {
	var denies []PolicyEntry
	for _, e := range entries {
		if e.Deny {
			denies = append(denies, e)
		}
	}
	if len(denies) == 0 {
		return entries
	}
	byKey := map[lxcPolicyKey]int{}
	var out []PolicyEntry
	for _, e := range entries {
		if !e.Deny {
			for _, d := range denies {
				if d.covers(e) {
					e.Deny = true
					e.RuleID = d.RuleID
					e.PolicyName = d.PolicyName
					break
				}
			}
		}
		k := e.key()
		if i, ok := byKey[k]; ok {
			if e.Deny && !out[i].Deny {
				out[i] = e
			}
			continue
		}
		byKey[k] = len(out)
		out = append(out, e)
	}
	return out
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
	ReasonForwarded     = Reason(lxcReasonREASON_FORWARDED)
	ReasonEstablished   = Reason(lxcReasonREASON_CT_ESTABLISHED)
	ReasonReply         = Reason(lxcReasonREASON_CT_REPLY)
	DropPolicy          = Reason(lxcReasonDROP_POLICY)
	DropInvalidSource   = Reason(lxcReasonDROP_INVALID_SOURCE)
	DropUnknownEndpoint = Reason(lxcReasonDROP_UNKNOWN_ENDPOINT)
	DropTruncated       = Reason(lxcReasonDROP_TRUNCATED)
	DropMalformed       = Reason(lxcReasonDROP_MALFORMED)
	DropUnsupportedL3   = Reason(lxcReasonDROP_UNSUPPORTED_L3)
	DropFragment        = Reason(lxcReasonDROP_FRAGMENT)
	reasonMax           = Reason(lxcReasonREASON_MAX)
)

func (r Reason) String() string {
	if n, ok := reasonNames[uint32(r)]; ok {
		return n
	}
	return fmt.Sprintf("REASON_%d", uint32(r))
}

// IsDrop reports whether packets with this reason are dropped.
func (r Reason) IsDrop() bool { return r >= DropPolicy }
