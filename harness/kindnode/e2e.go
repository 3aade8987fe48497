package kindnode

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// (Not part of the recipe hash: the node image does not depend on it.)

// E2EBinaries are the upstream end-to-end test binary and agnhost, the
// image its pods run, built from the k8s.io/kubernetes module.
type E2EBinaries struct {
	E2ETest string
	Agnhost string
	// Ginkgo is the ginkgo command at the version e2e.test links, which
	// runs the suite's specs in parallel processes.
	Ginkgo string
}

const (
	e2ePkg     = "k8s.io/kubernetes/test/e2e"
	agnhostPkg = "k8s.io/kubernetes/test/images/agnhost"
	ginkgoPkg  = "github.com/onsi/ginkgo/v2/ginkgo"
)

// BuildE2E builds e2e.test (go test -c of k8s.io/kubernetes/test/e2e) and
// agnhost (test/images/agnhost), static, at the pinned Kubernetes
// version, in a module generated like the node image's commands'; built
// binaries are cached.
func BuildE2E(ctx context.Context, opts Options) (*E2EBinaries, error) {
	if err := opts.defaults(); err != nil {
		return nil, err
	}
	out := filepath.Join(opts.CacheDir, "bin", opts.KubernetesVersion+"-e2e")
	work := filepath.Join(opts.CacheDir, "work", opts.KubernetesVersion+"-e2e")
	if err := os.MkdirAll(out, 0o755); err != nil {
		return nil, err
	}
	b := &E2EBinaries{E2ETest: filepath.Join(out, "e2e.test"), Agnhost: filepath.Join(out, "agnhost"), Ginkgo: filepath.Join(out, "ginkgo")}
	_, e1 := os.Stat(b.E2ETest)
	_, e2 := os.Stat(b.Agnhost)
	_, e3 := os.Stat(b.Ginkgo)
	if e1 == nil && e2 == nil && e3 == nil {
		return b, nil
	}
	if err := kubeModule(ctx, work, opts.KubernetesVersion); err != nil {
		return nil, err
	}
	// The same module, asked for the e2e packages instead of the
	// commands.
	tools := fmt.Sprintf("//go:build tools\n\npackage tools\n\nimport (\n\t_ %q\n\t_ %q\n\t_ %q\n)\n", e2ePkg, agnhostPkg, ginkgoPkg)
	if err := os.WriteFile(filepath.Join(work, "tools.go"), []byte(tools), 0o644); err != nil {
		return nil, err
	}
	if _, err := goCmd(ctx, work, "mod", "tidy", "-e"); err != nil {
		return nil, err
	}
	start := time.Now()
	if e1 != nil {
		opts.Logf("building e2e.test %s (cold: many minutes)", opts.KubernetesVersion)
		if _, err := goCmd(ctx, work, "test", "-c", "-trimpath", "-ldflags", versionLDFlags(opts.KubernetesVersion), "-o", b.E2ETest+".tmp", e2ePkg); err != nil {
			return nil, err
		}
		if err := os.Rename(b.E2ETest+".tmp", b.E2ETest); err != nil {
			return nil, err
		}
	}
	if e2 != nil {
		opts.Logf("building agnhost")
		if _, err := goCmd(ctx, work, "build", "-trimpath", "-ldflags", "-s -w", "-o", b.Agnhost+".tmp", agnhostPkg); err != nil {
			return nil, err
		}
		if err := os.Rename(b.Agnhost+".tmp", b.Agnhost); err != nil {
			return nil, err
		}
	}
	opts.Logf("building ginkgo")
	if _, err := goCmd(ctx, work, "build", "-trimpath", "-ldflags", "-s -w", "-o", b.Ginkgo+".tmp", ginkgoPkg); err != nil {
		return nil, err
	}
	if err := os.Rename(b.Ginkgo+".tmp", b.Ginkgo); err != nil {
		return nil, err
	}
	opts.Logf("e2e binaries ready in %s (%s)", out, time.Since(start).Round(time.Second))
	return b, nil
}
