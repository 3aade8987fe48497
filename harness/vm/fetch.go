package vm

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"

	"github.com/fastpath-bench/fastpath/harness/execx"
)

// Fetched is a kernel package downloaded and unpacked in the cache.
type Fetched struct {
	Name string `json:"name"`
	// Package and Version are the image package actually used
	// (linux-image-5.10.0-32-amd64, 5.10.223-1).
	Package string `json:"package"`
	Version string `json:"version"`
	Suite   string `json:"suite"`
	// Release is the kernel's uname -r (5.10.0-32-amd64).
	Release string `json:"release"`
	// SHA256 of the .deb.
	SHA256 string `json:"sha256"`
	// Dir holds boot/ and lib/modules/ of the package.
	Dir string `json:"dir"`
}

// Vmlinuz is the kernel image.
func (f *Fetched) Vmlinuz() string { return filepath.Join(f.Dir, "boot", "vmlinuz-"+f.Release) }

// ModulesDir is lib/modules/<release>.
func (f *Fetched) ModulesDir() string { return filepath.Join(f.Dir, "lib", "modules", f.Release) }

// FetchOptions tune Fetch. Zero values mean defaults.
type FetchOptions struct {
	// CacheDir; empty: DefaultCacheDir().
	CacheDir string
	// Refresh looks for a newer package even when one is cached.
	Refresh bool
	// Log receives progress; nil: none.
	Log io.Writer
}

// Fetch returns the kernel's package from the cache, or downloads it with
// apt-get from the kernel's suite and unpacks it. A cached kernel needs no
// network.
func Fetch(ctx context.Context, k Kernel, opts FetchOptions) (*Fetched, error) {
	if k.Name == HostKernel {
		return nil, fmt.Errorf("kernel %s: the host kernel is not fetched", k.Name)
	}
	if opts.CacheDir == "" {
		opts.CacheDir = DefaultCacheDir()
	}
	if opts.Log == nil {
		opts.Log = io.Discard
	}
	kdir := filepath.Join(opts.CacheDir, "kernels", k.Name)
	record := filepath.Join(kdir, "fetched.json")
	if !opts.Refresh {
		if f, err := readFetched(record); err == nil {
			if f.Suite == k.Suite && strings.HasPrefix(f.Package, "linux-image-") {
				if _, err := os.Stat(f.Vmlinuz()); err == nil {
					return f, nil
				}
			}
		}
	}
	apt, err := newAptDir(ctx, filepath.Join(opts.CacheDir, "apt"), k, opts.Log)
	if err != nil {
		return nil, fmt.Errorf("kernel %s: %w", k.Name, err)
	}
	pkg, version, err := apt.resolve(ctx, k.Package)
	if err != nil {
		return nil, fmt.Errorf("kernel %s: %w", k.Name, err)
	}
	debs := filepath.Join(opts.CacheDir, "debs")
	if err := os.MkdirAll(debs, 0o755); err != nil {
		return nil, err
	}
	deb, err := apt.download(ctx, debs, pkg, version, opts.Log)
	if err != nil {
		return nil, fmt.Errorf("kernel %s: %w", k.Name, err)
	}
	sum, err := fileSHA256(deb)
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(kdir, version)
	if err := os.RemoveAll(dir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	fmt.Fprintf(opts.Log, "kernel %s: unpacking %s\n", k.Name, filepath.Base(deb))
	if _, err := execx.Run(ctx, "dpkg-deb", "-x", deb, dir); err != nil {
		return nil, fmt.Errorf("kernel %s: %w", k.Name, err)
	}
	release, err := findRelease(dir)
	if err != nil {
		return nil, fmt.Errorf("kernel %s: %s: %w", k.Name, pkg, err)
	}
	f := &Fetched{Name: k.Name, Package: pkg, Version: version, Suite: k.Suite, Release: release, SHA256: sum, Dir: dir}
	data, _ := json.MarshalIndent(f, "", "  ")
	if err := os.WriteFile(record, append(data, '\n'), 0o644); err != nil {
		return nil, err
	}
	return f, nil
}

func readFetched(path string) (*Fetched, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var f Fetched
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, err
	}
	return &f, nil
}

