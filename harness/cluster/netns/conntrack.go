package netns

import (
	"errors"
	"fmt"

	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// FlushConntrack empties the IPv4 conntrack table of the network
// namespace at path (a node's), as `conntrack -F` does there.
//
// Both providers call it when a datapath's agents start, so that a
// datapath does not inherit the connection tracking state of the one
// measured before it on the same nodes. That state is not harmless: the
// eBPF datapath redirects a pod's packets past netfilter while the
// replies still pass it, and netfilter (nf_conntrack_tcp_loose) then
// tracks the replies as connections in the other direction, for minutes.
// When the iptables baseline ran next and a client's ephemeral port came
// round to one of those, its SYN was a reply-direction SYN on an
// established entry, INVALID, and dropped by the baseline's INVALID rule:
// connections that the policy allowed failed now and then.
//
// A kernel without conntrack's netlink interface has nothing this can
// flush: that is not an error.
func FlushConntrack(path string) error {
	nsh, err := vnetns.GetFromPath(path)
	if err != nil {
		return fmt.Errorf("flush conntrack in %s: %w", path, err)
	}
	defer nsh.Close()
	h, err := netlink.NewHandleAt(nsh, unix.NETLINK_NETFILTER)
	if err != nil {
		if errors.Is(err, unix.EPROTONOSUPPORT) {
			return nil
		}
		return fmt.Errorf("flush conntrack in %s: netlink: %w", path, err)
	}
	defer h.Close()
	if err := h.ConntrackTableFlush(netlink.ConntrackTable); err != nil {
		if errors.Is(err, unix.EPROTONOSUPPORT) || errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOENT) {
			return nil
		}
		return fmt.Errorf("flush conntrack in %s: %w", path, err)
	}
	return nil
}
