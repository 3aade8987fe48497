package vm

import (
	"bufio"
	"bytes"
	"context"
	"debug/elf"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/fastpath-bench/fastpath/harness/execx"
)

// Module is a kernel module file ready to load (uncompressed).
type Module struct {
	Name string
	// Rel is its path below lib/modules/<release>.
	Rel  string
	Data []byte
}

// moduleName is how the kernel names a module file: no suffix, '-' as '_'.
func moduleName(file string) string {
	base := filepath.Base(file)
	for _, suf := range []string{".xz", ".zst", ".gz"} {
		base = strings.TrimSuffix(base, suf)
	}
	return strings.ReplaceAll(strings.TrimSuffix(base, ".ko"), "-", "_")
}

// ResolveModules returns the modules named in want and everything they
// depend on, dependencies first, read from a kernel's lib/modules/<release>.
// Modules built into the kernel are left out; a name that is neither built
// in nor shipped is an error.
func ResolveModules(ctx context.Context, modulesDir string, want []string) ([]Module, error) {
	index := map[string]string{}
	err := walkFiles(filepath.Join(modulesDir, "kernel"), func(rel string) {
		if strings.Contains(rel, ".ko") {
			index[moduleName(rel)] = filepath.Join("kernel", rel)
		}
	})
	if err != nil {
		return nil, err
	}
	builtin := map[string]bool{}
	if f, err := os.Open(filepath.Join(modulesDir, "modules.builtin")); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			builtin[moduleName(sc.Text())] = true
		}
		f.Close()
	}
	var out []Module
	done := map[string]bool{}
	var visit func(name string, chain []string) error
	visit = func(name string, chain []string) error {
		name = strings.ReplaceAll(name, "-", "_")
		if done[name] || builtin[name] {
			return nil
		}
		rel, ok := index[name]
		if !ok {
			return fmt.Errorf("module %s (needed by %s): neither built in nor shipped with this kernel", name, strings.Join(append(chain, "the image"), " <- "))
		}
		data, err := readModule(ctx, filepath.Join(modulesDir, rel))
		if err != nil {
			return err
		}
		deps, err := moduleDepends(data)
		if err != nil {
			return fmt.Errorf("module %s: %w", name, err)
		}
		done[name] = true
		for _, d := range deps {
			if err := visit(d, append(chain, name)); err != nil {
				return err
			}
		}
		out = append(out, Module{Name: name, Rel: strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(rel, ".xz"), ".zst"), ".gz"), Data: data})
		return nil
	}
	for _, w := range want {
		if err := visit(w, nil); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// readModule returns the module's ELF, decompressing .xz, .zst and .gz
// with the host's tools.
func readModule(ctx context.Context, path string) ([]byte, error) {
	var tool string
	switch {
	case strings.HasSuffix(path, ".xz"):
		tool = "xz"
	case strings.HasSuffix(path, ".zst"):
		tool = "zstd"
	case strings.HasSuffix(path, ".gz"):
		tool = "gzip"
	default:
		return os.ReadFile(path)
	}
	out, err := execx.Output(ctx, tool, "-dc", path)
	if err != nil {
		return nil, err
	}
	return out, nil
}

// moduleDepends reads "depends=" from the module's .modinfo section.
func moduleDepends(data []byte) ([]string, error) {
	f, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	sec := f.Section(".modinfo")
	if sec == nil {
		return nil, fmt.Errorf("no .modinfo section")
	}
	info, err := sec.Data()
	if err != nil {
		return nil, err
	}
	for _, kv := range bytes.Split(info, []byte{0}) {
		if v, ok := bytes.CutPrefix(kv, []byte("depends=")); ok {
			var deps []string
			for _, d := range strings.Split(string(v), ",") {
				if d != "" {
					deps = append(deps, d)
				}
			}
			return deps, nil
		}
	}
	return nil, nil
}
