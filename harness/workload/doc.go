// Package workload is the traffic the harness measures: an HTTP echo server
// built on fortio's echo handler (plus a fortio-compatible TCP echo server
// on the next port), and a fortio load client whose outcome is a small JSON
// document, Result.
//
// The harness runs both as separate processes inside pod network
// namespaces, through the hidden `fastpath workload serve|load` command
// (NewCommand), so that each runs in its pod's namespace and the client's
// result crosses the process boundary as JSON.
//
// The client measures latency with a histogram resolution of 10µs by
// default: fortio's own default of 1ms would turn every sub-millisecond
// percentile into an interpolation inside the first bucket.
package workload
