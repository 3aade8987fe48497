package lxc

import (
	"errors"
	"fmt"
	"sort"

	"github.com/cilium/ebpf"

	"github.com/fastpath-bench/fastpath/datapath/model"
)

// LiveEntry is one entry of an endpoint's policy map as the kernel holds
// it.
type LiveEntry struct {
	Identity  model.Identity `json:"identity"`
	Direction string         `json:"direction"`
	Protocol  string         `json:"protocol"`
	// Ports is "*" (every port), a port, or an aligned block "lo-hi".
	Ports  string `json:"ports"`
	Action string `json:"action"`
	RuleID uint32 `json:"ruleID"`
}

// EndpointInfo is what the datapath holds for one local endpoint.
type EndpointInfo struct {
	ID      uint32      `json:"id"`
	Ifname  string      `json:"ifname"`
	Ifindex int         `json:"ifindex"`
	Flags   []string    `json:"flags"`
	Entries []LiveEntry `json:"entries"`
	// Counters are the connections each rule decided since the
	// endpoint's rule list last changed.
	Counters []RuleCounter `json:"counters,omitempty"`
}

// ErrNoEndpoint means the pod is not a programmed endpoint of this node.
var ErrNoEndpoint = errors.New("no such endpoint on this node")

// DumpEndpoint reads the live map state of endpoint "namespace/name".
func (d *Datapath) DumpEndpoint(key string) (*EndpointInfo, error) {
	d.mu.Lock()
	es, ok := d.endpoints[key]
	d.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("%s: %w", key, ErrNoEndpoint)
	}
	out := &EndpointInfo{ID: es.id, Ifname: es.ifname, Ifindex: es.ifindex}
	var info lxcEndpointInfo
	if err := d.objs.FpEndpoints.Lookup(uint32(es.ifindex), &info); err != nil {
		return nil, fmt.Errorf("read endpoint map: %w", err)
	}
	for _, f := range []struct {
		bit  lxcEndpointFlags
		name string
	}{
		{lxcEndpointFlagsEP_F_INGRESS_ENFORCED, "ingress-default-deny"},
		{lxcEndpointFlagsEP_F_EGRESS_ENFORCED, "egress-default-deny"},
		{lxcEndpointFlagsEP_F_INGRESS_POLICY, "ingress-rules"},
		{lxcEndpointFlagsEP_F_EGRESS_POLICY, "egress-rules"},
	} {
		if lxcEndpointFlags(info.Flags)&f.bit != 0 {
			out.Flags = append(out.Flags, f.name)
		}
	}
	var innerID uint32
	if err := d.objs.FpPolicy.Lookup(es.id, &innerID); err != nil {
		return nil, fmt.Errorf("read policy map of endpoint %d: %w", es.id, err)
	}
	inner, err := ebpf.NewMapFromID(ebpf.MapID(innerID))
	if err != nil {
		return nil, fmt.Errorf("open policy map %d: %w", innerID, err)
	}
	defer inner.Close()
	var k lxcPolicyKey
	var v lxcPolicyValue
	it := inner.Iterate()
	for it.Next(&k, &v) {
		e := LiveEntry{Identity: model.Identity(k.Identity), Direction: model.Direction(k.Direction).String(), RuleID: v.RuleId}
		switch {
		case k.Prefixlen <= policyBitsDir:
			e.Protocol, e.Ports = "ANY", "*"
		case k.Prefixlen <= policyBitsProto:
			e.Protocol, e.Ports = model.Protocol(k.Protocol).String(), "*"
		default:
			e.Protocol = model.Protocol(k.Protocol).String()
			lo := ntohs(k.Dport)
			size := uint32(1) << (policyBitsAll - k.Prefixlen)
			if size == 1 {
				e.Ports = fmt.Sprint(lo)
			} else {
				e.Ports = fmt.Sprintf("%d-%d", lo, uint32(lo)+size-1)
			}
		}
		e.Action = "allow"
		if lxcPolicyAction(v.Action) == lxcPolicyActionPOLICY_DENY {
			e.Action = "deny"
		}
		out.Entries = append(out.Entries, e)
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("iterate policy map: %w", err)
	}
	out.Counters, err = d.ruleCounters(es.id)
	if err != nil {
		return nil, err
	}
	sort.Slice(out.Entries, func(i, j int) bool {
		a, b := out.Entries[i], out.Entries[j]
		if a.Identity != b.Identity {
			return a.Identity < b.Identity
		}
		if a.Direction != b.Direction {
			return a.Direction < b.Direction
		}
		return a.Ports < b.Ports
	})
	return out, nil
}
