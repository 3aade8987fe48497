package model

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
)

// Loader loads state directories as LoadDir does, but decodes and
// validates again only the files whose contents changed since its previous
// load: an agent reloads its directory on every change, and a change
// usually touches one file among many. Every file is still read and hashed,
// so the digest and the result are exactly LoadDir's. A Loader is safe for
// concurrent use; the Objects it returns must not be modified.
type Loader struct {
	mu    sync.Mutex
	files map[string]loadedFile
}

type loadedFile struct {
	sum  [sha256.Size]byte
	objs *Objects // the file's objects alone, decoded and validated
	err  error
	// stamp is the file's identity and times when it was read; trusted
	// says its times were safely older than the read, so that an equal
	// stamp means equal contents and the file is not read again.
	stamp   fileStamp
	trusted bool
}

// Load reads dir. On error, the error names every file, object and field
// at fault, as LoadDir's does.
func (l *Loader) Load(dir string) (*Objects, error) {
	files, err := stateFiles(dir)
	if err != nil {
		return nil, fmt.Errorf("read state directory: %w", err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.files == nil {
		l.files = map[string]loadedFile{}
	}
	seen := map[string]bool{}
	h := newDirHash()
	objs := &Objects{Source: map[string]string{}}
	var errs []error
	var parts []*Objects // the files' objects, merged in file order
	for _, f := range files {
		rel, _ := filepath.Rel(dir, f)
		lf, ok := l.files[rel]
		var prev *fileStamp
		if ok && lf.trusted {
			prev = &lf.stamp
		}
		r, unchanged, err := readStamped(f, prev)
		if errors.Is(err, fs.ErrNotExist) {
			// Removed since the directory was listed: not part of the
			// state any more (the writer's change is a new event).
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("read %s: %w", f, err))
			continue
		}
		seen[rel] = true
		if unchanged {
			// Unchanged since it was read: neither read nor hashed again.
			h.add(rel, lf.sum)
		} else {
			sum := sha256.Sum256(r.data)
			h.add(rel, sum)
			if !ok || lf.sum != sum {
				one := &Objects{Source: map[string]string{}}
				lf = loadedFile{sum: sum, objs: one}
				if err := one.Decode(rel, r.data); err != nil {
					lf.err = err
				} else {
					// Checks across objects run below, on the whole state.
					lf.err = errors.Join(one.validateObjects()...)
				}
			}
			lf.stamp, lf.trusted = r.stamp, r.settled
			l.files[rel] = lf
		}
		if lf.err != nil {
			errs = append(errs, lf.err)
			continue
		}
		parts = append(parts, lf.objs)
	}
	objs.grow(parts)
	for _, p := range parts {
		errs = append(errs, objs.merge(p)...)
	}
	for rel := range l.files {
		if !seen[rel] {
			delete(l.files, rel)
		}
	}
	if len(errs) == 0 {
		// References between objects of different files. (Not while a
		// file is refused: its objects are missing, and what refers to
		// them would be reported too.)
		errs = objs.validateRefs()
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	objs.Hash = h.sum()
	objs.validated = true
	return objs, nil
}

// grow makes room in o for the objects of parts, so that merging them
// copies each object once.
func (o *Objects) grow(parts []*Objects) {
	count := func(f func(*Objects) int) int {
		t := 0
		for _, p := range parts {
			t += f(p)
		}
		return t
	}
	o.Source = make(map[string]string, count(func(p *Objects) int { return len(p.Source) }))
	o.Namespaces = sized[corev1.Namespace](count(func(p *Objects) int { return len(p.Namespaces) }))
	o.Nodes = sized[corev1.Node](count(func(p *Objects) int { return len(p.Nodes) }))
	o.Pods = sized[corev1.Pod](count(func(p *Objects) int { return len(p.Pods) }))
	o.NetworkPolicies = sized[networkingv1.NetworkPolicy](count(func(p *Objects) int { return len(p.NetworkPolicies) }))
	o.CiliumNetworkPolicies = sized[CiliumNetworkPolicy](count(func(p *Objects) int { return len(p.CiliumNetworkPolicies) }))
	o.AuthorizationPolicies = sized[AuthorizationPolicy](count(func(p *Objects) int { return len(p.AuthorizationPolicies) }))
	o.Services = sized[corev1.Service](count(func(p *Objects) int { return len(p.Services) }))
	o.EndpointSlices = sized[discoveryv1.EndpointSlice](count(func(p *Objects) int { return len(p.EndpointSlices) }))
	o.Prefilters = sized[Prefilter](count(func(p *Objects) int { return len(p.Prefilters) }))
	o.EgressGatewayPolicies = sized[EgressGatewayPolicy](count(func(p *Objects) int { return len(p.EgressGatewayPolicies) }))
}

// sized is an empty slice with room for n elements (nil for none, as
// appending nothing leaves it).
func sized[T any](n int) []T {
	if n == 0 {
		return nil
	}
	return make([]T, 0, n)
}

// merge appends the objects of one file to o, refusing an object that o
// already has from another file.
func (o *Objects) merge(f *Objects) []error {
	var errs []error
	keys := make([]string, 0, len(f.Source))
	for k := range f.Source {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if prev, dup := o.Source[k]; dup {
			errs = append(errs, fmt.Errorf("%s: %s: metadata.name: duplicate object, already defined in %s", f.Source[k], k, prev))
			continue
		}
		o.Source[k] = f.Source[k]
	}
	if len(errs) > 0 {
		return errs
	}
	o.Namespaces = append(o.Namespaces, f.Namespaces...)
	o.Nodes = append(o.Nodes, f.Nodes...)
	o.Pods = append(o.Pods, f.Pods...)
	o.NetworkPolicies = append(o.NetworkPolicies, f.NetworkPolicies...)
	o.CiliumNetworkPolicies = append(o.CiliumNetworkPolicies, f.CiliumNetworkPolicies...)
	o.AuthorizationPolicies = append(o.AuthorizationPolicies, f.AuthorizationPolicies...)
	o.Services = append(o.Services, f.Services...)
	o.EndpointSlices = append(o.EndpointSlices, f.EndpointSlices...)
	o.Prefilters = append(o.Prefilters, f.Prefilters...)
	o.EgressGatewayPolicies = append(o.EgressGatewayPolicies, f.EgressGatewayPolicies...)
	return nil
}

// fileStamp identifies a version of a file without reading it: its device,
// inode, size and modification and change times (a rename, a rewrite and
// a truncation each change one of them).
type fileStamp struct {
	dev, ino     uint64
	size         int64
	mtime, ctime int64 // ns
}

// statFile stamps the file path names (following links, as reading does:
// a ConfigMap volume swaps a link to a new directory).
func statFile(path string) (fileStamp, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return fileStamp{}, &fs.PathError{Op: "stat", Path: path, Err: err}
	}
	return fileStamp{dev: uint64(st.Dev), ino: st.Ino, size: st.Size,
		mtime: st.Mtim.Nano(), ctime: st.Ctim.Nano()}, nil
}

// racyWindow is how much older than a read a file's times must be for its
// stamp to stand for its contents. File times come from a coarse clock
// (a tick, a few milliseconds): a write just after the read could leave
// the times and size as they were. A file written within the window is
// read again on the next load (as Git treats "racily clean" entries).
const racyWindow = 100 * time.Millisecond

// stampedRead is a file's contents with its stamp, and whether the stamp
// was settled when it was read (see racyWindow).
type stampedRead struct {
	data    []byte
	stamp   fileStamp
	settled bool
}

// readStamped reads file f, unless prev, a stamp settled at an earlier
// read, still holds: then unchanged is true and nothing is read. An error
// wrapping fs.ErrNotExist means f was removed meanwhile.
func readStamped(f string, prev *fileStamp) (r stampedRead, unchanged bool, err error) {
	if prev != nil {
		if stamp, err := statFile(f); err == nil && stamp == *prev {
			return r, true, nil
		}
	}
	readAt := time.Now()
	stamp, serr := statFile(f)
	data, err := os.ReadFile(f)
	if err == nil {
		err = serr
	} else if errors.Is(serr, fs.ErrNotExist) {
		err = serr
	}
	if err != nil {
		return r, false, err
	}
	return stampedRead{data: data, stamp: stamp, settled: stamp.settledBefore(readAt)}, false, nil
}

func (s fileStamp) settledBefore(readAt time.Time) bool {
	limit := readAt.Add(-racyWindow).UnixNano()
	return s.mtime < limit && s.ctime < limit
}
