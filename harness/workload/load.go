package workload

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"fortio.org/fortio/fgrpc"
	"fortio.org/fortio/fhttp"
	"fortio.org/fortio/fnet"
	"fortio.org/fortio/periodic"
	"fortio.org/fortio/stats"
	"fortio.org/fortio/tcprunner"
)

// Defaults applied by LoadOptions.Normalized to zero-valued options.
const (
	// DefaultProtocol is the load protocol.
	DefaultProtocol = "http"
	// DefaultConnections is the number of connections.
	DefaultConnections = 1
	// DefaultDuration is how long the load lasts.
	DefaultDuration = 10 * time.Second
	// DefaultResolution is the width of the finest histogram buckets.
	DefaultResolution = 10 * time.Microsecond
	// DefaultTimeout bounds each request.
	DefaultTimeout = 2 * time.Second
)

// Percentiles are the latency percentiles computed by fortio; they fill
// Latency.
var Percentiles = []float64{50, 75, 90, 99, 99.9}

// LoadOptions configure RunLoad. Zero values mean defaults.
type LoadOptions struct {
	// URL is the target: http://host:port/path for http, tcp://host:port
	// for tcp, grpc://host:port for grpc.
	URL string
	// Protocol is "http" (fortio HTTP load against an echo server), "tcp"
	// (fortio TCP echo load) or "grpc" (fortio gRPC ping load, unary calls
	// over one HTTP/2 connection per connection); "" means "http".
	Protocol string
	// QPS is the target rate over all connections; <= 0 means as fast as
	// possible.
	QPS float64
	// Connections is the number of concurrent connections; 0 means 1.
	Connections int
	// Duration is how long the load lasts; 0 means 10s.
	Duration time.Duration
	// Resolution is the width of the finest latency histogram buckets; 0
	// means 10µs. The histogram has fortio's fixed layout (1, 2, ... 11,
	// 12, 14, ... 100000 times the resolution), so 10µs covers up to 1s
	// finely; slower requests land in the last bucket.
	Resolution time.Duration
	// PayloadBytes is, for http, the response body size asked of the
	// server (size= query parameter; 0 leaves it to the server), and for
	// tcp the size of each echoed message (0: fortio's 24-byte default).
	PayloadBytes int
	// Timeout bounds each request (for tcp: each read; fortio's TCP
	// client connects without a timeout); 0 means 2s.
	Timeout time.Duration
}

