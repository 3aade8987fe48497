package probe

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/fastpath-bench/fastpath/internal/testutil"
)

// TestSpoofed: a datagram with a forged source (an address this host
// does not have on the interface) reaches a probe server, which reports
// it; with no server on the port nothing is reported.
func TestSpoofed(t *testing.T) {
	testutil.RequireRoot(t)
	s, err := Serve("", 47011, "UDP")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	lo := netip.MustParseAddr("127.0.0.1")
	forged := netip.MustParseAddr("192.0.2.77")
	if r := Spoofed(ctx, "", forged, lo, 47011, time.Second); !r.Connected {
		t.Fatalf("spoofed datagram to a server: %v", r.Err)
	}
	if r := Spoofed(ctx, "", forged, lo, 47012, 300*time.Millisecond); r.Connected {
		t.Fatal("spoofed datagram to a port without server reported delivered")
	}
}
