package lxc

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"sort"

	"github.com/cilium/ebpf"

	"github.com/fastpath-bench/fastpath/datapath/lb/maglev"
	"github.com/fastpath-bench/fastpath/datapath/model"
)

// Backend selection algorithms.
const (
	LBRandom = "random"
	LBMaglev = "maglev"
)

// Frontend flags (bpf/lib/lb.h).
const (
	lbFlagMaglev   = 0x1
	lbFlagAffinity = 0x2
)

// HairpinAddr is the source a pod sees on its own connections through a
// service whose chosen backend is the pod itself (bpf/lib/lb.h, hairpin).
var HairpinAddr = func() netip.Addr {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], uint32(lxcLbHairpinLB_HAIRPIN_ADDR))
	return netip.AddrFrom4(b)
}()

// bpfFInnerMap is BPF_F_INNER_MAP: inner arrays of fp_lb_select may differ
// in size.
const bpfFInnerMap = 1 << 12

// LBOptions choose how backends are selected. Zero values mean defaults.
type LBOptions struct {
	// Algorithm is LBRandom (default) or LBMaglev.
	Algorithm string
	// MaglevTableSize is Maglev's M, a prime; 0 means
	// maglev.DefaultTableSize.
	MaglevTableSize uint32
}

// LBStats tells what ApplyServices did.
type LBStats struct {
	Frontends int
	Backends  int
	// Swapped counts frontends whose selection array was replaced.
	Swapped int
}

type frontendKey struct {
	vip   netip.Addr
	port  uint16
	proto model.Protocol
}

func (k frontendKey) String() string { return fmt.Sprintf("%s:%d/%s", k.vip, k.port, k.proto) }

type backendKey struct {
	addr netip.Addr
	port uint16
}

func (k backendKey) String() string { return netip.AddrPortFrom(k.addr, k.port).String() }

// lbState is the user-space copy of the load balancer's maps: ids stay the
// same for a frontend or backend as long as it exists (and across agent
// restarts, read back from the pinned maps), so conntrack entries that name
// them stay valid.
type lbState struct {
	frontends map[frontendKey]uint32
	backends  map[backendKey]uint32
	// selectDigest is what each frontend's selection array holds.
	selectDigest map[uint32][sha256.Size]byte
	nextFE       uint32
	nextBE       uint32
	// applied is the digest of the input last programmed completely, and
	// lastStats what that programming did.
	applied   [sha256.Size]byte
	lastStats LBStats
}

// loadLBState reads ids back from (possibly pinned, pre-existing) maps.
func (d *Datapath) loadLBState() error {
	st := &lbState{frontends: map[frontendKey]uint32{}, backends: map[backendKey]uint32{}, selectDigest: map[uint32][sha256.Size]byte{}, nextFE: 1, nextBE: 1}
	var fk lxcLbFrontendKey
	var fv lxcLbFrontend
	it := d.objs.FpLbFrontends.Iterate()
	for it.Next(&fk, &fv) {
		k := frontendKey{addrFromBE32(fk.Vip), ntohs(fk.Port), model.Protocol(fk.Proto)}
		st.frontends[k] = fv.Id
		st.nextFE = max(st.nextFE, fv.Id+1)
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("read fp_lb_frontends: %w", err)
	}
	var id uint32
	var bv lxcLbBackend
	it = d.objs.FpLbBackends.Iterate()
	for it.Next(&id, &bv) {
		st.backends[backendKey{addrFromBE32(bv.Addr), ntohs(bv.Port)}] = id
		st.nextBE = max(st.nextBE, id+1)
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("read fp_lb_backends: %w", err)
	}
	d.lb = st
	return nil
}

type desiredFrontend struct {
	key      frontendKey
	flags    uint32
	affinity uint32
	// selectable backends for new flows, and all of them (existing flows
	// keep terminating and quarantined ones).
	selectable []model.Backend
}

// ApplyServices programs the services' ClusterIP frontends: backends
// first, then each changed frontend's selection array (one map update
// swaps it), then the frontends; frontends and backends no longer wanted
// are removed last. Capacity is checked before anything is written, so a
// set that does not fit leaves the previous one in place.
//
// NodePorts get a frontend on every node address in nodes: a pod's
// connection to any node's NodePort is translated at the pod's own hook,
// like a ClusterIP, and connections from outside at the uplink.
//
// The same input as the last successful call writes nothing: a policy
// change on a node with thousands of Services must not rewrite them.
func (d *Datapath) ApplyServices(svcs []*model.Service, nodes []netip.Addr, opts LBOptions) (LBStats, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.applyServices(svcs, nodes, opts)
}

