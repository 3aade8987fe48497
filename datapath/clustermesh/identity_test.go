package clustermesh

import (
	"testing"

	"github.com/fastpath-bench/fastpath/datapath/model"
)

func TestGlobalIdentityRoundTrip(t *testing.T) {
	for _, c := range []struct {
		cluster uint8
		local   model.Identity
		want    uint32
	}{
		{1, model.FirstPodIdentity, 0x010100},
		{2, 4242, 2<<16 | 4242},
		{255, MaxLocalIdentity, 0xffffff},
		{17, 0x1234, 0x111234},
	} {
		g, err := GlobalIdentity(c.cluster, c.local)
		if err != nil || g != c.want {
			t.Errorf("GlobalIdentity(%d, %d) = %#x, %v; want %#x", c.cluster, c.local, g, err, c.want)
			continue
		}
		if g >= uint32(model.IdentityCIDRBase) {
			t.Errorf("GlobalIdentity(%d, %d) = %#x reaches the CIDR identities", c.cluster, c.local, g)
		}
		cl, local, err := SplitGlobalIdentity(g)
		if err != nil || cl != c.cluster || local != c.local {
			t.Errorf("SplitGlobalIdentity(%#x) = %d, %d, %v; want %d, %d", g, cl, local, err, c.cluster, c.local)
		}
	}
	if MaxGlobalIdentity != 0xffffff {
		t.Errorf("MaxGlobalIdentity %#x", MaxGlobalIdentity)
	}
}

func TestGlobalIdentityLimits(t *testing.T) {
	for _, c := range []struct {
		cluster uint8
		local   model.Identity
	}{
		{0, 1000},                                // no cluster id
		{1, model.IdentityAny},                   // reserved
		{1, model.IdentityHost},                  // reserved
		{1, model.IdentityWorld},                 // reserved
		{1, model.IdentityRemoteNode},            // reserved
		{1, model.FirstPodIdentity - 1},          // reserved
		{1, MaxLocalIdentity + 1},                // does not fit
		{1, model.IdentityCIDRBase | 5},          // node-local CIDR identity
		{3, model.IdentityCIDRWorldBase | 0x1ff}, // node-local CIDR identity
	} {
		if g, err := GlobalIdentity(c.cluster, c.local); err == nil {
			t.Errorf("GlobalIdentity(%d, %#x) = %#x, want an error", c.cluster, uint32(c.local), g)
		}
	}
	for _, g := range []uint32{
		0, 1, 2, 6, 255, // reserved, no cluster id
		1000,                           // local identity without cluster id
		1 << 16,                        // cluster 1, local 0
		5<<16 | 255,                    // cluster 5, reserved local part
		uint32(model.IdentityCIDRBase), // CIDR
		uint32(model.IdentityCIDRBase) | 1<<16 | 300,
		uint32(model.IdentityCIDRWorldBase) | 7,
		0xffffffff,
	} {
		if cl, local, err := SplitGlobalIdentity(g); err == nil {
			t.Errorf("SplitGlobalIdentity(%#x) = %d, %d, want an error", g, cl, local)
		}
	}
}
