package maglev

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math"
	"math/big"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"testing"
)

// backendsN returns n backends with distinct, address-like names.
func backendsN(n int) []Backend {
	bs := make([]Backend, n)
	for i := range bs {
		bs[i] = Backend{Name: fmt.Sprintf("10.0.%d.%d:8080", i/250, i%250+1)}
	}
	return bs
}

func mustTable(t testing.TB, bs []Backend, opts Options) []uint32 {
	t.Helper()
	table, err := Table(bs, opts)
	if err != nil {
		t.Fatalf("Table: %v", err)
	}
	m := opts.TableSize
	if m == 0 {
		m = DefaultTableSize
	}
	if len(table) != int(m) {
		t.Fatalf("table has %d entries, want %d", len(table), m)
	}
	for c, i := range table {
		if int(i) >= len(bs) {
			t.Fatalf("table[%d] = %d, not an index into %d backends", c, i, len(bs))
		}
	}
	return table
}

// slotNames maps the table to the backend name of every slot.
func slotNames(table []uint32, bs []Backend) []string {
	names := make([]string, len(table))
	for c, i := range table {
		names[c] = bs[i].Name
	}
	return names
}

func counts(table []uint32, n int) []int {
	cs := make([]int, n)
	for _, i := range table {
		cs[i]++
	}
	return cs
}

// checkShares checks that every backend's count is within 1% (relative) of
// its weight-proportional share and returns the largest relative deviation.
func checkShares(t *testing.T, table []uint32, bs []Backend) float64 {
	t.Helper()
	var total float64
	for _, b := range bs {
		total += float64(weight(b))
	}
	worst := 0.0
	for i, c := range counts(table, len(bs)) {
		want := float64(len(table)) * float64(weight(bs[i])) / total
		dev := math.Abs(float64(c)-want) / want
		if dev > 0.01 {
			t.Errorf("backend %q (weight %d) has %d of %d slots, want %.1f±1%%", bs[i].Name, weight(bs[i]), c, len(table), want)
		}
		worst = max(worst, dev)
	}
	return worst
}

func TestEvenness(t *testing.T) {
	for _, tc := range []struct {
		n int
		m uint32
	}{
		{2, DefaultTableSize}, {3, DefaultTableSize}, {10, DefaultTableSize},
		{100, NextPrime(100 * 100)},
	} {
		n, m := tc.n, tc.m
		t.Run(fmt.Sprintf("N=%d/M=%d", n, m), func(t *testing.T) {
			bs := backendsN(n)
			for _, seed := range []uint32{0, 1, 0xdeadbeef} {
				table := mustTable(t, bs, Options{TableSize: m, Seed: seed})
				worst := checkShares(t, table, bs)
				t.Logf("seed %#x: worst relative deviation from M/N %.4f%%", seed, 100*worst)
			}
		})
	}
}

func TestWeights(t *testing.T) {
	bs := []Backend{
		{Name: "a", Weight: 1},
		{Name: "b", Weight: 2},
		{Name: "c", Weight: 3},
	}
	table := mustTable(t, bs, Options{})
	worst := checkShares(t, table, bs)
	t.Logf("weights 1,2,3: counts %v, worst relative deviation %.4f%%", counts(table, len(bs)), 100*worst)

	// Only the ratios of the weights matter.
	scaled := slices.Clone(bs)
	for i := range scaled {
		scaled[i].Weight *= 1000
	}
	if !slices.Equal(table, mustTable(t, scaled, Options{})) {
		t.Error("weights 1000,2000,3000 give a different table than 1,2,3")
	}

	// Weight 0 means 1.
	zero := backendsN(5)
	one := backendsN(5)
	for i := range one {
		one[i].Weight = 1
	}
	if !slices.Equal(mustTable(t, zero, Options{}), mustTable(t, one, Options{})) {
		t.Error("weight 0 gives a different table than weight 1")
	}

	// Many different weights, and extreme ones.
	many := backendsN(20)
	for i := range many {
		many[i].Weight = uint32(i + 1)
	}
	table = mustTable(t, many, Options{TableSize: NextPrime(100 * 210)})
	worst = checkShares(t, table, many)
	t.Logf("weights 1..20, M=%d: worst relative deviation %.4f%%", len(table), 100*worst)

	// One heavy backend among many light ones: the weighted round robin
	// alone would give the heavy one up to N/2 slots too many, depending
	// on where in a round the table fills up; the quotas keep every
	// backend within one slot of its exact share.
	skewed := backendsN(64)
	skewed[17].Weight = 63
	for _, m := range []uint32{1009, 2003, 4001, DefaultTableSize} {
		table := mustTable(t, skewed, Options{TableSize: m})
		for i, c := range counts(table, len(skewed)) {
			want := float64(m) * float64(weight(skewed[i])) / 126
			if math.Abs(float64(c)-want) >= 1 {
				t.Errorf("M=%d: backend %d (weight %d) has %d slots, want %.2f rounded", m, i, weight(skewed[i]), c, want)
			}
		}
	}

	big := []Backend{{Name: "x", Weight: 1 << 31}, {Name: "y", Weight: 1<<31 - 1}}
	table = mustTable(t, big, Options{})
	checkShares(t, table, big)
}

