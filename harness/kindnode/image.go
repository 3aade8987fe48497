package kindnode

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"text/template"

	"github.com/fastpath-bench/fastpath/harness/execx"
)

//go:embed assets
var assets embed.FS

// recipe is this package's build code: part of the inputs hash, so that a
// change of how the image is made makes a new image.
//
//go:embed binaries.go image.go kindnode.go
var recipe embed.FS

// ImageRepo is the repository node images are tagged in.
const ImageRepo = "fastpath/kind-node"

// Image is a built node image.
type Image struct {
	Tag               string
	KubernetesVersion string
	// Built is false when the image existed for its inputs already.
	Built bool
}

// inputsHash digests everything an image is made of: versions, the Go
// toolchain, this package's assets and kind's base-image files.
func inputsHash(opts Options, kindFiles string) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "k8s %s etcd %s kind %s go %s arch %s\n", opts.KubernetesVersion, opts.EtcdVersion, opts.KindVersion, runtime.Version(), runtime.GOARCH)
	add := func(fsys fs.FS, root string) error {
		return fs.WalkDir(fsys, root, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			data, err := fs.ReadFile(fsys, p)
			if err != nil {
				return err
			}
			fmt.Fprintf(h, "%s %x\n", p, sha256.Sum256(data))
			return nil
		})
	}
	if err := add(assets, "assets"); err != nil {
		return "", err
	}
	if err := add(recipe, "."); err != nil {
		return "", err
	}
	if err := add(os.DirFS(kindFiles), "."); err != nil {
		return "", fmt.Errorf("kind base-image files: %w", err)
	}
	return hex.EncodeToString(h.Sum(nil))[:12], nil
}

// kindBaseFiles returns the directory of kind's base-image files in the
// module cache (downloading the module when it is not there).
func kindBaseFiles(ctx context.Context, version string) (string, error) {
	out, err := goCmd(ctx, "", "mod", "download", "-json", "sigs.k8s.io/kind@"+version)
	if err != nil {
		return "", err
	}
	var dl struct{ Dir string }
	if err := json.Unmarshal([]byte(out), &dl); err != nil || dl.Dir == "" {
		return "", fmt.Errorf("go mod download sigs.k8s.io/kind@%s: %q", version, out)
	}
	dir := filepath.Join(dl.Dir, "images", "base", "files")
	if _, err := os.Stat(filepath.Join(dir, "usr", "local", "bin", "entrypoint")); err != nil {
		return "", fmt.Errorf("kind %s has no base-image entrypoint: %w", version, err)
	}
	return dir, nil
}

// Tag returns the node image tag for opts without building anything but
// the kind module's download (for preflight checks).
func Tag(ctx context.Context, opts Options) (string, error) {
	if err := opts.defaults(); err != nil {
		return "", err
	}
	files, err := kindBaseFiles(ctx, opts.KindVersion)
	if err != nil {
		return "", err
	}
	h, err := inputsHash(opts, files)
	if err != nil {
		return "", err
	}
	return ImageRepo + ":" + opts.KubernetesVersion + "-" + h, nil
}

