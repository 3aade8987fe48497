// Package probe makes and answers real connections between network
// namespaces: an echo server bound inside a namespace, and a client that
// connects from another namespace and reports whether a request and its
// reply got through. Sockets belong to the namespace they are created in,
// so only socket creation runs on a thread inside the namespace.
package probe

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/fastpath-bench/fastpath/harness/execx"
)

// Result of one probe.
type Result struct {
	Connected bool
	// Err says why not (timeout, refused, ...).
	Err     error
	Elapsed time.Duration
	// Status is the HTTP status of an HTTP probe's response, 0 when none
	// came.
	Status int
}

// ServerHeader is set on the probe server's HTTP responses, so a client
// can tell them from a proxy's.
const ServerHeader = "X-Fastpath-Probe"

// Server is an echo server on TCP or UDP inside a namespace. A TCP
// connection lasts as long as its client keeps talking: it is closed
// after IdleTimeout without a byte from the client, or by Close.
type Server struct {
	closers []io.Closer
	wg      sync.WaitGroup
	mu      sync.Mutex
	conns   map[net.Conn]struct{}
	peers   peerLog
}

// IdleTimeout ends a probe server's TCP connection whose client sent
// nothing for that long.
const IdleTimeout = 10 * time.Second

// idleConn extends its deadline by IdleTimeout at every read.
type idleConn struct{ net.Conn }

func (c idleConn) Read(b []byte) (int, error) {
	_ = c.Conn.SetDeadline(time.Now().Add(IdleTimeout))
	return c.Conn.Read(b)
}

// Serve starts echo servers for each protocol ("TCP", "UDP") on port inside
// network namespace ns (by name; "" means the caller's).
func Serve(ns string, port int, protocols ...string) (*Server, error) {
	s := &Server{conns: map[net.Conn]struct{}{}}
	for _, proto := range protocols {
		var err error
		switch strings.ToUpper(proto) {
		case "TCP":
			var l net.Listener
			err = inNS(ns, func() error {
				var e error
				l, e = net.Listen("tcp4", fmt.Sprintf("0.0.0.0:%d", port))
				return e
			})
			if err == nil {
				s.closers = append(s.closers, l)
				s.wg.Add(1)
				go s.acceptTCP(l)
			}
		case "UDP":
			var pc net.PacketConn
			err = inNS(ns, func() error {
				var e error
				pc, e = net.ListenPacket("udp4", fmt.Sprintf("0.0.0.0:%d", port))
				return e
			})
			if err == nil {
				s.closers = append(s.closers, pc)
				s.wg.Add(1)
				go s.echoUDP(pc)
			}
		default:
			err = fmt.Errorf("protocol %q not supported by the probe server", proto)
		}
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("serve %s/%d in %s: %w", proto, port, ns, err)
		}
	}
	return s, nil
}

func inNS(ns string, f func() error) error {
	if ns == "" {
		return f()
	}
	return execx.RunInNetns(ns, f)
}

func (s *Server) acceptTCP(l net.Listener) {
	defer s.wg.Done()
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		s.notePeer(c)
		go func() {
			defer func() {
				s.mu.Lock()
				delete(s.conns, c)
				s.mu.Unlock()
				c.Close()
			}()
			br := bufio.NewReader(idleConn{c})
			if head, err := br.Peek(4); err == nil && looksLikeHTTP(head) {
				serveHTTP(c, br)
				return
			}
			echoStream(c, br)
		}()
	}
}

// echoStream writes back what it reads, with read(2) and write(2) only: a
// splice(2) (io.Copy between sockets) reads the TCP receive queue and
// would not see payload that sockmap moved into the socket.
func echoStream(c net.Conn, r io.Reader) {
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// looksLikeHTTP reports whether a connection starts with an HTTP method
// (the TCP echo probe's message does not).
func looksLikeHTTP(head []byte) bool {
	for _, m := range []string{"GET ", "HEAD", "POST", "PUT ", "DELE", "PATC", "OPTI"} {
		if string(head) == m {
			return true
		}
	}
	return false
}

// serveHTTP answers every request on c with 200 and "<method> <path>".
func serveHTTP(c net.Conn, br *bufio.Reader) {
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		_, _ = io.Copy(io.Discard, req.Body)
		req.Body.Close()
		body := req.Method + " " + req.URL.Path + "\n"
		resp := &http.Response{
			StatusCode:    http.StatusOK,
			ProtoMajor:    1,
			ProtoMinor:    1,
			Header:        http.Header{ServerHeader: {"server"}, "Content-Type": {"text/plain"}},
			ContentLength: int64(len(body)),
			Body:          io.NopCloser(strings.NewReader(body)),
			Close:         req.Close,
		}
		if err := resp.Write(c); err != nil || req.Close {
			return
		}
	}
}

func (s *Server) echoUDP(pc net.PacketConn) {
	defer s.wg.Done()
	buf := make([]byte, 2048)
	for {
		n, addr, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		if delivered(buf[:n]) {
			continue // a spoofed probe: its source is not the sender's
		}
		_, _ = pc.WriteTo(buf[:n], addr)
	}
}

