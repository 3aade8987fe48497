package images

import (
	"context"
	"fmt"
	"strings"
)

// IptablesRepository is the agent image of the iptables datapath on kind:
// the agent binary of Repository's on a Debian rootfs with iptables
// (legacy and nft) and ipset, which the FROM scratch image lacks.
const IptablesRepository = "fastpath/agent-iptables"

// iptablesBinaries are what the iptables image holds: the agent
// container's binary only (the CNI installer and the pods run the FROM
// scratch image).
var iptablesBinaries = []string{"fastpath-agent"}

// iptablesDockerfile builds on base, the Debian rootfs the kind node
// image and its kube-proxy image are built on (harness/kindnode.Rootfs):
// the same iptables as the node's, ipset from Debian's mirror (a layer
// of its own, kept across binary changes; apt's lists and caches
// dropped), then the agent. The rootfs is imported from a tar and
// carries no PATH.
func iptablesDockerfile(base string) string {
	return fmt.Sprintf(`FROM %s
RUN apt-get update -q \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends ipset \
    && apt-get clean && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin \
    && for c in ipset iptables iptables-restore iptables-legacy-restore iptables-nft-restore; do command -v $c || exit 1; done
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
COPY fastpath-agent /
ENTRYPOINT ["/fastpath-agent"]
`, base)
}

// IptablesRef is the iptables agent image's reference for the binaries
// in dir on base: a digest of both.
func IptablesRef(dir, base string) (string, error) {
	if err := checkBase(base); err != nil {
		return "", err
	}
	return ref(IptablesRepository, iptablesDockerfile(base), dir, iptablesBinaries)
}

// BuildIptables builds the iptables agent image from the binaries in dir
// on base unless it exists, and returns its reference. Its ipset comes
// from Debian's mirror (apt in the build): the first build needs it
// reachable.
func BuildIptables(ctx context.Context, dir, base string, logf func(string, ...any)) (string, error) {
	if err := checkBase(base); err != nil {
		return "", err
	}
	if !Exists(ctx, base) {
		return "", fmt.Errorf("iptables agent image: base image %s is not in Docker's image store (make kind-node-image builds it)", base)
	}
	return build(ctx, IptablesRepository, iptablesDockerfile(base), dir, iptablesBinaries, logf)
}

func checkBase(base string) error {
	if base == "" || strings.ContainsAny(base, " \t\r\n") {
		return fmt.Errorf("iptables agent image: base image %q is not an image reference", base)
	}
	return nil
}
