// Package features probes the running kernel for what the datapath uses,
// with cilium/ebpf's feature probes, and says which choice the datapath
// makes where it has one (TCX or netlink tc). Required features that are
// missing make Check fail with the feature and the kernel version that
// introduced it, instead of a verifier or attach error later.
package features

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/features"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"

	"github.com/fastpath-bench/fastpath/datapath/attach"
)

// Feature is one probed kernel capability.
type Feature struct {
	Name string `json:"name"`
	// Since is the mainline kernel that added it, for messages.
	Since string `json:"since"`
	// Required features make the ebpf datapath refuse to start when
	// missing; the others only disable or change what uses them.
	Required  bool   `json:"required"`
	Supported bool   `json:"supported"`
	Detail    string `json:"detail,omitempty"`
	// Used says what depends on it.
	Used string `json:"used"`
}

// Report is the outcome of Probe.
type Report struct {
	Kernel   string    `json:"kernel"`
	BTF      bool      `json:"btf"`
	Features []Feature `json:"features"`
	// AttachMode is what the datapath uses: "tcx" when supported, else
	// "tc" (clsact qdisc and a bpf filter).
	AttachMode string `json:"attachMode"`
}

type probe struct {
	name, since, used string
	required          bool
	fn                func() error
}

var probes = []probe{
	{"prog:sched_cls", "4.1", "per-endpoint and uplink TC programs", true, func() error { return features.HaveProgramType(ebpf.SchedCLS) }},
	{"map:lpm_trie", "4.11", "policy and ipcache lookups", true, func() error { return features.HaveMapType(ebpf.LPMTrie) }},
	{"map:hash_of_maps", "4.12", "per-endpoint policy tables swapped atomically", true, func() error { return features.HaveMapType(ebpf.HashOfMaps) }},
	{"map:ringbuf", "5.8", "flow events", true, func() error { return features.HaveMapType(ebpf.RingBuf) }},
	{"helper:skc_lookup_tcp", "5.2", "L7 proxy redirect", true, func() error { return features.HaveProgramHelper(ebpf.SchedCLS, asm.FnSkcLookupTcp) }},
	{"helper:sk_assign", "5.7", "L7 proxy redirect", true, func() error { return features.HaveProgramHelper(ebpf.SchedCLS, asm.FnSkAssign) }},
	{"link:tcx", "6.6", "TC attachment (netlink tc is used without it)", false, attach.HaveTCX},
	{"map:perf_event_array", "4.3", "not used (flow events use the ring buffer)", false, func() error { return features.HaveMapType(ebpf.PerfEventArray) }},
	{"map:sockhash", "4.18", "sockmap acceleration (--sockmap)", false, func() error { return features.HaveMapType(ebpf.SockHash) }},
	{"prog:sock_ops", "4.13", "sockmap acceleration (--sockmap)", false, func() error { return features.HaveProgramType(ebpf.SockOps) }},
	{"prog:sk_msg", "4.17", "sockmap acceleration (--sockmap)", false, func() error { return features.HaveProgramType(ebpf.SkMsg) }},
	{"prog:xdp", "4.8", "XDP prefilter and NodePort LB (--xdp-nodeport)", false, func() error { return features.HaveProgramType(ebpf.XDP) }},
	{"helper:xdp_fib_lookup", "4.18", "XDP NodePort LB (--xdp-nodeport)", false, func() error { return features.HaveProgramHelper(ebpf.XDP, asm.FnFibLookup) }},
	{"prog:cgroup_sock_addr", "4.17", "socket-LB (--socket-lb)", false, func() error { return features.HaveProgramType(ebpf.CGroupSockAddr) }},
	{"helper:get_netns_cookie", "5.7", "socket-LB session affinity (--socket-lb)", false, func() error {
		return features.HaveProgramHelper(ebpf.CGroupSockAddr, asm.FnGetNetnsCookie)
	}},
	{"helper:timer_init", "5.15", "not used yet (conntrack GC runs from Go)", false, func() error { return features.HaveProgramHelper(ebpf.SchedCLS, asm.FnTimerInit) }},
}

// Probe runs every probe. It needs the privileges the datapath needs.
func Probe() Report {
	var uts unix.Utsname
	unix.Uname(&uts)
	r := Report{Kernel: unix.ByteSliceToString(uts.Release[:])}
	// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK: without
	// this the map probes fail with EPERM rather than answer.
	_ = rlimit.RemoveMemlock()
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err == nil {
		r.BTF = true
	}
	for _, p := range probes {
		f := Feature{Name: p.name, Since: p.since, Required: p.required, Used: p.used}
		err := p.fn()
		f.Supported = err == nil
		if err != nil {
			f.Detail = err.Error()
		}
		r.Features = append(r.Features, f)
	}
	r.AttachMode = string(attach.ModeNetlink)
	if r.Supported("link:tcx") {
		r.AttachMode = string(attach.ModeTCX)
	}
	return r
}

// Supported reports whether the named feature was found.
func (r Report) Supported(name string) bool {
	for _, f := range r.Features {
		if f.Name == name {
			return f.Supported
		}
	}
	return false
}

// ErrMissing is wrapped by Check's error.
var ErrMissing = errors.New("kernel lacks a feature the ebpf datapath requires")

// Check returns an error naming every missing required feature; a probe
// that failed for another reason (no privileges) is reported as such.
func (r Report) Check() error {
	var missing []string
	var other []error
	for _, f := range r.Features {
		if !f.Required || f.Supported {
			continue
		}
		if strings.Contains(f.Detail, ebpf.ErrNotSupported.Error()) {
			missing = append(missing, fmt.Sprintf("%s (Linux %s+, for %s)", f.Name, f.Since, f.Used))
		} else {
			other = append(other, fmt.Errorf("probe %s: %s", f.Name, f.Detail))
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: kernel %s has no %s", ErrMissing, r.Kernel, strings.Join(missing, ", "))
	}
	return errors.Join(other...)
}

// Need returns an error naming every feature of names the kernel lacks,
// and what asked for it (what, e.g. "--sockmap").
func (r Report) Need(what string, names ...string) error {
	var missing []string
	for _, n := range names {
		if r.Supported(n) {
			continue
		}
		since := "?"
		for _, f := range r.Features {
			if f.Name == n {
				since = f.Since
			}
		}
		missing = append(missing, fmt.Sprintf("%s (Linux %s+)", n, since))
	}
	if len(missing) > 0 {
		return fmt.Errorf("%s: %w: kernel %s has no %s", what, ebpf.ErrNotSupported, r.Kernel, strings.Join(missing, ", "))
	}
	return nil
}

// Names lists the supported features, for status output.
func (r Report) Names() []string {
	var out []string
	for _, f := range r.Features {
		if f.Supported {
			out = append(out, f.Name)
		}
	}
	return out
}
