/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Compiler helpers shared by every fastpath BPF program. */
#pragma once

#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#ifndef __always_inline
#define __always_inline inline __attribute__((always_inline))
#endif

#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

#ifndef READ_ONCE
/* One full-width load the compiler may not split or narrow (context
 * fields that only allow 32-bit reads). */
#define READ_ONCE(x) (*(volatile __typeof__(x) *)&(x))
#endif

#ifndef AF_INET
#define AF_INET 2
#endif

/* Fails the build when cond is true: for layout invariants shared with Go. */
#define build_bug_on(cond) _Static_assert(!(cond), #cond)

/* TC verdicts (also valid as TCX verdicts: TCX_PASS == TC_ACT_OK). */
#define CTX_ACT_OK 0
#define CTX_ACT_DROP 2
