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
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/fastpath-bench/fastpath/harness/execx"
	"github.com/fastpath-bench/fastpath/harness/vm/plan"
)

// Image paths.
const (
	imageRoot     = "/fastpath"
	imageBin      = imageRoot + "/bin"
	imageTests    = imageRoot + "/tests"
	imageCases    = imageRoot + "/cases"
	imagePlanPath = imageRoot + "/plan.json"
)

// HostTools are copied from the host into every image with the shared
// libraries they load: the harness runs them (ip netns, sysctl, mount).
var HostTools = []string{"ip", "sysctl", "mount"}

// Payload is what runs inside the image, built for the host by
// `make vm-payload`: static binaries in Dir/bin (fastpath, fastpath-agent,
// fastpath-vminit, test2json) and test binaries in Dir/tests, one per
// package, named after the package path with '/' as '_'
// (datapath_lxc.test).
type Payload struct {
	Dir string
	// Cases is the conformance case directory copied to /fastpath/cases.
	Cases string
}

// Tests lists the payload's test binaries as package paths.
func (p Payload) Tests() ([]string, error) {
	ents, err := os.ReadDir(filepath.Join(p.Dir, "tests"))
	if err != nil {
		return nil, fmt.Errorf("payload %s: %w (run make vm-payload)", p.Dir, err)
	}
	var pkgs []string
	for _, e := range ents {
		if name, ok := strings.CutSuffix(e.Name(), ".test"); ok {
			pkgs = append(pkgs, strings.ReplaceAll(name, "_", "/"))
		}
	}
	sort.Strings(pkgs)
	return pkgs, nil
}

func testBinary(pkg string) string { return strings.ReplaceAll(pkg, "/", "_") + ".test" }

// modulesArchive writes (once per kernel package and module list) a cpio
// of the modules, and returns its path and the load order as image paths.
func modulesArchive(ctx context.Context, cacheDir string, f *Fetched, want []string) (string, []string, error) {
	key := sha256.Sum256([]byte(f.SHA256 + "\x00" + strings.Join(want, ",")))
	dir := filepath.Join(cacheDir, "images", f.Name)
	archive := filepath.Join(dir, "modules-"+hex.EncodeToString(key[:8])+".cpio")
	orderFile := archive + ".order"
	if data, err := os.ReadFile(orderFile); err == nil {
		if _, err := os.Stat(archive); err == nil {
			var order []string
			if json.Unmarshal(data, &order) == nil {
				return archive, order, nil
			}
		}
	}
	mods, err := ResolveModules(ctx, f.ModulesDir(), want)
	if err != nil {
		return "", nil, fmt.Errorf("kernel %s (%s): %w", f.Name, f.Package, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", nil, err
	}
	var buf bytes.Buffer
	w := newCPIO(&buf)
	var order []string
	for _, m := range mods {
		p := path.Join("/usr/lib/modules", f.Release, m.Rel)
		w.file(p, 0o644, m.Data)
		order = append(order, p)
	}
	if err := w.close(); err != nil {
		return "", nil, err
	}
	if err := writeAtomic(archive, buf.Bytes()); err != nil {
		return "", nil, err
	}
	data, _ := json.Marshal(order)
	if err := writeAtomic(orderFile, data); err != nil {
		return "", nil, err
	}
	return archive, order, nil
}

// payloadArchive writes the kernel-independent part of an image: init,
// binaries, tests, cases, host tools with their libraries, and the plan.
func payloadArchive(ctx context.Context, w io.Writer, p Payload, pl plan.Plan) error {
	c := newCPIO(w)
	c.copyFile("/init", filepath.Join(p.Dir, "bin", "fastpath-vminit"))
	c.copyTree(imageBin, filepath.Join(p.Dir, "bin"))
	c.copyTree(imageTests, filepath.Join(p.Dir, "tests"))
	if p.Cases != "" {
		c.copyTree(imageCases, p.Cases)
	}
	files, err := hostToolFiles(ctx, HostTools)
	if err != nil {
		return err
	}
	for _, f := range files {
		c.copyFile(f, f)
	}
	for _, d := range []string{"/proc", "/sys", "/dev", "/run", "/tmp", "/etc", "/root"} {
		c.mkdirAll(d)
	}
	// Tools look themselves up under /usr/bin and /bin alike.
	c.symlink("/bin", "usr/bin")
	c.symlink("/sbin", "usr/sbin")
	c.symlink("/lib", "usr/lib")
	c.symlink("/lib64", "usr/lib64")
	c.file("/etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/bin/sh\n"))
	c.file("/etc/group", 0o644, []byte("root:x:0:\n"))
	data, err := json.MarshalIndent(pl, "", "  ")
	if err != nil {
		return err
	}
	c.file(imagePlanPath, 0o644, data)
	return c.close()
}

