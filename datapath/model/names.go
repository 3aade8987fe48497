package model

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"hash"
	"io/fs"
	"path/filepath"
	"sync"
)

// InterfaceName is the name of the node-side veth of a pod: "lxc" and 12 hex
// digits of a hash of "namespace/name" (15 characters, the kernel's limit).
// The cluster provider (which plays the CNI) and the agent both derive it.
func InterfaceName(namespace, name string) string {
	sum := sha256.Sum256([]byte(namespace + "/" + name))
	return "lxc" + hex.EncodeToString(sum[:])[:12]
}

// HashDir returns a digest of the state files below dir (the same files
// LoadDir reads, and the same digest it records in Objects.Hash): writers
// and the agent compare it to tell which version of the desired state the
// datapath has programmed.
func HashDir(dir string) (string, error) {
	return new(Hasher).HashDir(dir)
}

// Hasher is HashDir for a writer that hashes the same directory again and
// again (the harness, after every change): it reads a file again only when
// its stamp changed, as Loader does. Safe for concurrent use.
type Hasher struct {
	mu    sync.Mutex
	files map[string]hashedFile
}

type hashedFile struct {
	stamp fileStamp
	sum   [sha256.Size]byte
}

// HashDir is the package's HashDir.
func (c *Hasher) HashDir(dir string) (string, error) {
	files, err := stateFiles(dir)
	if err != nil {
		return "", err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.files == nil {
		c.files = map[string]hashedFile{}
	}
	h := newDirHash()
	for _, f := range files {
		hf, ok := c.files[f]
		var prev *fileStamp
		if ok {
			prev = &hf.stamp
		}
		r, unchanged, err := readStamped(f, prev)
		if errors.Is(err, fs.ErrNotExist) {
			continue // removed since the listing, as Loader.Load does
		}
		if err != nil {
			return "", err
		}
		rel, _ := filepath.Rel(dir, f)
		if unchanged {
			h.add(rel, hf.sum)
			continue
		}
		sum := sha256.Sum256(r.data)
		h.add(rel, sum)
		if r.settled {
			c.files[f] = hashedFile{stamp: r.stamp, sum: sum}
		} else {
			delete(c.files, f)
		}
	}
	return h.sum(), nil
}

type dirHash struct{ h hash.Hash }

func newDirHash() *dirHash { return &dirHash{h: sha256.New()} }

// add adds a file by its name and the SHA-256 of its contents.
func (d *dirHash) add(name string, sum [sha256.Size]byte) {
	d.h.Write([]byte(name))
	d.h.Write([]byte{0})
	d.h.Write(sum[:])
}

func (d *dirHash) sum() string { return hex.EncodeToString(d.h.Sum(nil))[:16] }
