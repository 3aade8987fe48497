// Package ipam is the node agent's pod address allocator: it hands out
// IPv4 addresses from the node's pod CIDR (or the exact address a pod asks
// for with agentapi.RequestedIPAnnotation), one per pod sandbox (CNI
// container id), and keeps the allocations in a JSON state file so that an
// agent restart does not hand an address out twice. Handler serves it to
// the CNI plugin on the agent's socket (agentapi.Client.AllocateIP and
// ReleaseIP).
package ipam

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"sync"
)

// Gateway is every pod's default gateway: a link-local address the host
// side of the pod's veth answers for (a permanent neighbour entry in the
// pod).
var Gateway = netip.MustParseAddr("169.254.1.1")

// Errors Allocate wraps, so that callers (Handler) can tell them apart.
var (
	// ErrInUse: the requested address belongs to another pod.
	ErrInUse = errors.New("address in use")
	// ErrExhausted: no free address is left in the CIDR.
	ErrExhausted = errors.New("no free address")
	// ErrInvalid: the request itself is wrong (no container id, an
	// address that is not IPv4 or cannot be a host address).
	ErrInvalid = errors.New("invalid request")
)

// Options configure an Allocator.
type Options struct {
	// CIDR is the node's pod CIDR (IPv4, at most /30).
	CIDR netip.Prefix
	// StateFile is where allocations are kept; "" keeps them in memory
	// only.
	StateFile string
}

// Allocation is one address given to a pod sandbox.
type Allocation struct {
	IP          netip.Addr `json:"ip"`
	Namespace   string     `json:"namespace"`
	Name        string     `json:"name"`
	ContainerID string     `json:"containerID"`
	// Netns is the sandbox's network namespace as the runtime gave it
	// to the CNI plugin (CNI_NETNS, e.g. "/var/run/netns/cni-…"); the
	// sidecar baseline runs its proxy there. Empty when not told.
	Netns string `json:"netns,omitempty"`
}

// state is the state file's format.
type state struct {
	CIDR        string       `json:"cidr"`
	Allocations []Allocation `json:"allocations"`
}

// Allocator hands out pod addresses. It is safe for concurrent use.
type Allocator struct {
	cidr      netip.Prefix
	stateFile string

	mu   sync.Mutex
	byID map[string]Allocation // by container id
}

// New returns an allocator for opts.CIDR with the allocations of
// opts.StateFile when the file exists.
func New(opts Options) (*Allocator, error) {
	if !opts.CIDR.IsValid() || !opts.CIDR.Addr().Is4() {
		return nil, fmt.Errorf("ipam: pod CIDR %q: want an IPv4 prefix", opts.CIDR)
	}
	if opts.CIDR.Bits() > 30 {
		return nil, fmt.Errorf("ipam: pod CIDR %s: too small (at most /30)", opts.CIDR)
	}
	a := &Allocator{cidr: opts.CIDR.Masked(), stateFile: opts.StateFile, byID: map[string]Allocation{}}
	if opts.StateFile == "" {
		return a, nil
	}
	data, err := os.ReadFile(opts.StateFile)
	if errors.Is(err, os.ErrNotExist) {
		return a, nil
	}
	if err != nil {
		return nil, fmt.Errorf("ipam: read state: %w", err)
	}
	var st state
	if err := json.Unmarshal(data, &st); err != nil {
		return nil, fmt.Errorf("ipam: state file %s is corrupt: %w", opts.StateFile, err)
	}
	for i, al := range st.Allocations {
		if al.ContainerID == "" || !al.IP.Is4() {
			return nil, fmt.Errorf("ipam: state file %s is corrupt: allocation %d has no container id or IPv4 address", opts.StateFile, i)
		}
		if prev, ok := a.byID[al.ContainerID]; ok {
			return nil, fmt.Errorf("ipam: state file %s is corrupt: container %s holds %s and %s", opts.StateFile, al.ContainerID, prev.IP, al.IP)
		}
		a.byID[al.ContainerID] = al
	}
	return a, nil
}

