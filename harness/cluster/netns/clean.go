package netns

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Leftovers lists what runs with the prefix left behind: network
// namespaces, pin directories and run directories.
func Leftovers(prefix string) ([]string, error) {
	var out []string
	nss, err := namespaces(prefix)
	if err != nil {
		return nil, err
	}
	for _, ns := range nss {
		out = append(out, "netns "+ns)
	}
	for _, root := range []string{BPFFSRoot, RunRoot, cgroupsDir()} {
		if root == "" {
			continue
		}
		ents, _ := os.ReadDir(root)
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), prefix) {
				out = append(out, filepath.Join(root, e.Name()))
			}
		}
	}
	return out, nil
}

// cgroupsDir is the directory holding the runs' cgroups, "" when there is
// no cgroup2 hierarchy.
func cgroupsDir() string {
	root := findCgroup2()
	if root == "" {
		return ""
	}
	return filepath.Join(root, cgroupSub)
}

func namespaces(prefix string) ([]string, error) {
	ents, err := os.ReadDir("/run/netns")
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), prefix) {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

// CleanRun removes everything of one run (prefix = run id); Clean with
// Prefix removes everything of every run.
func CleanRun(ctx context.Context, runID string) error {
	return clean(ctx, runID+"-", runID)
}

// Clean removes what every fastpath run left: processes in fp-*
// namespaces, the namespaces, pinned maps and run directories.
func Clean(ctx context.Context) error {
	return clean(ctx, Prefix, Prefix)
}

func clean(ctx context.Context, nsPrefix, dirPrefix string) error {
	var errs []error
	nss, err := namespaces(nsPrefix)
	if err != nil {
		errs = append(errs, err)
	}
	// Kill what still runs inside (agents, workloads), then delete.
	var pids []int
	for _, ps := range netnsPids(nss) {
		pids = append(pids, ps...)
	}
	for _, pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGTERM)
	}
	deadline := time.Now().Add(3 * time.Second)
	for _, pid := range pids {
		for syscall.Kill(pid, 0) == nil && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	for _, ns := range nss {
		if err := delNetns(ns); err != nil {
			errs = append(errs, err)
		}
	}
	if dir := cgroupsDir(); dir != "" {
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			if e.IsDir() && strings.HasPrefix(e.Name(), dirPrefix) {
				if err := removeCgroups(filepath.Join(dir, e.Name())); err != nil {
					errs = append(errs, err)
				}
			}
		}
	}
	for _, root := range []string{BPFFSRoot, RunRoot} {
		ents, _ := os.ReadDir(root)
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), dirPrefix) {
				if err := os.RemoveAll(filepath.Join(root, e.Name())); err != nil {
					errs = append(errs, fmt.Errorf("remove %s: %w", filepath.Join(root, e.Name()), err))
				}
			}
		}
	}
	return errors.Join(errs...)
}