// Normalized returns o with defaults in place of zero-valued options.
func (o LoadOptions) Normalized() LoadOptions {
	if o.Protocol == "" {
		o.Protocol = DefaultProtocol
	}
	if o.Connections == 0 {
		o.Connections = DefaultConnections
	}
	if o.Duration == 0 {
		o.Duration = DefaultDuration
	}
	if o.Resolution == 0 {
		o.Resolution = DefaultResolution
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	return o
}

// validate checks normalized options.
func (o LoadOptions) validate() error {
	var errs []error
	if o.URL == "" {
		errs = append(errs, errors.New("url: required"))
	}
	switch o.Protocol {
	case "http":
		if o.URL != "" && !strings.HasPrefix(o.URL, "http://") && !strings.HasPrefix(o.URL, "https://") {
			errs = append(errs, fmt.Errorf("url %q: want http:// or https:// for protocol http", o.URL))
		}
	case "tcp":
		if o.URL != "" && !strings.HasPrefix(o.URL, tcprunner.TCPURLPrefix) {
			errs = append(errs, fmt.Errorf("url %q: want tcp://host:port for protocol tcp", o.URL))
		}
	case "grpc":
		if o.URL != "" && !strings.HasPrefix(o.URL, GRPCURLPrefix) {
			errs = append(errs, fmt.Errorf("url %q: want grpc://host:port for protocol grpc", o.URL))
		}
	default:
		errs = append(errs, fmt.Errorf("protocol %q: want http, tcp or grpc", o.Protocol))
	}
	if o.Connections < 1 {
		errs = append(errs, fmt.Errorf("connections %d: must be at least 1", o.Connections))
	}
	if o.Duration < 0 {
		errs = append(errs, fmt.Errorf("duration %v: must not be negative", o.Duration))
	}
	if o.Resolution < 0 {
		errs = append(errs, fmt.Errorf("resolution %v: must not be negative", o.Resolution))
	}
	if o.Timeout < 0 {
		errs = append(errs, fmt.Errorf("timeout %v: must not be negative", o.Timeout))
	}
	if o.PayloadBytes < 0 || o.PayloadBytes > MaxPayloadBytes {
		errs = append(errs, fmt.Errorf("payload bytes %d: must be between 0 and %d", o.PayloadBytes, MaxPayloadBytes))
	}
	return errors.Join(errs...)
}

// RunLoad runs fortio's periodic runner against opts.URL for
// opts.Duration and returns what it measured. Cancelling ctx stops the run
// early. A run that failed (nothing could be sent, every request failed
// before any was measured, ctx ended) still returns a Result, with what
// was measured, together with the error. Failed requests are counted in
// Result.Errors, not returned as an error.
func RunLoad(ctx context.Context, opts LoadOptions) (*Result, error) {
	opts = opts.Normalized()
	res := &Result{
		RequestedQPS:      max(opts.QPS, 0),
		RequestedSeconds:  opts.Duration.Seconds(),
		Connections:       opts.Connections,
		ResolutionSeconds: opts.Resolution.Seconds(),
	}
	if err := opts.validate(); err != nil {
		return res, fmt.Errorf("load options: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return res, fmt.Errorf("load: %w", err)
	}
	ro := periodic.RunnerOptions{
		QPS:         opts.QPS,
		Duration:    opts.Duration,
		NumThreads:  opts.Connections,
		Percentiles: slices.Clone(Percentiles),
		// The histogram's divider, in seconds: fortio's default (1ms)
		// hides everything that happens below a millisecond.
		Resolution: opts.Resolution.Seconds(),
		// fortio prints a textual report there; Result has it all.
		Out: io.Discard,
		// Our own aborter: fortio then does not install its SIGINT
		// watcher, and ctx can stop the run.
		Stop: periodic.NewAborter(),
	}
	if ro.QPS <= 0 {
		ro.QPS = -1 // fortio: 0 would mean its default of 8 qps; <0 is max speed
	}
	aborter := ro.Stop
	stop := context.AfterFunc(ctx, func() { aborter.Abort(false) })
	defer stop()

	var err error
	switch opts.Protocol {
	case "tcp":
		err = runTCP(ctx, ro, opts, res)
	case "grpc":
		err = runGRPC(ctx, ro, opts, res)
	default:
		err = runHTTP(ro, opts, res)
	}
	if err == nil && ctx.Err() != nil {
		err = fmt.Errorf("load interrupted: %w", ctx.Err())
	}
	if err == nil && res.Count == 0 {
		err = errors.New("load: no request was made")
	}
	return res, err
}

// runHTTP runs fortio's HTTP load and fills res.
func runHTTP(ro periodic.RunnerOptions, opts LoadOptions, res *Result) error {
	target, err := withSize(opts.URL, opts.PayloadBytes)
	if err != nil {
		return err
	}
	ho := &fhttp.HTTPRunnerOptions{
		RunnerOptions: ro,
		// Failed warm-up requests are measured failures, not a reason to
		// give up before starting.
		AllowInitialErrors: true,
	}
	ho.URL = target
	ho.HTTPReqTimeOut = opts.Timeout
	growFortioClientBuffer(opts.PayloadBytes)
	out, err := fhttp.RunHTTPTest(ho)
	if err != nil {
		// fortio returns a placeholder result (a fake two-point
		// histogram) with errors: nothing was measured.
		return fmt.Errorf("http load of %s: %w", target, err)
	}
	fill(res, &out.RunnerResults)
	kinds := map[string]int64{}
	for code, n := range out.RetCodes {
		switch {
		case code >= 200 && code <= 299:
		case code <= 0:
			kinds["socket"] += n // fhttp.SocketError: no HTTP response
		default:
			kinds["http-"+strconv.Itoa(code)] += n
		}
	}
	setErrors(res, kinds)
	return nil
}

var clientBufferMu sync.Mutex

// growFortioClientBuffer makes sure fortio's fast HTTP client, which reads
// each response into a fixed buffer of fhttp.BufferSizeKb (128KiB by
// default) and fails requests whose response does not fit, has room for
// payloadBytes plus headers. It only ever grows that global setting, which
// fortio reads when a run creates its clients.
func growFortioClientBuffer(payloadBytes int) {
	need := (payloadBytes+clientBufferHeadroom)/1024 + 1
	clientBufferMu.Lock()
	defer clientBufferMu.Unlock()
	if fhttp.BufferSizeKb < need {
		fhttp.BufferSizeKb = need
	}
}

// clientBufferHeadroom is room for response headers in fortio's client
// buffer.
const clientBufferHeadroom = 16 << 10

// withSize adds size=n to rawURL's query (fortio echo's response size)
// unless n is 0 or the URL sets size itself.
func withSize(rawURL string, n int) (string, error) {
	if n == 0 {
		return rawURL, nil
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", fmt.Errorf("url: %w", err)
	}
	q := u.Query()
	if q.Has("size") {
		return rawURL, nil
	}
	q.Set("size", strconv.Itoa(n))
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// runTCP runs fortio's TCP echo load and fills res.
func runTCP(ctx context.Context, ro periodic.RunnerOptions, opts LoadOptions, res *Result) error {
	if _, err := reachable(ctx, tcprunner.TCPURLPrefix, opts); err != nil {
		return fmt.Errorf("tcp load of %s: %w", opts.URL, err)
	}

	to := &tcprunner.RunnerOptions{RunnerOptions: ro}
	to.Destination = opts.URL
	to.ReqTimeout = opts.Timeout
	if opts.PayloadBytes > 0 {
		to.Payload = fnet.GenerateRandomPayload(opts.PayloadBytes)
	}
	out, err := tcprunner.RunTCPTest(to)
	if err != nil {
		return fmt.Errorf("tcp load of %s: %w", opts.URL, err)
	}
	fill(res, &out.RunnerResults)
	kinds := map[string]int64{}
	for msg, n := range out.RetCodes {
		if msg != tcprunner.TCPStatusOK {
			kinds[tcpErrorKind(msg)] += n
		}
	}
	setErrors(res, kinds)
	return nil
}

// reachable returns the host:port of opts.URL (after prefix) once a TCP
// connection to it succeeded within opts.Timeout. fortio's TCP and gRPC
// clients dial without a timeout: against a destination that drops
// packets each connection would hang for minutes, so the load checks once
// first.
func reachable(ctx context.Context, prefix string, opts LoadOptions) (string, error) {
	dest := strings.TrimSuffix(strings.TrimPrefix(opts.URL, prefix), "/")
	d := net.Dialer{Timeout: opts.Timeout}
	conn, err := d.DialContext(ctx, "tcp", dest)
	if err != nil {
		return "", err
	}
	conn.Close()
	return dest, nil
}

// GRPCURLPrefix starts the URL of a grpc load.
const GRPCURLPrefix = "grpc://"

// runGRPC runs fortio's gRPC ping load and fills res.
func runGRPC(ctx context.Context, ro periodic.RunnerOptions, opts LoadOptions, res *Result) error {
	dest, err := reachable(ctx, GRPCURLPrefix, opts)
	if err != nil {
		return fmt.Errorf("grpc load of %s: %w", opts.URL, err)
	}
	gro := &fgrpc.GRPCRunnerOptions{
		RunnerOptions:      ro,
		Destination:        dest,
		UsePing:            true,
		Streams:            1,
		AllowInitialErrors: true,
	}
	if opts.PayloadBytes > 0 {
		gro.Payload = strings.Repeat("x", opts.PayloadBytes)
	}
	out, err := fgrpc.RunGRPCTest(gro)
	if err != nil {
		return fmt.Errorf("grpc load of %s: %w", opts.URL, err)
	}
	fill(res, &out.RunnerResults)
	kinds := map[string]int64{}
	for status, n := range out.RetCodes {
		if status != "SERVING" {
			kinds["grpc-"+strings.ToLower(status)] += n
		}
	}
	setErrors(res, kinds)
	return nil
}

// tcpErrorKind classifies the error strings fortio's TCP runner counts
// (they carry addresses and ports, too many distinct keys to keep).
func tcpErrorKind(msg string) string {
	switch {
	case strings.Contains(msg, "connection refused"):
		return "socket-refused"
	case strings.Contains(msg, "connection reset"), strings.Contains(msg, "broken pipe"):
		return "socket-reset"
	case strings.Contains(msg, "timeout"):
		return "socket-timeout"
	case strings.Contains(msg, "short read"):
		return "short-read"
	case strings.Contains(msg, "not echoing"), strings.Contains(msg, "long read"):
		return "mismatch"
	default:
		return "socket"
	}
}

// fill copies the run's rate, duration and latency histogram into res.
func fill(res *Result, rr *periodic.RunnerResults) {
	res.ActualQPS = rr.ActualQPS
	res.ActualSeconds = rr.ActualDuration.Seconds()
	res.Connections = rr.NumThreads
	h := rr.DurationHistogram
	if h == nil {
		return
	}
	res.Count = h.Count
	res.LatencySeconds = latencyOf(h)
	res.Histogram = make([]Bucket, 0, len(h.Data))
	for _, b := range h.Data {
		res.Histogram = append(res.Histogram, Bucket{Start: b.Start, End: b.End, Count: b.Count})
	}
}

func setErrors(res *Result, kinds map[string]int64) {
	res.Errors = 0
	for _, n := range kinds {
		res.Errors += n
	}
	if len(kinds) > 0 {
		res.ErrorsByKind = kinds
	}
}

// latencyOf reads min, average, max and Percentiles from a fortio
// histogram; all zero when it is empty.
func latencyOf(h *stats.HistogramData) Latency {
	if h.Count == 0 {
		return Latency{}
	}
	l := Latency{Min: h.Min, Avg: h.Avg, Max: h.Max}
	for _, p := range h.Percentiles {
		switch p.Percentile {
		case 50:
			l.P50 = p.Value
		case 75:
			l.P75 = p.Value
		case 90:
			l.P90 = p.Value
		case 99:
			l.P99 = p.Value
		case 99.9:
			l.P999 = p.Value
		}
	}
	return l
}
