package compare

import (
	"math"
	"slices"
	"testing"
)

func TestMannWhitney(t *testing.T) {
	seq := func(from, to float64) []float64 {
		var s []float64
		for v := from; v <= to; v++ {
			s = append(s, v)
		}
		return s
	}
	tests := []struct {
		name string
		x, y []float64
		want float64
	}{
		// Exact: 2 of the C(6,3) = 20 orderings are this extreme.
		{"3v3 separated", []float64{1, 2, 3}, []float64{4, 5, 6}, 0.1},
		{"3v3 separated, reversed", []float64{4, 5, 6}, []float64{1, 2, 3}, 0.1},
		{"3v3 separated, unsorted", []float64{3, 1, 2}, []float64{6, 4, 5}, 0.1},
		// Exact: 2/C(10,5) = 2/252.
		{"5v5 separated", seq(1, 5), seq(6, 10), 2.0 / 252},
		// Exact: U = 1; P(U <= 1) = 2/20.
		{"3v3 one swap", []float64{1, 2, 4}, []float64{3, 5, 6}, 0.2},
		// Exact: U = 4 of 9 is the middle of the distribution.
		{"3v3 interleaved", []float64{1, 3, 5}, []float64{2, 4, 6}, 0.7},
		{"1v1", []float64{1}, []float64{2}, 1},
		{"2v2 separated", []float64{1, 2}, []float64{3, 4}, 1.0 / 3},
		// Ties: normal approximation, W = 2.5, as R's wilcox.test.
		{"ties", []float64{1, 2, 2, 3}, []float64{2, 3, 4, 4}, 0.13416918012812581},
		{"identical samples", []float64{1, 2, 3}, []float64{1, 2, 3}, 1},
		{"all equal", []float64{5, 5, 5}, []float64{5, 5, 5}, 1},
		// 25 per side: normal approximation, z = 312/sqrt(2656.25).
		{"25v25 separated", seq(1, 25), seq(26, 50), math.Erfc(312 / math.Sqrt(2656.25) / math.Sqrt2)},
		{"empty", nil, []float64{1}, math.NaN()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := MannWhitney(tt.x, tt.y)
			if math.IsNaN(tt.want) {
				if !math.IsNaN(got) {
					t.Errorf("MannWhitney = %v, want NaN", got)
				}
				return
			}
			if math.Abs(got-tt.want) > 1e-12 {
				t.Errorf("MannWhitney = %.12g, want %.12g", got, tt.want)
			}
		})
	}
}

// TestUCounts checks the exact distribution: it sums to C(n1+n2, n1) and
// is symmetric.
func TestUCounts(t *testing.T) {
	binom := func(n, k int) float64 {
		r := 1.0
		for i := 1; i <= k; i++ {
			r = r * float64(n-k+i) / float64(i)
		}
		return math.Round(r)
	}
	for _, n := range [][2]int{{1, 1}, {3, 3}, {2, 5}, {7, 4}, {20, 20}} {
		c := uCounts(n[0], n[1])
		if len(c) != n[0]*n[1]+1 {
			t.Fatalf("%v: %d counts, want %d", n, len(c), n[0]*n[1]+1)
		}
		var sum float64
		for i, v := range c {
			sum += v
			if v != c[len(c)-1-i] {
				t.Errorf("%v: counts not symmetric at %d", n, i)
			}
		}
		if want := binom(n[0]+n[1], n[0]); sum != want {
			t.Errorf("%v: counts sum to %v, want %v", n, sum, want)
		}
	}
	if got, want := uCounts(3, 3), []float64{1, 1, 2, 3, 3, 3, 3, 2, 1, 1}; !slices.Equal(got, want) {
		t.Errorf("uCounts(3, 3) = %v, want %v", got, want)
	}
}

