package lxc

import (
	"math/rand"
	"testing"

	"github.com/fastpath-bench/fastpath/datapath/model"
)

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

// TestMergeCoveringMatchesBruteForce checks the ancestor lookup against
// comparing every pair of keys.
func TestMergeCoveringMatchesBruteForce(t *testing.T) {
	rng := rand.New(rand.NewSource(3))
	for round := 0; round < 200; round++ {
		var in []PolicyEntry
		for i := rng.Intn(30); i >= 0; i-- {
			e := PolicyEntry{Identity: model.Identity(rng.Intn(3)), Direction: model.Ingress, Protocol: model.ProtoTCP, RuleID: uint32(i)}
			switch rng.Intn(6) {
			case 0:
				e.AnyProto = true
			case 1:
				e.AnyPort = true
			default:
				e.PortBits = uint8(10 + rng.Intn(7))
				e.Port = uint16(rng.Intn(2048)) & (uint16(0xffff) << (16 - e.PortBits))
			}
			switch rng.Intn(4) {
			case 0:
				e.Deny = true
			case 1:
				e.Allow, e.Proxy = true, true
			case 2:
				e.Proxy = true
			default:
				e.Allow = true
			}
			in = append(in, e)
		}
		got := mergeCovering(in)
		for _, g := range got {
			var want uint8
			for _, e := range in {
				if e.key() == g.key() || e.covers(g) {
					want |= e.action()
				}
			}
			if g.action() != want {
				t.Fatalf("round %d: key %+v has bits %b, want %b", round, g.key(), g.action(), want)
			}
		}
	}
}
