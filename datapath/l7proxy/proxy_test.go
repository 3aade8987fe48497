package l7proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fastpath-bench/fastpath/datapath/model"
	"github.com/fastpath-bench/fastpath/internal/testutil"
)

// upstream is a pod's HTTP server that records the connections it got.
type upstream struct {
	*httptest.Server
	mu     sync.Mutex
	conns  map[string]http.ConnState
	closed chan string
}

func newUpstream(t *testing.T) *upstream {
	u := &upstream{conns: map[string]http.ConnState{}, closed: make(chan string, 16)}
	u.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %s", r.Method, r.URL.Path)
	}))
	u.Config.ConnState = func(c net.Conn, st http.ConnState) {
		u.mu.Lock()
		defer u.mu.Unlock()
		u.conns[c.RemoteAddr().String()] = st
		if st == http.StateClosed {
			u.closed <- c.RemoteAddr().String()
		}
	}
	u.Start()
	t.Cleanup(u.Close)
	return u
}

func (u *upstream) count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.conns)
}

// client is one client connection through the proxy, sending requests
// with keep-alive.
type client struct {
	c net.Conn
	r *bufio.Reader
}

func dial(t *testing.T, p *Proxy) *client {
	c, err := net.Dial("tcp4", p.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &client{c, bufio.NewReader(c)}
}

func (c *client) do(t *testing.T, method, path string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, "http://pod"+path, nil)
	if err := req.Write(c.c); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(c.r, req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestUpstreamConnectionPerClientConnection: requests of one client
// connection share one connection to the pod; another client connection
// never gets it (a shared pool would hand out an idle connection to a pod
// that may be gone, its address taken by another: non-replayable requests
// then failed with 502); it closes when its client connection closes. A
// denied request never reaches the pod.
func TestUpstreamConnectionPerClientConnection(t *testing.T) {
	testutil.RequireRoot(t) // IP_TRANSPARENT needs CAP_NET_ADMIN
	u := newUpstream(t)
	target := netip.MustParseAddrPort(u.Listener.Addr().String())
	p, err := Listen(Options{
		ListenAddr: "127.0.0.1:0",
		Decider: DeciderFunc(func(_, _ netip.AddrPort, r model.Request) Decision {
			return Decision{Allowed: r.Path != "/private", Reason: "test rule"}
		}),
		upstreamOf: func(netip.AddrPort) netip.AddrPort { return target },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()

	a := dial(t, p)
	for _, m := range []string{"GET", "DELETE", "POST"} {
		if code, body := a.do(t, m, "/x"); code != 200 || body != m+" /x" {
			t.Fatalf("%s through the proxy: %d %q", m, code, body)
		}
	}
	if n := u.count(); n != 1 {
		t.Fatalf("one client connection's requests used %d upstream connections", n)
	}
	if code, _ := a.do(t, "GET", "/private"); code != http.StatusForbidden {
		t.Fatalf("denied request: %d", code)
	}
	b := dial(t, p)
	if code, _ := b.do(t, "DELETE", "/y"); code != 200 {
		t.Fatalf("second client: %d", code)
	}
	if n := u.count(); n != 2 {
		t.Fatalf("two client connections used %d upstream connections", n)
	}
	a.c.Close()
	select {
	case <-u.closed:
	case <-time.After(5 * time.Second):
		t.Fatal("the upstream connection outlived its client connection")
	}
	st := p.Stats()
	if st.Requests != 5 || st.Allowed != 4 || st.Denied != 1 || st.UpstreamErrors != 0 || st.Connections != 2 {
		t.Fatalf("stats %+v", st)
	}
	if !strings.HasPrefix(p.Addr().String(), "127.0.0.1:") {
		t.Fatalf("listening on %s", p.Addr())
	}
}