// BuildImage builds the node image, or finds it built for the same inputs.
func BuildImage(ctx context.Context, opts Options) (*Image, error) {
	if err := opts.defaults(); err != nil {
		return nil, err
	}
	tag, err := Tag(ctx, opts)
	if err != nil {
		return nil, err
	}
	img := &Image{Tag: tag, KubernetesVersion: opts.KubernetesVersion}
	if ImageExists(ctx, tag) {
		opts.Logf("node image %s is built already", tag)
		return img, nil
	}
	rootfs, err := buildRootfs(ctx, opts)
	if err != nil {
		return nil, err
	}
	bins, err := BuildBinaries(ctx, opts)
	if err != nil {
		return nil, err
	}
	ctxDir := filepath.Join(opts.CacheDir, "context", strings.TrimPrefix(tag, ImageRepo+":"))
	if err := os.RemoveAll(ctxDir); err != nil {
		return nil, err
	}
	imagesDir := filepath.Join(ctxDir, "images")
	if err := os.MkdirAll(imagesDir, 0o755); err != nil {
		return nil, err
	}
	if err := buildControlPlaneImages(ctx, opts, bins, rootfs, imagesDir); err != nil {
		return nil, err
	}
	files, err := kindBaseFiles(ctx, opts.KindVersion)
	if err != nil {
		return nil, err
	}
	if err := copyTree(files, filepath.Join(ctxDir, "kind-files")); err != nil {
		return nil, err
	}
	for _, b := range []string{"kubelet", "kubeadm", "kubectl"} {
		if err := copyFile(bins.path(b), filepath.Join(ctxDir, "bin", b), 0o755); err != nil {
			return nil, err
		}
	}
	if err := copyAsset("fastpath-import-images.service", filepath.Join(ctxDir, "fastpath-import-images.service")); err != nil {
		return nil, err
	}
	if err := renderAsset("node.Dockerfile", filepath.Join(ctxDir, "Dockerfile"), map[string]string{
		"Rootfs": rootfs, "KubernetesVersion": opts.KubernetesVersion,
	}); err != nil {
		return nil, err
	}
	opts.Logf("building node image %s", tag)
	if _, err := dockerCmd(ctx, nil, "build", "-q", "-t", tag, ctxDir); err != nil {
		return nil, err
	}
	img.Built = true
	_ = os.RemoveAll(ctxDir)
	removeStale(ctx, tag, opts.Logf)
	return img, nil
}

// removeStale removes node images of other inputs (1.5 GB each); one that
// a container still uses stays.
func removeStale(ctx context.Context, keep string, logf func(string, ...any)) {
	out, err := dockerCmd(ctx, nil, "image", "ls", "--format", "{{.Repository}}:{{.Tag}}", ImageRepo)
	if err != nil {
		return
	}
	for _, ref := range strings.Fields(out) {
		if ref == keep || strings.HasSuffix(ref, ":<none>") {
			continue
		}
		if _, err := dockerCmd(ctx, nil, "rmi", ref); err == nil {
			logf("removed the stale node image %s", ref)
		}
	}
}

// controlPlaneImage is one image kubeadm expects, as `kubeadm config
// images list` names it.
type controlPlaneImage struct {
	Ref    string // registry.k8s.io/kube-apiserver:v1.35.0
	Binary string // the binary it runs (empty: not built, such as coredns)
	Path   string // where the binary goes in the image
	Debian bool   // on the rootfs (kube-proxy needs iptables), not scratch
}

// imagesFor maps kubeadm's image list onto what is built here.
func imagesFor(list []string) (out []controlPlaneImage, skipped []string) {
	for _, ref := range list {
		name := ref[strings.LastIndex(ref, "/")+1:]
		name, _, _ = strings.Cut(name, ":")
		switch name {
		case "kube-apiserver", "kube-controller-manager", "kube-scheduler":
			out = append(out, controlPlaneImage{Ref: ref, Binary: name, Path: "/usr/local/bin/" + name})
		case "kube-proxy":
			out = append(out, controlPlaneImage{Ref: ref, Binary: name, Path: "/usr/local/bin/" + name, Debian: true})
		case "etcd":
			out = append(out, controlPlaneImage{Ref: ref, Binary: "etcd", Path: "/usr/local/bin/etcd"})
		case "pause":
			out = append(out, controlPlaneImage{Ref: ref, Binary: "pause", Path: "/pause"})
		default:
			skipped = append(skipped, ref)
		}
	}
	return out, skipped
}

