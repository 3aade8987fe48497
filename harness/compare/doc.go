// Package compare compares two benchmark reports (report.json) and says,
// figure by figure, whether the newer one is significantly worse, better,
// or not significantly different (`fastpath compare OLD.json NEW.json`).
//
// Results are paired by scenario and datapath. For each pair six figures
// are compared: latency p50, p90, p99 and p99.9 and the error rate
// (errors/count), where lower is better, and the actual QPS, where higher
// is better. A figure's sample is its value in each repetition that
// completed (repetitions with an error are left out), so with R
// repetitions each side has R values.
//
// For each figure Compare gives the medians of both samples, the relative
// change of the medians, a percentile bootstrap confidence interval for
// that change (old and new resampled independently, with a fixed seed so
// that the output is the same on every run), and the two-sided
// Mann-Whitney U p-value (see MannWhitney).
//
// # The verdict
//
// A figure is "worse" when all three hold:
//
//  1. the change of the medians is in the bad direction: up for latency
//     and error rate, down for QPS;
//  2. the change is larger than Options.Threshold: |change| > threshold;
//  3. the change is significant, that is either
//     (a) p < Options.Alpha and the bootstrap interval lies entirely on
//     the side of the change (it excludes 0), or
//     (b) complete separation: each side has at least 2 repetitions and
//     every new repetition is strictly worse than every old one.
//
// "better" is the same in the good direction. Anything else is "no
// significant change", or "no data" when a side has no repetition to
// compare.
//
// Rule 3b exists because benchmark suites usually run few repetitions:
// with 3 against 3 the smallest two-sided Mann-Whitney p-value is
// 2/C(6,3) = 0.1, so rule 3a alone could never flag anything at alpha
// 0.05. Complete separation is what that smallest p-value measures (under
// no change, a given side comes out entirely above the other with
// probability 1/20), and together with the threshold it flags a clear 20%
// slowdown, while a report compared with itself (every value tied, no
// separation, p = 1) or a change of the medians within the threshold is
// never flagged. It is a per-figure test at about the 5% level with no
// correction for the many figures compared: a noisy figure (p99.9 with
// repetitions that differ by ±10%) that did not change is still flagged
// now and then. Gates that must not cry wolf should run 5 or more
// repetitions.
package compare
