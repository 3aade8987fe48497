package probe

import (
	"net"
	"net/netip"
	"testing"
	"time"
)

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestServeName: every connection reads the text, then EOF; after Close
// connections are refused.
func TestServeName(t *testing.T) {
	port := freePort(t)
	s, err := ServeName("", port, "east-a")
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if got, err := AskName("", netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port)), time.Second); err != nil || got != "east-a" {
			t.Fatalf("read %q, %v", got, err)
		}
	}
	s.Close()
	s.Close()
	if c, err := net.DialTimeout("tcp4", netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port)).String(), time.Second); err == nil {
		c.Close()
		t.Fatal("connected after Close")
	}
}

// TestServerPeers: the echo server gives each accepted connection's peer
// address once Peers was asked for, and Close ends open connections.
func TestServerPeers(t *testing.T) {
	port := freePort(t)
	s, err := Serve("", port, "TCP")
	if err != nil {
		t.Fatal(err)
	}
	peers := s.Peers()
	c, err := net.DialTimeout("tcp4", netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port)).String(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	select {
	case p := <-peers:
		if p != netip.MustParseAddr("127.0.0.1") {
			t.Fatalf("peer %s", p)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("no peer recorded")
	}
	s.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("the connection is still open after Close")
	}
}
