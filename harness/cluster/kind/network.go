package kind

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"github.com/fastpath-bench/fastpath/harness/execx"
)

// The harness's kind clusters are on a Docker network of its own, with
// the addresses of the netns provider's node network, so that a case
// written for one holds on the other: nodes on 198.18.0.0/24 (Docker
// hands out 198.18.0.2-127), the host's bridge 198.18.0.1, and the host
// outside the clusters (ExternalNetns) 198.18.0.254. Every cluster of a
// run, and of a mesh, is on it; the first run that needs it creates it,
// and whichever run deletes the last cluster on it removes it.
//
// Runs (and the packages of `go test ./...`) share the network, so its
// creation and removal are serialised by a lock file (networkLock): a
// cluster being created holds it shared from ensureNetwork until its
// nodes are on the network, and removeNetworkIfEmpty holds it exclusive,
// so the network is never removed between the check that it exists and
// the nodes joining it (kind would then create a network of that name
// with addresses of Docker's choice).
const (
	// NetworkName is the Docker network (kind's own "kind" network is
	// not used: its addresses are Docker's choice, and users' own kind
	// clusters are on it).
	NetworkName = "fastpath-kind"
	// networkBridge is the network's bridge on the host.
	networkBridge = "fp-kind0"
)

var (
	// NodeNetwork is the nodes' network.
	NodeNetwork = netip.MustParsePrefix("198.18.0.0/24")
	// nodeRange is where Docker picks node addresses.
	nodeRange = netip.MustParsePrefix("198.18.0.0/25")
	// networkGateway is the host's address on the network.
	networkGateway = netip.MustParseAddr("198.18.0.1")
	// ExternalIP is the address of the host outside the clusters.
	ExternalIP = netip.MustParseAddr("198.18.0.254")
)

// kindNetworkEnv makes kind put the nodes on NetworkName; kind reads it
// when it creates a cluster (it has no option for it).
const kindNetworkEnv = "KIND_EXPERIMENTAL_DOCKER_NETWORK"

var setNetworkEnv sync.Once

// useNetwork makes kind create this process's clusters on NetworkName.
func useNetwork() {
	setNetworkEnv.Do(func() { os.Setenv(kindNetworkEnv, NetworkName) })
}

// networkCreateArgs are the arguments of `docker network create` for
// NetworkName: IPv4 only (the clusters are), masquerading like kind's
// own network, the bridge named so the external host can join it.
func networkCreateArgs() []string {
	return []string{"network", "create", "--driver", "bridge",
		"--subnet", NodeNetwork.String(), "--ip-range", nodeRange.String(), "--gateway", networkGateway.String(),
		"-o", "com.docker.network.bridge.name=" + networkBridge,
		"-o", "com.docker.network.bridge.enable_ip_masquerade=true",
		"-o", "com.docker.network.driver.mtu=1500",
		"--label", "dev.fastpath.network=kind",
		NetworkName}
}

// networkLockFile is the lock that serialises the network's creation
// and removal between processes (it is left in place: removing a lock
// file others may be waiting on would break the lock).
var networkLockFile = "/run/fastpath/kind-network.lock"

// networkLock takes the network's lock, shared or exclusive, and returns
// its release.
func networkLock(exclusive bool) (unlock func(), err error) {
	if err := os.MkdirAll(filepath.Dir(networkLockFile), 0o755); err != nil {
		return nil, fmt.Errorf("docker network %s: lock: %w", NetworkName, err)
	}
	f, err := os.OpenFile(networkLockFile, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("docker network %s: lock: %w", NetworkName, err)
	}
	how := syscall.LOCK_SH
	if exclusive {
		how = syscall.LOCK_EX
	}
	for {
		err = syscall.Flock(int(f.Fd()), how)
		if err != syscall.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("docker network %s: lock %s: %w", NetworkName, networkLockFile, err)
	}
	return func() { f.Close() }, nil // closing the file releases the lock
}

// ensureNetwork creates NetworkName when Docker lacks it. A network of
// that name with other addresses (made by hand) is refused: the cases'
// addresses would not hold on it. The caller holds networkLock (shared)
// when it needs the network to stay until its nodes are on it.
func ensureNetwork(ctx context.Context) error {
	useNetwork()
	if networkExists(ctx) {
		return checkNetwork(ctx)
	}
	if _, err := execx.Run(ctx, "docker", networkCreateArgs()...); err != nil {
		if networkExists(ctx) { // another run created it meanwhile
			return checkNetwork(ctx)
		}
		if strings.Contains(err.Error(), "overlap") {
			return fmt.Errorf("docker network %s: %s is taken by another network or route on this host; remove that one (ip route show %s; docker network ls): %w",
				NetworkName, NodeNetwork, NodeNetwork, err)
		}
		return fmt.Errorf("docker network %s: %w", NetworkName, err)
	}
	return nil
}

// checkNetwork refuses a NetworkName whose subnet is not NodeNetwork.
func checkNetwork(ctx context.Context) error {
	out, err := execx.Output(ctx, "docker", "network", "inspect", "--format", "{{range .IPAM.Config}}{{.Subnet}} {{end}}", NetworkName)
	if err != nil {
		return fmt.Errorf("docker network %s: %w", NetworkName, err)
	}
	if got := strings.Fields(string(out)); len(got) != 1 || got[0] != NodeNetwork.String() {
		return fmt.Errorf("docker network %s has subnets %v, want %s: remove it (docker network rm %s) and run again", NetworkName, got, NodeNetwork, NetworkName)
	}
	return nil
}

// networkExists is true when Docker has NetworkName.
func networkExists(ctx context.Context) bool {
	_, err := execx.Run(ctx, "docker", "network", "inspect", NetworkName)
	return err == nil
}

// removeNetworkIfEmpty removes NetworkName when no container is on it
// any more (the next run creates it again). It holds networkLock
// exclusive, so no cluster is between ensureNetwork and its nodes
// joining the network.
func removeNetworkIfEmpty(ctx context.Context) error {
	unlock, err := networkLock(true)
	if err != nil {
		return err
	}
	defer unlock()
	out, err := execx.Output(ctx, "docker", "network", "inspect", "--format", "{{len .Containers}}", NetworkName)
	if err != nil || strings.TrimSpace(string(out)) != "0" {
		return nil
	}
	if _, err := execx.Run(ctx, "docker", "network", "rm", NetworkName); err != nil {
		if !networkExists(ctx) {
			return nil
		}
		return fmt.Errorf("docker network %s: %w", NetworkName, err)
	}
	return nil
}