// CIDR is the pod CIDR the allocator hands addresses out of.
func (a *Allocator) CIDR() netip.Prefix { return a.cidr }

// Allocate returns the address of a pod sandbox, allocating it on the
// first call for containerID (later calls return the same address). A
// valid requested address is given as is, even outside the CIDR, unless
// another pod holds it. Otherwise the address is the one the same pod
// (namespace/name) holds under an older container id (a restarted
// sandbox keeps its address), or the lowest free address of the CIDR
// from base+2 (base+1 is kept free; the network and broadcast addresses
// are never given). The change is persisted before Allocate returns.
func (a *Allocator) Allocate(containerID, namespace, name string, requested netip.Addr) (netip.Addr, error) {
	return a.AllocateIn(containerID, namespace, name, "", requested)
}

// AllocateIn is Allocate that also records the sandbox's network
// namespace (CNI_NETNS; "" records none). A repeated call for the same
// container with another namespace updates the record.
func (a *Allocator) AllocateIn(containerID, namespace, name, netns string, requested netip.Addr) (netip.Addr, error) {
	if containerID == "" {
		return netip.Addr{}, fmt.Errorf("ipam: allocate for %s/%s: no container id: %w", namespace, name, ErrInvalid)
	}
	if requested.IsValid() {
		requested = requested.Unmap()
		if !requested.Is4() || requested.IsUnspecified() || requested.IsMulticast() || requested.IsLoopback() || requested == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
			return netip.Addr{}, fmt.Errorf("ipam: allocate for %s/%s: requested address %s is not a usable IPv4 address: %w", namespace, name, requested, ErrInvalid)
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if al, ok := a.byID[containerID]; ok {
		if netns == "" || al.Netns == netns {
			return al.IP, nil
		}
		next := make(map[string]Allocation, len(a.byID))
		for id, o := range a.byID {
			next[id] = o
		}
		al.Netns = netns
		next[containerID] = al
		if err := a.save(next); err != nil {
			return netip.Addr{}, err
		}
		a.byID = next
		return al.IP, nil
	}

	next := make(map[string]Allocation, len(a.byID)+1)
	taken := make(map[netip.Addr]string, len(a.byID))
	var previous []Allocation // of the same pod, under older container ids
	for id, al := range a.byID {
		next[id] = al
		taken[al.IP] = id
		if namespace != "" && name != "" && al.Namespace == namespace && al.Name == name {
			previous = append(previous, al)
		}
	}
	sort.Slice(previous, func(i, j int) bool { return previous[i].IP.Less(previous[j].IP) })
	// A pod has one sandbox at a time: what the older ones held is the
	// new sandbox's (or free).
	for _, al := range previous {
		delete(next, al.ContainerID)
		delete(taken, al.IP)
	}

	var ip netip.Addr
	switch {
	case requested.IsValid():
		if holder, ok := taken[requested]; ok {
			h := a.byID[holder]
			return netip.Addr{}, fmt.Errorf("ipam: requested address %s for %s/%s is held by %s/%s (container %s): %w",
				requested, namespace, name, h.Namespace, h.Name, holder, ErrInUse)
		}
		ip = requested
	case len(previous) > 0:
		ip = previous[0].IP
	default:
		var ok bool
		if ip, ok = a.lowestFree(taken); !ok {
			return netip.Addr{}, fmt.Errorf("ipam: pod CIDR %s: %w for %s/%s", a.cidr, ErrExhausted, namespace, name)
		}
	}
	next[containerID] = Allocation{IP: ip, Namespace: namespace, Name: name, ContainerID: containerID, Netns: netns}
	if err := a.save(next); err != nil {
		return netip.Addr{}, err
	}
	a.byID = next
	return ip, nil
}

// lowestFree returns the lowest address of the CIDR from base+2 up to the
// last before broadcast that is not taken.
func (a *Allocator) lowestFree(taken map[netip.Addr]string) (netip.Addr, bool) {
	ip := a.cidr.Addr().Next().Next()
	for ; ip.IsValid() && a.cidr.Contains(ip); ip = ip.Next() {
		if !a.cidr.Contains(ip.Next()) {
			break // broadcast
		}
		if _, ok := taken[ip]; !ok {
			return ip, true
		}
	}
	return netip.Addr{}, false
}

// Release returns the address of a container to the pool. An unknown
// container is not an error (CNI DEL is idempotent).
func (a *Allocator) Release(containerID string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.byID[containerID]; !ok {
		return nil
	}
	next := make(map[string]Allocation, len(a.byID))
	for id, al := range a.byID {
		if id != containerID {
			next[id] = al
		}
	}
	if err := a.save(next); err != nil {
		return err
	}
	a.byID = next
	return nil
}

// Allocations returns a copy of the allocations by container id.
func (a *Allocator) Allocations() map[string]Allocation {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make(map[string]Allocation, len(a.byID))
	for id, al := range a.byID {
		out[id] = al
	}
	return out
}

// Netns returns the network namespace recorded for pod namespace/name
// (its current sandbox's), or "" when none is.
func (a *Allocator) Netns(namespace, name string) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return netnsOf(a.byID, namespace, name)
}

