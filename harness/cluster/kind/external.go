package kind

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"

	"github.com/fastpath-bench/fastpath/harness/cluster/netns"
	"github.com/fastpath-bench/fastpath/harness/execx"
)

// The host outside the clusters: a network namespace on the host with a
// veth into NetworkName's bridge, at ExternalIP. It is the client of
// north-south traffic (NodePorts from outside, the conformance cases'
// "external"), and a destination outside every cluster (egress
// gateways), as the netns provider's external host is.

// ExternalNetns is the network namespace of the host outside the
// clusters ("" on a cluster of a mesh: the mesh has it).
func (t *Topology) ExternalNetns() string { return t.external }

// ExternalIP is the address of the host outside the clusters.
func (t *Topology) ExternalIP() netip.Addr { return ExternalIP }

// externalLink is the host end of the external host's veth (15 bytes at
// most, one per run).
func externalLink(runID string) string {
	h := sha256.Sum256([]byte(runID))
	return "fpx" + hex.EncodeToString(h[:5])
}

// addExternal creates the external host and records it for Destroy.
func (t *Topology) addExternal(ctx context.Context) error {
	name := netns.ExternalNS(t.spec.RunID)
	link := externalLink(t.spec.RunID)
	steps := [][]string{
		{"netns", "add", name},
		{"link", "add", link, "type", "veth", "peer", "name", "eth0", "netns", name},
		{"link", "set", link, "master", networkBridge, "up"},
		{"-n", name, "link", "set", "lo", "up"},
		{"-n", name, "addr", "add", netip.PrefixFrom(ExternalIP, NodeNetwork.Bits()).String(), "dev", "eth0"},
		{"-n", name, "link", "set", "eth0", "up"},
		// Routes to the clusters' Services and pods are the nodes'
		// business, not the external host's: it reaches nodes only.
	}
	for i, args := range steps {
		if _, err := execx.Run(ctx, "ip", args...); err != nil {
			if i > 0 {
				t.external = name
			}
			return fmt.Errorf("external host %s: %w", name, err)
		}
	}
	t.external = name
	if err := netns.ExternalHostLink(name, "eth0"); err != nil {
		return fmt.Errorf("external host %s: %w", name, err)
	}
	return nil
}

// removeExternal deletes the external host (its veth goes with it).
func (t *Topology) removeExternal() error {
	if t.external == "" {
		return nil
	}
	if err := unmountNetns(t.external); err != nil {
		return fmt.Errorf("external host %s: %w", t.external, err)
	}
	t.external = ""
	return nil
}
