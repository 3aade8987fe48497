package images

import (
	"context"
	"fmt"
	"strings"
)

// IptablesRepository is the agent image of the baselines on kind, the
// iptables and the sidecar datapath: the agent binary of Repository's on
// a Debian rootfs with iptables (legacy and nft), ipset and HAProxy,
// which the FROM scratch image lacks. One image for both (not one each):
// a suite runs both baselines in one cluster, and loading the second
// image would move the same Debian layers (about 450 MB) into every node
// again; HAProxy adds a few MB to the iptables runs, which never start it.
const IptablesRepository = "fastpath/agent-baselines"

// iptablesBinaries are what the iptables image holds: the agent
// container's binary only (the CNI installer and the pods run the FROM
// scratch image).
var iptablesBinaries = []string{"fastpath-agent"}

// iptablesDockerfile builds on base, the Debian rootfs the kind node
// image and its kube-proxy image are built on (harness/kindnode.Rootfs):
// the same iptables as the node's, ipset (the iptables baseline) and
// haproxy (the sidecar baseline's proxy, as on netns) from Debian's
// mirror (a layer of its own, kept across binary changes; apt's lists
// and caches dropped), then the agent. The proxy runs as uid 1337
// (haproxy.cfg's "uid", numeric: no account needed), which the pods'
// nat rules exempt. The rootfs is imported from a tar and carries no
// PATH.
func iptablesDockerfile(base string) string {
	return fmt.Sprintf(`FROM %s
RUN apt-get update -q \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends ipset haproxy \
    && apt-get clean && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin \
    && for c in ipset haproxy iptables iptables-restore iptables-legacy-restore iptables-nft-restore; do command -v $c || exit 1; done
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
COPY fastpath-agent /
ENTRYPOINT ["/fastpath-agent"]
`, base)
}

// IptablesRef is the baselines agent image's reference for the binaries
// in dir on base: a digest of both.
func IptablesRef(dir, base string) (string, error) {
	if err := checkBase(base); err != nil {
		return "", err
	}
	return ref(IptablesRepository, iptablesDockerfile(base), dir, iptablesBinaries)
}

// BuildIptables builds the baselines agent image from the binaries in
// dir on base unless it exists, and returns its reference. Its ipset and
// haproxy come from Debian's mirror (apt in the build): the first build
// needs it reachable.
func BuildIptables(ctx context.Context, dir, base string, logf func(string, ...any)) (string, error) {
	if err := checkBase(base); err != nil {
		return "", err
	}
	if !Exists(ctx, base) {
		return "", fmt.Errorf("baselines agent image: base image %s is not in Docker's image store (make kind-node-image builds it)", base)
	}
	return build(ctx, IptablesRepository, iptablesDockerfile(base), dir, iptablesBinaries, logf)
}

func checkBase(base string) error {
	if base == "" || strings.ContainsAny(base, " \t\r\n") {
		return fmt.Errorf("baselines agent image: base image %q is not an image reference", base)
	}
	return nil
}