func (d *Datapath) applyServices(svcs []*model.Service, nodes []netip.Addr, opts LBOptions) (LBStats, error) {
	in, err := json.Marshal(struct {
		S []*model.Service
		N []netip.Addr
		O LBOptions
	}{svcs, nodes, opts})
	if err != nil {
		return LBStats{}, err
	}
	digest := sha256.Sum256(in)
	if d.lb != nil && d.lb.applied == digest {
		st := d.lb.lastStats
		st.Swapped = 0
		return st, nil
	}
	st, err := d.applyServicesNow(svcs, nodes, opts)
	if err == nil {
		d.lb.applied, d.lb.lastStats = digest, st
	} else if d.lb != nil {
		d.lb.applied = [sha256.Size]byte{}
	}
	return st, err
}

func (d *Datapath) applyServicesNow(svcs []*model.Service, nodes []netip.Addr, opts LBOptions) (LBStats, error) {
	if opts.Algorithm == "" {
		opts.Algorithm = LBRandom
	}
	if opts.Algorithm != LBRandom && opts.Algorithm != LBMaglev {
		return LBStats{}, fmt.Errorf("load balancer algorithm %q: want %s or %s", opts.Algorithm, LBRandom, LBMaglev)
	}
	m := opts.MaglevTableSize
	if m == 0 {
		m = maglev.DefaultTableSize
	}
	if d.lb == nil {
		if err := d.loadLBState(); err != nil {
			return LBStats{}, err
		}
	}
	st := d.lb

	var want []desiredFrontend
	seen := map[frontendKey]string{}
	allBackends := map[backendKey]bool{}
	for _, s := range svcs {
		if !s.ClusterIP.Is4() {
			continue
		}
		for _, p := range s.Ports {
			keys := []frontendKey{{s.ClusterIP, p.Port, p.Protocol}}
			if s.NodePortType && p.NodePort != 0 {
				for _, n := range nodes {
					if n.Is4() {
						keys = append(keys, frontendKey{n, p.NodePort, p.Protocol})
					}
				}
			}
			for _, b := range p.Backends {
				if b.Addr.Is4() {
					allBackends[backendKey{b.Addr, b.Port}] = true
				}
			}
			for _, k := range keys {
				if other, dup := seen[k]; dup {
					return LBStats{}, fmt.Errorf("Service %s: frontend %s is also Service %s's", s.Key(), k, other)
				}
				seen[k] = s.Key()
				f := desiredFrontend{key: k, selectable: p.Selectable()}
				if opts.Algorithm == LBMaglev {
					f.flags |= lbFlagMaglev
				}
				if s.AffinityTimeout > 0 {
					f.flags |= lbFlagAffinity
					f.affinity = uint32(s.AffinityTimeout.Seconds())
				}
				want = append(want, f)
			}
		}
	}
	sort.Slice(want, func(i, j int) bool { return want[i].key.String() < want[j].key.String() })

	// Capacity, before any write.
	if n := len(want); n > int(d.objs.FpLbFrontends.MaxEntries()) {
		return LBStats{}, fmt.Errorf("%d service frontends do not fit fp_lb_frontends (%d)", n, d.objs.FpLbFrontends.MaxEntries())
	}
	if n := len(allBackends); n > int(d.objs.FpLbBackends.MaxEntries()) {
		return LBStats{}, fmt.Errorf("%d service backends do not fit fp_lb_backends (%d)", n, d.objs.FpLbBackends.MaxEntries())
	}
	if opts.Algorithm == LBMaglev && m+1 > MaxSelectArray {
		return LBStats{}, fmt.Errorf("Maglev table size %d exceeds the largest selection array (%d)", m, MaxSelectArray-1)
	}

	// Backends: new ones get ids; every one is (re)written.
	for _, k := range sortedBackendKeys(allBackends) {
		id, ok := st.backends[k]
		if !ok {
			id = st.nextBE
			st.nextBE++
			st.backends[k] = id
		}
		v := lxcLbBackend{Addr: be32(k.addr), Port: htons(k.port)}
		if err := d.objs.FpLbBackends.Put(id, v); err != nil {
			return LBStats{}, fmt.Errorf("backend %s: %w", k, err)
		}
	}
	stats := LBStats{Frontends: len(want), Backends: len(allBackends)}
	for _, f := range want {
		id, ok := st.frontends[f.key]
		if !ok {
			id = st.nextFE
			st.nextFE++
		}
		arr, err := selectionArray(f, st.backends, opts.Algorithm, m)
		if err != nil {
			return stats, fmt.Errorf("frontend %s: %w", f.key, err)
		}
		digest := sha256.Sum256(u32Bytes(arr))
		if old, ok := st.selectDigest[id]; !ok || old != digest {
			if err := d.swapSelect(id, arr); err != nil {
				return stats, fmt.Errorf("frontend %s: %w", f.key, err)
			}
			st.selectDigest[id] = digest
			stats.Swapped++
		}
		rn := lxcLbRevnat{Vip: be32(f.key.vip), Port: htons(f.key.port)}
		if err := d.objs.FpLbRevnat.Put(id, rn); err != nil {
			return stats, fmt.Errorf("frontend %s: %w", f.key, err)
		}
		fk := lxcLbFrontendKey{Vip: be32(f.key.vip), Port: htons(f.key.port), Proto: uint8(f.key.proto)}
		fv := lxcLbFrontend{Id: id, Flags: f.flags, AffinityS: f.affinity}
		if err := d.objs.FpLbFrontends.Put(fk, fv); err != nil {
			return stats, fmt.Errorf("frontend %s: %w", f.key, err)
		}
		st.frontends[f.key] = id
	}
	// Removals, frontends first so no packet finds a frontend whose
	// selection or backends are gone.
	wanted := map[frontendKey]bool{}
	for _, f := range want {
		wanted[f.key] = true
	}
	var errs []error
	for k, id := range st.frontends {
		if wanted[k] {
			continue
		}
		fk := lxcLbFrontendKey{Vip: be32(k.vip), Port: htons(k.port), Proto: uint8(k.proto)}
		for _, err := range []error{d.objs.FpLbFrontends.Delete(fk), d.objs.FpLbSelect.Delete(id), d.objs.FpLbRevnat.Delete(id)} {
			if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
				errs = append(errs, fmt.Errorf("remove frontend %s: %w", k, err))
			}
		}
		delete(st.frontends, k)
		delete(st.selectDigest, id)
	}
	for k, id := range st.backends {
		if allBackends[k] {
			continue
		}
		if err := d.objs.FpLbBackends.Delete(id); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			errs = append(errs, fmt.Errorf("remove backend %s: %w", k, err))
		}
		delete(st.backends, k)
	}
	return stats, errors.Join(errs...)
}

