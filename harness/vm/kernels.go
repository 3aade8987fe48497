// Package vm runs plans (the datapath's tests and the conformance suite) on
// other kernels: it fetches Debian kernel packages with apt, builds an
// initramfs holding the kernel's modules and the statically built test
// binaries, boots it under qemu and reads the results back from a serial
// port. The kernel named "host" runs the same plan on the running kernel.
package vm

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"sigs.k8s.io/yaml"
)

// HostKernel names the running kernel in kernel lists.
const HostKernel = "host"

// DefaultMirror is the Debian archive kernels come from.
const DefaultMirror = "http://deb.debian.org/debian"

// Config is vm-images/kernels.yaml.
type Config struct {
	Kernels []Kernel `json:"kernels"`
	// Modules every image loads (with their dependencies) when the kernel
	// builds them as modules.
	Modules []string `json:"modules"`
}

// Kernel is one entry of the kernel list.
type Kernel struct {
	// Name is what KERNELS= and reports call it ("5.10", "host").
	Name string `json:"name"`
	// Suite is the Debian suite the package comes from (bullseye, ...).
	Suite string `json:"suite,omitempty"`
	// Package is the kernel image package or a metapackage depending on it.
	Package string `json:"package,omitempty"`
	// Mirror is the archive URL; empty: DefaultMirror.
	Mirror string `json:"mirror,omitempty"`
}

var (
	nameRE    = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)
	debNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9.+-]+$`)
)

// LoadConfig reads and validates a kernel list; unknown fields are errors,
// and every problem is reported at once.
func LoadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var c Config
	if err := yaml.UnmarshalStrict(data, &c); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &c, nil
}

// Validate checks every entry.
func (c *Config) Validate() error {
	var errs []error
	seen := map[string]bool{}
	if len(c.Kernels) == 0 {
		errs = append(errs, errors.New("kernels: empty"))
	}
	for i, k := range c.Kernels {
		at := fmt.Sprintf("kernels[%d] (%s)", i, k.Name)
		if !nameRE.MatchString(k.Name) {
			errs = append(errs, fmt.Errorf("kernels[%d].name %q: want letters, digits, '.', '_' or '-'", i, k.Name))
		}
		if seen[k.Name] {
			errs = append(errs, fmt.Errorf("%s.name: duplicate", at))
		}
		seen[k.Name] = true
		if k.Name == HostKernel {
			if k.Suite != "" || k.Package != "" || k.Mirror != "" {
				errs = append(errs, fmt.Errorf("%s: the host kernel takes no suite, package or mirror", at))
			}
			continue
		}
		if !debNameRE.MatchString(k.Suite) {
			errs = append(errs, fmt.Errorf("%s.suite %q: want a Debian suite name such as bookworm", at, k.Suite))
		}
		if !strings.HasPrefix(k.Package, "linux-image-") || !debNameRE.MatchString(k.Package) {
			errs = append(errs, fmt.Errorf("%s.package %q: want a linux-image-* package", at, k.Package))
		}
		if k.Mirror != "" && !strings.HasPrefix(k.Mirror, "http://") && !strings.HasPrefix(k.Mirror, "https://") {
			errs = append(errs, fmt.Errorf("%s.mirror %q: want an http(s) URL", at, k.Mirror))
		}
	}
	for i, m := range c.Modules {
		if !nameRE.MatchString(m) {
			errs = append(errs, fmt.Errorf("modules[%d] %q: not a module name", i, m))
		}
	}
	return errors.Join(errs...)
}

// Select returns the kernels named in names (all when empty), in the
// order given, or an error naming every unknown one.
func (c *Config) Select(names []string) ([]Kernel, error) {
	if len(names) == 0 {
		return c.Kernels, nil
	}
	var out []Kernel
	var unknown []string
	for _, n := range names {
		found := false
		for _, k := range c.Kernels {
			if k.Name == n {
				out = append(out, k)
				found = true
			}
		}
		if !found {
			unknown = append(unknown, n)
		}
	}
	if len(unknown) > 0 {
		var known []string
		for _, k := range c.Kernels {
			known = append(known, k.Name)
		}
		return nil, fmt.Errorf("unknown kernel(s) %s (vm-images/kernels.yaml has %s)", strings.Join(unknown, ", "), strings.Join(known, ", "))
	}
	return out, nil
}

// DefaultCacheDir is where kernels and images are kept between runs:
// $FASTPATH_CACHE, else $XDG_CACHE_HOME/fastpath, else ~/.cache/fastpath.
func DefaultCacheDir() string {
	if d := os.Getenv("FASTPATH_CACHE"); d != "" {
		return filepath.Join(d, "vm")
	}
	d, err := os.UserCacheDir()
	if err != nil {
		d = os.TempDir()
	}
	return filepath.Join(d, "fastpath", "vm")
}

func (k Kernel) mirror() string {
	if k.Mirror != "" {
		return strings.TrimRight(k.Mirror, "/")
	}
	return DefaultMirror
}
