package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/fsnotify/fsnotify"

	"github.com/fastpath-bench/fastpath/datapath/agentapi"
	"github.com/fastpath-bench/fastpath/datapath/kube"
	"github.com/fastpath-bench/fastpath/datapath/model"
)

// Sources of desired state.
const (
	SourceDir        = "dir"
	SourceKubernetes = "kubernetes"
)

// source is where the agent reads the desired state from.
type source interface {
	// name is SourceDir or SourceKubernetes.
	name() string
	// load returns the current state and its digest; the digest is set
	// even when the state cannot be loaded (it names the refused state).
	// revs are the kubernetes source's revisions (nil for dir).
	load() (objs *model.Objects, hash string, revs map[string]int64, err error)
	// watch signals changed (non-blocking sends on a channel of one)
	// until ctx ends or the watch fails.
	watch(ctx context.Context, changed chan<- struct{}) error
}

// signal makes a non-blocking send: one pending signal is enough.
func signal(ch chan<- struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// dirSource is a directory of YAML watched with fsnotify.
type dirSource struct {
	dir string
	// loader decodes only the state files that changed.
	loader model.Loader
}

func (d *dirSource) name() string { return SourceDir }

func (d *dirSource) load() (*model.Objects, string, map[string]int64, error) {
	objs, err := d.loader.Load(d.dir)
	if err == nil {
		return objs, objs.Hash, nil, nil
	}
	h, _ := model.HashDir(d.dir)
	return nil, h, nil, err
}

func (d *dirSource) watch(ctx context.Context, changed chan<- struct{}) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch state: %w", err)
	}
	defer w.Close()
	if err := addWatches(w, d.dir); err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return errors.New("state watcher closed")
			}
			if ev.Has(fsnotify.Create) {
				if fi, err := os.Stat(ev.Name); err == nil && fi.IsDir() {
					_ = addWatches(w, ev.Name)
				}
			}
			if ignoredEvent(ev) {
				continue
			}
			// Coalesce the events already queued (many files written at
			// once); none is waited for.
			drain(w.Events)
			signal(changed)
		case err := <-w.Errors:
			return fmt.Errorf("state watcher: %w", err)
		}
	}
}

// ignoredEvent is true for files that are not part of the state: dot-files
// (an atomic writer's temporary) and editors' backups.
func ignoredEvent(ev fsnotify.Event) bool {
	base := filepath.Base(ev.Name)
	return strings.HasPrefix(base, ".") || strings.HasSuffix(base, "~")
}

// drain takes the events that are already queued, without waiting: every
// microsecond spent waiting for more would be part of the propagation time
// (and Go timers shorter than a millisecond fire after about one). A writer
// that is not done yet causes a further event, and with it another load;
// an incomplete state in between is refused and the programmed one stays
// in force, so writers should replace files atomically (write a dot-file,
// rename it), as the harness does.
func drain(ch <-chan fsnotify.Event) {
	for {
		select {
		case <-ch:
		default:
			runtime.Gosched() // let the watcher hand over a queued event
			select {
			case <-ch:
				continue
			default:
				return
			}
		}
	}
}

func addWatches(w *fsnotify.Watcher, root string) error {
	return filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if err := w.Add(path); err != nil {
				return fmt.Errorf("watch %s: %w", path, err)
			}
		}
		return nil
	})
}

// kubeSource is the API server, through informers (datapath/kube).
type kubeSource struct{ src *kube.Source }

func (k kubeSource) name() string { return SourceKubernetes }

// load names the state by the source's own digest (objs.Hash: the
// revisions, and deletions found only on a relist); writers wait for
// revision tokens, which the agent checks against the revisions it
// reports beside it.
func (k kubeSource) load() (*model.Objects, string, map[string]int64, error) {
	objs, revs, err := k.src.Snapshot()
	if err != nil {
		return nil, agentapi.RevisionToken(revs), revs, err
	}
	return objs, objs.Hash, revs, nil
}

func (k kubeSource) watch(ctx context.Context, changed chan<- struct{}) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-k.src.Changed():
			signal(changed)
		}
	}
}
