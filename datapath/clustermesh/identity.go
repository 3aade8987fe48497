package clustermesh

import (
	"fmt"

	"github.com/fastpath-bench/fastpath/datapath/model"
)

// Identity layout (see the package doc): a global identity is
//
//	bits 31..24  0 (1<<24 and 2<<24 start the node-local CIDR identities)
//	bits 23..16  cluster id, 1..255
//	bits 15..0   the local identity, model.FirstPodIdentity..0xffff
const (
	// ClusterIDBits is the width of the cluster id in a global identity.
	ClusterIDBits = 8
	// ClusterIDShift is the position of the cluster id's lowest bit.
	ClusterIDShift = 16
	// MinClusterID and MaxClusterID bound cluster ids; 0 means "this
	// cluster" in the datapath (reserved identities carry it).
	MinClusterID = 1
	MaxClusterID = 1<<ClusterIDBits - 1
	// MaxLocalIdentity is the largest local identity that fits a global
	// one (the model allocates pod identities up to it).
	MaxLocalIdentity model.Identity = 1<<ClusterIDShift - 1
	// MaxGlobalIdentity is the largest global identity; everything above
	// (model.IdentityCIDRBase and up) is node-local.
	MaxGlobalIdentity uint32 = MaxClusterID<<ClusterIDShift | uint32(MaxLocalIdentity)
)

// GlobalIdentity returns the identity a pod of cluster clusterID with
// local identity local carries in the mesh: clusterID<<16 | local. The
// cluster id must be 1..255 and local a pod identity
// (model.FirstPodIdentity..0xffff): reserved identities (host, world,
// remote-node, ...) mean the same thing in every cluster and are never
// scoped, and CIDR identities never leave their node.
func GlobalIdentity(clusterID uint8, local model.Identity) (uint32, error) {
	if clusterID < MinClusterID {
		return 0, fmt.Errorf("global identity: cluster id %d: want %d..%d", clusterID, MinClusterID, MaxClusterID)
	}
	if local < model.FirstPodIdentity {
		return 0, fmt.Errorf("global identity: local identity %d is reserved (pod identities start at %d) and is not scoped by cluster", local, model.FirstPodIdentity)
	}
	if local > MaxLocalIdentity {
		return 0, fmt.Errorf("global identity: local identity %d (%#x) does not fit in %d bits", local, uint32(local), ClusterIDShift)
	}
	return uint32(clusterID)<<ClusterIDShift | uint32(local), nil
}

// SplitGlobalIdentity is the inverse of GlobalIdentity: it returns the
// cluster id and the local identity of global. It fails for identities
// that are not global pod identities: reserved ones (cluster bits 0),
// CIDR identities and anything above MaxGlobalIdentity, and a local part
// below model.FirstPodIdentity.
func SplitGlobalIdentity(global uint32) (clusterID uint8, local model.Identity, err error) {
	if global > MaxGlobalIdentity {
		return 0, 0, fmt.Errorf("identity %d (%#x) is not a global identity: above %#x (node-local CIDR identities start at %#x)", global, global, MaxGlobalIdentity, uint32(model.IdentityCIDRBase))
	}
	clusterID = uint8(global >> ClusterIDShift)
	local = model.Identity(global) & MaxLocalIdentity
	if clusterID == 0 {
		return 0, 0, fmt.Errorf("identity %d (%#x) is not a global identity: no cluster id", global, global)
	}
	if local < model.FirstPodIdentity {
		return 0, 0, fmt.Errorf("identity %d (%#x) is not a global identity: local part %d is reserved", global, global, local)
	}
	return clusterID, local, nil
}