// referenceTable is the population of the paper's Pseudocode 1 for equal
// weights, with the permutation table spelled out: backends in name order
// take turns, each claiming its most preferred empty slot.
func referenceTable(bs []Backend, seed, m uint32) []uint32 {
	order := make([]int, len(bs))
	for i := range order {
		order[i] = i
	}
	sort.Slice(order, func(a, b int) bool { return bs[order[a]].Name < bs[order[b]].Name })
	n := len(bs)
	perm := make([][]uint32, n)
	for k, i := range order {
		offset, skip := permutation(bs[i].Name, seed, m)
		perm[k] = make([]uint32, m)
		for j := range perm[k] {
			perm[k][j] = uint32((uint64(offset) + uint64(j)*uint64(skip)) % uint64(m))
		}
	}
	next := make([]int, n)
	entry := make([]int, m)
	for c := range entry {
		entry[c] = -1
	}
	filled := 0
	for {
		for k := range n {
			c := perm[k][next[k]]
			for entry[c] >= 0 {
				next[k]++
				c = perm[k][next[k]]
			}
			entry[c] = order[k]
			next[k]++
			filled++
			if filled == int(m) {
				table := make([]uint32, m)
				for c, i := range entry {
					table[c] = uint32(i)
				}
				return table
			}
		}
	}
}

func TestMatchesPaper(t *testing.T) {
	for _, tc := range []struct{ n, m uint32 }{
		{1, 2}, {2, 3}, {3, 7}, {5, 31}, {13, 251}, {10, 16381}, {100, 10007},
	} {
		bs := backendsN(int(tc.n))
		// Not in name order, to check the mapping back to the
		// caller's indices.
		slices.Reverse(bs)
		for _, seed := range []uint32{0, 42} {
			got := mustTable(t, bs, Options{TableSize: tc.m, Seed: seed})
			want := referenceTable(bs, seed, tc.m)
			if !slices.Equal(got, want) {
				t.Errorf("N=%d M=%d seed %d: table differs from the paper's algorithm", tc.n, tc.m, seed)
			}
		}
	}
}

// referenceWeighted is the weighted population spelled out: quotas by
// largest remainder computed with big rationals, and for every turn a scan
// for the backend short of its quota whose next claim is due first.
func referenceWeighted(bs []Backend, seed, m uint32) []uint32 {
	order := make([]int, len(bs))
	for i := range order {
		order[i] = i
	}
	sort.Slice(order, func(a, b int) bool { return bs[order[a]].Name < bs[order[b]].Name })
	n := len(bs)
	total := new(big.Int)
	for _, b := range bs {
		total.Add(total, big.NewInt(int64(weight(b))))
	}
	quota := make([]int64, n)
	rem := make([]*big.Rat, n)
	left := int64(m)
	for k, i := range order {
		share := new(big.Rat).SetFrac(big.NewInt(int64(m)*int64(weight(bs[i]))), total)
		q := new(big.Int).Quo(share.Num(), share.Denom())
		quota[k] = q.Int64()
		rem[k] = new(big.Rat).Sub(share, new(big.Rat).SetInt(q))
		left -= quota[k]
	}
	for ; left > 0; left-- {
		best := -1
		for k := range n {
			if rem[k] != nil && (best < 0 || rem[k].Cmp(rem[best]) > 0) {
				best = k
			}
		}
		quota[best]++
		rem[best] = nil
	}

	offset := make([]uint32, n)
	skip := make([]uint32, n)
	next := make([]uint32, n)
	for k, i := range order {
		offset[k], skip[k] = permutation(bs[i].Name, seed, m)
	}
	turns := make([]int64, n)
	entry := make([]int, m)
	for c := range entry {
		entry[c] = -1
	}
	for range m {
		best := -1
		for k := range n {
			if turns[k] == quota[k] {
				continue
			}
			// Due at (turns+1)/w.
			if best < 0 || new(big.Rat).SetFrac64(turns[k]+1, int64(weight(bs[order[k]]))).Cmp(
				new(big.Rat).SetFrac64(turns[best]+1, int64(weight(bs[order[best]])))) < 0 {
				best = k
			}
		}
		for {
			c := (uint64(offset[best]) + uint64(next[best])*uint64(skip[best])) % uint64(m)
			next[best]++
			if entry[c] < 0 {
				entry[c] = order[best]
				break
			}
		}
		turns[best]++
	}
	table := make([]uint32, m)
	for c, i := range entry {
		table[c] = uint32(i)
	}
	return table
}

func TestMatchesWeightedReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, tc := range []struct {
		name    string
		weights []uint32
		m       uint32
	}{
		{"1,2,3", []uint32{1, 2, 3}, 1009},
		{"1,2,3 default M", []uint32{1, 2, 3}, DefaultTableSize},
		{"zero and one", []uint32{0, 1, 1, 0, 2}, 101},
		{"skewed", append(slices.Repeat([]uint32{1}, 63), 63), 2003},
		{"share below one slot", []uint32{1, 1, 100000, 5}, 211},
		{"huge", []uint32{1 << 31, 1<<31 - 2, 1}, 1009},
		{"random small", nil, 4001},
		{"random large", nil, 20011},
	} {
		t.Run(tc.name, func(t *testing.T) {
			weights := tc.weights
			if weights == nil {
				weights = make([]uint32, 50)
				for i := range weights {
					weights[i] = rng.Uint32N(1000)
				}
			}
			bs := backendsN(len(weights))
			for i := range bs {
				bs[i].Weight = weights[i]
			}
			rng.Shuffle(len(bs), func(i, j int) { bs[i], bs[j] = bs[j], bs[i] })
			got := mustTable(t, bs, Options{TableSize: tc.m, Seed: 77})
			if want := referenceWeighted(bs, 77, tc.m); !slices.Equal(got, want) {
				t.Errorf("table differs from the reference: counts %v, want %v", counts(got, len(bs)), counts(want, len(bs)))
			}
		})
	}
	// With equal weights, the weighted population is the paper's.
	bs := backendsN(13)
	if !slices.Equal(referenceWeighted(bs, 1, 251), referenceTable(bs, 1, 251)) {
		t.Error("weighted reference with equal weights differs from the paper's")
	}
}

func TestPermutation(t *testing.T) {
	// offset in [0, M-1] and skip in [1, M-1], also for the smallest M.
	for _, m := range []uint32{2, 3, 5, 16381} {
		for i := range 200 {
			offset, skip := permutation(fmt.Sprint(i), 7, m)
			if offset >= m || skip < 1 || skip >= m {
				t.Fatalf("M=%d: offset %d, skip %d", m, offset, skip)
			}
		}
	}
	// The seed changes both hashes.
	o0, s0 := permutation("10.0.0.1:80", 0, 16381)
	o1, s1 := permutation("10.0.0.1:80", 1, 16381)
	if o0 == o1 || s0 == s1 {
		t.Errorf("seed 0: (%d, %d), seed 1: (%d, %d)", o0, s0, o1, s1)
	}
}

// changed counts the slots whose backend name differs.
func changed(a, b []string) int {
	n := 0
	for c := range a {
		if a[c] != b[c] {
			n++
		}
	}
	return n
}

// disruption tracks the changed fractions of a series of table changes.
type disruption struct {
	n                      int
	total, other           float64 // sums
	worstTotal, worstOther float64
}

func (d *disruption) add(total, other float64) {
	d.n++
	d.total += total
	d.other += other
	d.worstTotal = max(d.worstTotal, total)
	d.worstOther = max(d.worstOther, other)
}

func (d *disruption) String() string {
	return fmt.Sprintf("changed mean %.4f worst %.4f, of which not forced by the change mean %.4f worst %.4f",
		d.total/float64(d.n), d.worstTotal, d.other/float64(d.n), d.worstOther)
}

// share is the weight-proportional fraction of the table of bs[i].
func share(bs []Backend, i int) float64 {
	var total float64
	for _, b := range bs {
		total += float64(weight(b))
	}
	return float64(weight(bs[i])) / total
}