// selectionArray is the frontend's fp_lb_select array: [0] = n, then n
// backend ids (random), or the Maglev table of M ids.
func selectionArray(f desiredFrontend, ids map[backendKey]uint32, algorithm string, m uint32) ([]uint32, error) {
	if len(f.selectable) == 0 {
		return []uint32{0}, nil
	}
	if algorithm == LBRandom {
		arr := []uint32{uint32(len(f.selectable))}
		for _, b := range f.selectable {
			arr = append(arr, ids[backendKey{b.Addr, b.Port}])
		}
		return arr, nil
	}
	mb := make([]maglev.Backend, len(f.selectable))
	for i, b := range f.selectable {
		mb[i] = maglev.Backend{Name: netip.AddrPortFrom(b.Addr, b.Port).String(), Weight: uint32(b.Weight)}
	}
	table, err := maglev.Table(mb, maglev.Options{TableSize: m})
	if err != nil {
		return nil, err
	}
	arr := make([]uint32, 1, m+1)
	arr[0] = m
	for _, i := range table {
		b := f.selectable[i]
		arr = append(arr, ids[backendKey{b.Addr, b.Port}])
	}
	return arr, nil
}

// swapSelect installs a new selection array for frontend id with one
// update of the outer map.
func (d *Datapath) swapSelect(id uint32, arr []uint32) error {
	inner, err := ebpf.NewMap(&ebpf.MapSpec{
		Name:       "fp_lb_sel",
		Type:       ebpf.Array,
		KeySize:    4,
		ValueSize:  4,
		MaxEntries: uint32(len(arr)),
		Flags:      bpfFInnerMap,
	})
	if err != nil {
		return fmt.Errorf("create selection array: %w", err)
	}
	defer inner.Close()
	keys := make([]uint32, len(arr))
	for i := range keys {
		keys[i] = uint32(i)
	}
	if _, err := inner.BatchUpdate(keys, arr, nil); err != nil {
		// Kernels without batch ops on arrays: one by one.
		for i, v := range arr {
			if err := inner.Put(uint32(i), v); err != nil {
				return fmt.Errorf("fill selection array: %w", err)
			}
		}
	}
	if err := d.objs.FpLbSelect.Put(id, inner); err != nil {
		return fmt.Errorf("install selection array: %w", err)
	}
	return nil
}

// MaxSelectArray is the largest selection array (Maglev M + 1) the
// datapath takes (LB_SELECT_MAX in bpf/lib/maps.h, read from the object).
var MaxSelectArray = func() uint32 {
	spec, err := loadLxc()
	if err != nil || spec.Maps["fp_lb_select"] == nil || spec.Maps["fp_lb_select"].InnerMap == nil {
		return 0
	}
	return spec.Maps["fp_lb_select"].InnerMap.MaxEntries
}()

func sortedBackendKeys(m map[backendKey]bool) []backendKey {
	out := make([]backendKey, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool {
		if c := out[i].addr.Compare(out[j].addr); c != 0 {
			return c < 0
		}
		return out[i].port < out[j].port
	})
	return out
}

func u32Bytes(v []uint32) []byte {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], x)
	}
	return b
}
