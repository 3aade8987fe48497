package vm

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fastpath-bench/fastpath/harness/vm/plan"
)

// PlanOptions choose what a kernel run executes. Zero values mean
// defaults.
type PlanOptions struct {
	// Tests are package paths of the payload's test binaries; nil: all.
	Tests []string
	// TestRun is passed as -test.run (empty: every test).
	TestRun string
	// Datapaths the conformance suite runs against; nil: ebpf.
	Datapaths []string
	// Cases limits the conformance run to cases whose path matches (the
	// harness's --match); empty: all.
	CaseMatch string
	// Clusters at once in the conformance run; 0: the runner's default.
	Clusters int
	// ProbeTimeout for conformance probes; 0: the runner's default.
	ProbeTimeout time.Duration
	// StepTimeout for each step; 0 means 20 minutes.
	StepTimeout time.Duration
}

// Steps is the plan for one kernel, with the payload at root and the
// conformance cases in cases ("/fastpath" and imageCases inside an image;
// the payload directory and the cases where they are on the host).
func Steps(root, cases string, opts PlanOptions) []plan.Step {
	if opts.Datapaths == nil {
		opts.Datapaths = []string{"ebpf"}
	}
	if opts.StepTimeout == 0 {
		opts.StepTimeout = 20 * time.Minute
	}
	bin := filepath.Join(root, "bin")
	st := plan.Duration(opts.StepTimeout)
	steps := []plan.Step{{
		Name:    "features",
		Args:    []string{filepath.Join(bin, "fastpath-agent"), "features", "--json"},
		Timeout: plan.Duration(2 * time.Minute),
	}}
	for _, pkg := range opts.Tests {
		args := []string{filepath.Join(bin, "test2json"), "-t", "-p", pkg, filepath.Join(root, "tests", testBinary(pkg)),
			"-test.v=test2json", "-test.count=1", "-test.timeout=" + (opts.StepTimeout - 30*time.Second).String()}
		if opts.TestRun != "" {
			args = append(args, "-test.run="+opts.TestRun)
		}
		steps = append(steps, plan.Step{
			Name: "test:" + pkg, Args: args, Timeout: st,
			Env: []string{"FASTPATH_REQUIRE_PRIVILEGED=1"},
			Dir: filepath.Join(root, "tests"),
		})
	}
	for _, dp := range opts.Datapaths {
		args := []string{filepath.Join(bin, "fastpath"), "conformance", "run", "--json", "--progress",
			"--cases", cases, "--datapath", dp,
			"--agent-binary", filepath.Join(bin, "fastpath-agent")}
		if opts.CaseMatch != "" {
			args = append(args, "--match", opts.CaseMatch)
		}
		if opts.Clusters != 0 {
			args = append(args, "--clusters", fmt.Sprint(opts.Clusters))
		}
		if opts.ProbeTimeout != 0 {
			args = append(args, "--timeout", opts.ProbeTimeout.String())
		}
		steps = append(steps, plan.Step{Name: "conformance:" + dp, Args: args, Timeout: st})
	}
	return steps
}

// TCGProbeTimeout is the conformance probe timeout in VMs without KVM.
const TCGProbeTimeout = 3 * time.Second

// KernelRun is the raw outcome of one kernel's plan.
type KernelRun struct {
	Kernel Kernel
	// Fetched is the package used (nil for the host kernel).
	Fetched *Fetched
	// Release is uname -r of the kernel that ran.
	Release string
	// Accel is "kvm", "tcg" or "host".
	Accel   string
	Seconds float64
	// Console is the path of the kept console log (VMs) or step log
	// (host).
	Console string
	Outputs []plan.Output
	// Err is why the run did not complete (fetch, build, boot, timeout);
	// the outputs read before it are kept.
	Err error
}

// RunOptions configure RunKernel. Zero values mean defaults.
type RunOptions struct {
	Config  *Config
	Payload Payload
	Plan    PlanOptions
	// CacheDir; empty: DefaultCacheDir().
	CacheDir string
	// Dir receives <kernel>/console.log (and the image while it runs).
	Dir string
	// Timeout of one VM; 0: BootOptions' default.
	Timeout time.Duration
	// MemoryMB and CPUs of each VM; 0: BootOptions' defaults.
	MemoryMB, CPUs int
	Log            io.Writer
}

