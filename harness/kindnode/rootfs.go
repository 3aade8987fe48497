package kindnode

import "context"

// Rootfs returns the Debian rootfs image (fastpath/kind-rootfs:<digest of
// the suite and package list>) the node image and its kube-proxy image
// are built on, bootstrapping it when Docker's image store lacks it
// (minutes). Images that must run the node's own userland (the iptables
// agent image: the same iptables as the node's and kube-proxy's) build on
// it.
//
// This file is not part of the node image's inputs hash (recipe lists
// the files that are): it only exposes buildRootfs.
func Rootfs(ctx context.Context, opts Options) (string, error) {
	if err := opts.defaults(); err != nil {
		return "", err
	}
	return buildRootfs(ctx, opts)
}
