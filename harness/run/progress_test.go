package run

import (
	"testing"
	"time"
)

// fakeClock is a clock that moves only when told.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }

func TestProgress(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)}
	p := newProgress(2, 2, 3, clock.now)
	if p.total != 12 {
		t.Fatalf("total %d, want 2 scenarios × 2 datapaths × 3 repetitions", p.total)
	}

	clock.advance(5 * time.Second) // building the cluster, starting agents
	if got, want := p.begin("same-node", "none", 1),
		"[1/12] scenario same-node, datapath none, repetition 1/3 — elapsed 5s"; got != want {
		t.Errorf("first step:\n got %q\nwant %q", got, want)
	}
	clock.advance(10 * time.Second)
	p.done()
	p.done() // no step running: ignored

	clock.advance(2 * time.Second)
	// One step took 15s (from the start), 11 are left.
	if got, want := p.begin("cross-node", "none", 1),
		"[2/12] scenario cross-node, datapath none, repetition 1/3 — elapsed 17s, about 2m45s left"; got != want {
		t.Errorf("second step:\n got %q\nwant %q", got, want)
	}
	clock.advance(23 * time.Second)
	p.done()

	// Steps of 15s and 25s: a mean of 20s, 10 left.
	clock.advance(500 * time.Millisecond)
	if got, want := p.begin("same-node", "ebpf", 1),
		"[3/12] scenario same-node, datapath ebpf, repetition 1/3 — elapsed 41s, about 3m20s left"; got != want {
		t.Errorf("third step:\n got %q\nwant %q", got, want)
	}

	// begin without done ends the running step: 10s, a mean of 50s/3, 9
	// left.
	clock.advance(9500 * time.Millisecond)
	if got, want := p.begin("cross-node", "ebpf", 1),
		"[4/12] scenario cross-node, datapath ebpf, repetition 1/3 — elapsed 50s, about 2m30s left"; got != want {
		t.Errorf("fourth step:\n got %q\nwant %q", got, want)
	}
	if len(p.durations) != 3 || p.durations[0] != 15*time.Second || p.durations[1] != 25*time.Second || p.durations[2] != 10*time.Second {
		t.Errorf("durations %v, want [15s 25s 10s]", p.durations)
	}
}

func TestProgressLastStepAndOverrun(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)}
	p := newProgress(1, 1, 2, clock.now)
	p.begin("s", "none", 1)
	clock.advance(time.Minute + 12*time.Second)
	p.done()
	if got, want := p.begin("s", "none", 2),
		"[2/2] scenario s, datapath none, repetition 2/2 — elapsed 1m12s, about 1m12s left"; got != want {
		t.Errorf("last step:\n got %q\nwant %q", got, want)
	}
	clock.advance(time.Hour)
	p.done()
	// More steps than announced: no negative estimate.
	if got, want := p.begin("s", "none", 3),
		"[3/2] scenario s, datapath none, repetition 3/2 — elapsed 1h1m12s, about 0s left"; got != want {
		t.Errorf("overrun:\n got %q\nwant %q", got, want)
	}
}