// checkRemove removes every backend in turn and checks that the slots that
// change are about those of the removed backend: at least its share less
// one slot (all its slots must move), at most 3% more, and slots of the
// remaining backends that move less than 2% of M.
func checkRemove(t *testing.T, bs []Backend, seed, m uint32, d *disruption) {
	t.Helper()
	before := slotNames(mustTable(t, bs, Options{TableSize: m, Seed: seed}), bs)
	for r := range bs {
		rest := slices.Delete(slices.Clone(bs), r, r+1)
		after := slotNames(mustTable(t, rest, Options{TableSize: m, Seed: seed}), rest)
		removed, total := 0, changed(before, after)
		for c := range before {
			if before[c] == bs[r].Name {
				removed++
			}
		}
		frac, other := float64(total)/float64(m), float64(total-removed)/float64(m)
		if want := share(bs, r); frac < want-1/float64(m) || frac > want+0.03 {
			t.Errorf("seed %d, removing %q (weight %d): %.4f of slots changed, want about %.4f", seed, bs[r].Name, weight(bs[r]), frac, want)
		}
		if other >= 0.02 {
			t.Errorf("seed %d, removing %q: %.4f of the slots of remaining backends changed, want < 0.02", seed, bs[r].Name, other)
		}
		d.add(frac, other)
	}
}

// checkAdd adds backends one at a time (each to the original set) and
// checks that the slots that change are about those the new backend gets:
// at least its share less one slot, at most 3% more, and slots that move
// between old backends less than 2% of M.
func checkAdd(t *testing.T, bs []Backend, seed, m uint32, d *disruption) {
	t.Helper()
	before := slotNames(mustTable(t, bs, Options{TableSize: m, Seed: seed}), bs)
	for k := range 10 {
		added := Backend{Name: fmt.Sprintf("10.1.0.%d:8080", k+1), Weight: bs[k%len(bs)].Weight}
		more := append(slices.Clone(bs), added)
		after := slotNames(mustTable(t, more, Options{TableSize: m, Seed: seed}), more)
		total, toNew := changed(before, after), 0
		for c := range after {
			if after[c] == added.Name {
				toNew++
			}
		}
		frac, other := float64(total)/float64(m), float64(total-toNew)/float64(m)
		if want := share(more, len(more)-1); frac < want-1/float64(m) || frac > want+0.03 {
			t.Errorf("seed %d, adding %q (weight %d): %.4f of slots changed, want about %.4f", seed, added.Name, weight(added), frac, want)
		}
		if other >= 0.02 {
			t.Errorf("seed %d, adding %q: %.4f of slots moved between old backends, want < 0.02", seed, added.Name, other)
		}
		d.add(frac, other)
	}
}

func TestDisruptionRemove(t *testing.T) {
	const n, m = 10, DefaultTableSize
	var d disruption
	for seed := range uint32(5) {
		checkRemove(t, backendsN(n), seed, m, &d)
	}
	t.Logf("remove 1 of %d, M=%d (1/N = %.4f): %v", n, m, 1.0/n, &d)
}

func TestDisruptionAdd(t *testing.T) {
	const n, m = 10, DefaultTableSize
	var d disruption
	for seed := range uint32(5) {
		checkAdd(t, backendsN(n), seed, m, &d)
	}
	t.Logf("add 1 to %d, M=%d (1/(N+1) = %.4f): %v", n, m, 1.0/(n+1), &d)
}

func TestDisruptionWeighted(t *testing.T) {
	const n, m = 10, DefaultTableSize
	bs := backendsN(n)
	for i := range bs {
		bs[i].Weight = uint32(i%4 + 1)
	}
	var rm, add disruption
	for seed := range uint32(5) {
		checkRemove(t, bs, seed, m, &rm)
		checkAdd(t, bs, seed, m, &add)
	}
	t.Logf("weights 1..4, remove 1 of %d, M=%d: %v", n, m, &rm)
	t.Logf("weights 1..4, add 1 to %d, M=%d: %v", n, m, &add)

	// Changing one weight moves about the difference in share.
	var w disruption
	for seed := range uint32(5) {
		before := slotNames(mustTable(t, bs, Options{Seed: seed}), bs)
		for i := range bs {
			heavier := slices.Clone(bs)
			heavier[i].Weight++
			after := slotNames(mustTable(t, heavier, Options{Seed: seed}), heavier)
			frac := float64(changed(before, after)) / m
			want := share(heavier, i) - share(bs, i)
			if frac < want-1.0/m || frac > want+0.03 {
				t.Errorf("seed %d, weight of %q from %d to %d: %.4f of slots changed, want about %.4f", seed, bs[i].Name, bs[i].Weight, heavier[i].Weight, frac, want)
			}
			w.add(frac, frac-want)
		}
	}
	t.Logf("weights 1..4, one weight +1, M=%d: changed mean %.4f worst %.4f, more than the change in share mean %.4f worst %.4f",
		m, w.total/float64(w.n), w.worstTotal, w.other/float64(w.n), w.worstOther)
}

