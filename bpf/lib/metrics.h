/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Per-CPU packet and byte counters by (reason, direction). */
#pragma once

#include "compiler.h"
#include "drop_reasons.h"

struct metrics_value {
	__u64 packets;
	__u64 bytes;
};

/* Index: reason * DIR_MAX + direction. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct metrics_value);
	__uint(max_entries, REASON_MAX * DIR_MAX);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} fp_metrics SEC(".maps");

static __always_inline void metrics_count(__u32 reason, __u8 dir, __u32 len)
{
	__u32 idx = reason * DIR_MAX + dir;
	struct metrics_value *m;

	if (idx >= REASON_MAX * DIR_MAX)
		return;
	m = bpf_map_lookup_elem(&fp_metrics, &idx);
	if (m) {
		m->packets++;
		m->bytes += len;
	}
}
