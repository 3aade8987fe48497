// Package prefilter owns the XDP prefilter (bpf/bpf_xdp.c): an LPM trie of
// denied IPv4 source prefixes and an XDP program on the node's uplink that
// drops matching packets before the kernel builds an skb for them. Prefixes
// are updated live: new ones are added before old ones are removed, so a
// prefix present in both the old and the new set is never open.
package prefilter

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sort"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
)

// Options configure Load. Zero values mean defaults.
type Options struct {
	// PinPath is a bpffs directory to pin the prefix map in, so it
	// survives an agent restart; empty: no pinning.
	PinPath string
	// Mode is the XDP attach mode; 0 lets the kernel choose (native where
	// the driver supports it, veth does).
	Mode link.XDPAttachFlags
	// NodePort attaches fp_xdp_lb, the prefilter followed by the XDP
	// NodePort load balancer, instead of the prefilter alone.
	NodePort bool
	// SharedMaps are the endpoint datapath's maps by name (lxc
	// Datapath.Maps): the load balancer's, conntrack, endpoints, metrics.
	// The XDP object uses them instead of maps of its own; needed when
	// maps are not pinned, harmless when they are.
	SharedMaps map[string]*ebpf.Map
}

// Filter is a loaded prefilter.
type Filter struct {
	opts  Options
	objs  xdpObjects
	mu    sync.Mutex
	links map[string]link.Link
	// prefixes is what the trie holds.
	prefixes map[netip.Prefix]bool
}

// Load loads the program and its maps.
func Load(opts Options) (*Filter, error) {
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("raise RLIMIT_MEMLOCK: %w", err)
	}
	spec, err := loadXdp()
	if err != nil {
		return nil, err
	}
	copts := &ebpf.CollectionOptions{MapReplacements: map[string]*ebpf.Map{}}
	for name, m := range opts.SharedMaps {
		if _, ok := spec.Maps[name]; ok {
			copts.MapReplacements[name] = m
		}
	}
	if opts.PinPath != "" {
		if err := os.MkdirAll(opts.PinPath, 0o700); err != nil {
			return nil, err
		}
		copts.Maps.PinPath = opts.PinPath
	} else {
		for _, m := range spec.Maps {
			m.Pinning = ebpf.PinNone
		}
	}
	f := &Filter{opts: opts, links: map[string]link.Link{}, prefixes: map[netip.Prefix]bool{}}
	if err := spec.LoadAndAssign(&f.objs, copts); err != nil {
		return nil, fmt.Errorf("load XDP prefilter: %w", err)
	}
	// A pinned trie may hold an earlier agent's prefixes: read them back.
	var k xdpPrefilterKey
	var v uint8
	it := f.objs.FpPrefilter.Iterate()
	for it.Next(&k, &v) {
		f.prefixes[keyPrefix(k)] = true
	}
	if err := it.Err(); err != nil {
		f.objs.Close()
		return nil, fmt.Errorf("read fp_prefilter: %w", err)
	}
	return f, nil
}

// Program is the XDP program Attach attaches (fp_xdp_lb with NodePort,
// else fp_xdp_prefilter), for tests and benchmarks.
func (f *Filter) Program() *ebpf.Program {
	if f.opts.NodePort {
		return f.objs.FpXdpLb
	}
	return f.objs.FpXdpPrefilter
}

// Attach attaches the program to the named device (idempotent).
func (f *Filter) Attach(ifname string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.links[ifname]; ok {
		return nil
	}
	iface, err := net.InterfaceByName(ifname)
	if err != nil {
		return fmt.Errorf("prefilter on %s: %w", ifname, err)
	}
	l, err := link.AttachXDP(link.XDPOptions{Program: f.Program(), Interface: iface.Index, Flags: f.opts.Mode})
	if err != nil {
		return fmt.Errorf("prefilter on %s: attach XDP: %w", ifname, err)
	}
	f.links[ifname] = l
	return nil
}

// Detach removes the program from the named device (no-op when it is not
// attached there).
func (f *Filter) Detach(ifname string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	l, ok := f.links[ifname]
	if !ok {
		return nil
	}
	delete(f.links, ifname)
	if err := l.Close(); err != nil {
		return fmt.Errorf("detach prefilter from %s: %w", ifname, err)
	}
	return nil
}

