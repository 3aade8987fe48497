package lxc

import (
	"crypto/sha256"
	"encoding/hex"
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

func rulesDigest(ep *model.Endpoint) string {
	h := sha256.New()
	for _, rules := range [][]model.Rule{ep.Ingress, ep.Egress, ep.Mesh} {
		fmt.Fprintf(h, "%d|", len(rules))
		for _, r := range rules {
			fmt.Fprintf(h, "%s %v %v %v %v;", r.Policy, r.Deny, r.AnyPeer, r.Peers, r.Ports)
		}
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
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
