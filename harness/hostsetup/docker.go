package hostsetup

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/fastpath-bench/fastpath/harness/execx"
)

// DockerOptions configure SetupDocker. Zero values mean the defaults.
type DockerOptions struct {
	// Self is the fastpath executable installed as the runtime wrapper
	// (default: this process's executable).
	Self string
	// WrapperPath is where the wrapper is installed (default
	// /usr/local/libexec/fastpath/fastpath-runc).
	WrapperPath string
	// DaemonJSON is dockerd's configuration file (default
	// /etc/docker/daemon.json).
	DaemonJSON string
	// DockerdLog receives the output of a dockerd this setup starts
	// (default /var/log/fastpath-dockerd.log).
	DockerdLog string
	// StartTimeout bounds the wait for the engine to answer (default 60s).
	StartTimeout time.Duration
	// Logf reports each step and change (default: discarded).
	Logf func(format string, args ...any)
}

func (o *DockerOptions) defaults() error {
	if o.Self == "" {
		self, err := os.Executable()
		if err != nil {
			return err
		}
		o.Self = self
	}
	if o.WrapperPath == "" {
		o.WrapperPath = "/usr/local/libexec/fastpath/" + WrapperName
	}
	if o.DaemonJSON == "" {
		o.DaemonJSON = "/etc/docker/daemon.json"
	}
	if o.DockerdLog == "" {
		o.DockerdLog = "/var/log/fastpath-dockerd.log"
	}
	if o.StartTimeout == 0 {
		o.StartTimeout = 60 * time.Second
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	return nil
}

// RuntimeName is the name the wrapper is registered under in daemon.json.
const RuntimeName = "fastpath-runc"

// DockerReport says what SetupDocker found and changed.
type DockerReport struct {
	Installed      bool     // the engine was installed
	Started        bool     // dockerd was started (or restarted)
	Wrapper        bool     // the runtime wrapper is in use
	MissingCaps    []string // capabilities the host's bounding set lacks
	Changed        []string // files written
	ServerVersion  string
	DefaultRuntime string
}

func runCmd(ctx context.Context, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), &execx.RunError{Command: append([]string{name}, args...), Output: out, Inner: err}
	}
	return string(out), nil
}

// SetupDocker makes Docker's engine usable for kind on this host: it
// installs Debian's docker.io where dockerd is missing, installs and
// registers the runtime wrapper when the capability bounding set lacks
// capabilities a privileged container asks for, and starts dockerd (again,
// when its configuration changed). It never runs implicitly: the kind
// provider's preflight only checks, and names this as the fix.
func SetupDocker(ctx context.Context, opts DockerOptions) (*DockerReport, error) {
	if err := opts.defaults(); err != nil {
		return nil, err
	}
	rep := &DockerReport{}
	if _, err := exec.LookPath("dockerd"); err != nil {
		opts.Logf("installing Docker's engine (apt-get install docker.io)")
		if _, err := runCmd(ctx, "apt-get", "update"); err != nil {
			return rep, err
		}
		if _, err := runCmd(ctx, "apt-get", "install", "-y", "--no-install-recommends", "docker.io"); err != nil {
			return rep, err
		}
		rep.Installed = true
	}
	bnd, err := BoundingSet()
	if err != nil {
		return rep, err
	}
	rep.MissingCaps = MissingCaps(bnd)
	configChanged := false
	if len(rep.MissingCaps) > 0 {
		changed, err := installWrapper(opts.Self, opts.WrapperPath)
		if err != nil {
			return rep, err
		}
		if changed {
			rep.Changed = append(rep.Changed, opts.WrapperPath)
			opts.Logf("installed the runtime wrapper %s: it removes %s, which this host's capability bounding set lacks, from privileged containers",
				opts.WrapperPath, strings.Join(rep.MissingCaps, ", "))
		}
		rep.Wrapper = true
	}
	changed, err := writeDaemonJSON(opts.DaemonJSON, rep.Wrapper, opts.WrapperPath)
	if err != nil {
		return rep, err
	}
	if changed {
		rep.Changed = append(rep.Changed, opts.DaemonJSON)
		configChanged = true
		if rep.Wrapper {
			opts.Logf("%s: runtime %q registered and made the default", opts.DaemonJSON, RuntimeName)
		} else {
			opts.Logf("%s: runtime %q removed", opts.DaemonJSON, RuntimeName)
		}
	}
	// kind's known issue: kubelets, systemd and kube-proxy of every node
	// of every cluster hold inotify instances of the host's user; with
	// the kernel's default (128) a second cluster's kube-proxy exits with
	// "too many open files".
	for _, sc := range inotifySysctls {
		changed, err := raiseSysctl(sc.path, sc.want)
		if err != nil {
			return rep, err
		}
		if changed {
			rep.Changed = append(rep.Changed, fmt.Sprintf("%s=%d", sc.name, sc.want))
			opts.Logf("raised %s to %d (kind's nodes hold inotify instances of the host; not kept across reboots)", sc.name, sc.want)
		}
	}
	running := EngineAnswers(ctx)
	if running && configChanged {
		opts.Logf("restarting dockerd for its new configuration")
		if err := stopDockerd(ctx); err != nil {
			return rep, err
		}
		running = false
	}
	if !running {
		opts.Logf("starting dockerd (log: %s)", opts.DockerdLog)
		if err := startDockerd(ctx, opts.DockerdLog, opts.StartTimeout); err != nil {
			return rep, err
		}
		rep.Started = true
	}
	info, err := runCmd(ctx, "docker", "info", "--format", "{{.ServerVersion}} {{.DefaultRuntime}}")
	if err != nil {
		return rep, err
	}
	if f := strings.Fields(info); len(f) == 2 {
		rep.ServerVersion, rep.DefaultRuntime = f[0], f[1]
	}
	if rep.Wrapper && rep.DefaultRuntime != RuntimeName {
		return rep, fmt.Errorf("dockerd's default runtime is %q, not %q: is another dockerd running with another configuration than %s?",
			rep.DefaultRuntime, RuntimeName, opts.DaemonJSON)
	}
	return rep, nil
}

