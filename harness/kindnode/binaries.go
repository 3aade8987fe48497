package kindnode

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/fastpath-bench/fastpath/harness/execx"
)

// Kubernetes binaries are built from the k8s.io/kubernetes Go module at one
// version. Its go.mod points the staging modules (k8s.io/api, …) at
// directories of its own repository; a module that requires it must
// replace each of them with the published module of the matching v0
// version (v1.35.0 → v0.35.0).

// kubeCommands are the Kubernetes binaries a node image holds: the node
// ones in /usr/bin, the control plane's in images of their own.
var kubeCommands = []string{"kubelet", "kubeadm", "kubectl", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy"}

var semverRE = regexp.MustCompile(`^v(\d+)\.(\d+)\.(\d+)$`)

// stagingVersion is the version of the staging modules published with
// Kubernetes version v (v1.35.0 → v0.35.0).
func stagingVersion(v string) (string, error) {
	m := semverRE.FindStringSubmatch(v)
	if m == nil || m[1] != "1" {
		return "", fmt.Errorf("kubernetes version %q: want v1.MINOR.PATCH", v)
	}
	return fmt.Sprintf("v0.%s.%s", m[2], m[3]), nil
}

// stagingModules lists the modules k8s.io/kubernetes's go.mod replaces by
// ./staging directories.
func stagingModules(gomod string) ([]string, error) {
	f, err := os.Open(gomod)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(sc.Text()), "replace"))
		left, right, ok := strings.Cut(line, "=>")
		if !ok || !strings.HasPrefix(strings.TrimSpace(right), "./staging/") {
			continue
		}
		if mod := strings.Fields(left); len(mod) > 0 {
			out = append(out, mod[0])
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no ./staging replacements", gomod)
	}
	return out, nil
}

// buildModule writes a Go module in dir that requires mod at version and
// replaces its staging modules, so that `go build` of its commands works.
func kubeModule(ctx context.Context, dir, version string) error {
	sv, err := stagingVersion(version)
	if err != nil {
		return err
	}
	out, err := goCmd(ctx, "", "mod", "download", "-json", "k8s.io/kubernetes@"+version)
	if err != nil {
		return err
	}
	var dl struct{ GoMod string }
	if err := json.Unmarshal([]byte(out), &dl); err != nil || dl.GoMod == "" {
		return fmt.Errorf("go mod download k8s.io/kubernetes@%s: no go.mod in %q", version, out)
	}
	staging, err := stagingModules(dl.GoMod)
	if err != nil {
		return err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "module fastpath.dev/kind-node-build\n\ngo 1.25\n\nrequire k8s.io/kubernetes %s\n\nreplace (\n", version)
	for _, m := range staging {
		fmt.Fprintf(&b, "\t%s => %s %s\n", m, m, sv)
	}
	b.WriteString(")\n")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte(b.String()), 0o644); err != nil {
		return err
	}
	// A file that imports the commands keeps `go mod tidy` honest.
	var imp strings.Builder
	imp.WriteString("//go:build tools\n\npackage tools\n\nimport (\n")
	for _, c := range kubeCommands {
		fmt.Fprintf(&imp, "\t_ \"k8s.io/kubernetes/cmd/%s\"\n", c)
	}
	imp.WriteString(")\n")
	if err := os.WriteFile(filepath.Join(dir, "tools.go"), []byte(imp.String()), 0o644); err != nil {
		return err
	}
	_, err = goCmd(ctx, dir, "mod", "tidy", "-e")
	return err
}

// versionLDFlags stamps the Kubernetes version into the binaries (kubeadm
// reads it; without it a build says v0.0.0).
func versionLDFlags(version string) string {
	m := semverRE.FindStringSubmatch(version)
	pkg := "k8s.io/component-base/version"
	return fmt.Sprintf("-s -w -X %[1]s.gitVersion=%[2]s -X %[1]s.gitMajor=%[3]s -X %[1]s.gitMinor=%[4]s -X %[1]s.gitTreeState=clean -X %[1]s.buildDate=1970-01-01T00:00:00Z",
		pkg, version, m[1], m[2])
}

// buildKube builds the Kubernetes commands into outDir.
func buildKube(ctx context.Context, workDir, outDir, version string, logf func(string, ...any)) error {
	if err := kubeModule(ctx, workDir, version); err != nil {
		return err
	}
	for _, c := range kubeCommands {
		if _, err := os.Stat(filepath.Join(outDir, c)); err == nil {
			continue
		}
		logf("building %s %s (cold: minutes)", c, version)
		if _, err := goCmd(ctx, workDir, "build", "-trimpath", "-ldflags", versionLDFlags(version),
			"-o", filepath.Join(outDir, c+".tmp"), "k8s.io/kubernetes/cmd/"+c); err != nil {
			return err
		}
		if err := os.Rename(filepath.Join(outDir, c+".tmp"), filepath.Join(outDir, c)); err != nil {
			return err
		}
	}
	return nil
}

// etcdMain is the whole etcd server command: the server module's main.
const etcdMain = `package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
`

// pauseMain is the pod sandbox's process: it waits for a signal to end,
// and reaps the children a pod's shared PID namespace hands it.
const pauseMain = `package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sig := make(chan os.Signal, 4)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for s := range sig {
		if s != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			if pid, _ := syscall.Wait4(-1, nil, syscall.WNOHANG, nil); pid <= 0 {
				break
			}
		}
	}
}
`

// buildSmall builds a one-file Go command (etcd, pause) in its own module
// requiring mod at version (none: no requirement).
func buildSmall(ctx context.Context, workDir, out, name, src, mod, version string) error {
	if _, err := os.Stat(out); err == nil {
		return nil
	}
	dir := filepath.Join(workDir, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	gomod := "module fastpath.dev/" + name + "\n\ngo 1.25\n"
	if mod != "" {
		gomod += "\nrequire " + mod + " " + version + "\n"
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte(gomod), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(src), 0o644); err != nil {
		return err
	}
	if _, err := goCmd(ctx, dir, "mod", "tidy"); err != nil {
		return err
	}
	if _, err := goCmd(ctx, dir, "build", "-trimpath", "-ldflags", "-s -w", "-o", out+".tmp", "."); err != nil {
		return err
	}
	return os.Rename(out+".tmp", out)
}

// goCmd runs the go command in dir with static builds and the module proxy
// the environment names; errors carry the command and its output.
func goCmd(ctx context.Context, dir string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=-mod=mod", "GOWORK=off")
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), &execx.RunError{Command: append([]string{"go"}, args...), Output: []byte(stderr.String() + " (in " + dir + ")"), Inner: err}
	}
	return stdout.String(), nil
}
