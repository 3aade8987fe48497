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

// E2EBinaries are the upstream end-to-end test binary and agnhost, the
// image its pods run, built from the k8s.io/kubernetes module.
type E2EBinaries struct {
	E2ETest string
	Agnhost string
}

// BuildE2E builds e2e.test (go test -c of k8s.io/kubernetes/test/e2e) and
// agnhost (test/images/agnhost), static, at the pinned Kubernetes
// version; built binaries are cached like the node image's.
func BuildE2E(ctx context.Context, opts Options) (*E2EBinaries, error) {
	if err := opts.defaults(); err != nil {
		return nil, err
	}
	out := filepath.Join(opts.CacheDir, "bin", opts.KubernetesVersion+"-e2e")
	work := filepath.Join(opts.CacheDir, "work", opts.KubernetesVersion+"-e2e")
	if err := os.MkdirAll(out, 0o755); err != nil {
		return nil, err
	}
	b := &E2EBinaries{E2ETest: filepath.Join(out, "e2e.test"), Agnhost: filepath.Join(out, "agnhost")}
	_, e1 := os.Stat(b.E2ETest)
	_, e2 := os.Stat(b.Agnhost)
	if e1 == nil && e2 == nil {
		return b, nil
	}
	const e2ePkg, agnPkg = "k8s.io/kubernetes/test/e2e", "k8s.io/kubernetes/test/images/agnhost"
	if err := kubeModuleFor(ctx, work, opts.KubernetesVersion, []string{e2ePkg, agnPkg}); err != nil {
		return nil, err
	}
	start := time.Now()
	opts.Logf("building e2e.test %s (cold: many minutes)", opts.KubernetesVersion)
	if _, err := goCmd(ctx, work, "test", "-c", "-trimpath", "-ldflags", versionLDFlags(opts.KubernetesVersion), "-o", b.E2ETest+".tmp", e2ePkg); err != nil {
		return nil, err
	}
	if err := os.Rename(b.E2ETest+".tmp", b.E2ETest); err != nil {
		return nil, err
	}
	opts.Logf("building agnhost")
	if _, err := goCmd(ctx, work, "build", "-trimpath", "-ldflags", "-s -w", "-o", b.Agnhost+".tmp", agnPkg); err != nil {
		return nil, err
	}
	if err := os.Rename(b.Agnhost+".tmp", b.Agnhost); err != nil {
		return nil, err
	}
	opts.Logf("e2e binaries ready in %s (%s)", out, time.Since(start).Round(time.Second))
	return b, nil
}
