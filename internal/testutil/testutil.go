// Package testutil holds helpers shared by the project's tests: privilege
// checks that turn into failures in CI, and throwaway network namespaces.
package testutil

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// RequireRoot skips a privileged test when not running as root, or fails it
// when FASTPATH_REQUIRE_PRIVILEGED=1 (set by make test and CI), so that CI
// cannot silently lose coverage.
func RequireRoot(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("FASTPATH_REQUIRE_PRIVILEGED") == "1" {
		tb.Fatal("this test needs root (CAP_NET_ADMIN, CAP_BPF, CAP_SYS_ADMIN) and FASTPATH_REQUIRE_PRIVILEGED=1 forbids skipping it")
	}
	tb.Skip("needs root (CAP_NET_ADMIN, CAP_BPF, CAP_SYS_ADMIN); run as root or via make test")
}

// SkipOrFail skips with reason, or fails when FASTPATH_REQUIRE_PRIVILEGED=1
// and the reason is not a missing kernel feature.
func SkipOrFail(tb testing.TB, featureMissing bool, reason string) {
	tb.Helper()
	if !featureMissing && os.Getenv("FASTPATH_REQUIRE_PRIVILEGED") == "1" {
		tb.Fatal(reason)
	}
	tb.Skip(reason)
}

// InNewNetns locks the calling goroutine to its thread and moves that thread
// into a new, unnamed network namespace, restoring the original one at the
// end of the test. Everything the test creates there vanishes with it.
func InNewNetns(tb testing.TB) {
	tb.Helper()
	RequireRoot(tb)
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		tb.Fatalf("get netns: %v", err)
	}
	ns, err := netns.New()
	if err != nil {
		orig.Close()
		runtime.UnlockOSThread()
		tb.Fatalf("new netns: %v", err)
	}
	tb.Cleanup(func() {
		if err := netns.Set(orig); err != nil {
			// The thread is stuck in the test netns: never unlock it, so
			// the runtime discards it instead of reusing it.
			tb.Errorf("restore netns: %v", err)
			return
		}
		ns.Close()
		orig.Close()
		runtime.UnlockOSThread()
	})
}

// RunID returns a fresh run id "fp-t<name><random>", so that test runs (and
// two test processes) never share namespaces or directories.
func RunID(name string) string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return "fp-t" + name + hex.EncodeToString(b[:])
}

var netnsSeq atomic.Int32

// NamedNetns makes a named network namespace (under /run/netns) and
// returns its path; it is deleted when the test ends. It needs root.
func NamedNetns(tb testing.TB, prefix string) string {
	tb.Helper()
	RequireRoot(tb)
	name := fmt.Sprintf("fp-%s-%d-%d", prefix, os.Getpid(), netnsSeq.Add(1))
	errc := make(chan error, 1)
	go func() {
		// The thread ends up in the new namespace and is never unlocked:
		// the runtime discards it when the goroutine returns.
		runtime.LockOSThread()
		h, err := netns.NewNamed(name)
		if err == nil {
			h.Close()
		}
		errc <- err
	}()
	if err := <-errc; err != nil {
		tb.Fatalf("create network namespace %s: %v", name, err)
	}
	tb.Cleanup(func() { _ = netns.DeleteNamed(name) })
	return "/run/netns/" + name
}

// NetlinkAt returns a netlink handle in the namespace at path, closed when
// the test ends.
func NetlinkAt(tb testing.TB, path string) *netlink.Handle {
	tb.Helper()
	nsh, err := netns.GetFromPath(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer nsh.Close()
	h, err := netlink.NewHandleAt(nsh)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(h.Close)
	return h
}
