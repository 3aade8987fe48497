package maglev

import (
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"strings"
)

// DefaultTableSize is the table size M used when Options.TableSize is 0.
//
// It is prime, and at least 100 times the number of backends for up to 163
// backends, which keeps every backend's share within 1% of even.
const DefaultTableSize = 16381

// MaxTableSize is the largest Options.TableSize accepted (1<<24). The largest
// usable size is the largest prime below it, 16777213.
const MaxTableSize = 1 << 24

// Backend is one destination that slots of the table are assigned to.
type Backend struct {
	// Name identifies the backend stably across agent restarts and table
	// rebuilds, for example "10.0.0.5:8080". The backend's preference list
	// (its permutation of the slots) is derived from Name and Options.Seed
	// only, so a backend keeps most of its slots when other backends come
	// and go.
	//
	// Must be non-empty and unique among the backends of one table.
	Name string

	// Weight is the backend's relative share of the table. A backend with
	// weight w gets about w/sum(weights) of the slots; a share that comes
	// to less than one slot may be no slot at all.
	//
	// 0 means 1. The weights of all backends of a table must add up to at
	// most math.MaxUint32.
	Weight uint32
}

// Options control how Table builds a table.
//
// The zero value is valid and uses the defaults.
type Options struct {
	// TableSize is the number of slots M. It must be prime, at least 2,
	// larger than the number of backends and at most MaxTableSize. For
	// shares within 1% of the weights it should be at least 100 times the
	// number of backends; NextPrime helps to pick one.
	//
	// 0 means DefaultTableSize.
	TableSize uint32

	// Seed is mixed into the hash of every backend name, so that, for
	// example, each service gets different permutations for the same
	// backends. 0 is a valid seed and not replaced by another.
	Seed uint32
}

// Table returns the Maglev lookup table for backends: M entries (M is
// Options.TableSize, or DefaultTableSize), each the index in backends of the
// backend that the slot belongs to. A flow goes to the backend of slot
// hash(flow) % M.
//
// The table depends only on the backends' names and weights and on opts, not
// on the order of backends: reordering the slice changes the indices but not
// which name each slot belongs to. Backends are processed sorted by name.
//
// It returns an error if backends is empty, has an empty or duplicate Name,
// or weights that add up to more than math.MaxUint32, or if
// Options.TableSize is not prime, not larger than len(backends) or larger
// than MaxTableSize.
func Table(backends []Backend, opts Options) ([]uint32, error) {
	m := opts.TableSize
	if m == 0 {
		m = DefaultTableSize
	}
	if m > MaxTableSize {
		return nil, fmt.Errorf("maglev: Options.TableSize %d is too large (maximum %d)", m, MaxTableSize)
	}
	if !IsPrime(m) {
		return nil, fmt.Errorf("maglev: Options.TableSize %d is not prime (next prime is %d)", m, NextPrime(m))
	}
	if len(backends) == 0 {
		return nil, fmt.Errorf("maglev: no backends")
	}
	if uint64(len(backends)) >= uint64(m) {
		return nil, fmt.Errorf("maglev: Options.TableSize %d must be larger than the number of backends (%d)", m, len(backends))
	}

	n := len(backends)
	// order[k] is the caller's index of the k-th backend by name.
	order := make([]uint32, n)
	var total uint64
	for i, b := range backends {
		if b.Name == "" {
			return nil, fmt.Errorf("maglev: backends[%d].Name is empty", i)
		}
		total += uint64(weight(b))
		order[i] = uint32(i)
	}
	if total > math.MaxUint32 {
		return nil, fmt.Errorf("maglev: total Weight of backends is %d, which overflows uint32", total)
	}
	// Stable, so that duplicates are reported by their first two indices.
	slices.SortStableFunc(order, func(a, b uint32) int {
		return strings.Compare(backends[a].Name, backends[b].Name)
	})
	for k := 1; k < n; k++ {
		if a, b := order[k-1], order[k]; backends[a].Name == backends[b].Name {
			return nil, fmt.Errorf("maglev: duplicate backend Name %q (backends[%d] and backends[%d])", backends[a].Name, a, b)
		}
	}

	// Per backend, in name order: its weight, and the next slot of its
	// permutation to look at and the step through the permutation.
	w := make([]uint64, n)
	f := filler{
		table: make([]uint32, m),
		next:  make([]uint32, n),
		skip:  make([]uint32, n),
		m:     m,
	}
	equal := true
	for k, i := range order {
		w[k] = uint64(weight(backends[i]))
		equal = equal && w[k] == w[0]
		f.next[k], f.skip[k] = permutation(backends[i].Name, opts.Seed, m)
	}
	for c := range f.table {
		f.table[c] = empty
	}

	if equal {
		// The paper's round robin, in name order.
		for filled := uint32(0); filled < m; {
			for k := 0; k < n && filled < m; k++ {
				f.claim(uint32(k))
				filled++
			}
		}
	} else {
		fillWeighted(&f, w, total)
	}

	table := f.table
	for c, k := range table {
		table[c] = order[k]
	}
	return table, nil
}

