// Package execx runs commands for the harness: errors carry the command
// line and its output, and processes can be started inside a named network
// namespace from a thread locked into it.
package execx

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/vishvananda/netns"
)

// RunError is a command that failed, with what it printed.
type RunError struct {
	Command []string
	Output  []byte
	Inner   error
}

func (e *RunError) Error() string {
	out := strings.TrimSpace(string(e.Output))
	if out == "" {
		return fmt.Sprintf("command %q failed: %v", strings.Join(e.Command, " "), e.Inner)
	}
	return fmt.Sprintf("command %q failed: %v: %s", strings.Join(e.Command, " "), e.Inner, out)
}

func (e *RunError) Unwrap() error { return e.Inner }

// Run runs a command and returns its combined output; a failure is a
// *RunError.
func Run(ctx context.Context, name string, args ...string) ([]byte, error) {
	return RunEnv(ctx, nil, name, args...)
}

// RunEnv is Run with variables ("K=V") added to the environment.
func RunEnv(ctx context.Context, env []string, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Run(); err != nil {
		return out.Bytes(), &RunError{Command: append([]string{name}, args...), Output: out.Bytes(), Inner: err}
	}
	return out.Bytes(), nil
}

// Output runs a command and returns its standard output; a failure is a
// *RunError carrying its standard error.
func Output(ctx context.Context, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	var out, stderr bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return out.Bytes(), &RunError{Command: append([]string{name}, args...), Output: stderr.Bytes(), Inner: err}
	}
	return out.Bytes(), nil
}

// StartInNetns starts cmd with its network namespace set to the named one
// (as created by `ip netns add`) or the one at an absolute path
// (NetnsPath). The mount namespace is left alone, unlike
// `ip netns exec`, so the child sees the host's /sys/fs/bpf.
func StartInNetns(nsName string, cmd *exec.Cmd) error {
	return RunInNetns(nsName, func() error {
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("start %s in netns %s: %w", cmd.Path, nsName, err)
		}
		return nil
	})
}

// RunInNetns runs f on a thread in the named network namespace. A process
// f starts inherits that namespace.
func RunInNetns(nsName string, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		if err := LockThreadInNetns(nsName); err != nil {
			errc <- err
			return
		}
		errc <- f()
	}()
	return <-errc
}

// NetnsDir is where named network namespaces live (`ip netns add`).
const NetnsDir = "/run/netns"

// NetnsPath is the file of a network namespace given by name (under
// NetnsDir) or by absolute path (such as a CNI's CNI_NETNS,
// "/var/run/netns/cni-…"), which is taken as it is.
func NetnsPath(nsName string) string {
	if filepath.IsAbs(nsName) {
		return filepath.Clean(nsName)
	}
	return filepath.Join(NetnsDir, nsName)
}

// LockThreadInNetns locks the calling goroutine to its thread and moves
// the thread into the named network namespace. The thread is never
// unlocked: when the goroutine ends the runtime discards it instead of
// reusing a thread in another namespace. Call it at the start of a
// goroutine of its own.
func LockThreadInNetns(nsName string) error {
	runtime.LockOSThread()
	h, err := netns.GetFromPath(NetnsPath(nsName))
	if err != nil {
		return fmt.Errorf("open netns %s: %w", nsName, err)
	}
	defer h.Close()
	if err := netns.Set(h); err != nil {
		return fmt.Errorf("enter netns %s: %w", nsName, err)
	}
	return nil
}
