/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Flow events: one record per policy verdict on a new connection and per
 * dropped packet, through a ring buffer that the agent reads (monitor).
 * Established and reply packets are not reported: they are counted only.
 * Events are written only while the agent has a reader (fp_events_on).
 */
#pragma once

#include "compiler.h"
#include "drop_reasons.h"
#include "parse.h"

#define EVENTS_RINGBUF_BYTES (1 << 20)

enum event_type {
	EVENT_VERDICT = 1,  /* policy decided on a new connection */
	EVENT_DROP = 2,     /* a packet was dropped */
};

struct flow_event {
	__u64 ts_ns;
	__u8 type;          /* enum event_type */
	__u8 direction;     /* enum direction */
	__u8 proto;
	__u8 reason;        /* enum reason */
	__u32 ep_id;
	__u32 identity;     /* the endpoint's */
	__u32 peer_identity;
	__be32 saddr;
	__be32 daddr;
	__be16 sport;
	__be16 dport;
	__u32 ifindex;
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, EVENTS_RINGBUF_BYTES);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} fp_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 1);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} fp_events_lost SEC(".maps");

/* fp_events_on[0] is set by the agent while someone reads the events (a
 * monitor is connected): without a reader no event is written, so none is
 * lost and no reader is woken for nothing. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, 1);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} fp_events_on SEC(".maps");

static __always_inline void emit_event(__u8 type, __u8 dir, __u32 reason,
				       const struct flow4 *f, __u32 ep_id,
				       __u32 identity, __u32 peer, __u32 ifindex)
{
	struct flow_event *e;
	__u32 zero = 0;
	__u32 *on = bpf_map_lookup_elem(&fp_events_on, &zero);

	if (!on || !*on)
		return;
	e = bpf_ringbuf_reserve(&fp_events, sizeof(*e), 0);
	if (!e) {
		__u64 *lost = bpf_map_lookup_elem(&fp_events_lost, &zero);

		if (lost)
			(*lost)++;
		return;
	}
	e->ts_ns = bpf_ktime_get_ns();
	e->type = type;
	e->direction = dir;
	e->proto = f ? f->proto : 0;
	e->reason = reason;
	e->ep_id = ep_id;
	e->identity = identity;
	e->peer_identity = peer;
	e->saddr = f ? f->saddr : 0;
	e->daddr = f ? f->daddr : 0;
	e->sport = f ? f->sport : 0;
	e->dport = f ? f->dport : 0;
	e->ifindex = ifindex;
	bpf_ringbuf_submit(e, 0);
}
