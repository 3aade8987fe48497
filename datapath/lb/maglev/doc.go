// Package maglev builds the lookup tables of Maglev consistent hashing
// (Eisenbud et al., "Maglev: A Fast and Reliable Software Network Load
// Balancer", NSDI 2016, section 3.4), for a load balancer that installs them
// into eBPF maps and picks a backend for a flow as table[hash(flow) % M].
// This package only computes tables; it has no eBPF and no state.
//
// # Algorithm
//
// Every backend has a preference list, a permutation of the M slots of the
// table: slot (offset + j*skip) mod M for j = 0, 1, ..., M-1, where
//
//	offset = h1 mod M
//	skip   = h2 mod (M-1) + 1
//
// and h1 and h2 are two independent 64-bit hashes of Options.Seed and
// Backend.Name: the first and second big-endian 64-bit words of
// SHA-256(seed as 4 big-endian bytes || name). Since M is prime and skip is
// in [1, M-1], the list visits every slot. SHA-256 is used for being in the
// standard library and the same in every process, on every architecture and
// in every Go release (hash/maphash is seeded per process), and mixes well
// without a hand-written finalizer; it is only computed once per backend.
//
// The backends, sorted by name, take turns; on its turn a backend claims the
// first slot of its preference list that is not claimed yet, until all M
// slots are claimed. With equal weights the turns go round robin, exactly as
// in the paper's Pseudocode 1 (the tests compare against a spelled-out copy
// of it). Sorting by name makes the table a function of the set of backends
// rather than of their order in the caller's slice, and deriving the
// preference lists from names only keeps a backend's slots mostly its own
// when other backends come or go.
//
// # Weights
//
// The paper mentions weighted backends without giving an algorithm. Here,
// with weights w and W = sum(w), backend i first gets a quota of slots:
// M*w_i/W rounded down, plus one for the backends with the largest
// remainders until the quotas add up to M (the largest remainder, or
// Hamilton, method; ties go to the first by name). The turns are then
// weighted round robin (stride scheduling): the turn goes to the backend,
// among those short of their quota, whose next claim is due first, claim k
// of backend i being due at time k/w_i, ties to the first by name. So
//
//   - every backend gets its exact share M*w_i/W rounded down or up: less
//     than one slot off, hence within 1% of it for every backend whose
//     share is at least 100 slots, which with equal weights means
//     M >= 100*N;
//   - a backend whose share is less than one slot may get no slot at all;
//   - with equal weights (all 0 or 1, or all the same) quotas and turns are
//     those of the paper's round robin;
//   - multiplying all weights by the same factor gives the same table;
//   - backends claim their slots interleaved in proportion to their
//     weights, and the disruption on changes stays near the minimum, as
//     with equal weights (see below).
//
// Giving each backend w_i turns per round, the simpler alternative, is off by
// up to w_i slots depending on where in the last round the table fills up,
// and a round larger than M lets the first backends take the whole table;
// even the stride scheduling without quotas leaves a heavy backend up to
// about N/2 slots over its share.
//
// # Disruption
//
// When a backend is removed, its slots must move (the minimum disruption);
// Maglev also moves some slots of the remaining backends, and when one is
// added, some slots move between the old backends. Measured by the tests
// with M = 16381 (the fraction of slots whose backend name changed; "extra"
// is the part not forced by the change):
//
//	measured: N=10, remove one (50 cases): changed mean 0.1052, worst 0.1076 (1/N = 0.1000); extra mean 0.0052, worst 0.0076
//	measured: N=10, add one (50 cases):    changed mean 0.0964, worst 0.1028 (1/(N+1) = 0.0909); extra mean 0.0055, worst 0.0119
//	measured: N=10, weights 1..4, remove one: extra mean 0.0046, worst 0.0071; add one: extra mean 0.0053, worst 0.0095
//	measured: N=10, weights 1..4, one weight +1: changed beyond the change in share mean 0.0035, worst 0.0048
//	measured: N=100, remove one: changed mean 0.0237 (1/N = 0.01); extra mean 0.0137, worst 0.0156; add one: extra mean 0.0141, worst 0.0154
//
// As the paper notes, the extra disruption grows as M/N shrinks, so a table
// of at least 100 slots per backend is advisable. Changing Options.Seed or
// Options.TableSize, or the hashing of this package, reassigns almost every
// slot.
//
// # Evenness
//
// Measured by the tests, the largest relative deviation of a backend's count
// from its exact share:
//
//	measured: M=16381: N=2 0.0061%, N=3 0.0122%, N=10 0.0549%; N=100, M=10007: 0.9293% (101 slots for 100.07)
//	measured: M=16381, weights 1,2,3: 2730, 5460, 8191 slots (0.0061%); M=21001, weights 1..20: 0.0452%
//
// These depend only on N, M and the weights, not on the names or the seed.
//
// # Cost
//
// Building a table takes O(N log N) for sorting, expected O(M log M) slot
// probes (as in the paper) and, with unequal weights, O(M log N) for the
// turns; memory is the table plus O(N). Measured on a shared 2-CPU VM, so
// noisy:
//
//	measured: N=100,  M=16381:  0.4-1.3 ms (weights 1..4: 1.9-2.6 ms)
//	measured: N=1000, M=16381:  0.5-1.1 ms
//	measured: N=1000, M=100003: 3-10 ms (weights 1..4: 13-15 ms)
//	measured: N=2,    M=16777213 (the largest): about 0.8 s
package maglev
