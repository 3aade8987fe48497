package netns

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Cgroups: every node gets a cgroup v2 directory
// <cgroup2 mount>/fastpath/<run-id>/<node>, and every pod one below it
// (pod-<ns>-<name>), as a kubelet puts a node's pods under one cgroup. The
// processes the harness starts in a pod (fortio servers and clients) are
// created in the pod's cgroup (clone into cgroup), and the node's agent is
// given the node's directory (--cgroup) for its socket programs
// (socket-LB, sockmap), which then apply to exactly that node's pods.

// cgroupSub is the directory under the cgroup2 mount holding every run.
const cgroupSub = "fastpath"

// fallbackCgroup2 is where a cgroup2 hierarchy is mounted when the host has
// none mounted.
const fallbackCgroup2 = RunRoot + "/cgroup2"

// Cgroup2Root returns the mount point of the cgroup v2 hierarchy (on a
// hybrid host such as this one, /sys/fs/cgroup/unified), mounting one
// under /run/fastpath when there is none.
func Cgroup2Root() (string, error) {
	if p := findCgroup2(); p != "" {
		return p, nil
	}
	if err := os.MkdirAll(fallbackCgroup2, 0o755); err != nil {
		return "", err
	}
	if err := unix.Mount("cgroup2", fallbackCgroup2, "cgroup2", 0, ""); err != nil {
		return "", fmt.Errorf("mount cgroup2 at %s: %w", fallbackCgroup2, err)
	}
	return fallbackCgroup2, nil
}

func findCgroup2() string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// id parent major:minor root mountpoint opts ... - fstype source superopts
		fields := strings.Fields(sc.Text())
		for i, fld := range fields {
			if fld == "-" && i+1 < len(fields) && fields[i+1] == "cgroup2" && len(fields) > 4 && fields[3] == "/" {
				return fields[4]
			}
		}
	}
	return ""
}

// runCgroup is the directory of a run's cgroups ("" without cgroup2).
func runCgroup(root, runID string) string {
	return filepath.Join(root, cgroupSub, runID)
}

// NodeCgroup is the cgroup directory of a node's pods.
func (c *Cluster) NodeCgroup(node string) string {
	if c.cgroupRoot == "" {
		return ""
	}
	return filepath.Join(runCgroup(c.cgroupRoot, c.spec.RunID), node)
}

// PodCgroup is the cgroup directory of pod "namespace/name"'s processes.
func (c *Cluster) PodCgroup(node, namespace, name string) string {
	if c.cgroupRoot == "" {
		return ""
	}
	return filepath.Join(c.NodeCgroup(node), "pod-"+namespace+"-"+name)
}

// removeCgroups kills what still runs in the cgroups below dir and
// removes them, deepest first.
func removeCgroups(dir string) error {
	if _, err := os.Stat(dir); os.IsNotExist(err) {
		return nil
	}
	var dirs []string
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	for _, d := range dirs {
		for _, pid := range cgroupPids(d) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	var errs []error
	for i := len(dirs) - 1; i >= 0; i-- {
		var err error
		// A killed process leaves its cgroup a moment after the signal.
		for try := 0; try < 50; try++ {
			if err = os.Remove(dirs[i]); err == nil || os.IsNotExist(err) || !errors.Is(err, syscall.EBUSY) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err != nil && !os.IsNotExist(err) {
			errs = append(errs, fmt.Errorf("remove cgroup %s: %w", dirs[i], err))
		}
	}
	return errors.Join(errs...)
}

func cgroupPids(dir string) []int {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return nil
	}
	var out []int
	for _, f := range strings.Fields(string(b)) {
		if pid, err := strconv.Atoi(f); err == nil {
			out = append(out, pid)
		}
	}
	return out
}

// JoinCgroup moves the calling process (all its threads) into dir and
// returns a function that moves it back where it was. Tests use it to
// create sockets as a pod's process would.
func JoinCgroup(dir string) (restore func() error, err error) {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return nil, err
	}
	root := findCgroup2()
	prev := ""
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "0::"); ok {
			prev = filepath.Join(root, rest)
		}
	}
	if prev == "" || root == "" {
		return nil, errors.New("this process has no cgroup v2 membership to return to")
	}
	pid := []byte(strconv.Itoa(os.Getpid()))
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), pid, 0); err != nil {
		return nil, fmt.Errorf("join cgroup %s: %w", dir, err)
	}
	return func() error { return os.WriteFile(filepath.Join(prev, "cgroup.procs"), pid, 0) }, nil
}
