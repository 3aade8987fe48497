// Package images builds the project's container image: the node agent,
// its CNI plugin and the workload binary, FROM scratch (there is no
// registry to pull a base from). The tag is a digest of what goes in, so
// an unchanged image is not rebuilt and kind nodes never run a stale one.
package images

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/fastpath-bench/fastpath/harness/execx"
	"github.com/fastpath-bench/fastpath/harness/hostsetup"
)

// Repository is the agent image's name.
const Repository = "fastpath/agent"

// Binaries go into the image's root, under these names.
var Binaries = []string{"fastpath-agent", "fastpath-cni", "fastpath"}

// dockerfile is the whole recipe: static binaries and nothing else.
const dockerfile = `FROM scratch
COPY fastpath-agent fastpath-cni fastpath /
ENTRYPOINT ["/fastpath-agent"]
`

// Ref is the image reference for the binaries in dir (static builds:
// make image).
func Ref(dir string) (string, error) {
	return ref(Repository, dockerfile, dir, Binaries)
}

// ref is repo tagged with a digest of the Dockerfile and the binaries
// bins in dir.
func ref(repo, dockerfile, dir string, bins []string) (string, error) {
	h := sha256.New()
	io.WriteString(h, dockerfile)
	for _, b := range bins {
		f, err := os.Open(filepath.Join(dir, b))
		if err != nil {
			return "", fmt.Errorf("image input %s: %w (make image builds it)", filepath.Join(dir, b), err)
		}
		fmt.Fprintf(h, "\x00%s\x00", b)
		_, err = io.Copy(h, f)
		f.Close()
		if err != nil {
			return "", err
		}
	}
	return repo + ":" + hex.EncodeToString(h.Sum(nil))[:12], nil
}

// Exists is true when Docker's image store has ref.
func Exists(ctx context.Context, ref string) bool {
	_, err := execx.Run(ctx, "docker", "image", "inspect", "--format", "{{.Id}}", ref)
	return err == nil
}

// Build builds the image from the binaries in dir unless it exists, and
// returns its reference.
func Build(ctx context.Context, dir string, logf func(string, ...any)) (string, error) {
	return build(ctx, Repository, dockerfile, dir, Binaries, logf)
}

// build builds repo from dockerfile and the binaries bins in dir unless
// the digest's tag exists.
func build(ctx context.Context, repo, dockerfile, dir string, bins []string, logf func(string, ...any)) (string, error) {
	ref, err := ref(repo, dockerfile, dir, bins)
	if err != nil {
		return "", err
	}
	if err := hostsetup.CheckEngine(ctx); err != nil {
		return "", err
	}
	if Exists(ctx, ref) {
		return ref, nil
	}
	if logf != nil {
		logf("building image %s from %s", ref, dir)
	}
	tmp, err := os.MkdirTemp("", "fastpath-image-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	if err := os.WriteFile(filepath.Join(tmp, "Dockerfile"), []byte(dockerfile), 0o644); err != nil {
		return "", err
	}
	for _, b := range bins {
		data, err := os.ReadFile(filepath.Join(dir, b))
		if err != nil {
			return "", err
		}
		if err := os.WriteFile(filepath.Join(tmp, b), data, 0o755); err != nil {
			return "", err
		}
	}
	// The legacy builder: it needs no BuildKit component, and FROM
	// scratch (or a local base) pulls nothing.
	if _, err := execx.RunEnv(ctx, []string{"DOCKER_BUILDKIT=0"}, "docker", "build", "--quiet", "--tag", ref, tmp); err != nil {
		return "", fmt.Errorf("build image %s: %w", ref, err)
	}
	return ref, nil
}

// BuildFiles builds an image ref FROM scratch holding files (name in the
// image's root → path here) with entrypoint, unless ref exists: images
// the harness builds from binaries, such as upstream test images.
func BuildFiles(ctx context.Context, ref string, files map[string]string, entrypoint string) error {
	if err := hostsetup.CheckEngine(ctx); err != nil {
		return err
	}
	if Exists(ctx, ref) {
		return nil
	}
	tmp, err := os.MkdirTemp("", "fastpath-image-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	df := "FROM scratch\n"
	for name, path := range files {
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(tmp, name), data, 0o755); err != nil {
			return err
		}
		df += fmt.Sprintf("COPY %s /%s\n", name, name)
	}
	df += fmt.Sprintf("ENTRYPOINT [%q]\n", entrypoint)
	if err := os.WriteFile(filepath.Join(tmp, "Dockerfile"), []byte(df), 0o644); err != nil {
		return err
	}
	if _, err := execx.RunEnv(ctx, []string{"DOCKER_BUILDKIT=0"}, "docker", "build", "--quiet", "--tag", ref, tmp); err != nil {
		return fmt.Errorf("build image %s: %w", ref, err)
	}
	return nil
}
