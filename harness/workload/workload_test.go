package workload

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"fortio.org/fortio/fgrpc"
	"fortio.org/fortio/fhttp"
)

// server is a Serve instance on loopback, on dynamic ports.
type server struct {
	httpURL string // http://127.0.0.1:port/
	tcpURL  string // tcp://127.0.0.1:port
}

func startServer(t *testing.T, opts ServerOptions) server {
	t.Helper()
	httpLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tcpLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		httpLn.Close()
		t.Fatal(err)
	}
	s := server{
		httpURL: fmt.Sprintf("http://%s/", httpLn.Addr()),
		tcpURL:  fmt.Sprintf("tcp://%s", tcpLn.Addr()),
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ServeListeners(ctx, httpLn, tcpLn, opts) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("ServeListeners: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("ServeListeners did not return after its context ended")
		}
	})
	return s
}

// closedAddr returns a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func checkConsistent(t *testing.T, res *Result) {
	t.Helper()
	l := res.LatencySeconds
	if !(l.Min > 0 && l.Min <= l.P50 && l.P50 <= l.P75 && l.P75 <= l.P90 && l.P90 <= l.P99 && l.P99 <= l.P999 && l.P999 <= l.Max) {
		t.Errorf("latencies out of order: %+v", l)
	}
	if len(res.Histogram) == 0 {
		t.Fatal("empty histogram")
	}
	var n int64
	for _, b := range res.Histogram {
		n += b.Count
		if b.End < b.Start {
			t.Errorf("bucket %+v ends before it starts", b)
		}
	}
	if n != res.Count {
		t.Errorf("histogram holds %d requests, count is %d", n, res.Count)
	}
	if first, last := res.Histogram[0], res.Histogram[len(res.Histogram)-1]; first.Start != l.Min || last.End != l.Max {
		t.Errorf("histogram spans %g..%g, min/max %g/%g", first.Start, last.End, l.Min, l.Max)
	}
}

func TestRunLoad(t *testing.T) {
	srv := startServer(t, ServerOptions{})
	grpcPort := fgrpc.PingServerTCP("127.0.0.1:0", fgrpc.DefaultHealthServiceName, 0, &fhttp.TLSOptions{})
	if grpcPort <= 0 {
		t.Fatal("grpc ping server did not start")
	}
	grpcURL := fmt.Sprintf("grpc://127.0.0.1:%d", grpcPort)
	tests := []struct {
		name string
		opts LoadOptions
	}{
		{"http", LoadOptions{URL: srv.httpURL, QPS: 200, Connections: 2, Duration: time.Second}},
		{"http-payload", LoadOptions{URL: srv.httpURL, QPS: 200, Connections: 2, Duration: 500 * time.Millisecond, PayloadBytes: 300 << 10}},
		{"tcp", LoadOptions{URL: srv.tcpURL, Protocol: "tcp", QPS: 200, Connections: 2, Duration: time.Second}},
		{"tcp-payload", LoadOptions{URL: srv.tcpURL, Protocol: "tcp", QPS: 200, Connections: 2, Duration: 500 * time.Millisecond, PayloadBytes: 4096}},
		{"grpc", LoadOptions{URL: grpcURL, Protocol: "grpc", QPS: 200, Connections: 2, Duration: time.Second}},
		{"grpc-payload", LoadOptions{URL: grpcURL, Protocol: "grpc", QPS: 200, Connections: 2, Duration: 500 * time.Millisecond, PayloadBytes: 4096}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := RunLoad(context.Background(), tt.opts)
			if err != nil {
				t.Fatalf("RunLoad: %v (result %+v)", err, res)
			}
			if res.Count == 0 || res.Errors != 0 || res.ErrorsByKind != nil {
				t.Fatalf("count %d errors %d %v", res.Count, res.Errors, res.ErrorsByKind)
			}
			checkConsistent(t, res)
			if res.RequestedQPS != 200 || res.RequestedSeconds != tt.opts.Duration.Seconds() || res.Connections != 2 {
				t.Errorf("requested qps %g seconds %g connections %d", res.RequestedQPS, res.RequestedSeconds, res.Connections)
			}
			if res.ActualQPS <= 0 || res.ActualSeconds <= 0 {
				t.Errorf("actual qps %g seconds %g", res.ActualQPS, res.ActualSeconds)
			}
			// The default resolution (10µs) makes buckets far narrower
			// than fortio's default 1ms: look at the ones between
			// fortio's fixed boundaries (not the first, which starts at
			// min, nor the last, which ends at max).
			if res.ResolutionSeconds != 10e-6 {
				t.Errorf("resolution %g, want 10µs", res.ResolutionSeconds)
			}
			narrow := false
			for i, b := range res.Histogram {
				if i > 0 && i < len(res.Histogram)-1 && b.End-b.Start < 0.001 {
					narrow = true
				}
			}
			if len(res.Histogram) > 2 && !narrow {
				t.Errorf("no inner bucket narrower than 1ms: %+v", res.Histogram)
			}
			if b := res.Histogram[0]; b.End-b.Start >= 0.001 && res.LatencySeconds.P50 < 0.001 {
				t.Errorf("first bucket %+v is 1ms wide for sub-millisecond latencies", b)
			}
		})
	}
}

