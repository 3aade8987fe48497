package lxc

import (
	"errors"
	"fmt"
	"os"
	"reflect"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// SockOptions say which socket programs to attach to the cgroup v2
// directory that holds the node's pods. The zero value attaches nothing.
type SockOptions struct {
	// Cgroup is the cgroup v2 directory of the node's pods; the programs
	// apply to sockets created by processes in it and below it.
	Cgroup string
	// LB attaches socket-level load balancing: connect4 and sendmsg4 point
	// a socket at a service backend, recvmsg4 and getpeername4 report the
	// frontend back. Packets of such connections are not translated on
	// the TC path.
	LB bool
	// Sockmap attaches sock_ops (same-node TCP connections that the policy
	// admits go into a sockhash) and sk_msg (payload to the peer socket).
	Sockmap bool
}

type sockState struct {
	objs    sockObjects
	links   []link.Link
	msgProg *ebpf.Program // attached to fp_sock_hash
}

// AttachSockets loads the socket programs (sharing this datapath's maps)
// and attaches the ones opts asks for. It fails, attaching nothing, when
// the kernel lacks a hook.
func (d *Datapath) AttachSockets(opts SockOptions) (err error) {
	if !opts.LB && !opts.Sockmap {
		return nil
	}
	if opts.Cgroup == "" {
		return errors.New("socket programs: no cgroup directory given")
	}
	if st, err := os.Stat(opts.Cgroup); err != nil || !st.IsDir() {
		return fmt.Errorf("socket programs: cgroup %s: not a directory (%v)", opts.Cgroup, err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.sock != nil {
		return errors.New("socket programs already attached")
	}
	spec, err := loadSock()
	if err != nil {
		return fmt.Errorf("load sock spec: %w", err)
	}
	copts := &ebpf.CollectionOptions{MapReplacements: d.sharedMaps(spec)}
	if d.opts.PinPath != "" {
		copts.Maps.PinPath = d.opts.PinPath
	} else {
		for _, m := range spec.Maps {
			m.Pinning = ebpf.PinNone
		}
	}
	s := &sockState{}
	if err := spec.LoadAndAssign(&s.objs, copts); err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			return fmt.Errorf("load socket programs: %+v", ve)
		}
		return fmt.Errorf("load socket programs: %w", err)
	}
	defer func() {
		if err != nil {
			s.detach()
		}
	}()
	type hook struct {
		name string
		prog *ebpf.Program
		at   ebpf.AttachType
	}
	var hooks []hook
	if opts.LB {
		hooks = append(hooks,
			hook{"connect4", s.objs.FpSockConnect4, ebpf.AttachCGroupInet4Connect},
			hook{"sendmsg4", s.objs.FpSockSendmsg4, ebpf.AttachCGroupUDP4Sendmsg},
			hook{"recvmsg4", s.objs.FpSockRecvmsg4, ebpf.AttachCGroupUDP4Recvmsg},
			hook{"getpeername4", s.objs.FpSockGetpeername4, ebpf.AttachCgroupInet4GetPeername})
	}
	if opts.Sockmap {
		hooks = append(hooks, hook{"sock_ops", s.objs.FpSockops, ebpf.AttachCGroupSockOps})
	}
	for _, h := range hooks {
		l, err := link.AttachCgroup(link.CgroupOptions{Path: opts.Cgroup, Attach: h.at, Program: h.prog})
		if err != nil {
			return fmt.Errorf("attach %s to cgroup %s: %w", h.name, opts.Cgroup, err)
		}
		s.links = append(s.links, l)
	}
	if opts.Sockmap {
		if err := link.RawAttachProgram(link.RawAttachProgramOptions{
			Target:  s.objs.FpSockHash.FD(),
			Program: s.objs.FpSkMsg,
			Attach:  ebpf.AttachSkMsgVerdict,
		}); err != nil {
			return fmt.Errorf("attach sk_msg to fp_sock_hash: %w", err)
		}
		s.msgProg = s.objs.FpSkMsg
	}
	d.sock = s
	return nil
}

func (s *sockState) detach() {
	for _, l := range s.links {
		_ = l.Close()
	}
	s.links = nil
	if s.msgProg != nil {
		// Sockets already in the map keep the program they were added
		// with; new ones get none.
		_ = link.RawDetachProgram(link.RawDetachProgramOptions{
			Target:  s.objs.FpSockHash.FD(),
			Program: s.msgProg,
			Attach:  ebpf.AttachSkMsgVerdict,
		})
		s.msgProg = nil
	}
	_ = s.objs.Close()
}

// detachSockets undoes AttachSockets; d.mu is held.
func (d *Datapath) detachSockets() {
	if d.sock != nil {
		d.sock.detach()
		d.sock = nil
	}
}

// sharedMaps returns this datapath's loaded maps that spec also declares,
// by name, so that both object files use the same maps whether or not
// they are pinned.
func (d *Datapath) sharedMaps(spec *ebpf.CollectionSpec) map[string]*ebpf.Map {
	out := map[string]*ebpf.Map{}
	for name, m := range d.Maps() {
		if _, declared := spec.Maps[name]; declared {
			out[name] = m
		}
	}
	return out
}

// Maps returns the endpoint datapath's maps by name, for other objects
// that share them (the XDP load balancer: prefilter.Options.SharedMaps).
// The layouts stay this package's.
func (d *Datapath) Maps() map[string]*ebpf.Map {
	out := map[string]*ebpf.Map{}
	v := reflect.ValueOf(&d.objs.lxcMaps).Elem()
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		if m, ok := v.Field(i).Interface().(*ebpf.Map); ok && m != nil {
			out[t.Field(i).Tag.Get("ebpf")] = m
		}
	}
	return out
}

// bumpPolicyRevision tells hooks that cache a verdict that the policy may
// have changed.
func (d *Datapath) bumpPolicyRevision() error {
	var rev uint64
	if err := d.objs.FpPolicyRev.Lookup(uint32(0), &rev); err != nil {
		return fmt.Errorf("read fp_policy_rev: %w", err)
	}
	if err := d.objs.FpPolicyRev.Put(uint32(0), rev+1); err != nil {
		return fmt.Errorf("update fp_policy_rev: %w", err)
	}
	return nil
}

// SockmapFlows counts the accelerated connection ends in the sockhash and,
// of those, the ones whose policy now denies them. Records of sockets that
// have left the sockhash (closed) are deleted on the way.
func (d *Datapath) SockmapFlows() (flows, denied int, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.sock == nil {
		return 0, 0, nil
	}
	var (
		k     sockSockKey
		v     sockSockFlow
		gone  []sockSockKey
		objs  = &d.sock.objs
		it    = objs.FpSockFlows.Iterate()
		inMap uint64
	)
	for it.Next(&k, &v) {
		if err := objs.FpSockHash.Lookup(k, &inMap); err != nil {
			gone = append(gone, k)
			continue
		}
		flows++
		if v.Denied != 0 {
			denied++
		}
	}
	for _, g := range gone {
		_ = objs.FpSockFlows.Delete(g)
	}
	return flows, denied, it.Err()
}
