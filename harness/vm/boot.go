package vm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/fastpath-bench/fastpath/harness/vm/plan"
)

// BootOptions describe one VM run. Zero values mean defaults.
type BootOptions struct {
	Kernel string
	Initrd string
	// Dir receives console.log and results.bin.
	Dir string
	// MemoryMB; 0 means 3072 (the image lives in RAM).
	MemoryMB int
	// CPUs; 0 means 2.
	CPUs int
	// Timeout of the whole boot; 0 means 60 minutes. The VM is killed when
	// it runs out, and what it sent so far is kept.
	Timeout time.Duration
	// Append is added to the kernel command line.
	Append string
}

// BootResult is what came back from a VM, also when it failed.
type BootResult struct {
	// Accel is "kvm" or "tcg" (software emulation).
	Accel   string
	Console string
	Results string
	Seconds float64
	Outputs []plan.Output
}

var (
	kvmOnce sync.Once
	kvmOK   bool
)

// KVMAvailable reports whether qemu can run a VM with KVM here: /dev/kvm
// opens, and a VM with the host's CPU model gets past its vCPUs' reset
// (under nested virtualization /dev/kvm can be there and qemu still abort
// with "failed to set MSR"). The answer is found once per process; where
// KVM does not work, VMs run in software emulation.
func KVMAvailable() bool {
	kvmOnce.Do(func() { kvmOK = probeKVM() })
	return kvmOK
}

func probeKVM() bool {
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return false
	}
	f.Close()
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		return false
	}
	// Stopped at the start (-S): the vCPUs are reset and nothing runs. A
	// qemu that is still up after the wait got through; one that exited
	// could not use KVM.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, qemu, "-accel", "kvm", "-cpu", "host", "-machine", "q35", "-m", "64",
		"-nodefaults", "-no-user-config", "-display", "none", "-monitor", "none", "-S")
	_ = cmd.Run()
	return ctx.Err() == context.DeadlineExceeded
}

// Boot runs qemu-system-x86_64 with the kernel and initramfs and reads the
// framed step outputs from its second serial port. It returns the outputs
// read so far with an error when the VM timed out, crashed, or stopped
// before the last step; the console log stays in Dir.
func Boot(ctx context.Context, opts BootOptions) (*BootResult, error) {
	if opts.MemoryMB == 0 {
		opts.MemoryMB = 3072
	}
	if opts.CPUs == 0 {
		opts.CPUs = 2
	}
	if opts.Timeout == 0 {
		opts.Timeout = 60 * time.Minute
	}
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, err
	}
	res := &BootResult{Accel: "tcg", Console: filepath.Join(opts.Dir, "console.log"), Results: filepath.Join(opts.Dir, "results.bin")}
	accel := []string{"-accel", "tcg,thread=multi", "-cpu", "max"}
	if KVMAvailable() {
		res.Accel = "kvm"
		accel = []string{"-accel", "kvm", "-cpu", "host"}
	}
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		return res, fmt.Errorf("qemu-system-x86_64 not found (apt-get install qemu-system-x86): %w", err)
	}
	os.Remove(res.Console)
	os.Remove(res.Results)
	args := append([]string{
		"-nodefaults", "-no-user-config", "-no-reboot",
		"-display", "none", "-monitor", "none",
		"-machine", "q35",
		"-m", fmt.Sprint(opts.MemoryMB),
		"-smp", fmt.Sprint(opts.CPUs),
		"-kernel", opts.Kernel,
		"-initrd", opts.Initrd,
		"-append", strings.TrimSpace("console=ttyS0 panic=-1 oops=panic mitigations=off rdinit=/init " + opts.Append),
		"-serial", "file:" + res.Console,
		"-serial", "file:" + res.Results,
	}, accel...)
	bctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()
	cmd := exec.CommandContext(bctx, qemu, args...)
	var stderr bytes.Buffer
	cmd.Stdout = &stderr
	cmd.Stderr = &stderr
	cmd.WaitDelay = 5 * time.Second
	start := time.Now()
	runErr := cmd.Run()
	res.Seconds = time.Since(start).Seconds()
	f, err := os.Open(res.Results)
	if err == nil {
		res.Outputs, err = plan.Read(f)
		f.Close()
	}
	switch {
	case bctx.Err() == context.DeadlineExceeded:
		return res, fmt.Errorf("VM timed out after %s (console log: %s)%s", opts.Timeout, res.Console, consoleTail(res.Console))
	case ctx.Err() != nil:
		return res, ctx.Err()
	case runErr != nil:
		return res, fmt.Errorf("qemu: %w: %s%s", runErr, strings.TrimSpace(stderr.String()), consoleTail(res.Console))
	case errors.Is(err, plan.ErrTruncated):
		return res, fmt.Errorf("the VM stopped before its last step (console log: %s)%s", res.Console, consoleTail(res.Console))
	case err != nil:
		return res, fmt.Errorf("results: %w", err)
	}
	return res, nil
}

// consoleTail is the end of a console log, for error messages.
func consoleTail(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	st, _ := f.Stat()
	const n = 2000
	if st != nil && st.Size() > n {
		f.Seek(st.Size()-n, io.SeekStart)
	}
	data, _ := io.ReadAll(f)
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) > 12 {
		lines = lines[len(lines)-12:]
	}
	return "\n  console: " + strings.Join(lines, "\n  console: ")
}
