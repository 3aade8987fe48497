package attach

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Mode selects the attach mechanism.
type Mode string

// Attach modes.
const (
	// ModeAuto uses TCX when the kernel supports it, netlink tc otherwise.
	ModeAuto Mode = ""
	// ModeTCX requires TCX links.
	ModeTCX Mode = "tcx"
	// ModeNetlink uses a clsact qdisc and a bpf filter (any kernel since 4.5).
	ModeNetlink Mode = "tc"
)

// ParseMode parses "auto", "tcx" or "tc".
func ParseMode(s string) (Mode, error) {
	switch s {
	case "", "auto":
		return ModeAuto, nil
	case "tcx":
		return ModeTCX, nil
	case "tc", "netlink":
		return ModeNetlink, nil
	}
	return "", fmt.Errorf("unknown attach mode %q (want auto, tcx or tc)", s)
}

// Direction is the TC hook: ingress (packets the interface receives) or
// egress (packets it sends).
type Direction int

// Hooks.
const (
	Ingress Direction = iota
	Egress
)

func (d Direction) String() string {
	if d == Egress {
		return "egress"
	}
	return "ingress"
}

// TCOptions says what to attach where. Zero Mode means ModeAuto.
type TCOptions struct {
	// Ifindex of the interface, in the caller's network namespace.
	Ifindex int
	// Program is a SchedCLS program.
	Program *ebpf.Program
	// Direction is the hook.
	Direction Direction
	// Mode picks the mechanism.
	Mode Mode
	// Name labels the netlink filter (ignored for TCX).
	Name string
}

// Attachment is a program attached to an interface.
type Attachment interface {
	// Mode tells which mechanism holds the program: ModeTCX or ModeNetlink.
	Mode() Mode
	// Detach removes the program. Detaching from an interface that is
	// already gone is not an error.
	Detach() error
}

// TC attaches opts.Program to the interface's TC hook.
func TC(opts TCOptions) (Attachment, error) {
	if opts.Program == nil {
		return nil, errors.New("attach: no program")
	}
	if opts.Mode == ModeAuto || opts.Mode == ModeTCX {
		a, err := attachTCX(opts)
		if err == nil {
			return a, nil
		}
		if opts.Mode == ModeTCX || !errors.Is(err, ebpf.ErrNotSupported) {
			return nil, err
		}
	}
	return attachNetlink(opts)
}

type tcxAttachment struct{ l link.Link }

func (t *tcxAttachment) Mode() Mode { return ModeTCX }
func (t *tcxAttachment) Detach() error {
	// Closing the link fd detaches; when the interface is gone the kernel
	// has already released the program.
	return t.l.Close()
}

func attachTCX(opts TCOptions) (Attachment, error) {
	at := ebpf.AttachTCXIngress
	if opts.Direction == Egress {
		at = ebpf.AttachTCXEgress
	}
	l, err := link.AttachTCX(link.TCXOptions{Interface: opts.Ifindex, Program: opts.Program, Attach: at})
	if err != nil {
		return nil, fmt.Errorf("attach tcx %s to ifindex %d: %w", opts.Direction, opts.Ifindex, err)
	}
	return &tcxAttachment{l: l}, nil
}

type netlinkAttachment struct {
	filter *netlink.BpfFilter
}

func (n *netlinkAttachment) Mode() Mode { return ModeNetlink }
func (n *netlinkAttachment) Detach() error {
	if err := netlink.FilterDel(n.filter); err != nil && !errors.Is(err, unix.ENODEV) && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("delete tc filter on ifindex %d: %w", n.filter.LinkIndex, err)
	}
	return nil
}

func attachNetlink(opts TCOptions) (Attachment, error) {
	qdisc := &netlink.GenericQdisc{
		QdiscAttrs: netlink.QdiscAttrs{LinkIndex: opts.Ifindex, Handle: netlink.MakeHandle(0xffff, 0), Parent: netlink.HANDLE_CLSACT},
		QdiscType:  "clsact",
	}
	if err := netlink.QdiscReplace(qdisc); err != nil {
		return nil, fmt.Errorf("add clsact qdisc to ifindex %d: %w", opts.Ifindex, err)
	}
	parent := uint32(netlink.HANDLE_MIN_INGRESS)
	if opts.Direction == Egress {
		parent = netlink.HANDLE_MIN_EGRESS
	}
	name := opts.Name
	if name == "" {
		name = "fastpath"
	}
	f := &netlink.BpfFilter{
		FilterAttrs: netlink.FilterAttrs{
			LinkIndex: opts.Ifindex,
			Parent:    parent,
			Handle:    netlink.MakeHandle(0, 1),
			Protocol:  unix.ETH_P_ALL,
			Priority:  1,
		},
		Fd:           opts.Program.FD(),
		Name:         name,
		DirectAction: true,
	}
	if err := netlink.FilterReplace(f); err != nil {
		return nil, fmt.Errorf("add tc bpf filter (%s) to ifindex %d: %w", opts.Direction, opts.Ifindex, err)
	}
	return &netlinkAttachment{filter: f}, nil
}

// HaveTCX reports whether the kernel supports TCX links, as a feature probe:
// nil, or an error wrapping ebpf.ErrNotSupported.
func HaveTCX() error {
	// Attaching a trivial program to loopback in a throwaway way would
	// need a netns; instead rely on the library's own probe through a
	// failed attach to ifindex 0, which distinguishes EINVAL (supported,
	// bad target) from missing support.
	spec := &ebpf.ProgramSpec{Type: ebpf.SchedCLS, License: "GPL", Instructions: returnZero}
	prog, err := ebpf.NewProgram(spec)
	if err != nil {
		return fmt.Errorf("load probe program: %w", err)
	}
	defer prog.Close()
	l, err := link.AttachTCX(link.TCXOptions{Interface: 0, Program: prog, Attach: ebpf.AttachTCXIngress})
	if l != nil {
		l.Close()
	}
	if errors.Is(err, ebpf.ErrNotSupported) {
		return err
	}
	return nil
}