func buildControlPlaneImages(ctx context.Context, opts Options, bins *Binaries, rootfs, imagesDir string) error {
	out, err := run(ctx, nil, bins.path("kubeadm"), "config", "images", "list", "--kubernetes-version", opts.KubernetesVersion)
	if err != nil {
		return err
	}
	list := strings.Fields(out)
	imgs, skipped := imagesFor(list)
	if len(skipped) > 0 {
		opts.Logf("not built (no module build here; pods that need them stay pending): %s", strings.Join(skipped, ", "))
	}
	// kind's containerd config names its own pause tag as the sandbox image.
	for _, im := range imgs {
		if strings.Contains(im.Ref, "/pause:") {
			imgs = append(imgs, controlPlaneImage{Ref: im.Ref[:strings.LastIndex(im.Ref, ":")] + ":3.10", Binary: "pause", Path: "/pause"})
			break
		}
	}
	for _, im := range imgs {
		dir, err := os.MkdirTemp(imagesDir, ".ctx-")
		if err != nil {
			return err
		}
		if err := copyFile(bins.path(im.Binary), filepath.Join(dir, im.Binary), 0o755); err != nil {
			return err
		}
		df := fmt.Sprintf("FROM %s\nCOPY %s %s\nENTRYPOINT [%q]\n", rootfs, im.Binary, im.Path, im.Path)
		if !im.Debian {
			for _, f := range []string{"passwd", "group"} {
				if err := copyAsset(f, filepath.Join(dir, f)); err != nil {
					return err
				}
			}
			if err := renderAsset("scratch.Dockerfile", filepath.Join(dir, "Dockerfile"), map[string]string{"Binary": im.Binary, "Path": im.Path}); err != nil {
				return err
			}
		} else if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(df), 0o644); err != nil {
			return err
		}
		opts.Logf("building %s", im.Ref)
		if _, err := dockerCmd(ctx, nil, "build", "-q", "-t", im.Ref, dir); err != nil {
			return err
		}
		os.RemoveAll(dir)
		tar := filepath.Join(imagesDir, strings.NewReplacer("/", "_", ":", "_").Replace(im.Ref)+".tar")
		if _, err := dockerCmd(ctx, nil, "save", "-o", tar, im.Ref); err != nil {
			return err
		}
	}
	return nil
}

// buildRootfs makes the Debian rootfs image (debootstrap, cached by its
// package list).
func buildRootfs(ctx context.Context, opts Options) (string, error) {
	pkgs, err := packages()
	if err != nil {
		return "", err
	}
	mirror, suite, err := debianMirror()
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256([]byte(suite + " " + strings.Join(pkgs, ",")))
	tag := "fastpath/kind-rootfs:" + hex.EncodeToString(sum[:])[:12]
	if ImageExists(ctx, tag) {
		return tag, nil
	}
	if _, err := exec.LookPath("debootstrap"); err != nil {
		opts.Logf("installing debootstrap (apt-get install debootstrap)")
		if _, err := run(ctx, nil, "apt-get", "install", "-y", "--no-install-recommends", "debootstrap"); err != nil {
			return "", err
		}
	}
	dir := filepath.Join(opts.CacheDir, "rootfs", hex.EncodeToString(sum[:])[:12])
	if err := os.RemoveAll(dir); err != nil {
		return "", err
	}
	opts.Logf("debootstrap %s into %s (minutes)", suite, dir)
	if _, err := run(ctx, nil, "debootstrap", "--variant=minbase", "--include="+strings.Join(pkgs, ","), suite, dir, mirror); err != nil {
		return "", err
	}
	// Package caches are not part of the image.
	_ = os.RemoveAll(filepath.Join(dir, "var", "cache", "apt", "archives"))
	_ = os.MkdirAll(filepath.Join(dir, "var", "cache", "apt", "archives", "partial"), 0o755)
	tarCmd := exec.CommandContext(ctx, "tar", "-C", dir, "--numeric-owner", "-c", ".")
	pipe, err := tarCmd.StdoutPipe()
	if err != nil {
		return "", err
	}
	var tarErr bytes.Buffer
	tarCmd.Stderr = &tarErr
	if err := tarCmd.Start(); err != nil {
		return "", err
	}
	_, ierr := dockerCmd(ctx, pipe, "import", "-", tag)
	werr := tarCmd.Wait()
	if ierr != nil {
		return "", ierr
	}
	if werr != nil {
		return "", fmt.Errorf("tar -C %s: %v: %s", dir, werr, tarErr.String())
	}
	_ = os.RemoveAll(dir)
	return tag, nil
}

func packages() ([]string, error) {
	data, err := assets.ReadFile("assets/packages.txt")
	if err != nil {
		return nil, err
	}
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	sort.Strings(out)
	return out, nil
}

