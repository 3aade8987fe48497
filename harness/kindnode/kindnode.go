// Package kindnode builds a kind node image with no registry: Kubernetes,
// etcd and pause built from their Go modules at pinned versions, the
// control-plane images FROM scratch as kubeadm names them, and a Debian
// rootfs with systemd and containerd carrying kind's own base-image files
// (taken from the sigs.k8s.io/kind module). Inputs are hashed; an image
// that exists for the hash is not built again.
package kindnode

import (
	"context"
	"os"
	"path/filepath"
	"time"
)

// Pinned versions (Kubernetes v1.35.0's kubeadm asks for these images).
const (
	DefaultKubernetesVersion = "v1.35.0"
	DefaultEtcdVersion       = "v3.6.6"
	DefaultKindVersion       = "v0.33.0"
)

// Options configure a build; zero values mean the defaults.
type Options struct {
	KubernetesVersion string
	EtcdVersion       string
	KindVersion       string
	// CacheDir holds the built binaries and work files (default
	// $XDG_CACHE_HOME or ~/.cache, then fastpath/kind-node).
	CacheDir string
	// Logf reports progress (default: discarded).
	Logf func(format string, args ...any)
}

func (o *Options) defaults() error {
	if o.KubernetesVersion == "" {
		o.KubernetesVersion = DefaultKubernetesVersion
	}
	if o.EtcdVersion == "" {
		o.EtcdVersion = DefaultEtcdVersion
	}
	if o.KindVersion == "" {
		o.KindVersion = DefaultKindVersion
	}
	if _, err := stagingVersion(o.KubernetesVersion); err != nil {
		return err
	}
	if o.CacheDir == "" {
		dir, err := os.UserCacheDir()
		if err != nil {
			return err
		}
		o.CacheDir = filepath.Join(dir, "fastpath", "kind-node")
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	return nil
}

// Binaries are the built executables of one version set.
type Binaries struct {
	Dir string // holds kubeCommands, etcd, pause
}

// BuildBinaries builds (or finds in the cache) the Kubernetes commands,
// etcd and pause, static, for the versions of opts.
func BuildBinaries(ctx context.Context, opts Options) (*Binaries, error) {
	if err := opts.defaults(); err != nil {
		return nil, err
	}
	out := filepath.Join(opts.CacheDir, "bin", opts.KubernetesVersion+"-etcd"+opts.EtcdVersion)
	work := filepath.Join(opts.CacheDir, "work", opts.KubernetesVersion)
	if err := os.MkdirAll(out, 0o755); err != nil {
		return nil, err
	}
	start := time.Now()
	if err := buildKube(ctx, filepath.Join(work, "kubernetes"), out, opts.KubernetesVersion, opts.Logf); err != nil {
		return nil, err
	}
	opts.Logf("building etcd %s", opts.EtcdVersion)
	if err := buildSmall(ctx, work, filepath.Join(out, "etcd"), "etcd", etcdMain, "go.etcd.io/etcd/server/v3", opts.EtcdVersion); err != nil {
		return nil, err
	}
	if err := buildSmall(ctx, work, filepath.Join(out, "pause"), "pause", pauseMain, "", ""); err != nil {
		return nil, err
	}
	opts.Logf("binaries ready in %s (%s)", out, time.Since(start).Round(time.Second))
	return &Binaries{Dir: out}, nil
}

func (b *Binaries) path(name string) string { return filepath.Join(b.Dir, name) }
