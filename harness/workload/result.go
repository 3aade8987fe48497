package workload

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// DecodeResult finds the Result that `fastpath workload load` printed in
// output where other lines may surround it (a container's log, which
// interleaves stdout and stderr): the JSON document that starts at the
// first line beginning with "{".
func DecodeResult(output []byte) (*Result, error) {
	start := -1
	if bytes.HasPrefix(output, []byte("{")) {
		start = 0
	} else if i := bytes.Index(output, []byte("\n{")); i >= 0 {
		start = i + 1
	}
	if start < 0 {
		return nil, errors.New("no result document in the output")
	}
	var res Result
	if err := json.NewDecoder(bytes.NewReader(output[start:])).Decode(&res); err != nil {
		return nil, fmt.Errorf("result document: %w", err)
	}
	return &res, nil
}

// Result is the outcome of one load run: what was asked for, what was
// done, and the latency distribution. All durations are in seconds.
type Result struct {
	// RequestedQPS is the target rate; 0 means as fast as possible.
	RequestedQPS float64 `json:"requestedQPS"`
	// ActualQPS is the rate achieved: requests done over ActualSeconds.
	ActualQPS float64 `json:"actualQPS"`
	// RequestedSeconds is the requested duration.
	RequestedSeconds float64 `json:"requestedSeconds"`
	// ActualSeconds is how long the measured run took.
	ActualSeconds float64 `json:"actualSeconds"`
	// Connections is the number of connections (fortio goroutines) used;
	// fortio lowers it when there are fewer than two requests for each.
	Connections int `json:"connections"`
	// Count is the number of requests done, failed ones included.
	Count int64 `json:"count"`
	// Errors is the number of requests that failed: HTTP statuses other
	// than 2xx, socket errors, TCP echo errors.
	Errors int64 `json:"errors"`
	// ErrorsByKind splits Errors: "http-503", "socket" (no HTTP response
	// at all), and for tcp "socket-refused", "socket-reset",
	// "socket-timeout", "short-read", "mismatch", "socket".
	ErrorsByKind map[string]int64 `json:"errorsByKind,omitempty"`
	// ResolutionSeconds is the width of the histogram's finest buckets.
	ResolutionSeconds float64 `json:"resolutionSeconds"`
	// LatencySeconds summarises the latency of all requests, failed ones
	// included (as fortio does).
	LatencySeconds Latency `json:"latencySeconds"`
	// Histogram is fortio's latency histogram: its non-empty buckets, in
	// order. The first starts at Min, the last ends at Max.
	Histogram []Bucket `json:"histogram"`
	// ProcessCPUSeconds and ProcessPeakRSSBytes are the load process's
	// own usage (getrusage at its end; the command fills them in), for
	// where the harness cannot wait for the process itself: a container
	// of a pod on kind.
	ProcessCPUSeconds   float64 `json:"processCPUSeconds,omitempty"`
	ProcessPeakRSSBytes int64   `json:"processPeakRSSBytes,omitempty"`
}

// Latency summarises a latency distribution, in seconds. Percentiles are
// fortio's, interpolated within histogram buckets.
type Latency struct {
	// Min is the fastest request.
	Min float64 `json:"min"`
	// Avg is the mean.
	Avg float64 `json:"avg"`
	// P50 is the median.
	P50 float64 `json:"p50"`
	// P75 is the 75th percentile.
	P75 float64 `json:"p75"`
	// P90 is the 90th percentile.
	P90 float64 `json:"p90"`
	// P99 is the 99th percentile.
	P99 float64 `json:"p99"`
	// P999 is the 99.9th percentile.
	P999 float64 `json:"p999"`
	// Max is the slowest request.
	Max float64 `json:"max"`
}

// Bucket is one histogram bucket: Count requests took more than Start and
// at most End seconds.
type Bucket struct {
	// Start is the bucket's lower bound (exclusive, except for the first).
	Start float64 `json:"start"`
	// End is the bucket's upper bound (inclusive).
	End float64 `json:"end"`
	// Count is the number of requests in the bucket.
	Count int64 `json:"count"`
}