func TestRunLoadMaxSpeed(t *testing.T) {
	srv := startServer(t, ServerOptions{})
	res, err := RunLoad(context.Background(), LoadOptions{URL: srv.httpURL, Duration: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	// fortio would run at 8 qps with qps 0; RunLoad asks it for max speed.
	if res.RequestedQPS != 0 || res.Count < 20 {
		t.Errorf("requested %g qps, did %d requests in %gs", res.RequestedQPS, res.Count, res.ActualSeconds)
	}
}

func TestServerDelay(t *testing.T) {
	srv := startServer(t, ServerOptions{Delay: 20 * time.Millisecond})
	res, err := RunLoad(context.Background(), LoadOptions{URL: srv.httpURL, QPS: 20, Connections: 2, Duration: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if res.LatencySeconds.P50 < 0.02 || res.LatencySeconds.Min < 0.02 {
		t.Errorf("p50 %gs min %gs, want >= 20ms", res.LatencySeconds.P50, res.LatencySeconds.Min)
	}
}

func TestServerPayload(t *testing.T) {
	srv := startServer(t, ServerOptions{PayloadBytes: 1000})
	tests := []struct {
		name  string
		query string
		want  int
	}{
		{"default size", "", 1000},
		{"asked size", "?size=10", 10},
		{"larger than fortio's default buffer", "?size=1048576", 1 << 20},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := http.Get(srv.httpURL + tt.query)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != http.StatusOK || len(body) != tt.want {
				t.Errorf("status %d, %d bytes; want 200, %d", resp.StatusCode, len(body), tt.want)
			}
		})
	}
}

func TestServerStatus(t *testing.T) {
	// fortio's echo handler semantics: status= sets the response code,
	// which the client counts as an error by kind.
	srv := startServer(t, ServerOptions{})
	res, err := RunLoad(context.Background(), LoadOptions{URL: srv.httpURL + "?status=503", QPS: 100, Duration: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if res.Errors != res.Count || res.ErrorsByKind["http-503"] != res.Count {
		t.Errorf("count %d errors %d %v", res.Count, res.Errors, res.ErrorsByKind)
	}
}

func TestRunLoadClosedPort(t *testing.T) {
	addr := closedAddr(t)
	tests := []struct {
		name string
		opts LoadOptions
	}{
		{"http", LoadOptions{URL: "http://" + addr + "/", QPS: 50, Duration: 300 * time.Millisecond, Timeout: 200 * time.Millisecond}},
		{"tcp", LoadOptions{URL: "tcp://" + addr, Protocol: "tcp", QPS: 50, Duration: 300 * time.Millisecond, Timeout: 200 * time.Millisecond}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := RunLoad(context.Background(), tt.opts)
			if res == nil {
				t.Fatalf("no result (error %v)", err)
			}
			if err == nil && res.Errors == 0 {
				t.Fatalf("neither an error nor failed requests: %+v", res)
			}
			if res.Errors > 0 && res.ErrorsByKind == nil {
				t.Errorf("%d errors without kinds", res.Errors)
			}
			t.Logf("count %d errors %d %v, error %v", res.Count, res.Errors, res.ErrorsByKind, err)
		})
	}
}

func TestRunLoadCancel(t *testing.T) {
	srv := startServer(t, ServerOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	res, err := RunLoad(ctx, LoadOptions{URL: srv.httpURL, QPS: 100, Duration: time.Minute})
	if el := time.Since(start); el > 10*time.Second {
		t.Fatalf("RunLoad took %v after its context ended", el)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error %v, want the context's", err)
	}
	if res == nil || res.Count == 0 {
		t.Errorf("nothing measured before the cancel: %+v", res)
	}
}

func TestRunLoadInvalidOptions(t *testing.T) {
	tests := []struct {
		name string
		opts LoadOptions
		want string
	}{
		{"no url", LoadOptions{}, "url: required"},
		{"bad protocol", LoadOptions{URL: "udp://x:1", Protocol: "udp"}, `protocol "udp"`},
		{"tcp url for http", LoadOptions{URL: "tcp://x:1"}, "want http://"},
		{"http url for tcp", LoadOptions{URL: "http://x:1/", Protocol: "tcp"}, "want tcp://"},
		{"negative connections", LoadOptions{URL: "http://x:1/", Connections: -1}, "connections -1"},
		{"huge payload", LoadOptions{URL: "http://x:1/", PayloadBytes: 2 << 20}, "payload bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := RunLoad(context.Background(), tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want one containing %q", err, tt.want)
			}
			if res == nil || res.Count != 0 {
				t.Errorf("result %+v, want an empty one", res)
			}
		})
	}
}

func TestLoadCommand(t *testing.T) {
	srv := startServer(t, ServerOptions{})
	tests := []struct {
		name    string
		args    []string
		wantErr bool
		check   func(t *testing.T, res Result)
	}{
		{
			name: "measures",
			args: []string{"load", "--url", srv.httpURL, "--qps", "100", "--connections", "2", "--duration", "300ms"},
			check: func(t *testing.T, res Result) {
				if res.Count == 0 || res.Errors != 0 || len(res.Histogram) == 0 {
					t.Errorf("result %+v", res)
				}
				if res.ProcessCPUSeconds <= 0 || res.ProcessPeakRSSBytes < 1<<20 {
					t.Errorf("own usage: %v CPU s, %d bytes peak RSS", res.ProcessCPUSeconds, res.ProcessPeakRSSBytes)
				}
			},
		},
		{
			name:    "nothing measured",
			args:    []string{"load", "--url", "tcp://" + closedAddr(t), "--protocol", "tcp", "--duration", "100ms", "--timeout", "100ms"},
			wantErr: true,
			check: func(t *testing.T, res Result) {
				if res.Count != 0 || res.RequestedSeconds != 0.1 {
					t.Errorf("result %+v", res)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := NewCommand()
			var stdout, stderr bytes.Buffer
			cmd.SetOut(&stdout)
			cmd.SetErr(&stderr)
			cmd.SetArgs(tt.args)
			cmd.SilenceUsage = true
			err := cmd.Execute()
			if (err != nil) != tt.wantErr {
				t.Fatalf("Execute: %v, want error %v (stderr %s)", err, tt.wantErr, stderr.String())
			}
			var res Result
			if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
				t.Fatalf("stdout is not a Result: %v\n%s", err, stdout.String())
			}
			tt.check(t, res)
		})
	}
}

func TestServeCommandStops(t *testing.T) {
	port := freePortPair(t)
	ctx, cancel := context.WithCancel(context.Background())
	cmd := NewCommand()
	cmd.SetArgs([]string{"serve", "--port", fmt.Sprint(port)})
	cmd.SetErr(io.Discard)
	done := make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(ctx) }()
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("server did not come up: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port+1), time.Second)
	if err != nil {
		t.Errorf("tcp echo on port+1: %v", err)
	} else {
		conn.Close()
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not stop when its context ended")
	}
}

// freePortPair returns a port p such that p and p+1 were both free.
func freePortPair(t *testing.T) int {
	t.Helper()
	for range 50 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		p := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if p >= 65535 {
			continue
		}
		l2, err := net.Listen("tcp", fmt.Sprintf(":%d", p+1))
		if err != nil {
			continue
		}
		l2.Close()
		return p
	}
	t.Fatal("no free pair of ports")
	return 0
}

// TestDecodeResult: the result is found in a container's log, where
// stderr's lines surround stdout's document.
func TestDecodeResult(t *testing.T) {
	doc, _ := json.MarshalIndent(Result{Count: 7, Errors: 1, LatencySeconds: Latency{P50: 0.001}}, "", "  ")
	for _, log := range []string{
		string(doc) + "\n",
		"fortio: starting {not json}\n" + string(doc) + "\nworkload load: 1 of 7 requests failed\n",
	} {
		res, err := DecodeResult([]byte(log))
		if err != nil || res.Count != 7 || res.Errors != 1 || res.LatencySeconds.P50 != 0.001 {
			t.Fatalf("DecodeResult(%q) = %+v, %v", log, res, err)
		}
	}
	for _, log := range []string{"", "workload load: dial tcp: refused\n", "{\"count\": \n"} {
		if _, err := DecodeResult([]byte(log)); err == nil {
			t.Errorf("DecodeResult(%q): no error", log)
		}
	}
}