// RunKernel runs the plan on one kernel: in a VM, or directly for "host".
func RunKernel(ctx context.Context, k Kernel, opts RunOptions) *KernelRun {
	if opts.Log == nil {
		opts.Log = io.Discard
	}
	if opts.Plan.Tests == nil {
		tests, err := opts.Payload.Tests()
		if err != nil {
			return &KernelRun{Kernel: k, Err: err}
		}
		opts.Plan.Tests = tests
	}
	dir := filepath.Join(opts.Dir, k.Name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return &KernelRun{Kernel: k, Err: err}
	}
	if k.Name == HostKernel {
		return runHost(ctx, k, dir, opts)
	}
	r := &KernelRun{Kernel: k, Accel: "tcg"}
	f, err := Fetch(ctx, k, FetchOptions{CacheDir: opts.CacheDir, Log: opts.Log})
	if err != nil {
		r.Err = err
		return r
	}
	r.Fetched, r.Release = f, f.Release
	initrd := filepath.Join(dir, "initrd.cpio")
	defer os.Remove(initrd)
	fmt.Fprintf(opts.Log, "kernel %s: building the image (%s %s)\n", k.Name, f.Package, f.Version)
	pl := opts.Plan
	if pl.ProbeTimeout == 0 && !KVMAvailable() {
		// Under software emulation an allowed connection can take longer
		// than the runner's 1s default when the host is busy.
		pl.ProbeTimeout = TCGProbeTimeout
	}
	if _, err := BuildInitrd(ctx, ImageOptions{Fetched: f, Modules: opts.Config.Modules, Payload: opts.Payload, Steps: Steps(imageRoot, imageCases, pl), CacheDir: opts.CacheDir, Path: initrd}); err != nil {
		r.Err = err
		return r
	}
	fmt.Fprintf(opts.Log, "kernel %s: booting (accel %s); console: %s\n", k.Name, map[bool]string{true: "kvm", false: "tcg"}[KVMAvailable()], filepath.Join(dir, "console.log"))
	res, err := Boot(ctx, BootOptions{Kernel: f.Vmlinuz(), Initrd: initrd, Dir: dir, Timeout: opts.Timeout, MemoryMB: opts.MemoryMB, CPUs: opts.CPUs})
	if res != nil {
		r.Accel, r.Seconds, r.Console, r.Outputs = res.Accel, res.Seconds, res.Console, res.Outputs
	}
	os.Remove(filepath.Join(dir, "results.bin"))
	r.Err = err
	return r
}

func runHost(ctx context.Context, k Kernel, dir string, opts RunOptions) *KernelRun {
	r := &KernelRun{Kernel: k, Accel: "host", Console: filepath.Join(dir, "console.log")}
	root, err := filepath.Abs(opts.Payload.Dir)
	if err != nil {
		r.Err = err
		return r
	}
	// The host run reads the cases where they are.
	cases, err := filepath.Abs(opts.Payload.Cases)
	if err != nil {
		r.Err = err
		return r
	}
	steps := Steps(root, cases, opts.Plan)
	log, err := os.Create(r.Console)
	if err != nil {
		r.Err = err
		return r
	}
	defer log.Close()
	start := time.Now()
	var out bytes.Buffer
	if err := plan.Run(ctx, steps, &out, io.MultiWriter(log, prefixWriter{opts.Log})); err != nil {
		r.Err = err
	}
	r.Seconds = time.Since(start).Seconds()
	r.Outputs, err = plan.Read(&out)
	if r.Err == nil {
		r.Err = err
	}
	r.Release = hostRelease()
	return r
}

// prefixWriter passes only the plan's own progress lines through.
type prefixWriter struct{ w io.Writer }

func (p prefixWriter) Write(b []byte) (int, error) {
	for _, line := range strings.SplitAfter(string(b), "\n") {
		if strings.HasPrefix(line, "fastpath-vm: ") {
			io.WriteString(p.w, "host: "+strings.TrimPrefix(line, "fastpath-vm: "))
		}
	}
	return len(b), nil
}

func hostRelease() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}
