package lxc

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"

	"github.com/fastpath-bench/fastpath/datapath/model"
)

// Event is a flow event from the datapath: a policy verdict on a new
// connection, or a dropped packet.
type Event struct {
	Time         time.Time       `json:"time"`
	Type         string          `json:"type"` // "verdict" or "drop"
	Direction    model.Direction `json:"-"`
	Reason       Reason          `json:"-"`
	Protocol     model.Protocol  `json:"-"`
	Src          netip.Addr      `json:"src"`
	Dst          netip.Addr      `json:"dst"`
	SrcPort      uint16          `json:"srcPort"`
	DstPort      uint16          `json:"dstPort"`
	EndpointID   uint32          `json:"endpointID"`
	Identity     model.Identity  `json:"identity"`
	PeerIdentity model.Identity  `json:"peerIdentity"`
	Ifindex      uint32          `json:"ifindex"`
}

// EventReader reads flow events. Only one reader should be open at a time:
// readers of one ring buffer share its records. The datapath writes events
// only while a reader is open (fp_events_on).
type EventReader struct {
	d  *Datapath
	rd *ringbuf.Reader
	// since is the monotonic time the reader was opened: records older
	// than it (left from an earlier reader) are skipped.
	since uint64
	// boot is the wall-clock time of monotonic zero, to convert the BPF
	// timestamps.
	boot time.Time
}

// OpenEvents opens the event ring buffer and turns events on; Close turns
// them off again.
func (d *Datapath) OpenEvents() (*EventReader, error) {
	rd, err := ringbuf.NewReader(d.objs.FpEvents)
	if err != nil {
		return nil, fmt.Errorf("open event ring buffer: %w", err)
	}
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	boot := time.Now().Add(-time.Duration(ts.Nano()))
	if err := d.setEvents(true); err != nil {
		rd.Close()
		return nil, err
	}
	return &EventReader{d: d, rd: rd, boot: boot, since: uint64(ts.Nano())}, nil
}

// setEvents turns the writing of flow events on or off.
func (d *Datapath) setEvents(on bool) error {
	var v uint32
	if on {
		v = 1
	}
	if err := d.objs.FpEventsOn.Put(uint32(0), v); err != nil {
		return fmt.Errorf("turn flow events on=%v: %w", on, err)
	}
	return nil
}

// Read blocks for the next event; it returns an error wrapping
// ringbuf.ErrClosed after Close, or os.ErrDeadlineExceeded after a deadline.
func (r *EventReader) Read() (Event, error) {
	var raw lxcFlowEvent
	for {
		rec, err := r.rd.Read()
		if err != nil {
			return Event{}, err
		}
		if err := binary.Read(bytes.NewReader(rec.RawSample), binary.NativeEndian, &raw); err != nil {
			return Event{}, fmt.Errorf("decode event: %w", err)
		}
		if raw.TsNs >= r.since {
			break
		}
	}
	ev := Event{
		Time:         r.boot.Add(time.Duration(raw.TsNs)),
		Type:         "verdict",
		Direction:    model.Direction(raw.Direction),
		Reason:       Reason(raw.Reason),
		Protocol:     model.Protocol(raw.Proto),
		Src:          addrFromBE32(raw.Saddr),
		Dst:          addrFromBE32(raw.Daddr),
		SrcPort:      ntohs(raw.Sport),
		DstPort:      ntohs(raw.Dport),
		EndpointID:   raw.EpId,
		Identity:     model.Identity(raw.Identity),
		PeerIdentity: model.Identity(raw.PeerIdentity),
		Ifindex:      raw.Ifindex,
	}
	if lxcEventType(raw.Type) == lxcEventTypeEVENT_DROP {
		ev.Type = "drop"
	}
	return ev, nil
}

// SetDeadline makes Read return when t passes.
func (r *EventReader) SetDeadline(t time.Time) { r.rd.SetDeadline(t) }

// Close stops the reader and turns events off.
func (r *EventReader) Close() error {
	err := r.d.setEvents(false)
	return errors.Join(r.rd.Close(), err)
}

// IsClosed reports whether err means the reader was closed.
func IsClosed(err error) bool { return errors.Is(err, ringbuf.ErrClosed) }

// EventsLost returns how many events the ring buffer had no room for.
func (d *Datapath) EventsLost() (uint64, error) {
	var per []uint64
	if err := d.objs.FpEventsLost.Lookup(uint32(0), &per); err != nil {
		return 0, err
	}
	var n uint64
	for _, v := range per {
		n += v
	}
	return n, nil
}
