package lxc

import (
	"net/netip"

	"testing"

	"github.com/fastpath-bench/fastpath/datapath/model"
)

// tunnelMark is tunnel_mark of bpf/lib/proxy.h.
func tunnelMark(id model.Identity) uint32 {
	return uint32(id&0xffff)<<16 | uint32(id>>16)&0xff | uint32(lxcProxyMarkMARK_FROM_TUNNEL)
}

// TestIdentityFromTunnel: the server's ingress policy admits app=client
// only. A packet that came through the overlay is judged by the identity
// its tunnel carried (the mark fp_from_tunnel sets), not by its source
// address: the client's address with another pod's identity is dropped,
// another pod's address with the client's identity passes. Without the
// mark the address decides, as on a routed network.
func TestIdentityFromTunnel(t *testing.T) {
	objs := testObjects()
	d := loadServerOnLo(t, objs)
	_, to := d.Programs()
	r := mustResolve(t, objs)
	idOf := func(ip string) model.Identity {
		ep, ok := r.EndpointByIP(netip.MustParseAddr(ip))
		if !ok {
			t.Fatalf("no endpoint %s", ip)
		}
		return ep.Identity
	}
	client, other := idOf(clientIP.String()), idOf(otherIP.String())
	if client == other {
		t.Fatal("client and other share an identity")
	}
	for i, c := range []struct {
		name string
		from string
		mark uint32
		want uint32
	}{
		{"client address, client identity", clientIP.String(), tunnelMark(client), actOK},
		{"client address forged by another pod", clientIP.String(), tunnelMark(other), actDrop},
		{"other address, client identity", otherIP.String(), tunnelMark(client), actOK},
		{"other address, no tunnel", otherIP.String(), 0, actDrop},
		{"client address, no tunnel", clientIP.String(), 0, actOK},
		{"client address, identity of a 24-bit cluster identity", clientIP.String(), tunnelMark(client | 7<<16), actDrop},
	} {
		pkt := tcpPacket(netip.MustParseAddr(c.from), uint16(31000+i), serverIP, 8080, flagSYN)
		if got := runMarked(t, to, pkt, c.mark); got != c.want {
			t.Errorf("%s: verdict %d, want %d", c.name, got, c.want)
		}
	}
	if got := tunnelMark(0x12abcd); got>>16 != 0xabcd || got&0xff != 0x12 || got&0x0f00 != 0x0e00 {
		t.Errorf("mark layout %#x", got)
	}
}
