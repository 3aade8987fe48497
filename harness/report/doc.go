// Package report holds the outcome of a benchmark run and writes it as
// report.json (every repetition with its full latency histogram, versioned
// by SchemaVersion), report.md (one table per scenario with a row per
// datapath, and each datapath's latency relative to the `none` datapath)
// and report.html (the same with SVG charts, one self-contained page).
//
// Summaries are medians across the repetitions that completed: a run
// alternates datapaths repetition by repetition, so that slow drifts of the
// machine hit all datapaths alike, and the median keeps one disturbed
// repetition from moving the result.
package report
