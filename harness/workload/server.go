package workload

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"fortio.org/fortio/fgrpc"
	"fortio.org/fortio/fhttp"
	"fortio.org/fortio/fnet"
)

// DefaultPort is the HTTP port Serve listens on when ServerOptions.Port is
// zero. The TCP echo server listens on the next one, the gRPC ping server
// on the one after.
const DefaultPort = 8080

// MaxPayloadBytes is the largest response body the server produces
// (fortio's echo handler caps size= at its payload buffer, which Serve grows
// to this size).
const MaxPayloadBytes = 1 << 20

// shutdownGrace bounds how long Serve waits for in-flight requests once its
// context ends.
const shutdownGrace = 2 * time.Second

// ServerOptions configure Serve.
type ServerOptions struct {
	// Port is the HTTP port, on all addresses; 0 means DefaultPort. The
	// TCP echo server listens on Port+1 (none when Port is 65535).
	Port int
	// PayloadBytes is the size of each HTTP response body when the request
	// does not ask for one itself with fortio's size= query parameter; 0
	// echoes the request body, as fortio does. At most MaxPayloadBytes.
	PayloadBytes int
	// Delay, when positive, is added to every HTTP response: an artificial
	// slowdown for testing what the measurements show.
	Delay time.Duration
}

// Serve runs an HTTP echo server on 0.0.0.0:Port (fortio's echo handler:
// it honours the usual query parameters such as size=, status=, delay=)
// and a TCP echo server on Port+1 that fortio's tcp:// load talks to. It
// returns nil once ctx ends and the servers are shut down, or the first
// error that stops either server.
func Serve(ctx context.Context, opts ServerOptions) error {
	if opts.Port == 0 {
		opts.Port = DefaultPort
	}
	if opts.Port < 0 || opts.Port > 65535 {
		return fmt.Errorf("port %d: must be between 1 and 65535", opts.Port)
	}
	var lc net.ListenConfig
	httpLn, err := lc.Listen(ctx, "tcp", ":"+strconv.Itoa(opts.Port))
	if err != nil {
		return fmt.Errorf("listen for http: %w", err)
	}
	var tcpLn net.Listener
	if opts.Port < 65535 {
		tcpLn, err = lc.Listen(ctx, "tcp", ":"+strconv.Itoa(opts.Port+1))
		if err != nil {
			httpLn.Close()
			return fmt.Errorf("listen for tcp echo: %w", err)
		}
	}
	if opts.Port < 65534 {
		// fortio's gRPC ping server (unary Ping echoing its payload, and
		// the health service). It lives as long as the process: fortio
		// gives no handle to stop it.
		if addr := fgrpc.PingServer(":"+strconv.Itoa(opts.Port+2), fgrpc.DefaultHealthServiceName, 0, &fhttp.TLSOptions{}); addr == nil {
			httpLn.Close()
			if tcpLn != nil {
				tcpLn.Close()
			}
			return fmt.Errorf("listen for grpc on port %d failed", opts.Port+2)
		}
	}
	return ServeListeners(ctx, httpLn, tcpLn, opts)
}

// ServeListeners is Serve on listeners the caller opened (opts.Port is
// ignored): HTTP echo on httpLn and, when tcpLn is not nil, TCP echo on
// tcpLn. It closes both before returning.
func ServeListeners(ctx context.Context, httpLn, tcpLn net.Listener, opts ServerOptions) error {
	if opts.PayloadBytes < 0 || opts.PayloadBytes > MaxPayloadBytes {
		httpLn.Close()
		if tcpLn != nil {
			tcpLn.Close()
		}
		return fmt.Errorf("payload bytes %d: must be between 0 and %d", opts.PayloadBytes, MaxPayloadBytes)
	}
	growFortioPayload()
	srv := &http.Server{
		Handler:           NewEchoHandler(opts),
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       30 * time.Second,
	}
	// Like fortio's own echo server: HTTP/1.1 and cleartext HTTP/2.
	srv.Protocols = new(http.Protocols)
	srv.Protocols.SetHTTP1(true)
	srv.Protocols.SetUnencryptedHTTP2(true)

	errc := make(chan error, 2)
	running := 1
	go func() {
		err := srv.Serve(httpLn)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		if err != nil {
			err = fmt.Errorf("http echo server: %w", err)
		}
		errc <- err
	}()
	var echo *tcpEchoServer
	if tcpLn != nil {
		running++
		echo = &tcpEchoServer{ln: tcpLn, conns: map[net.Conn]struct{}{}}
		go func() {
			err := echo.serve()
			if err != nil {
				err = fmt.Errorf("tcp echo server: %w", err)
			}
			errc <- err
		}()
	}

	var first error
	select {
	case <-ctx.Done():
	case first = <-errc:
		running--
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
	}
	if echo != nil {
		echo.close()
	}
	for ; running > 0; running-- {
		if err := <-errc; first == nil {
			first = err
		}
	}
	return first
}

// NewEchoHandler returns fortio's echo handler with opts.PayloadBytes as the
// default response size and opts.Delay added to every response.
func NewEchoHandler(opts ServerOptions) http.Handler {
	size := strconv.Itoa(opts.PayloadBytes)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if opts.Delay > 0 {
			t := time.NewTimer(opts.Delay)
			select {
			case <-t.C:
			case <-r.Context().Done():
				t.Stop()
				return
			}
		}
		if opts.PayloadBytes > 0 {
			q := r.URL.Query()
			if !q.Has("size") {
				q.Set("size", size)
				r2 := r.Clone(r.Context())
				r2.URL.RawQuery = q.Encode()
				r2.RequestURI = r2.URL.RequestURI()
				r2.Form = nil
				r = r2
			}
		}
		fhttp.EchoHandler(w, r)
	})
}

var growOnce sync.Once

// growFortioPayload makes fortio's shared payload buffer (from which the
// echo handler's size= bodies are cut, 256KiB by default) MaxPayloadBytes
// long. It runs once, before any server handles a request.
func growFortioPayload() {
	growOnce.Do(func() {
		if fnet.MaxPayloadSize < MaxPayloadBytes {
			fnet.ChangeMaxPayloadSize(MaxPayloadBytes)
		}
	})
}

// tcpEchoServer echoes every byte back on each connection, as fortio's
// fnet.TCPEchoServer does, but can be shut down.
type tcpEchoServer struct {
	ln    net.Listener
	mu    sync.Mutex
	conns map[net.Conn]struct{}
	done  bool
	wg    sync.WaitGroup
}

// serve accepts connections until close is called (then it returns nil)
// or accepting fails.
func (s *tcpEchoServer) serve() error {
	for {
		conn, err := s.ln.Accept()
		if err != nil {
			s.mu.Lock()
			done := s.done
			s.mu.Unlock()
			if done {
				return nil
			}
			return err
		}
		s.mu.Lock()
		if s.done {
			s.mu.Unlock()
			conn.Close()
			return nil
		}
		s.conns[conn] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			// The same buffers and copy loop as fortio's echo server.
			fnet.SetSocketBuffers(conn, 32*fnet.KILOBYTE, 32*fnet.KILOBYTE)
			_, _ = fnet.Copy(conn, conn)
			conn.Close()
			s.mu.Lock()
			delete(s.conns, conn)
			s.mu.Unlock()
		}()
	}
}

// close stops accepting, closes open connections and waits for their
// goroutines.
func (s *tcpEchoServer) close() {
	s.mu.Lock()
	s.done = true
	s.ln.Close()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}