// inotifySysctls are the inotify limits kind's documentation asks for
// when several clusters run on one host.
var inotifySysctls = []struct {
	name, path string
	want       int
}{
	{"fs.inotify.max_user_instances", "/proc/sys/fs/inotify/max_user_instances", 512},
	{"fs.inotify.max_user_watches", "/proc/sys/fs/inotify/max_user_watches", 524288},
}

// raiseSysctl writes want to the sysctl file at path when it holds less.
func raiseSysctl(path string, want int) (bool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return false, fmt.Errorf("read %s: %w", path, err)
	}
	cur, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return false, fmt.Errorf("%s: %q is no number", path, strings.TrimSpace(string(b)))
	}
	if cur >= want {
		return false, nil
	}
	if err := os.WriteFile(path, []byte(strconv.Itoa(want)), 0o644); err != nil {
		return false, fmt.Errorf("raise %s from %d to %d: %w", path, cur, want, err)
	}
	return true, nil
}

// installWrapper copies the fastpath executable to path (when its contents
// differ).
func installWrapper(self, path string) (bool, error) {
	src, err := os.ReadFile(self)
	if err != nil {
		return false, fmt.Errorf("runtime wrapper: %w", err)
	}
	if cur, err := os.ReadFile(path); err == nil && bytes.Equal(cur, src) {
		return false, nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return false, err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, src, 0o755); err != nil {
		return false, err
	}
	return true, os.Rename(tmp, path)
}

// writeDaemonJSON registers the wrapper as dockerd's default runtime (or
// removes that registration when the wrapper is not needed), keeping every
// other setting of an existing file.
func writeDaemonJSON(path string, wrapper bool, wrapperPath string) (bool, error) {
	cfg := map[string]any{}
	data, err := os.ReadFile(path)
	switch {
	case err == nil:
		if len(bytes.TrimSpace(data)) > 0 {
			if err := json.Unmarshal(data, &cfg); err != nil {
				return false, fmt.Errorf("%s: %w", path, err)
			}
		}
	case !errors.Is(err, os.ErrNotExist):
		return false, err
	}
	want := mergeDaemonConfig(cfg, wrapper, wrapperPath)
	if reflect.DeepEqual(want, cfg) && err == nil {
		return false, nil
	}
	if errors.Is(err, os.ErrNotExist) && !wrapper {
		return false, nil // nothing to register, no file to write
	}
	out, err := json.MarshalIndent(want, "", "  ")
	if err != nil {
		return false, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return false, err
	}
	return true, os.WriteFile(path, append(out, '\n'), 0o644)
}