// quotas returns how many slots of m each backend gets: its exact share
// m*w[k]/total rounded down, plus one for the m - sum(rounded down) backends
// with the largest remainders, ties to the first by name (Hamilton's
// method). Every quota is thus less than one slot off the exact share, and
// with equal weights the first m%n backends get one more, as in the paper's
// round robin.
func quotas(w []uint64, total uint64, m uint32) []uint64 {
	n := len(w)
	quota := make([]uint64, n)
	rem := make([]uint64, n)
	left := uint64(m)
	for k := range w {
		// m < 2^24 and w < 2^32: no overflow.
		quota[k] = uint64(m) * w[k] / total
		rem[k] = uint64(m) * w[k] % total
		left -= quota[k]
	}
	if left == 0 {
		return quota
	}
	byRem := make([]int, n)
	for k := range byRem {
		byRem[k] = k
	}
	slices.SortStableFunc(byRem, func(a, b int) int { return cmp.Compare(rem[b], rem[a]) })
	for _, k := range byRem[:left] {
		quota[k]++
	}
	return quota
}

func weight(b Backend) uint32 {
	if b.Weight == 0 {
		return 1
	}
	return b.Weight
}

// permutation returns the offset and skip that define the backend's
// preference list offset, offset+skip, offset+2*skip, ... (mod m): offset in
// [0, m-1] and skip in [1, m-1], from two independent 64-bit hashes of the
// seed and name (the first two 64-bit words of their SHA-256 digest), which
// are the same in every process and on every architecture.
func permutation(name string, seed uint32, m uint32) (offset, skip uint32) {
	h := sha256.New()
	var s [4]byte
	binary.BigEndian.PutUint32(s[:], seed)
	h.Write(s[:])
	h.Write([]byte(name))
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	h1 := binary.BigEndian.Uint64(sum[0:8])
	h2 := binary.BigEndian.Uint64(sum[8:16])
	return uint32(h1 % uint64(m)), uint32(h2%uint64(m-1)) + 1
}

// empty marks a slot not claimed yet.
const empty = math.MaxUint32

// filler fills a table from the backends' permutations.
type filler struct {
	// table maps slots to backends (by index in name order) or empty.
	table []uint32
	// next is the slot of each backend's permutation to look at next,
	// skip the step through the permutation.
	next, skip []uint32
	m          uint32
}

// claim gives backend k its most preferred slot not claimed yet. There must
// be one left.
func (f *filler) claim(k uint32) {
	// skip is in [1, M-1] and M is prime, so the permutation visits every
	// slot and an empty one is found while any is left.
	c, skip := f.next[k], f.skip[k]
	for f.table[c] != empty {
		c += skip
		if c >= f.m {
			c -= f.m
		}
	}
	f.table[c] = k
	c += skip
	if c >= f.m {
		c -= f.m
	}
	f.next[k] = c
}

// fillWeighted fills f's table by weighted round robin: the turn goes to
// the backend whose next claim is due earliest, claim number turns+1 being
// due at time (turns+1)/w, ties to the first by name, until the backend has
// its quota. With equal weights this is the paper's plain round robin.
func fillWeighted(f *filler, w []uint64, total uint64) {
	quota := quotas(w, total, f.m)
	d := dueHeap{w: w, turns: make([]uint64, len(w)), heap: make([]uint32, 0, len(w))}
	for k := range w {
		if quota[k] > 0 {
			d.heap = append(d.heap, uint32(k))
		}
	}
	for i := len(d.heap)/2 - 1; i >= 0; i-- {
		d.down(i)
	}
	// The quotas add up to M, so the heap is not empty before the table
	// is full.
	for range f.m {
		k := d.heap[0]
		f.claim(k)
		d.turns[k]++
		if d.turns[k] == quota[k] {
			last := len(d.heap) - 1
			d.heap[0] = d.heap[last]
			d.heap = d.heap[:last]
		}
		d.down(0)
	}
}

// dueHeap is a min-heap of backends (indices in name order) by when their
// next claim is due.
type dueHeap struct {
	heap     []uint32
	w, turns []uint64
}

// less reports whether backend a's next claim is due before b's:
// (turns[a]+1)/w[a] < (turns[b]+1)/w[b], or equal and a < b. There is no
// overflow since turns < 2^24 and w < 2^32.
func (d *dueHeap) less(a, b uint32) bool {
	x, y := (d.turns[a]+1)*d.w[b], (d.turns[b]+1)*d.w[a]
	return x < y || x == y && a < b
}

func (d *dueHeap) down(i int) {
	h := d.heap
	for {
		l := 2*i + 1
		if l >= len(h) {
			return
		}
		j := l
		if r := l + 1; r < len(h) && d.less(h[r], h[l]) {
			j = r
		}
		if !d.less(h[j], h[i]) {
			return
		}
		h[i], h[j] = h[j], h[i]
		i = j
	}
}

// IsPrime reports whether n is prime.
func IsPrime(n uint32) bool {
	if n < 4 {
		return n >= 2
	}
	if n%2 == 0 || n%3 == 0 {
		return false
	}
	for d := uint64(5); d*d <= uint64(n); d += 6 {
		if uint64(n)%d == 0 || uint64(n)%(d+2) == 0 {
			return false
		}
	}
	return true
}

// NextPrime returns the smallest prime that is at least n, so n itself if it
// is prime, or 0 if there is none below 1<<32 (n > 4294967291).
func NextPrime(n uint32) uint32 {
	if n <= 2 {
		return 2
	}
	for p := uint64(n | 1); p <= math.MaxUint32; p += 2 {
		if IsPrime(uint32(p)) {
			return uint32(p)
		}
	}
	return 0
}
