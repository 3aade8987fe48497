package lxc

import (
	"fmt"

	"github.com/fastpath-bench/fastpath/datapath/model"
)

// MetricKey identifies a datapath counter.
type MetricKey struct {
	Reason    Reason
	Direction model.Direction
}

// Counter is a packet and byte count summed over CPUs.
type Counter struct {
	Packets uint64
	Bytes   uint64
}

// Metrics reads every non-zero counter, summed over CPUs.
func (d *Datapath) Metrics() (map[MetricKey]Counter, error) {
	out := map[MetricKey]Counter{}
	for r := Reason(0); r < reasonMax; r++ {
		for dir := model.Ingress; dir <= model.Egress; dir++ {
			idx := uint32(r)*2 + uint32(dir)
			var per []lxcMetricsValue
			if err := d.objs.FpMetrics.Lookup(idx, &per); err != nil {
				return nil, fmt.Errorf("read metrics %d: %w", idx, err)
			}
			var c Counter
			for _, v := range per {
				c.Packets += v.Packets
				c.Bytes += v.Bytes
			}
			if c.Packets > 0 {
				out[MetricKey{r, dir}] = c
			}
		}
	}
	return out, nil
}