// debianMirror reads the host's apt sources for the Debian mirror and
// suite to bootstrap from (the node image is the host's Debian release).
func debianMirror() (mirror, suite string, err error) {
	var texts []string
	if data, err := os.ReadFile("/etc/apt/sources.list"); err == nil {
		texts = append(texts, string(data))
	}
	srcs, _ := filepath.Glob("/etc/apt/sources.list.d/*.sources")
	for _, f := range srcs {
		if data, err := os.ReadFile(f); err == nil {
			texts = append(texts, string(data))
		}
	}
	lists, _ := filepath.Glob("/etc/apt/sources.list.d/*.list")
	for _, f := range lists {
		if data, err := os.ReadFile(f); err == nil {
			texts = append(texts, string(data))
		}
	}
	for _, t := range texts {
		if m, s := parseAptSources(t); m != "" {
			return m, s, nil
		}
	}
	return "", "", fmt.Errorf("no Debian mirror in /etc/apt/sources.list or sources.list.d")
}

// parseAptSources finds the first Debian main-archive entry (not security,
// not updates) in one-line or deb822 format.
func parseAptSources(text string) (mirror, suite string) {
	var uris, suites []string
	flush := func() (string, string) {
		for _, u := range uris {
			if strings.Contains(u, "security") {
				continue
			}
			for _, s := range suites {
				if !strings.ContainsAny(s, "-/") {
					return u, s
				}
			}
		}
		return "", ""
	}
	for _, line := range strings.Split(text+"\n\n", "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "":
			if m, s := flush(); m != "" {
				return m, s
			}
			uris, suites = nil, nil
		case strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "URIs:"):
			uris = strings.Fields(strings.TrimPrefix(line, "URIs:"))
		case strings.HasPrefix(line, "Suites:"):
			suites = strings.Fields(strings.TrimPrefix(line, "Suites:"))
		case strings.HasPrefix(line, "deb "):
			f := strings.Fields(line)[1:]
			for len(f) > 0 && strings.HasPrefix(f[0], "[") { // [arch=amd64 signed-by=…]
				for len(f) > 0 && !strings.HasSuffix(f[0], "]") {
					f = f[1:]
				}
				f = f[1:]
			}
			if len(f) >= 2 && !strings.Contains(f[0], "security") && !strings.ContainsAny(f[1], "-/") {
				return f[0], f[1]
			}
		}
	}
	return "", ""
}

// ImageExists says whether Docker's image store has ref.
func ImageExists(ctx context.Context, ref string) bool {
	_, err := dockerCmd(ctx, nil, "image", "inspect", "--format", "{{.Id}}", ref)
	return err == nil
}

func dockerCmd(ctx context.Context, stdin io.Reader, args ...string) (string, error) {
	return run(ctx, stdin, "docker", args...)
}

func run(ctx context.Context, stdin io.Reader, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdin = stdin
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive", "DOCKER_BUILDKIT=0")
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), &execx.RunError{Command: append([]string{name}, args...), Output: []byte(stderr.String() + stdout.String()), Inner: err}
	}
	return stdout.String(), nil
}

func copyAsset(name, dst string) error {
	data, err := assets.ReadFile("assets/" + name)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	return os.WriteFile(dst, data, 0o644)
}

func renderAsset(name, dst string, data any) error {
	src, err := assets.ReadFile("assets/" + name)
	if err != nil {
		return err
	}
	t, err := template.New(name).Option("missingkey=error").Parse(string(src))
	if err != nil {
		return err
	}
	var b bytes.Buffer
	if err := t.Execute(&b, data); err != nil {
		return err
	}
	return os.WriteFile(dst, b.Bytes(), 0o644)
}

func copyFile(src, dst string, mode os.FileMode) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	return os.WriteFile(dst, data, mode)
}

// copyTree copies a directory of regular files (kind's base files; the
// module cache makes them read-only, the copies are writable).
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		mode := os.FileMode(0o644)
		if fi.Mode()&0o111 != 0 {
			mode = 0o755
		}
		return copyFile(p, target, mode)
	})
}
