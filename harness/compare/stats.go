package compare

import (
	"math"
	"slices"
)

// exactMaxN is the largest sample size, per side, for which MannWhitney
// computes the exact distribution of U (when there are no ties).
const exactMaxN = 20

// median returns the median of vs (the mean of the middle two for an even
// count) without changing vs; NaN for none.
func median(vs []float64) float64 {
	if len(vs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	return sortedMedian(s)
}

// sortedMedian is median for sorted s (not empty).
func sortedMedian(s []float64) float64 {
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// relChange is the relative change from old to new in percent. From 0 it
// is 0 to 0 and ±Inf to anything else.
func relChange(old, new float64) float64 {
	switch {
	case old == new:
		return 0
	case old == 0:
		return math.Copysign(math.Inf(1), new)
	}
	return (new - old) / math.Abs(old) * 100
}

// MannWhitney returns the two-sided p-value of the Mann-Whitney U test
// (Wilcoxon rank-sum test) of samples x and y.
//
// Without ties and with at most 20 values on each side the p-value comes
// from the exact distribution of U: twice the smaller tail probability,
// at most 1. Otherwise it comes from the normal approximation with the
// tie correction of the variance and a continuity correction of 0.5 (as
// R's wilcox.test and SciPy's mannwhitneyu do by default). All values
// equal gives 1; an empty sample gives NaN.
func MannWhitney(x, y []float64) float64 {
	n1, n2 := len(x), len(y)
	if n1 == 0 || n2 == 0 {
		return math.NaN()
	}
	u, tieSum := uStatistic(x, y)
	if tieSum == 0 && n1 <= exactMaxN && n2 <= exactMaxN {
		return exactP(n1, n2, u)
	}
	n := float64(n1 + n2)
	mu := float64(n1*n2) / 2
	variance := float64(n1*n2) / 12 * ((n + 1) - tieSum/(n*(n-1)))
	if variance <= 0 {
		return 1
	}
	d := math.Abs(u-mu) - 0.5
	if d <= 0 {
		return 1
	}
	return math.Min(1, math.Erfc(d/math.Sqrt(variance)/math.Sqrt2))
}

// uStatistic returns U for x (the number of pairs in which the x value is
// larger, ties counting one half) and the tie term Σ(t³−t) over groups of
// t equal values in the pooled sample.
func uStatistic(x, y []float64) (u, tieSum float64) {
	type obs struct {
		v   float64
		inX bool
	}
	all := make([]obs, 0, len(x)+len(y))
	for _, v := range x {
		all = append(all, obs{v, true})
	}
	for _, v := range y {
		all = append(all, obs{v, false})
	}
	slices.SortStableFunc(all, func(a, b obs) int { return cmpFloat(a.v, b.v) })
	var rankSumX float64
	for i := 0; i < len(all); {
		j := i
		for j < len(all) && all[j].v == all[i].v {
			j++
		}
		// Values i..j-1 are tied: each gets the mean of ranks i+1..j.
		mid := float64(i+1+j) / 2
		for k := i; k < j; k++ {
			if all[k].inX {
				rankSumX += mid
			}
		}
		if t := float64(j - i); t > 1 {
			tieSum += t*t*t - t
		}
		i = j
	}
	n1 := float64(len(x))
	return rankSumX - n1*(n1+1)/2, tieSum
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// exactP is the exact two-sided p-value of U = u (an integer here, there
// being no ties) for samples of n1 and n2 values.
func exactP(n1, n2 int, u float64) float64 {
	counts := uCounts(n1, n2)
	var total float64
	for _, c := range counts {
		total += c
	}
	// U is symmetric about n1·n2/2: take the tail u is in.
	k := int(math.Round(math.Min(u, float64(n1*n2)-u)))
	var tail float64
	for i := 0; i <= k; i++ {
		tail += counts[i]
	}
	return math.Min(1, 2*tail/total)
}

// uCounts returns, for u = 0..n1·n2, the number of orderings of n1 x and
// n2 y values (no ties) in which U for x is u. It uses the recurrence
// f(m, n, u) = f(m−1, n, u−n) + f(m, n−1, u): the largest value is either
// an x (larger than all n y values) or a y. The counts stay below
// C(40, 20) < 2⁵³, so float64 holds them exactly.
func uCounts(n1, n2 int) []float64 {
	// f[n] holds f(m, n, ·) for the current m.
	f := make([][]float64, n2+1)
	for n := range f {
		f[n] = []float64{1} // m = 0: one ordering, U = 0
	}
	for m := 1; m <= n1; m++ {
		g := make([][]float64, n2+1)
		for n := 0; n <= n2; n++ {
			g[n] = make([]float64, m*n+1)
			for u := range g[n] {
				if u-n >= 0 && u-n < len(f[n]) {
					g[n][u] += f[n][u-n]
				}
				if n > 0 && u < len(g[n-1]) {
					g[n][u] += g[n-1][u]
				}
			}
		}
		f = g
	}
	return f[n2]
}

// rng is splitmix64: tiny, and its output for a seed never changes, so
// bootstrap intervals are the same on every Go version.
type rng struct{ state uint64 }

func (r *rng) next() uint64 {
	r.state += 0x9e3779b97f4a7c15
	z := r.state
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// intn returns a uniform integer in [0, n) (n > 0), by rejection so that
// no value is favoured.
func (r *rng) intn(n int) int {
	limit := math.MaxUint64 - math.MaxUint64%uint64(n)
	for {
		if v := r.next(); v < limit {
			return int(v % uint64(n))
		}
	}
}

// bootstrapCI returns the percentile bootstrap interval, at confidence
// 1−alpha, of the relative change in percent from the median of old to the
// median of new: each of resamples rounds draws len(old) values from old
// and len(new) from new, with replacement and independently, and computes
// relChange of the two medians. Both samples must be non-empty.
func bootstrapCI(old, new []float64, resamples int, alpha float64, seed uint64) (lo, hi float64) {
	r := &rng{state: seed}
	changes := make([]float64, resamples)
	so := make([]float64, len(old))
	sn := make([]float64, len(new))
	for b := range changes {
		for i := range so {
			so[i] = old[r.intn(len(old))]
		}
		for i := range sn {
			sn[i] = new[r.intn(len(new))]
		}
		slices.Sort(so)
		slices.Sort(sn)
		changes[b] = relChange(sortedMedian(so), sortedMedian(sn))
	}
	slices.Sort(changes)
	return quantile(changes, alpha/2), quantile(changes, 1-alpha/2)
}

// quantile returns the q-quantile of sorted s, interpolating linearly
// between order statistics (R's type 7).
func quantile(s []float64, q float64) float64 {
	h := q * float64(len(s)-1)
	i := int(math.Floor(h))
	if i >= len(s)-1 {
		return s[len(s)-1]
	}
	a, b := s[i], s[i+1]
	if a == b { // also keeps ±Inf from turning into NaN
		return a
	}
	if math.IsInf(a, 0) || math.IsInf(b, 0) {
		if h-float64(i) < 0.5 {
			return a
		}
		return b
	}
	return a + (h-float64(i))*(b-a)
}