func TestDisruptionMany(t *testing.T) {
	// N=100 with the default M, about 164 slots per backend: the paper
	// notes that disruption grows as M/N shrinks.
	const n, m = 100, DefaultTableSize
	bs := backendsN(n)
	var rm, add disruption
	checkRemove(t, bs, 0, m, &rm)
	checkAdd(t, bs, 0, m, &add)
	t.Logf("remove 1 of %d, M=%d (1/N = %.4f): %v", n, m, 1.0/n, &rm)
	t.Logf("add 1 to %d, M=%d (1/(N+1) = %.4f): %v", n, m, 1.0/(n+1), &add)
}

func TestDeterminism(t *testing.T) {
	bs := backendsN(37)
	for i := range bs {
		bs[i].Weight = uint32(i%4 + 1)
	}
	table := mustTable(t, bs, Options{Seed: 9})
	if !slices.Equal(table, mustTable(t, bs, Options{Seed: 9})) {
		t.Fatal("same input gave different tables")
	}
	names := slotNames(table, bs)

	rng := rand.New(rand.NewPCG(1, 2))
	for range 5 {
		shuffled := slices.Clone(bs)
		rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		got := slotNames(mustTable(t, shuffled, Options{Seed: 9}), shuffled)
		if d := changed(names, got); d != 0 {
			t.Fatalf("shuffled backends: %d slots belong to another name", d)
		}
	}

	other := slotNames(mustTable(t, bs, Options{Seed: 10}), bs)
	d := changed(names, other)
	// Unrelated tables agree on about 1/N of the slots.
	if float64(d) < 0.5*float64(len(names)) {
		t.Errorf("seed 10 changed only %d of %d slots", d, len(names))
	}
}

// TestGolden pins the table for one input, so that a change of hashing or
// population, which would move most connections of every service on an
// agent upgrade, does not go unnoticed.
func TestGolden(t *testing.T) {
	bs := backendsN(7)
	bs[3].Weight = 3
	table := mustTable(t, bs, Options{TableSize: 1009, Seed: 5})
	h := sha256.New()
	for _, i := range table {
		binary.Write(h, binary.LittleEndian, i)
	}
	got := fmt.Sprintf("%x", h.Sum(nil))
	const want = "7baadf7d6754642d1adce5ea78bcec1102e78310a51a53b898169a5c4a422d75"
	if got != want {
		t.Errorf("table digest %s, want %s; first entries %v", got, want, table[:16])
	}
}

func TestErrors(t *testing.T) {
	three := backendsN(3)
	for _, tc := range []struct {
		name string
		bs   []Backend
		opts Options
		want string
	}{
		{"no backends", nil, Options{}, "no backends"},
		{"empty slice", []Backend{}, Options{}, "no backends"},
		{"empty name", []Backend{{Name: "a"}, {Name: ""}}, Options{}, "backends[1].Name is empty"},
		{"duplicate name", []Backend{{Name: "a"}, {Name: "b"}, {Name: "a"}}, Options{}, `duplicate backend Name "a" (backends[0] and backends[2])`},
		{"duplicate names", []Backend{{Name: "b"}, {Name: "x"}, {Name: "a"}, {Name: "x"}, {Name: "a"}, {Name: "x"}}, Options{}, `duplicate backend Name "a" (backends[2] and backends[4])`},
		{"not prime", three, Options{TableSize: 16380}, "Options.TableSize 16380 is not prime"},
		{"size 1", three, Options{TableSize: 1}, "Options.TableSize 1 is not prime"},
		{"size equal to backends", three, Options{TableSize: 3}, "Options.TableSize 3 must be larger than the number of backends (3)"},
		{"size below backends", three, Options{TableSize: 2}, "Options.TableSize 2 must be larger than the number of backends (3)"},
		{"too large", three, Options{TableSize: 16777259}, "Options.TableSize 16777259 is too large"},
		{"too large not prime", three, Options{TableSize: math.MaxUint32}, "is too large"},
		{"weight overflow", []Backend{{Name: "a", Weight: math.MaxUint32}, {Name: "b"}}, Options{}, "total Weight of backends is 4294967296, which overflows uint32"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			table, err := Table(tc.bs, tc.opts)
			if err == nil {
				t.Fatalf("no error, table of %d", len(table))
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not contain %q", err, tc.want)
			}
		})
	}

	// The limits themselves are fine.
	if table := mustTable(t, []Backend{{Name: "a"}}, Options{TableSize: 2}); !slices.Equal(table, []uint32{0, 0}) {
		t.Errorf("M=2: %v", table)
	}
	mustTable(t, []Backend{{Name: "a", Weight: math.MaxUint32}}, Options{TableSize: 3})
	mustTable(t, []Backend{{Name: "a", Weight: math.MaxUint32 - 1}, {Name: "b"}}, Options{TableSize: 3})
	if testing.Short() {
		return
	}
	mustTable(t, backendsN(2), Options{TableSize: 16777213})
}