// TestExactMatchesNormal checks that at the largest exact size the exact
// p-value and the normal approximation agree closely.
func TestExactMatchesNormal(t *testing.T) {
	x := make([]float64, 20)
	y := make([]float64, 20)
	for i := range x {
		x[i] = float64(2 * i)
		y[i] = float64(2*i + 1)
		if i >= 15 {
			y[i] += 20
		}
	}
	exact := MannWhitney(x, y)
	u, _ := uStatistic(x, y)
	z := (math.Abs(u-200) - 0.5) / math.Sqrt(400.0/12*41)
	normal := math.Erfc(z / math.Sqrt2)
	if math.Abs(exact-normal) > 0.005 {
		t.Errorf("exact %v and normal %v disagree", exact, normal)
	}
}

func TestBootstrapCI(t *testing.T) {
	old := []float64{10.1, 9.8, 10.3, 9.9, 10.0, 10.2, 9.7}
	new := []float64{11.2, 11.0, 10.9, 11.4, 11.1, 10.8, 11.3}
	lo1, hi1 := bootstrapCI(old, new, 4000, 0.05, 1)
	lo2, hi2 := bootstrapCI(old, new, 4000, 0.05, 1)
	if lo1 != lo2 || hi1 != hi2 {
		t.Errorf("same seed, different intervals: [%v, %v] and [%v, %v]", lo1, hi1, lo2, hi2)
	}
	// With many distinct values, another seed gives another interval.
	r := &rng{state: 99}
	var a, b []float64
	for range 40 {
		a = append(a, 100+float64(r.intn(1000))/100)
		b = append(b, 102+float64(r.intn(1000))/100)
	}
	la, ha := bootstrapCI(a, b, 2000, 0.05, 1)
	lb, hb := bootstrapCI(a, b, 2000, 0.05, 2)
	if la == lb && ha == hb {
		t.Errorf("seeds 1 and 2 give the same interval [%v, %v]", la, ha)
	}
	point := relChange(median(old), median(new))
	if !(lo1 > 0 && lo1 <= point && point <= hi1) {
		t.Errorf("interval [%v, %v] should exclude 0 and hold the change %v", lo1, hi1, point)
	}
	// The most extreme ratios bound the interval.
	if lo1 < relChange(10.3, 10.8) || hi1 > relChange(9.7, 11.4) {
		t.Errorf("interval [%v, %v] outside the possible range", lo1, hi1)
	}
	if lo, hi := bootstrapCI([]float64{3, 3, 3}, []float64{3, 3, 3}, 2000, 0.05, 7); lo != 0 || hi != 0 {
		t.Errorf("constant samples: interval [%v, %v], want [0, 0]", lo, hi)
	}
	if lo, hi := bootstrapCI([]float64{0, 0, 0}, []float64{0.1, 0.2, 0.1}, 2000, 0.05, 7); !math.IsInf(lo, 1) || !math.IsInf(hi, 1) {
		t.Errorf("from 0: interval [%v, %v], want [+Inf, +Inf]", lo, hi)
	}
}

func TestRelChange(t *testing.T) {
	tests := []struct{ old, new, want float64 }{
		{100, 120, 20},
		{100, 80, -20},
		{0, 0, 0},
		{0, 0.1, math.Inf(1)},
		{5, 5, 0},
	}
	for _, tt := range tests {
		if got := relChange(tt.old, tt.new); math.Abs(got-tt.want) > 1e-9 && got != tt.want {
			t.Errorf("relChange(%v, %v) = %v, want %v", tt.old, tt.new, got, tt.want)
		}
	}
}

func TestQuantile(t *testing.T) {
	s := []float64{1, 2, 3, 4, 5}
	for _, tt := range []struct{ q, want float64 }{{0, 1}, {0.5, 3}, {1, 5}, {0.125, 1.5}} {
		if got := quantile(s, tt.q); got != tt.want {
			t.Errorf("quantile(%v) = %v, want %v", tt.q, got, tt.want)
		}
	}
	inf := []float64{1, math.Inf(1), math.Inf(1)}
	if got := quantile(inf, 0.9); !math.IsInf(got, 1) {
		t.Errorf("quantile with Inf = %v", got)
	}
}