// findRelease is the one lib/modules/<release> directory of the package.
func findRelease(dir string) (string, error) {
	ents, err := os.ReadDir(filepath.Join(dir, "lib", "modules"))
	if err != nil {
		// usrmerge'd packages (trixie) ship /usr/lib/modules.
		ents, err = os.ReadDir(filepath.Join(dir, "usr", "lib", "modules"))
		if err != nil {
			return "", fmt.Errorf("no lib/modules directory in the package")
		}
		if err := os.Symlink(filepath.Join("usr", "lib"), filepath.Join(dir, "lib")); err != nil && !os.IsExist(err) {
			return "", err
		}
	}
	if len(ents) != 1 {
		return "", fmt.Errorf("want one lib/modules/<release>, found %d", len(ents))
	}
	rel := ents[0].Name()
	if _, err := os.Stat(filepath.Join(dir, "boot", "vmlinuz-"+rel)); err != nil {
		return "", fmt.Errorf("no boot/vmlinuz-%s", rel)
	}
	return rel, nil
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// aptDir is a private apt configuration for one suite: its own sources
// list, package lists and archive cache under the fastpath cache, so the
// host's apt setup is neither used nor changed.
type aptDir struct {
	dir  string
	args []string
}

func newAptDir(ctx context.Context, root string, k Kernel, log io.Writer) (*aptDir, error) {
	sum := sha256.Sum256([]byte(k.mirror() + " " + k.Suite))
	dir := filepath.Join(root, k.Suite+"-"+hex.EncodeToString(sum[:4]))
	for _, d := range []string{"lists/partial", "archives/partial"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return nil, err
		}
	}
	sources := filepath.Join(dir, "sources.list")
	if err := os.WriteFile(sources, []byte(fmt.Sprintf("deb %s %s main\n", k.mirror(), k.Suite)), 0o644); err != nil {
		return nil, err
	}
	a := &aptDir{dir: dir, args: []string{
		"-o", "Dir::Etc::SourceList=" + sources,
		"-o", "Dir::Etc::SourceParts=/dev/null",
		"-o", "Dir::State::Lists=" + filepath.Join(dir, "lists"),
		"-o", "Dir::Cache=" + dir,
		"-o", "Dir::Cache::Archives=" + filepath.Join(dir, "archives"),
		"-o", "Dir::State::status=/dev/null",
		"-o", "APT::Sandbox::User=root",
		"-o", "Debug::NoLocking=1",
	}}
	fmt.Fprintf(log, "apt: updating the %s package list from %s\n", k.Suite, k.mirror())
	if _, err := execx.Run(ctx, "apt-get", append(a.args, "-q", "update")...); err != nil {
		return nil, err
	}
	return a, nil
}

// resolve turns a package (maybe a metapackage) into the linux-image
// package and version to download.
func (a *aptDir) resolve(ctx context.Context, pkg string) (string, string, error) {
	for depth := 0; depth < 3; depth++ {
		fields, err := a.show(ctx, pkg)
		if err != nil {
			return "", "", err
		}
		if isImagePackage(pkg) {
			return pkg, fields["Version"], nil
		}
		next := ""
		for _, dep := range strings.Split(fields["Depends"], ",") {
			name := strings.Fields(strings.TrimSpace(strings.Split(dep, "|")[0]))
			if len(name) > 0 && strings.HasPrefix(name[0], "linux-image-") {
				next = name[0]
				break
			}
		}
		if next == "" {
			return "", "", fmt.Errorf("%s: neither a kernel image nor a metapackage depending on one (Depends: %s)", pkg, fields["Depends"])
		}
		pkg = next
	}
	return "", "", fmt.Errorf("%s: metapackage chain too long", pkg)
}

// isImagePackage: linux-image-<release> ships a kernel, while metapackages
// (linux-image-amd64, linux-image-cloud-amd64) only depend on one. Release
// names start with a digit.
func isImagePackage(pkg string) bool {
	rest := strings.TrimPrefix(pkg, "linux-image-")
	return rest != "" && rest[0] >= '0' && rest[0] <= '9'
}

// show returns the fields of the candidate (newest) version of pkg.
func (a *aptDir) show(ctx context.Context, pkg string) (map[string]string, error) {
	out, err := execx.Output(ctx, "apt-cache", append(append([]string{}, a.args...), "show", "--no-all-versions", pkg)...)
	if err != nil {
		return nil, err
	}
	fields := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			break
		}
		if k, v, ok := strings.Cut(line, ":"); ok && !strings.HasPrefix(line, " ") {
			fields[k] = strings.TrimSpace(v)
		}
	}
	if fields["Package"] == "" {
		return nil, fmt.Errorf("apt-cache show %s: no such package in the suite", pkg)
	}
	return fields, nil
}

// download fetches pkg=version into dir unless it is already there.
func (a *aptDir) download(ctx context.Context, dir, pkg, version string, log io.Writer) (string, error) {
	match := func() string {
		m, _ := filepath.Glob(filepath.Join(dir, pkg+"_"+strings.ReplaceAll(version, ":", "%3a")+"_*.deb"))
		sort.Strings(m)
		if len(m) > 0 {
			return m[0]
		}
		return ""
	}
	if p := match(); p != "" {
		return p, nil
	}
	fmt.Fprintf(log, "apt: downloading %s=%s\n", pkg, version)
	cmd := exec.CommandContext(ctx, "apt-get", append(append([]string{}, a.args...), "-q", "download", pkg+"="+version)...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", &execx.RunError{Command: cmd.Args, Output: out, Inner: err}
	}
	if p := match(); p != "" {
		return p, nil
	}
	return "", fmt.Errorf("apt-get download %s=%s: no .deb appeared in %s", pkg, version, dir)
}