func TestIsPrime(t *testing.T) {
	const limit = 200000
	composite := make([]bool, limit)
	composite[0], composite[1] = true, true
	for i := 2; i*i < limit; i++ {
		if !composite[i] {
			for j := i * i; j < limit; j += i {
				composite[j] = true
			}
		}
	}
	for n := range uint32(limit) {
		if IsPrime(n) != !composite[n] {
			t.Fatalf("IsPrime(%d) = %v", n, IsPrime(n))
		}
	}
	for n, want := range map[uint32]bool{
		4294967291: true, 4294967279: true, 4294967295: false, 4294967293: false,
		65521 * 65521: false, 65537 * 65521: false, 16777213: true, 16777216: false,
	} {
		if IsPrime(n) != want {
			t.Errorf("IsPrime(%d) = %v", n, !want)
		}
	}
}

func TestNextPrime(t *testing.T) {
	for n, want := range map[uint32]uint32{
		0: 2, 1: 2, 2: 2, 3: 3, 4: 5, 14: 17, 10000: 10007, 16381: 16381, 16382: 16411,
		100000: 100003, 1 << 24: 16777259, 4294967280: 4294967291, 4294967291: 4294967291,
		4294967292: 0, math.MaxUint32: 0,
	} {
		if got := NextPrime(n); got != want {
			t.Errorf("NextPrime(%d) = %d, want %d", n, got, want)
		}
	}
}

func FuzzTable(f *testing.F) {
	f.Add(uint16(3), uint32(0), uint16(7), []byte{1, 2, 3})
	f.Add(uint16(1), uint32(99), uint16(2), []byte{0})
	f.Add(uint16(40), uint32(1), uint16(5000), []byte{9, 0, 255, 4})
	f.Fuzz(func(t *testing.T, n uint16, seed uint32, size uint16, weights []byte) {
		n = n%64 + 1
		m := NextPrime(uint32(size)%20000 + uint32(n) + 1)
		bs := backendsN(int(n))
		for i := range bs {
			if len(weights) > 0 {
				bs[i].Weight = uint32(weights[i%len(weights)])
			}
		}
		table := mustTable(t, bs, Options{TableSize: m, Seed: seed})
		// Every backend gets its share rounded down or up.
		var total uint64
		for _, b := range bs {
			total += uint64(weight(b))
		}
		for i, c := range counts(table, len(bs)) {
			want := float64(m) * float64(weight(bs[i])) / float64(total)
			if math.Abs(float64(c)-want) >= 1 {
				t.Errorf("backend %d (weight %d): %d slots, want %.2f", i, weight(bs[i]), c, want)
			}
		}
		rev := slices.Clone(bs)
		slices.Reverse(rev)
		if changed(slotNames(table, bs), slotNames(mustTable(t, rev, Options{TableSize: m, Seed: seed}), rev)) != 0 {
			t.Error("reversed backends give another table")
		}
	})
}

func BenchmarkTable(b *testing.B) {
	for _, tc := range []struct {
		n, m     uint32
		weighted bool
	}{
		{100, DefaultTableSize, false},
		{1000, DefaultTableSize, false},
		{1000, NextPrime(100 * 1000), false},
		{100, DefaultTableSize, true},
		{1000, NextPrime(100 * 1000), true},
	} {
		bs := backendsN(int(tc.n))
		name := fmt.Sprintf("N=%d/M=%d", tc.n, tc.m)
		if tc.weighted {
			for i := range bs {
				bs[i].Weight = uint32(i%4 + 1)
			}
			name += "/weights=1..4"
		}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Table(bs, Options{TableSize: tc.m}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
