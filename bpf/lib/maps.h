/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Map sizes. The Go package datapath/lxc owns every layout; it reads the
 * sizes back from the loaded spec, so these numbers live only here.
 */
#pragma once

#define ENDPOINTS_MAX 4096      /* local endpoints per node */
#define IPCACHE_MAX 65536       /* prefixes known to the node */
#define POLICY_OUTER_MAX 4096   /* one inner policy map per endpoint */
#define POLICY_INNER_MAX 16384  /* entries in one endpoint's policy */
#define CT_MAX 262144           /* tracked connections (LRU) */
#define RULE_METRICS_MAX 65536  /* (endpoint, rule) counters */
#define LB_FRONTENDS_MAX 65536  /* service frontends (vip, port, proto) */
#define LB_BACKENDS_MAX 65536   /* service backends (addr, port) */
#define LB_SELECT_MAX 65537     /* largest selection array: Maglev M + 1 */
#define LB_AFFINITY_MAX 65536   /* ClientIP affinity entries (LRU) */
#define LB_SOCK_REVNAT_MAX 262144 /* sockets pointed at a backend (LRU) */
#define SOCKMAP_MAX 65536       /* same-node sockets in the sockhash */
#define TUNNEL_FLOWS_MAX 65536  /* flows from the overlay whose source
				 * address does not lead back (LRU) */
#define EGW_MAX 16384           /* (identity, CIDR) egress gateway entries */
#define EGW_NAT_MAX 131072      /* egress gateway SNAT entries, two per
				 * flow (LRU) */
