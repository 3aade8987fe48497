package lxc

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"sort"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/fastpath-bench/fastpath/datapath/model"
)

// The egress gateway (bpf/lib/egress_gw.h): one trie per node, keyed by
// (source identity, destination prefix), replaced as a whole in the one
// slot of fp_egress_gw, so that packets see the old set of policies or
// the new one.

// EgressNATPorts is the range of source ports the gateway SNATs to.
const (
	EgressNATPortMin = uint16(lxcEgwConstEGW_NAT_PORT_MIN)
	EgressNATPortMax = uint16(lxcEgwConstEGW_NAT_PORT_MAX)
)

// EgressGatewayInfo is how this node programs one EgressGatewayPolicy.
type EgressGatewayInfo struct {
	Name     string `json:"name"`
	Cluster  string `json:"cluster,omitempty"`
	Node     string `json:"node"`
	EgressIP string `json:"egressIP,omitempty"`
	// Gateway says this node is the policy's gateway: it SNATs the
	// traffic of Sources identities (local and remote); otherwise it
	// sends its own selected pods' traffic to the gateway.
	Gateway bool `json:"gateway,omitempty"`
	Sources int  `json:"sources"`
	// Dropped says why the selected traffic is dropped here, "" when it
	// is not.
	Dropped string `json:"dropped,omitempty"`
}

type egwTrie map[lxcEgwKey]lxcEgwValue

// egressPlan is the gateway trie of node and what it says per policy.
// A gateway whose node is not known, or whose egress IP is not this
// node's when this node is the gateway, gets entries that drop
// (gateway 0): the traffic never leaves with the pod's own address.
func egressPlan(r *model.Resolved, node string, localAddr func(netip.Addr) bool) (egwTrie, []EgressGatewayInfo) {
	t := egwTrie{}
	var infos []EgressGatewayInfo
	for _, g := range r.EgressGateways {
		info := EgressGatewayInfo{Name: g.Name, Cluster: g.Cluster, Node: g.Node, Gateway: g.Local && g.Node == node}
		v := lxcEgwValue{}
		switch {
		case !g.Known():
			info.Dropped = fmt.Sprintf("gateway node %s of cluster %q is not known", g.Node, g.Cluster)
		case info.Gateway && !localAddr(g.EgressIP):
			info.Dropped = fmt.Sprintf("egress IP %s is not an address of this node", g.EgressIP)
		default:
			v.Gateway, v.EgressIp = be32(g.NodeIP), be32(g.EgressIP)
			info.EgressIP = g.EgressIP.String()
		}
		ids := g.Sources
		if info.Gateway {
			v.Flags = uint32(lxcEgwConstEGW_F_LOCAL)
			ids = append(append([]model.Identity(nil), g.Sources...), g.RemoteSources...)
		}
		info.Sources = len(ids)
		for _, id := range ids {
			for _, p := range g.Destinations {
				k := egwKey(id, p)
				// A tie between two policies: the first by name (the
				// model's order); an exclusion wins it.
				if _, taken := t[k]; !taken {
					t[k] = v
				}
			}
			for _, p := range g.Excluded {
				t[egwKey(id, p)] = lxcEgwValue{Flags: uint32(lxcEgwConstEGW_F_EXCLUDED)}
			}
		}
		infos = append(infos, info)
	}
	return t, infos
}

func egwKey(id model.Identity, p netip.Prefix) lxcEgwKey {
	return lxcEgwKey{Prefixlen: 32 + uint32(p.Bits()), Identity: uint32(id), Daddr: be32(p.Addr())}
}

// localAddrs returns a lookup of the addresses of the datapath's network
// namespace (asked once per apply, and only when needed).
func (d *Datapath) localAddrs() func(netip.Addr) bool {
	var set map[netip.Addr]bool
	return func(a netip.Addr) bool {
		if set == nil {
			set = map[netip.Addr]bool{}
			if d.nl == nil {
				if h, err := netlink.NewHandle(unix.NETLINK_ROUTE); err == nil {
					d.nl = h
				}
			}
			if d.nl != nil {
				addrs, _ := d.nl.AddrList(nil, netlink.FAMILY_V4)
				for _, ad := range addrs {
					if ip, ok := netip.AddrFromSlice(ad.IP.To4()); ok {
						set[ip] = true
					}
				}
			}
		}
		return set[a]
	}
}

// programEgress makes the gateway trie hold t: unchanged, a new trie
// swapped into the slot, or the slot emptied.
func (d *Datapath) programEgress(t egwTrie) error {
	if maps.Equal(t, d.egw) && d.egw != nil {
		return nil
	}
	if len(t) == 0 {
		if err := d.objs.FpEgressGw.Delete(uint32(0)); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("egress gateway: empty fp_egress_gw: %w", err)
		}
		d.egw = t
		return nil
	}
	inner, err := ebpf.NewMap(d.egwSpec)
	if err != nil {
		return fmt.Errorf("egress gateway: create trie: %w", err)
	}
	defer inner.Close()
	keys := make([]lxcEgwKey, 0, len(t))
	for k := range t {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].Prefixlen < keys[j].Prefixlen })
	for _, k := range keys {
		if err := inner.Put(k, t[k]); err != nil {
			return fmt.Errorf("egress gateway: fill trie: %w", err)
		}
	}
	if err := d.objs.FpEgressGw.Put(uint32(0), inner); err != nil {
		return fmt.Errorf("egress gateway: swap trie: %w", err)
	}
	d.egw = t
	return nil
}

// EgressGateways is how this node programmed the EgressGatewayPolicies
// at its last apply.
func (d *Datapath) EgressGateways() []EgressGatewayInfo {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]EgressGatewayInfo(nil), d.egwInfo...)
}

// EgressNAT is one flow the gateway SNATs.
type EgressNAT struct {
	Proto     uint8          `json:"proto"`
	Pod       netip.AddrPort `json:"pod"`
	PodNode   netip.Addr     `json:"podNode,omitempty"` // invalid: this node
	Dest      netip.AddrPort `json:"dest"`
	EgressIP  netip.AddrPort `json:"egress"`
	ExpiresNs uint64         `json:"expiresNs"`
}

// EgressNATs lists the gateway's SNATed flows (their reverse entries).
func (d *Datapath) EgressNATs() ([]EgressNAT, error) {
	var out []EgressNAT
	var k lxcEgwNatKey
	var v lxcEgwNat
	it := d.objs.FpEgressNat.Iterate()
	for it.Next(&k, &v) {
		if k.Dir != uint8(lxcEgwConstEGW_NAT_IN) {
			continue
		}
		n := EgressNAT{Proto: k.Proto, Pod: netip.AddrPortFrom(addrFromBE32(v.Addr), ntohs(v.Port)),
			Dest:     netip.AddrPortFrom(addrFromBE32(k.Saddr), ntohs(k.Sport)),
			EgressIP: netip.AddrPortFrom(addrFromBE32(k.Daddr), ntohs(k.Dport)), ExpiresNs: v.ExpiresNs}
		if v.Node != 0 {
			n.PodNode = addrFromBE32(v.Node)
		}
		out = append(out, n)
	}
	return out, it.Err()
}