// hostToolFiles returns the host paths of the named tools and of every
// shared library they load (as ldd reports them), with /usr merged paths
// normalised.
func hostToolFiles(ctx context.Context, tools []string) ([]string, error) {
	seen := map[string]bool{}
	var out []string
	add := func(p string) {
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	for _, t := range tools {
		bin, err := lookTool(t)
		if err != nil {
			return nil, err
		}
		add(bin)
		ldd, err := execx.Output(ctx, "ldd", bin)
		if err != nil {
			// Static binaries make ldd fail: nothing to add.
			continue
		}
		sc := bufio.NewScanner(bytes.NewReader(ldd))
		for sc.Scan() {
			for _, f := range strings.Fields(sc.Text()) {
				if strings.HasPrefix(f, "/") {
					real, err := filepath.EvalSymlinks(f)
					if err != nil {
						return nil, err
					}
					add(usrPath(f))
					if real != f {
						add(usrPath(real))
					}
				}
			}
		}
	}
	return out, nil
}

// usrPath maps /lib/x and /bin/x to /usr/lib/x and /usr/bin/x: the image
// links /lib, /bin, /sbin and /lib64 into /usr as on a merged-/usr host.
func usrPath(p string) string {
	for _, d := range []string{"/lib/", "/lib64/", "/bin/", "/sbin/"} {
		if strings.HasPrefix(p, d) {
			return "/usr" + p
		}
	}
	return p
}

func lookTool(name string) (string, error) {
	for _, d := range []string{"/usr/sbin", "/usr/bin", "/sbin", "/bin"} {
		p := filepath.Join(d, name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
			real, err := filepath.EvalSymlinks(p)
			if err != nil {
				return "", err
			}
			return usrPath(real), nil
		}
	}
	return "", fmt.Errorf("host tool %s not found (install it: make deps)", name)
}

func writeAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// ImageOptions describe an initramfs for one kernel.
type ImageOptions struct {
	Fetched *Fetched
	// Modules to load (with dependencies).
	Modules []string
	Payload Payload
	Steps   []plan.Step
	// CacheDir for the modules archive; empty: DefaultCacheDir().
	CacheDir string
	// Path of the initramfs to write.
	Path string
}

// BuildInitrd writes the initramfs: the kernel's modules archive (cached)
// followed by the payload archive. The kernel unpacks both.
func BuildInitrd(ctx context.Context, opts ImageOptions) (string, error) {
	if opts.CacheDir == "" {
		opts.CacheDir = DefaultCacheDir()
	}
	mods, order, err := modulesArchive(ctx, opts.CacheDir, opts.Fetched, opts.Modules)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(filepath.Dir(opts.Path), 0o755); err != nil {
		return "", err
	}
	out, err := os.Create(opts.Path)
	if err != nil {
		return "", err
	}
	defer out.Close()
	in, err := os.Open(mods)
	if err != nil {
		return "", err
	}
	_, err = io.Copy(out, in)
	in.Close()
	if err != nil {
		return "", err
	}
	bw := bufio.NewWriterSize(out, 1<<20)
	if err := payloadArchive(ctx, bw, opts.Payload, plan.Plan{Modules: order, Steps: opts.Steps}); err != nil {
		return "", err
	}
	if err := bw.Flush(); err != nil {
		return "", err
	}
	return opts.Path, out.Close()
}

// PrepareModules builds (or finds in the cache) the kernel's module
// archive and returns how many modules it holds.
func PrepareModules(ctx context.Context, cacheDir string, f *Fetched, want []string) (int, error) {
	if cacheDir == "" {
		cacheDir = DefaultCacheDir()
	}
	_, order, err := modulesArchive(ctx, cacheDir, f, want)
	return len(order), err
}
