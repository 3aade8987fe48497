package kind

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// tryExclusive says whether the lock file could be taken exclusive now.
func tryExclusive(t *testing.T) bool {
	t.Helper()
	f, err := os.OpenFile(networkLockFile, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return false
	}
	if err != nil {
		t.Fatal(err)
	}
	return true
}

// A cluster being created (shared) keeps the network's removal
// (exclusive) out, while other creations (shared) go on.
func TestNetworkLock(t *testing.T) {
	old := networkLockFile
	networkLockFile = filepath.Join(t.TempDir(), "sub", "kind-network.lock")
	t.Cleanup(func() { networkLockFile = old })

	a, err := networkLock(false)
	if err != nil {
		t.Fatal(err)
	}
	b, err := networkLock(false)
	if err != nil {
		t.Fatal("a second shared holder must not wait:", err)
	}
	if tryExclusive(t) {
		t.Fatal("exclusive lock taken while a cluster holds it shared")
	}
	a()
	if tryExclusive(t) {
		t.Fatal("exclusive lock taken while a second cluster still holds it shared")
	}
	b()
	if !tryExclusive(t) {
		t.Fatal("exclusive lock refused after every shared holder released it")
	}
	ex, err := networkLock(true)
	if err != nil {
		t.Fatal(err)
	}
	if tryExclusive(t) {
		t.Fatal("exclusive lock taken twice")
	}
	ex()
}