// mergeDaemonConfig returns cfg with the wrapper runtime set (or unset).
func mergeDaemonConfig(cfg map[string]any, wrapper bool, wrapperPath string) map[string]any {
	out := map[string]any{}
	for k, v := range cfg {
		out[k] = v
	}
	runtimes := map[string]any{}
	if r, ok := cfg["runtimes"].(map[string]any); ok {
		for k, v := range r {
			runtimes[k] = v
		}
	}
	if wrapper {
		runtimes[RuntimeName] = map[string]any{"path": wrapperPath}
		out["default-runtime"] = RuntimeName
	} else {
		delete(runtimes, RuntimeName)
		if out["default-runtime"] == RuntimeName {
			delete(out, "default-runtime")
		}
	}
	if len(runtimes) > 0 {
		out["runtimes"] = runtimes
	} else {
		delete(out, "runtimes")
	}
	return out
}

// CheckEngine checks that Docker's engine is installed and answers; the
// error names the fix.
func CheckEngine(ctx context.Context) error {
	if _, err := exec.LookPath("docker"); err != nil {
		return errors.New("no docker command: run `fastpath host-setup docker` (installs and starts Docker's engine)")
	}
	if !EngineAnswers(ctx) {
		return errors.New("Docker's engine does not answer: run `fastpath host-setup docker` (starts it)")
	}
	return nil
}

// EngineAnswers says whether Docker's engine answers `docker info`
// (within 10 s).
func EngineAnswers(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err := runCmd(ctx, "docker", "info", "--format", "{{.ServerVersion}}")
	return err == nil
}

const dockerdPidFile = "/var/run/docker.pid"

// startDockerd starts the engine: through systemd where it runs the host,
// else as a daemon of its own (sandboxes and CI containers have no init).
func startDockerd(ctx context.Context, logPath string, timeout time.Duration) error {
	if systemdRuns() {
		if _, err := runCmd(ctx, "systemctl", "start", "docker"); err != nil {
			return err
		}
	} else {
		logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return err
		}
		cmd := exec.Command("dockerd")
		cmd.Stdout, cmd.Stderr = logf, logf
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		err = cmd.Start()
		logf.Close()
		if err != nil {
			return fmt.Errorf("start dockerd: %w", err)
		}
		go func() { _ = cmd.Wait() }()
		_ = cmd.Process.Release()
	}
	deadline := time.Now().Add(timeout)
	for !EngineAnswers(ctx) {
		if time.Now().After(deadline) {
			tail, _ := tailFile(logPath, 2000)
			return fmt.Errorf("dockerd did not answer within %s; its log (%s) ends:\n%s", timeout, logPath, tail)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
	return nil
}

// stopDockerd stops a running engine and waits until it is gone.
func stopDockerd(ctx context.Context) error {
	if systemdRuns() {
		_, err := runCmd(ctx, "systemctl", "stop", "docker")
		return err
	}
	data, err := os.ReadFile(dockerdPidFile)
	if err != nil {
		return fmt.Errorf("dockerd runs but %s is unreadable: %w", dockerdPidFile, err)
	}
	var pid int
	if _, err := fmt.Sscan(string(data), &pid); err != nil || pid <= 1 {
		return fmt.Errorf("%s: bad pid %q", dockerdPidFile, data)
	}
	_ = syscall.Kill(pid, syscall.SIGTERM)
	for i := 0; i < 300; i++ {
		if syscall.Kill(pid, 0) != nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("dockerd (pid %d) did not stop within 30s", pid)
}

func systemdRuns() bool {
	fi, err := os.Stat("/run/systemd/system")
	return err == nil && fi.IsDir()
}

func tailFile(path string, n int64) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() > n {
		_, _ = f.Seek(-n, io.SeekEnd)
	}
	b, err := io.ReadAll(f)
	return string(b), err
}
