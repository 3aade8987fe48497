package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/fastpath-bench/fastpath/harness/vm"
)

func splitList(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ' ' || r == ',' })
}

type vmFlags struct {
	config   string
	kernels  string
	cacheDir string
}

func (f *vmFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.config, "config", "vm-images/kernels.yaml", "kernel list")
	cmd.Flags().StringVar(&f.kernels, "kernels", "", "kernels to use, by name, space or comma separated (default: all in --config)")
	cmd.Flags().StringVar(&f.cacheDir, "cache", "", "cache of kernels and images (default: $FASTPATH_CACHE/vm or ~/.cache/fastpath/vm)")
}

func (f *vmFlags) load() (*vm.Config, []vm.Kernel, error) {
	cfg, err := vm.LoadConfig(f.config)
	if err != nil {
		return nil, nil, err
	}
	ks, err := cfg.Select(splitList(f.kernels))
	return cfg, ks, err
}

// newVMImages: `fastpath vm-images` fetches kernels into the cache.
func newVMImages() *cobra.Command {
	var vf vmFlags
	var refresh bool
	cmd := &cobra.Command{
		Use:   "vm-images",
		Short: "Download the kernels of vm-images/kernels.yaml (apt-get download) and prepare their module archives in the cache",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := interruptible()
			defer cancel()
			cfg, ks, err := vf.load()
			if err != nil {
				return err
			}
			for _, k := range ks {
				if k.Name == vm.HostKernel {
					continue
				}
				f, err := vm.Fetch(ctx, k, vm.FetchOptions{CacheDir: vf.cacheDir, Refresh: refresh, Log: os.Stderr})
				if err != nil {
					return err
				}
				mods, err := vm.PrepareModules(ctx, vf.cacheDir, f, cfg.Modules)
				if err != nil {
					return err
				}
				fmt.Printf("%s\t%s %s (%s)\t%s\t%d modules\n", k.Name, f.Package, f.Version, f.Suite, f.Vmlinuz(), mods)
			}
			return nil
		},
	}
	vf.register(cmd)
	cmd.Flags().BoolVar(&refresh, "refresh", false, "look for newer packages even when kernels are cached")
	return cmd
}

func newMatrix() *cobra.Command {
	var vf vmFlags
	var opts vm.RunOptions
	var out, datapaths, tests string
	cmd := &cobra.Command{
		Use:   "matrix",
		Short: "Run the datapath's tests and the conformance suite on several kernels (qemu VMs, and the host) and write matrix.json and matrix.md",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := interruptible()
			defer cancel()
			cfg, ks, err := vf.load()
			if err != nil {
				return err
			}
			opts.Config, opts.CacheDir, opts.Log = cfg, vf.cacheDir, os.Stderr
			opts.Plan.Datapaths = splitList(datapaths)
			if tests != "" {
				opts.Plan.Tests = splitList(tests)
			} else if opts.Plan.Tests, err = opts.Payload.Tests(); err != nil {
				return err
			}
			if out == "" {
				out = filepath.Join("reports", "matrix", time.Now().UTC().Format("20060102-150405"))
			}
			opts.Dir = out
			var runs []*vm.KernelRun
			for _, k := range ks {
				fmt.Fprintf(os.Stderr, "== kernel %s\n", k.Name)
				r := vm.RunKernel(ctx, k, opts)
				if r.Err != nil {
					fmt.Fprintf(os.Stderr, "kernel %s: %v\n", k.Name, r.Err)
				}
				runs = append(runs, r)
				if ctx.Err() != nil {
					break
				}
			}
			m := vm.BuildMatrix(runs, opts.Plan)
			if err := m.Write(out); err != nil {
				return err
			}
			for _, k := range m.Kernels {
				fmt.Printf("%-6s %-40s %4d passed %3d failed %3d skipped %3d not run  (%s, %.0fs)\n", k.Name, k.Release, k.Passed, k.Failed, k.Skipped, k.NotRun, k.Accel, k.Seconds)
			}
			abs, _ := filepath.Abs(out)
			fmt.Printf("matrix: %s\n", filepath.Join(abs, "matrix.md"))
			if ctx.Err() != nil {
				return context.Canceled
			}
			if !m.OK() {
				return fmt.Errorf("the matrix has failures (see %s)", filepath.Join(out, "matrix.md"))
			}
			return nil
		},
	}
	vf.register(cmd)
	f := cmd.Flags()
	f.StringVar(&opts.Payload.Dir, "payload", "bin/vm", "static binaries and test binaries for the images (make vm-payload)")
	f.StringVar(&opts.Payload.Cases, "cases", "scenarios/conformance", "conformance cases")
	f.StringVar(&out, "out", "", "directory for matrix.json, matrix.md and console logs (default reports/matrix/<time>)")
	f.StringVar(&datapaths, "datapaths", "ebpf", "datapaths the conformance suite runs against on each kernel")
	f.StringVar(&tests, "tests", "", "test packages to run (default: every test binary in the payload)")
	f.StringVar(&opts.Plan.TestRun, "test-run", "", "run only tests matching this regular expression (go test -run)")
	f.StringVar(&opts.Plan.CaseMatch, "match", "", "run only the conformance cases matching this regular expression")
	f.IntVar(&opts.Plan.Clusters, "clusters", 0, "conformance clusters at once inside each VM (default: the runner's)")
	f.DurationVar(&opts.Plan.ProbeTimeout, "probe-timeout", 0, "conformance probe timeout (default: the runner's 1s; 3s in VMs without KVM)")
	f.DurationVar(&opts.Plan.StepTimeout, "step-timeout", 0, "timeout of each step inside a VM (default 20m)")
	f.DurationVar(&opts.Timeout, "timeout", 0, "timeout of each VM (default 60m)")
	f.IntVar(&opts.MemoryMB, "memory", 0, "memory of each VM in MiB (default 3072)")
	f.IntVar(&opts.CPUs, "cpus", 0, "CPUs of each VM (default 2)")
	return cmd
}
