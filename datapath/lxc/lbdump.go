package lxc

import (
	"fmt"
	"net/netip"
	"sort"

	"github.com/cilium/ebpf"

	"github.com/fastpath-bench/fastpath/datapath/model"
)

// FrontendDump is one service frontend as the maps hold it.
type FrontendDump struct {
	ID       uint32
	VIP      netip.Addr
	Port     uint16
	Protocol model.Protocol
	Maglev   bool
	// AffinitySeconds is the ClientIP affinity timeout (0: none).
	AffinitySeconds uint32
	// Selection is the selection array without its length word: the
	// backend ids new flows choose from (random), or the Maglev table.
	Selection []uint32
}

// BackendDump is one backend as the maps hold it.
type BackendDump struct {
	ID   uint32
	Addr netip.Addr
	Port uint16
}

// DumpLB reads the load balancer's maps (not the user-space copy), so it
// shows what the datapath uses.
func (d *Datapath) DumpLB() ([]FrontendDump, map[uint32]BackendDump, error) {
	// Not while an apply swaps selection arrays: a replaced array's id
	// names no map any more once the outer map lets go of it.
	d.mu.Lock()
	defer d.mu.Unlock()
	var fronts []FrontendDump
	var fk lxcLbFrontendKey
	var fv lxcLbFrontend
	it := d.objs.FpLbFrontends.Iterate()
	for it.Next(&fk, &fv) {
		f := FrontendDump{ID: fv.Id, VIP: addrFromBE32(fk.Vip), Port: ntohs(fk.Port), Protocol: model.Protocol(fk.Proto),
			Maglev: fv.Flags&lbFlagMaglev != 0, AffinitySeconds: fv.AffinityS}
		var inner *ebpf.Map
		if err := d.objs.FpLbSelect.Lookup(fv.Id, &inner); err != nil {
			return nil, nil, fmt.Errorf("frontend %d: selection array: %w", fv.Id, err)
		}
		var n uint32
		if err := inner.Lookup(uint32(0), &n); err == nil {
			for i := uint32(1); i <= n; i++ {
				var id uint32
				if err := inner.Lookup(i, &id); err != nil {
					break
				}
				f.Selection = append(f.Selection, id)
			}
		}
		inner.Close()
		fronts = append(fronts, f)
	}
	if err := it.Err(); err != nil {
		return nil, nil, err
	}
	sort.Slice(fronts, func(i, j int) bool { return fronts[i].ID < fronts[j].ID })
	backends := map[uint32]BackendDump{}
	var id uint32
	var bv lxcLbBackend
	it = d.objs.FpLbBackends.Iterate()
	for it.Next(&id, &bv) {
		backends[id] = BackendDump{ID: id, Addr: addrFromBE32(bv.Addr), Port: ntohs(bv.Port)}
	}
	return fronts, backends, it.Err()
}
