package lxc

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"sort"

	"github.com/fastpath-bench/fastpath/datapath/model"
)

// RuleCounter is how many connections one rule of an endpoint decided.
type RuleCounter struct {
	Layer       string `json:"layer"` // network or mesh
	Direction   string `json:"direction"`
	Rule        int    `json:"rule"` // index in the endpoint's rule list
	Connections uint64 `json:"connections"`
}

// rulesDigest identifies an endpoint's rule lists: what its policy
// entries are made of, and what its rule numbers mean.
func rulesDigest(ep *model.Endpoint) [sha256.Size]byte {
	h := sha256.New()
	var b []byte
	for _, rules := range [][]model.Rule{ep.Ingress, ep.Egress, ep.Mesh} {
		b = binary.LittleEndian.AppendUint32(b[:0], uint32(len(rules)))
		h.Write(b)
		for _, r := range rules {
			b = append(b[:0], r.Policy...)
			b = append(b, 0, flag(r.Deny), flag(r.AnyPeer), flag(r.IsL7()))
			b = binary.LittleEndian.AppendUint32(b, uint32(len(r.Peers)))
			for _, p := range r.Peers {
				b = binary.LittleEndian.AppendUint32(b, uint32(p))
			}
			b = binary.LittleEndian.AppendUint32(b, uint32(len(r.Ports)))
			for _, p := range r.Ports {
				b = append(b, byte(p.Protocol))
				b = binary.LittleEndian.AppendUint16(b, p.Port)
				b = binary.LittleEndian.AppendUint16(b, p.EndPort)
			}
			h.Write(b)
		}
	}
	var out [sha256.Size]byte
	h.Sum(out[:0])
	return out
}

func flag(b bool) byte {
	if b {
		return 1
	}
	return 0
}

// resetRuleCounters deletes the per-rule counters of the endpoints.
func (d *Datapath) resetRuleCounters(ids ...uint32) {
	if len(ids) == 0 {
		return
	}
	want := map[uint32]bool{}
	for _, id := range ids {
		want[id] = true
		want[id|meshBit] = true
	}
	var k lxcRuleMetricsKey
	var v []uint64
	var del []lxcRuleMetricsKey
	it := d.objs.FpRuleMetrics.Iterate()
	for it.Next(&k, &v) {
		if want[k.EpId] {
			del = append(del, k)
		}
	}
	for _, key := range del {
		_ = d.objs.FpRuleMetrics.Delete(key)
	}
}

// RuleCounters reads the per-rule counters of endpoint id (both layers).
func (d *Datapath) ruleCounters(id uint32) ([]RuleCounter, error) {
	var out []RuleCounter
	var k lxcRuleMetricsKey
	var v []uint64
	it := d.objs.FpRuleMetrics.Iterate()
	for it.Next(&k, &v) {
		if k.EpId&^meshBit != id {
			continue
		}
		c := RuleCounter{Layer: "network", Direction: model.Direction(k.RuleId >> 30).String(), Rule: int(k.RuleId & (1<<30 - 1))}
		if k.EpId&meshBit != 0 {
			c.Layer = "mesh"
		}
		for _, n := range v {
			c.Connections += n
		}
		out = append(out, c)
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("read rule counters: %w", err)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Layer != b.Layer {
			return a.Layer > b.Layer
		}
		if a.Direction != b.Direction {
			return a.Direction < b.Direction
		}
		return a.Rule < b.Rule
	})
	return out, nil
}
