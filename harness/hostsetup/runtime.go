// Package hostsetup prepares a host for a cluster provider, explicitly and
// saying what it changed: `fastpath host-setup docker` installs and starts
// Docker's engine for the kind provider, and where the host's capability
// bounding set lacks CAP_SYS_RESOURCE (sandboxes, some CI runners) installs
// a runtime wrapper without which no privileged container can start.
package hostsetup

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// The runtime wrapper. kind starts its nodes with `docker run --privileged`
// and runs commands in them with `docker exec --privileged`; a privileged
// container asks for every capability, and runc fails ("unable to apply
// caps: operation not permitted") when one of them is outside the host's
// bounding set. The wrapper is the fastpath executable installed under
// WrapperName: dockerd calls it as its runtime, it removes the capabilities
// its own bounding set lacks from the container's spec (create, run) or the
// exec'd process's spec (exec), and executes the real runc with the same
// arguments.

// WrapperName is the file name the wrapper is installed under; the
// fastpath executable acts as the wrapper when called by that name.
const WrapperName = "fastpath-runc"

// runcGlobalValueFlags are runc's global flags that take a value (the
// subcommand is the first argument that is neither a flag nor a value).
var runcGlobalValueFlags = []string{"--root", "--log", "--log-format", "--criu", "--rootless"}

// wrapperCall is what the wrapper understood of runc's arguments (which
// it passes on unchanged).
type wrapperCall struct {
	// Sub is runc's subcommand.
	Sub string
	// Spec is the JSON file to edit: the bundle's config.json (create,
	// run) or the --process file (exec); empty when there is none.
	Spec string
	// Process says Spec is a process spec (exec) rather than a bundle's.
	Process bool
}

// parseWrapperArgs reads runc's command line as dockerd passes it. cwd is
// the bundle when --bundle is not given.
func parseWrapperArgs(args []string, cwd string) wrapperCall {
	var c wrapperCall
	sub := -1
	for i := 0; i < len(args); i++ {
		a := args[i]
		if slices.Contains(runcGlobalValueFlags, a) {
			i++
			continue
		}
		if strings.HasPrefix(a, "-") {
			continue
		}
		sub = i
		break
	}
	if sub < 0 {
		return c // runc --version and the like
	}
	c.Sub = args[sub]
	rest := args[sub+1:]
	value := func(long, short string) string {
		for i := 0; i < len(rest); i++ {
			a := rest[i]
			switch {
			case a == long || a == short || a == "-"+long:
				if i+1 < len(rest) {
					return rest[i+1]
				}
			case strings.HasPrefix(a, long+"="):
				return strings.TrimPrefix(a, long+"=")
			case strings.HasPrefix(a, "-"+long+"="):
				return strings.TrimPrefix(a, "-"+long+"=")
			}
		}
		return ""
	}
	switch c.Sub {
	case "create", "run":
		bundle := value("--bundle", "-b")
		if bundle == "" {
			bundle = cwd
		}
		c.Spec = filepath.Join(bundle, "config.json")
	case "exec":
		if p := value("--process", "-p"); p != "" {
			c.Spec, c.Process = p, true
		}
	}
	return c
}

// dropCaps removes the capabilities drop from every set of an OCI spec
// (process: true for a process spec, as `runc exec --process` reads) and
// returns the new JSON; unknown fields are kept. changed is false when no
// set held any of them.
func dropCaps(data []byte, drop []string, process bool) (out []byte, changed bool, err error) {
	var spec map[string]any
	if err := json.Unmarshal(data, &spec); err != nil {
		return nil, false, fmt.Errorf("decode spec: %w", err)
	}
	proc := spec
	if !process {
		p, ok := spec["process"].(map[string]any)
		if !ok {
			return data, false, nil
		}
		proc = p
	}
	caps, ok := proc["capabilities"].(map[string]any)
	if !ok {
		return data, false, nil
	}
	for set, v := range caps {
		list, ok := v.([]any)
		if !ok {
			continue
		}
		kept := list[:0:0]
		for _, c := range list {
			if s, ok := c.(string); ok && slices.Contains(drop, s) {
				changed = true
				continue
			}
			kept = append(kept, c)
		}
		caps[set] = kept
	}
	if !changed {
		return data, false, nil
	}
	out, err = json.Marshal(spec)
	return out, true, err
}

// RunWrapper is the runtime wrapper's main: it edits the spec runc is about
// to read and returns the argument vector to execute runc with.
func RunWrapper(args []string) (runcArgs []string, err error) {
	cwd, err := os.Getwd()
	if err != nil {
		return nil, err
	}
	c := parseWrapperArgs(args, cwd)
	var drop []string
	if c.Spec != "" {
		bnd, err := BoundingSet()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", WrapperName, err)
		}
		drop = MissingCaps(bnd)
	}
	if c.Spec != "" && len(drop) > 0 {
		fi, err := os.Stat(c.Spec)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", WrapperName, err)
		}
		data, err := os.ReadFile(c.Spec)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", WrapperName, err)
		}
		out, changed, err := dropCaps(data, drop, c.Process)
		if err != nil {
			return nil, fmt.Errorf("%s: %s: %w", WrapperName, c.Spec, err)
		}
		if changed {
			if err := os.WriteFile(c.Spec, out, fi.Mode().Perm()); err != nil {
				return nil, fmt.Errorf("%s: %w", WrapperName, err)
			}
		}
	}
	return args, nil
}

// capNames are the capabilities by number (linux/capability.h).
var capNames = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
	"CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
	"CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK",
	"CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE",
	"CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE",
	"CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE",
	"CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG",
	"CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF",
	"CAP_CHECKPOINT_RESTORE",
}

// BoundingSet reads this process's capability bounding set (CapBnd in
// /proc/self/status).
func BoundingSet() (uint64, error) {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, err
	}
	return parseCapBnd(string(data))
}

func parseCapBnd(status string) (uint64, error) {
	for _, line := range strings.Split(status, "\n") {
		if v, ok := strings.CutPrefix(line, "CapBnd:"); ok {
			var bnd uint64
			if _, err := fmt.Sscanf(strings.TrimSpace(v), "%x", &bnd); err != nil {
				return 0, fmt.Errorf("CapBnd %q: %w", v, err)
			}
			return bnd, nil
		}
	}
	return 0, errors.New("no CapBnd line in /proc/self/status")
}

// MissingCaps names the capabilities the kernel knows (up to the highest
// bit set in bnd, at least CAP_BPF) that bounding set bnd lacks.
func MissingCaps(bnd uint64) []string {
	last := 39 // CAP_BPF: kernels before 5.8 have fewer, and a spec may still name them
	for b := len(capNames) - 1; b > last; b-- {
		if bnd&(1<<b) != 0 {
			last = b
			break
		}
	}
	var out []string
	for b := 0; b <= last && b < len(capNames); b++ {
		if bnd&(1<<b) == 0 {
			out = append(out, capNames[b])
		}
	}
	return out
}

// ErrNoRunc means no runc executable was found for the wrapper to run.
var ErrNoRunc = errors.New("no runc executable (install Debian's runc, which docker.io depends on)")
