// Package l7proxy is the node-local L7 proxy: a transparent HTTP proxy that
// the eBPF datapath hands connections to when an L7 rule (Cilium
// rules.http, AuthorizationPolicy methods and paths) applies to them. It
// accepts a connection as if it were the destination pod (the datapath
// assigns the packets to its transparent listener with their addresses
// unchanged), decides every request with a Decider, answers a denied one
// with 403, and forwards an allowed one to the pod over its own, marked
// connection.
package l7proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/fastpath-bench/fastpath/datapath/model"
)

// Decision is the verdict on one request.
type Decision struct {
	Allowed bool
	// Reason says why, in words (sent in the X-Fastpath-Reason header of a
	// denial).
	Reason string
}

// Decider decides requests: src is the client, dst the pod it connected
// to (the connection's original destination).
type Decider interface {
	Decide(src, dst netip.AddrPort, req model.Request) Decision
}

// DeciderFunc adapts a function to Decider.
type DeciderFunc func(src, dst netip.AddrPort, req model.Request) Decision

// Decide calls f.
func (f DeciderFunc) Decide(src, dst netip.AddrPort, req model.Request) Decision {
	return f(src, dst, req)
}

// Options configure a Proxy. Zero values mean defaults.
type Options struct {
	// ListenAddr is where the transparent listener binds; "" means
	// "0.0.0.0:0" (any port: the datapath finds the socket through a map,
	// not by port).
	ListenAddr string
	// UpstreamMark is the SO_MARK of the proxy's connections to pods, which
	// tells the pod's ingress hook that the proxy has decided; 0: none.
	UpstreamMark int
	// Decider decides each request; required.
	Decider Decider
	// upstreamOf maps a connection's original destination to the address
	// the proxy connects to (tests; nil: the same address).
	upstreamOf func(netip.AddrPort) netip.AddrPort
	// UpstreamTimeout bounds connecting to the pod; zero: 5s.
	UpstreamTimeout time.Duration
}

// Stats counts what the proxy did since it started.
type Stats struct {
	Connections    int64 `json:"connections"`
	Requests       int64 `json:"requests"`
	Allowed        int64 `json:"allowed"`
	Denied         int64 `json:"denied"`
	UpstreamErrors int64 `json:"upstreamErrors"`
}

// Proxy is a running L7 proxy.
type Proxy struct {
	opts Options
	ln   *net.TCPListener
	srv  *http.Server
	done chan struct{}

	connections, requests, allowed, denied, upstreamErrors atomic.Int64
}

type ctxKey int

const (
	keyLocal ctxKey = iota
	keyRemote
	keyUpstream
)

