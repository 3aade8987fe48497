package lxc

import (
	"errors"
	"fmt"
	"net"
	"syscall"

	"github.com/vishvananda/netlink"
)

// Marks and the routing table of the L7 proxy redirect, from the one
// definition in bpf/lib/proxy.h.
const (
	// MarkFromProxy is the SO_MARK the L7 proxy puts on its connections to
	// pods: the pod's ingress hook then lets them through, the proxy having
	// checked the requests.
	MarkFromProxy = int(lxcProxyMarkMARK_FROM_PROXY)
	// MarkToProxy is set on packets assigned to a proxy socket.
	MarkToProxy = int(lxcProxyMarkMARK_TO_PROXY)
	// MarkMask covers fastpath's mark bits.
	MarkMask = int(lxcProxyMarkMARK_MASK)
	// ProxyRouteTable is the policy routing table that delivers
	// MarkToProxy packets locally.
	ProxyRouteTable = int(lxcProxyRoutePROXY_ROUTE_TABLE)
)

// proxyRulePriority is the ip rule's priority: before the main table (32766).
const proxyRulePriority = 9000

// InstallProxyRouting adds, in the caller's network namespace, the policy
// routing the L7 redirect needs: packets marked MarkToProxy are delivered
// locally (to the socket the datapath assigned them to) instead of being
// forwarded to the pod. It is idempotent; RemoveProxyRouting undoes it.
func InstallProxyRouting() error {
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("proxy routing: %w", err)
	}
	route := proxyRoute(lo)
	if err := netlink.RouteReplace(route); err != nil {
		return fmt.Errorf("proxy routing: ip route replace local 0.0.0.0/0 dev lo table %d: %w", ProxyRouteTable, err)
	}
	rule := proxyRule()
	if err := netlink.RuleAdd(rule); err != nil && !errors.Is(err, syscall.EEXIST) {
		return fmt.Errorf("proxy routing: ip rule add fwmark %#x/%#x lookup %d: %w", MarkToProxy, MarkMask, ProxyRouteTable, err)
	}
	return nil
}

// RemoveProxyRouting removes what InstallProxyRouting added.
func RemoveProxyRouting() error {
	var errs []error
	if err := netlink.RuleDel(proxyRule()); err != nil && !errors.Is(err, syscall.ENOENT) {
		errs = append(errs, fmt.Errorf("proxy routing: ip rule del: %w", err))
	}
	if lo, err := netlink.LinkByName("lo"); err == nil {
		if err := netlink.RouteDel(proxyRoute(lo)); err != nil && !errors.Is(err, syscall.ESRCH) {
			errs = append(errs, fmt.Errorf("proxy routing: ip route del: %w", err))
		}
	}
	return errors.Join(errs...)
}

func proxyRule() *netlink.Rule {
	r := netlink.NewRule()
	r.Family = netlink.FAMILY_V4
	r.Mark = uint32(MarkToProxy)
	mask := uint32(MarkMask)
	r.Mask = &mask
	r.Table = ProxyRouteTable
	r.Priority = proxyRulePriority
	return r
}

func proxyRoute(lo netlink.Link) *netlink.Route {
	return &netlink.Route{
		LinkIndex: lo.Attrs().Index,
		Dst:       &net.IPNet{IP: net.IPv4zero, Mask: net.CIDRMask(0, 32)},
		Table:     ProxyRouteTable,
		Type:      syscall.RTN_LOCAL,
		Scope:     netlink.SCOPE_HOST,
	}
}