// Devices lists the devices the program is attached to.
func (f *Filter) Devices() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for n := range f.links {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// ErrTooMany is returned (wrapped) when a set does not fit the trie; the
// previous set stays in force.
var ErrTooMany = errors.New("too many prefilter prefixes")

// Set makes the denied prefixes exactly want (IPv4 only): additions first,
// then removals.
func (f *Filter) Set(want []netip.Prefix) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	wanted := map[netip.Prefix]bool{}
	for _, p := range want {
		if !p.Addr().Is4() {
			return fmt.Errorf("prefilter prefix %s: IPv4 only", p)
		}
		wanted[p.Masked()] = true
	}
	if max := int(f.objs.FpPrefilter.MaxEntries()); len(wanted) > max {
		return fmt.Errorf("%d prefixes, the trie holds %d: %w", len(wanted), max, ErrTooMany)
	}
	for p := range wanted {
		if f.prefixes[p] {
			continue
		}
		if err := f.objs.FpPrefilter.Put(prefixKey(p), uint8(1)); err != nil {
			return fmt.Errorf("add prefilter prefix %s: %w", p, err)
		}
		f.prefixes[p] = true
	}
	var errs []error
	for p := range f.prefixes {
		if wanted[p] {
			continue
		}
		if err := f.objs.FpPrefilter.Delete(prefixKey(p)); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			errs = append(errs, fmt.Errorf("remove prefilter prefix %s: %w", p, err))
			continue
		}
		delete(f.prefixes, p)
	}
	return errors.Join(errs...)
}

// Len is how many prefixes are denied (the user-space copy of the trie:
// cheap enough for every status request, unlike List).
func (f *Filter) Len() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.prefixes)
}

// List returns the prefixes the trie holds (read from the map).
func (f *Filter) List() ([]netip.Prefix, error) {
	var out []netip.Prefix
	var k xdpPrefilterKey
	var v uint8
	it := f.objs.FpPrefilter.Iterate()
	for it.Next(&k, &v) {
		out = append(out, keyPrefix(k))
	}
	sort.Slice(out, func(i, j int) bool {
		if c := out[i].Addr().Compare(out[j].Addr()); c != 0 {
			return c < 0
		}
		return out[i].Bits() < out[j].Bits()
	})
	return out, it.Err()
}

// Counts are packets and bytes the program passed and dropped, summed
// over CPUs.
type Counts struct {
	PassedPackets, PassedBytes   uint64
	DroppedPackets, DroppedBytes uint64
}

// Counters reads the per-CPU counters.
func (f *Filter) Counters() (Counts, error) {
	var c Counts
	for stat, dst := range map[uint32][2]*uint64{
		uint32(xdpPrefilterStatPREFILTER_PASSED):  {&c.PassedPackets, &c.PassedBytes},
		uint32(xdpPrefilterStatPREFILTER_DROPPED): {&c.DroppedPackets, &c.DroppedBytes},
	} {
		var per []xdpPrefilterCount
		if err := f.objs.FpPrefilterStats.Lookup(stat, &per); err != nil {
			return c, err
		}
		for _, v := range per {
			*dst[0] += v.Packets
			*dst[1] += v.Bytes
		}
	}
	return c, nil
}

// Close detaches the program and releases the objects (pinned maps stay).
func (f *Filter) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	var errs []error
	for n, l := range f.links {
		if err := l.Close(); err != nil {
			errs = append(errs, fmt.Errorf("detach prefilter from %s: %w", n, err))
		}
	}
	f.links = map[string]link.Link{}
	errs = append(errs, f.objs.Close())
	return errors.Join(errs...)
}

func prefixKey(p netip.Prefix) xdpPrefilterKey {
	a := p.Masked().Addr().As4()
	return xdpPrefilterKey{Prefixlen: uint32(p.Bits()), Addr: binary.NativeEndian.Uint32(a[:])}
}

func keyPrefix(k xdpPrefilterKey) netip.Prefix {
	var b [4]byte
	binary.NativeEndian.PutUint32(b[:], k.Addr)
	return netip.PrefixFrom(netip.AddrFrom4(b), int(k.Prefixlen))
}
