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
	for _, f := range files {
		data, err := os.ReadFile(f)
		if errors.Is(err, fs.ErrNotExist) {
			// Removed since the directory was listed: not part of the
			// state any more (the writer's change is a new event).
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("read %s: %w", f, err))
			continue
		}
		rel, _ := filepath.Rel(dir, f)
		seen[rel] = true
		h.add(rel, data)
		sum := sha256.Sum256(data)
		lf, ok := l.files[rel]
		if !ok || lf.sum != sum {
			one := &Objects{Source: map[string]string{}}
			lf = loadedFile{sum: sum, objs: one}
			if err := one.Decode(rel, data); err != nil {
				lf.err = err
			} else {
				// Checks across objects run below, on the whole state.
				lf.err = errors.Join(one.validateObjects()...)
			}
			l.files[rel] = lf
		}
		if lf.err != nil {
			errs = append(errs, lf.err)
			continue
		}
		errs = append(errs, objs.merge(lf.objs)...)
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
	return nil
}