// Listen opens the transparent listener (IP_TRANSPARENT needs
// CAP_NET_ADMIN) and starts serving in the background.
func Listen(opts Options) (*Proxy, error) {
	if opts.Decider == nil {
		return nil, errors.New("l7proxy: Options.Decider is required")
	}
	if opts.ListenAddr == "" {
		opts.ListenAddr = "0.0.0.0:0"
	}
	if opts.UpstreamTimeout == 0 {
		opts.UpstreamTimeout = 5 * time.Second
	}
	lc := net.ListenConfig{Control: setsockopt("IP_TRANSPARENT", syscall.SOL_IP, syscall.IP_TRANSPARENT, 1)}
	l, err := lc.Listen(context.Background(), "tcp4", opts.ListenAddr)
	if err != nil {
		return nil, fmt.Errorf("l7proxy: listen on %s: %w", opts.ListenAddr, err)
	}
	p := &Proxy{opts: opts, ln: l.(*net.TCPListener), done: make(chan struct{})}
	dialer := &net.Dialer{Timeout: opts.UpstreamTimeout}
	if opts.UpstreamMark != 0 {
		dialer.Control = setsockopt("SO_MARK", syscall.SOL_SOCKET, syscall.SO_MARK, opts.UpstreamMark)
	}
	// Upstream connections belong to the client connection they serve:
	// each client connection gets its own transport, whose connection to
	// the pod is reused by that client's requests and closed with it. A
	// pool shared by every client would hand a later client an idle
	// connection to a pod that has since gone, whose address a new pod
	// may have taken (pods come and go; a FIN from a deleted pod's netns
	// need not reach the proxy): the new pod resets it, and a request
	// that is not replayable (POST, DELETE) fails with 502. It also keeps
	// the pod's view of connections that of a transparent proxy: one per
	// client connection.
	newTransport := func() *http.Transport {
		return &http.Transport{
			DialContext:         dialer.DialContext,
			MaxIdleConnsPerHost: 1,
			IdleConnTimeout:     30 * time.Second,
			DisableCompression:  true,
		}
	}
	var transports sync.Map // net.Conn → *http.Transport
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			dst := r.In.Context().Value(keyLocal).(netip.AddrPort)
			if opts.upstreamOf != nil {
				dst = opts.upstreamOf(dst)
			}
			r.Out.URL.Scheme = "http"
			r.Out.URL.Host = dst.String()
			r.Out.Host = r.In.Host
			r.SetXForwarded()
		},
		Transport: roundTripperFunc(func(r *http.Request) (*http.Response, error) {
			return r.Context().Value(keyUpstream).(*http.Transport).RoundTrip(r)
		}),
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			p.upstreamErrors.Add(1)
			http.Error(w, "upstream: "+err.Error(), http.StatusBadGateway)
		},
	}
	p.srv = &http.Server{
		Handler:           p.handler(rp),
		ReadHeaderTimeout: 10 * time.Second,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			p.connections.Add(1)
			t := newTransport()
			transports.Store(c, t)
			local := c.LocalAddr().(*net.TCPAddr).AddrPort()
			remote := c.RemoteAddr().(*net.TCPAddr).AddrPort()
			ctx = context.WithValue(ctx, keyUpstream, t)
			ctx = context.WithValue(ctx, keyLocal, netip.AddrPortFrom(local.Addr().Unmap(), local.Port()))
			return context.WithValue(ctx, keyRemote, netip.AddrPortFrom(remote.Addr().Unmap(), remote.Port()))
		},
		ConnState: func(c net.Conn, st http.ConnState) {
			if st != http.StateClosed && st != http.StateHijacked {
				return
			}
			if t, ok := transports.LoadAndDelete(c); ok {
				t.(*http.Transport).CloseIdleConnections()
			}
		},
	}
	go func() {
		defer close(p.done)
		_ = p.srv.Serve(p.ln)
	}()
	return p, nil
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// setsockopt returns a socket Control function that sets one integer
// option (named name in errors) before bind or connect.
func setsockopt(name string, level, opt, value int) func(_, _ string, c syscall.RawConn) error {
	return func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), level, opt, value)
		}); err != nil {
			return err
		}
		if serr != nil {
			return fmt.Errorf("%s: %w", name, serr)
		}
		return nil
	}
}

func (p *Proxy) handler(upstream http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.requests.Add(1)
		src := r.Context().Value(keyRemote).(netip.AddrPort)
		dst := r.Context().Value(keyLocal).(netip.AddrPort)
		d := p.opts.Decider.Decide(src, dst, model.Request{Method: r.Method, Path: r.URL.Path})
		if !d.Allowed {
			p.denied.Add(1)
			w.Header().Set("X-Fastpath-Reason", d.Reason)
			http.Error(w, "Access denied", http.StatusForbidden)
			return
		}
		p.allowed.Add(1)
		upstream.ServeHTTP(w, r)
	})
}

// Listener is the transparent listening socket, for the datapath's
// socket map (lxc.Datapath.SetProxy).
func (p *Proxy) Listener() *net.TCPListener { return p.ln }

// Addr is the listener's address.
func (p *Proxy) Addr() netip.AddrPort { return p.ln.Addr().(*net.TCPAddr).AddrPort() }

// Stats returns the counters.
func (p *Proxy) Stats() Stats {
	return Stats{
		Connections:    p.connections.Load(),
		Requests:       p.requests.Load(),
		Allowed:        p.allowed.Load(),
		Denied:         p.denied.Load(),
		UpstreamErrors: p.upstreamErrors.Load(),
	}
}

// Close stops the proxy: the listener and every connection.
func (p *Proxy) Close() error {
	err := p.srv.Close()
	<-p.done
	return err
}
