package run

import (
	"fmt"
	"time"
)

// progress follows the steps of a run, one measurement of a scenario on a
// datapath each, and describes each step as it begins: its number, what it
// measures, the time elapsed and an estimate of the time left.
//
// A step lasts from the end of the previous one (from the tracker's start
// for the first) to its own end, so the time spent between measurements,
// restarting agents for instance, counts in the estimate.
type progress struct {
	// now is the clock (time.Now; a fake one in tests).
	now func() time.Time
	// total is the number of steps of the run; reps the number of
	// repetitions.
	total, reps int
	// step is the number of steps begun.
	step int
	// started is when the tracker started, lastEnd when the last step
	// ended (started before the first).
	started, lastEnd time.Time
	// running says a step has begun and not ended.
	running bool
	// durations are the durations of the steps ended, in order.
	durations []time.Duration
}

// newProgress starts tracking a run of scenarios × datapaths × repetitions
// steps, reading the time from now.
func newProgress(scenarios, datapaths, repetitions int, now func() time.Time) *progress {
	t := now()
	return &progress{now: now, total: scenarios * datapaths * repetitions, reps: repetitions, started: t, lastEnd: t}
}

// begin starts the next step, ending the current one if it was not, and
// returns its line, e.g. "[7/24] scenario same-node, datapath ebpf,
// repetition 2/3 — elapsed 1m12s, about 2m40s left". The estimate is the
// mean duration of the steps ended so far times the steps not ended; it is
// left out before the first step ends.
func (p *progress) begin(scenario, datapath string, repetition int) string {
	if p.running {
		p.done()
	}
	p.step++
	p.running = true
	line := fmt.Sprintf("[%d/%d] scenario %s, datapath %s, repetition %d/%d — elapsed %s",
		p.step, p.total, scenario, datapath, repetition, p.reps, roundDuration(p.now().Sub(p.started)))
	if left, ok := p.remaining(); ok {
		line += fmt.Sprintf(", about %s left", roundDuration(left))
	}
	return line
}

// done ends the current step and records its duration; without a step
// running it does nothing.
func (p *progress) done() {
	if !p.running {
		return
	}
	t := p.now()
	p.durations = append(p.durations, t.Sub(p.lastEnd))
	p.lastEnd = t
	p.running = false
}

// remaining estimates the time the steps not yet ended will take from the
// mean duration of those ended; false before one has.
func (p *progress) remaining() (time.Duration, bool) {
	n := len(p.durations)
	if n == 0 {
		return 0, false
	}
	var sum time.Duration
	for _, d := range p.durations {
		sum += d
	}
	left := max(p.total-n, 0)
	return time.Duration(float64(sum) / float64(n) * float64(left)), true
}

// roundDuration rounds d to the second, and negative ones (a clock that
// went back) to 0.
func roundDuration(d time.Duration) time.Duration {
	return max(d, 0).Round(time.Second)
}
