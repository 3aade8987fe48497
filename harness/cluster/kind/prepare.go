package kind

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/fastpath-bench/fastpath/harness/images"
	"github.com/fastpath-bench/fastpath/harness/kindnode"
)

// RunOptions are what a benchmark or conformance run on kind needs;
// zero values mean defaults.
type RunOptions struct {
	// NodeImage is the node image; empty: the offline build's tag (make
	// kind-node-image).
	NodeImage string
	// AgentImage is the agent image; empty: built from ImageBinDir.
	AgentImage string
	// IptablesAgentImage is the baselines' agent image, the iptables and
	// the sidecar datapath's (Debian, with iptables, ipset and HAProxy);
	// empty: built from ImageBinDir on the node image's rootfs when the
	// run has one of those datapaths.
	IptablesAgentImage string
	// ImageBinDir holds the static binaries of the agent image (make
	// image); empty: bin/image.
	ImageBinDir string
	// Retain keeps the cluster at the end (debugging; fastpath clean
	// deletes it).
	Retain bool
}

// Prepare checks, before anything is created, what a kind run needs (the
// engine, the capability wrapper, the node image), fills in the default
// node image, and builds the agent image when missing, and the
// baselines agent image when datapaths (the run's, "ebpf+sockmap"
// entries included) have iptables or sidecar. Each failure names its
// fix.
func (o *RunOptions) Prepare(ctx context.Context, logf func(string, ...any), datapaths ...string) error {
	var err error
	if o.NodeImage == "" {
		if o.NodeImage, err = kindnode.Tag(ctx, kindnode.Options{}); err != nil {
			return err
		}
	}
	if err := Preflight(ctx, o.NodeImage); err != nil {
		return fmt.Errorf("kind provider: %w", err)
	}
	if w := inotifyWarning(readInotifyInstances()); w != "" {
		logf("%s", w)
	}
	dir := o.ImageBinDir
	if dir == "" {
		dir = filepath.Join("bin", "image")
	}
	if o.AgentImage != "" {
		if !images.Exists(ctx, o.AgentImage) {
			return fmt.Errorf("kind provider: agent image %s is not in Docker's image store (make image)", o.AgentImage)
		}
	} else if o.AgentImage, err = images.Build(ctx, dir, logf); err != nil {
		return fmt.Errorf("kind provider: agent image: %w", err)
	}
	if !slices.ContainsFunc(datapaths, func(dp string) bool { return NeedsBaselinesImage(strings.SplitN(dp, "+", 2)[0]) }) {
		return nil
	}
	if o.IptablesAgentImage != "" {
		if !images.Exists(ctx, o.IptablesAgentImage) {
			return fmt.Errorf("kind provider: baselines agent image %s is not in Docker's image store (make image)", o.IptablesAgentImage)
		}
		return nil
	}
	if o.IptablesAgentImage, err = BuildIptablesImage(ctx, dir, logf); err != nil {
		return fmt.Errorf("kind provider: %w", err)
	}
	return nil
}

// NeedsBaselinesImage tells whether the agent of datapath (without
// options) runs from the baselines image (BuildIptablesImage): iptables
// needs iptables-restore and ipset, sidecar iptables-restore and
// haproxy, which the FROM scratch image lacks.
func NeedsBaselinesImage(datapath string) bool {
	return datapath == "iptables" || datapath == "sidecar"
}

// BuildIptablesImage builds (or finds) the baselines' agent image (the
// iptables and the sidecar datapath's) from the static binaries in dir,
// on the Debian rootfs of the node image (bootstrapped when missing:
// minutes).
func BuildIptablesImage(ctx context.Context, dir string, logf func(string, ...any)) (string, error) {
	base, err := kindnode.Rootfs(ctx, kindnode.Options{Logf: logf})
	if err != nil {
		return "", fmt.Errorf("baselines agent image: its base, the node image's rootfs: %w", err)
	}
	ref, err := images.BuildIptables(ctx, dir, base, logf)
	if err != nil {
		return "", err
	}
	return ref, nil
}

// WantInotifyInstances is the fs.inotify.max_user_instances kind's
// known-issues page asks for: every node's kubelet, containerd and
// systemd, and every kube-proxy, hold inotify instances of the host's
// root user, and the kernel's default 128 runs out with a mesh of kind
// clusters (kube-proxy then exits with "too many open files").
const WantInotifyInstances = 512

const inotifyInstancesPath = "/proc/sys/fs/inotify/max_user_instances"

// readInotifyInstances is the host's limit (0: unknown).
func readInotifyInstances() int {
	b, err := os.ReadFile(inotifyInstancesPath)
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return n
}

// inotifyWarning warns of a limit below WantInotifyInstances ("" when it
// is not, or unknown). The harness does not change it: the host is not
// its to tune.
func inotifyWarning(limit int) string {
	if limit <= 0 || limit >= WantInotifyInstances {
		return ""
	}
	return fmt.Sprintf("warning: fs.inotify.max_user_instances is %d: kube-proxy and kubelets of several kind clusters may exit with \"too many open files\" (kind's known issue); fastpath host-setup docker raises it, or sysctl -w fs.inotify.max_user_instances=%d", limit, WantInotifyInstances)
}