// Close stops the server and closes its open connections.
func (s *Server) Close() error {
	for _, c := range s.closers {
		c.Close()
	}
	s.wg.Wait()
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	return nil
}

// Connect opens a connection from namespace ns to dst:port and exchanges one
// message with the echo server. Connected is true only when the reply came
// back, so a passing probe also proves the reply direction.
func Connect(ctx context.Context, ns string, dst netip.Addr, port int, proto string, timeout time.Duration) Result {
	return ConnectFrom(ctx, ns, 0, dst, port, proto, timeout)
}

// dial connects from namespace ns, from local when it is free (a source
// port still in use falls back to one the kernel picks).
func dial(ctx context.Context, ns, network string, local net.Addr, addr string) (net.Conn, error) {
	var conn net.Conn
	err := inNS(ns, func() error {
		d := net.Dialer{LocalAddr: local}
		var e error
		conn, e = d.DialContext(ctx, network, addr)
		if e != nil && local != nil && errors.Is(e, syscall.EADDRINUSE) {
			d.LocalAddr = nil
			conn, e = d.DialContext(ctx, network, addr)
		}
		return e
	})
	return conn, err
}

// probeMessage is what a probe sends and expects back.
var probeMessage = []byte("fastpath-probe")

// exchange sends probeMessage over conn and checks the echo.
func exchange(conn net.Conn) error {
	if _, err := conn.Write(probeMessage); err != nil {
		return err
	}
	buf := make([]byte, len(probeMessage))
	if _, err := io.ReadFull(conn, buf); err != nil {
		return err
	}
	if string(buf) != string(probeMessage) {
		return errors.New("echo mismatch")
	}
	return nil
}

// ConnectFrom is Connect from a chosen source port (0: the kernel picks).
// Conformance runs give every probe its own source port so that no probe
// reuses the 5-tuple of an earlier one, whose conntrack entry could still
// be alive (a datapath lets established flows through after a policy
// change, as it should).
func ConnectFrom(ctx context.Context, ns string, srcPort int, dst netip.Addr, port int, proto string, timeout time.Duration) Result {
	start := time.Now()
	res := Result{}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	network := "tcp4"
	var local net.Addr
	if strings.EqualFold(proto, "UDP") {
		network = "udp4"
		if srcPort > 0 {
			local = &net.UDPAddr{Port: srcPort}
		}
	} else if !strings.EqualFold(proto, "TCP") && proto != "" {
		res.Err = fmt.Errorf("protocol %q not supported by the probe client", proto)
		return res
	} else if srcPort > 0 {
		local = &net.TCPAddr{Port: srcPort}
	}
	conn, err := dial(ctx, ns, network, local, netip.AddrPortFrom(dst, uint16(port)).String())
	if err != nil {
		res.Err = err
		res.Elapsed = time.Since(start)
		return res
	}
	defer conn.Close()
	deadline, _ := ctx.Deadline()
	_ = conn.SetDeadline(deadline)
	if err := exchange(conn); err != nil {
		res.Err = err
		res.Elapsed = time.Since(start)
		return res
	}
	res.Connected = true
	res.Elapsed = time.Since(start)
	return res
}

// HTTP sends one HTTP request (method, path) from namespace ns (from source
// port srcPort; 0: any) to dst:port. Connected is true only when the probe
// server itself answered 200, so a request a proxy refused (403), or one
// that never got through, is not connected; Status says what came back.
func HTTP(ctx context.Context, ns string, srcPort int, dst netip.Addr, port int, method, path string, timeout time.Duration) Result {
	start := time.Now()
	res := Result{}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var local net.Addr
	if srcPort > 0 {
		local = &net.TCPAddr{Port: srcPort}
	}
	addr := netip.AddrPortFrom(dst, uint16(port)).String()
	conn, err := dial(ctx, ns, "tcp4", local, addr)
	if err != nil {
		res.Err = err
		res.Elapsed = time.Since(start)
		return res
	}
	defer conn.Close()
	deadline, _ := ctx.Deadline()
	_ = conn.SetDeadline(deadline)
	req, err := http.NewRequest(method, "http://"+addr+path, nil)
	if err != nil {
		res.Err = err
		return res
	}
	req.Close = true
	if err := req.Write(conn); err != nil {
		res.Err = err
		res.Elapsed = time.Since(start)
		return res
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), req)
	res.Elapsed = time.Since(start)
	if err != nil {
		res.Err = err
		return res
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	res.Status = resp.StatusCode
	switch {
	case resp.StatusCode != http.StatusOK:
		res.Err = fmt.Errorf("HTTP %d %s", resp.StatusCode, resp.Header.Get("X-Fastpath-Reason"))
	case resp.Header.Get(ServerHeader) != "server":
		res.Err = errors.New("HTTP 200 without the probe server's header")
	default:
		res.Connected = true
	}
	return res
}
