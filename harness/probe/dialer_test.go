package probe

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/fastpath-bench/fastpath/internal/testutil"
)

// namedNetns creates a named network namespace with loopback up.
func namedNetns(t *testing.T) string {
	t.Helper()
	testutil.RequireRoot(t)
	name := testutil.RunID("probe")
	testutil.InNewNetns(t) // this goroutine's thread, until the test ends
	h, err := netns.NewNamed(name)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	t.Cleanup(func() { _ = netns.DeleteNamed(name) })
	lo, err := netlink.LinkByName("lo")
	if err == nil {
		err = netlink.LinkSetUp(lo)
	}
	if err != nil {
		t.Fatal(err)
	}
	return name
}

// TestDialerManyProbes: more probes than one batch of sockets connect and
// echo from the namespace, a refused port reports not connected, and Close
// leaves no socket of the Dialer open.
func TestDialerManyProbes(t *testing.T) {
	ns := namedNetns(t)
	srv, err := Serve(ns, 9000, "TCP")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	before := openSockets(t)
	d, err := NewDialer(ns)
	if err != nil {
		t.Fatal(err)
	}
	lo := netip.MustParseAddr("127.0.0.1")
	for i := 0; i < 3*dialerBatch+5; i++ {
		if res := d.Connect(context.Background(), lo, 9000, time.Second); !res.Connected {
			t.Fatalf("probe %d: %+v", i, res)
		}
	}
	if res := d.Connect(context.Background(), lo, 9001, time.Second); res.Connected {
		t.Fatalf("probe to a closed port connected: %+v", res)
	}
	d.Close()
	// (The server closes its ends when the resets arrive: give it a moment.)
	after := openSockets(t)
	for deadline := time.Now().Add(2 * time.Second); after > before && time.Now().Before(deadline); after = openSockets(t) {
		time.Sleep(10 * time.Millisecond)
	}
	if after > before {
		t.Errorf("%d sockets open after Close, %d before the Dialer", after, before)
	}
}

func openSockets(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		if l, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name())); err == nil && strings.HasPrefix(l, "socket:") {
			n++
		}
	}
	return n
}