func netnsOf(allocs map[string]Allocation, namespace, name string) string {
	// A pod has one sandbox at a time (Allocate drops the older ones);
	// should a state file hold several, the lowest container id wins, so
	// that the answer is stable.
	var best Allocation
	for _, al := range allocs {
		if al.Namespace == namespace && al.Name == name && al.Netns != "" && (best.ContainerID == "" || al.ContainerID < best.ContainerID) {
			best = al
		}
	}
	return best.Netns
}

// ReadNetns reads the network namespaces a state file records, by pod
// ("namespace/name"). It is how another process of the node (the
// agent's sidecar baseline, after a restart too) learns where the CNI
// plugin wired each pod. A missing file records none.
func ReadNetns(stateFile string) (map[string]string, error) {
	data, err := os.ReadFile(stateFile)
	if errors.Is(err, os.ErrNotExist) {
		return map[string]string{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("ipam: read state: %w", err)
	}
	var st state
	if err := json.Unmarshal(data, &st); err != nil {
		return nil, fmt.Errorf("ipam: state file %s is corrupt: %w", stateFile, err)
	}
	byID := make(map[string]Allocation, len(st.Allocations))
	for _, al := range st.Allocations {
		byID[al.ContainerID] = al
	}
	out := map[string]string{}
	for _, al := range st.Allocations {
		key := al.Namespace + "/" + al.Name
		if _, done := out[key]; done || al.Netns == "" {
			continue
		}
		out[key] = netnsOf(byID, al.Namespace, al.Name)
	}
	return out, nil
}

// save writes allocs to the state file atomically: a temporary file in the
// same directory, synced, then renamed over the old one.
func (a *Allocator) save(allocs map[string]Allocation) error {
	if a.stateFile == "" {
		return nil
	}
	st := state{CIDR: a.cidr.String(), Allocations: make([]Allocation, 0, len(allocs))}
	for _, al := range allocs {
		st.Allocations = append(st.Allocations, al)
	}
	sort.Slice(st.Allocations, func(i, j int) bool {
		if st.Allocations[i].IP != st.Allocations[j].IP {
			return st.Allocations[i].IP.Less(st.Allocations[j].IP)
		}
		return st.Allocations[i].ContainerID < st.Allocations[j].ContainerID
	})
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	data = append(data, '\n')
	dir := filepath.Dir(a.stateFile)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("ipam: save state: %w", err)
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(a.stateFile)+".tmp*")
	if err != nil {
		return fmt.Errorf("ipam: save state: %w", err)
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, a.stateFile)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("ipam: save state to %s: %w", a.stateFile, err)
	}
	return nil
}
