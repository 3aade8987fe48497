package lxc

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// GCConntrack deletes expired conntrack entries and returns how many it
// removed and how many remain. (The map is an LRU, so a full table never
// refuses a connection; this keeps entries of closed flows from lingering
// where a reused tuple would find them.)
func (d *Datapath) GCConntrack() (removed, remaining int, err error) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0, 0, err
	}
	now := uint64(ts.Nano())
	var k lxcCtKey
	var v lxcCtEntry
	var expired []lxcCtKey
	it := d.objs.FpCt.Iterate()
	for it.Next(&k, &v) {
		if v.ExpiresNs <= now {
			expired = append(expired, k)
		} else {
			remaining++
		}
	}
	if err := it.Err(); err != nil {
		return 0, remaining, fmt.Errorf("iterate conntrack: %w", err)
	}
	for _, key := range expired {
		if err := d.objs.FpCt.Delete(key); err == nil {
			removed++
		}
	}
	return removed, remaining, nil
}
