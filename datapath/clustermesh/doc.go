// Package clustermesh is the control plane between clusters (issue #10),
// in the manner of Cilium's ClusterMesh: each cluster publishes its
// endpoints, identities, global Services and nodes to its own etcd under
// its own prefix, every key attached to one lease; every cluster watches
// its peers' prefixes in their etcd. There is no protocol of our own:
// etcd's KV, leases and watches are the whole contract.
//
// # Pieces
//
//   - Config (config.go): this cluster (name, id, pod CIDRs, service CIDR,
//     etcd endpoints), the lease TTL and the peers (the same fields each).
//     DecodeConfig/LoadConfig decode YAML or JSON strictly (unknown or
//     duplicate fields are errors); Validate reports every problem at
//     once, each a *FieldError naming its field ("peers[1].serviceCIDR").
//     Preflight then checks that every etcd endpoint of every cluster
//     answers, naming the cluster and endpoint that does not. Both run
//     before anything is created.
//   - Publisher (publisher.go): writes one cluster's State.
//   - Watcher (watcher.go): follows the peers and hands out Snapshots.
//   - GlobalIdentity/SplitGlobalIdentity (identity.go): the identity
//     layout below.
//   - embedetcd (subpackage): an etcd server embedded in the process
//     (go.etcd.io/etcd/server/v3/embed) for the netns provider and the
//     tests; a kind cluster runs an etcd pod instead. It is a package of
//     its own so that the agent, which needs the client only, does not
//     link the server.
//
// etcd is v3.6.6, the version harness/kindnode builds into the kind node
// image. Requiring go.etcd.io/etcd/server/v3 and client/v3 at v3.6.6
// changed no k8s.io, grpc, otel or protobuf version (k8s.io/apiserver
// already required etcd v3.6.5), so the server is embedded rather than run
// as a separate process.
//
// # Configuration
//
//	name: east
//	id: 1
//	podCIDRs: [10.1.0.0/16]
//	serviceCIDR: 10.96.0.0/16
//	endpoints: [http://172.18.0.10:2379]   # this cluster's etcd
//	leaseTTL: 15s                          # default; whole seconds, 2s..1h
//	peers:
//	- name: west
//	  id: 2
//	  podCIDRs: [10.2.0.0/16]
//	  serviceCIDR: 10.97.0.0/16
//	  endpoints: [http://172.19.0.10:2379]
//
// Validate refuses: names that are not DNS labels or appear twice; ids
// outside 1..255 or used twice; missing or unparsable CIDRs; a service
// CIDR overlapping another cluster's service CIDR or any pod CIDR; pod
// CIDRs of one cluster overlapping each other; pod CIDRs of different
// clusters overlapping, unless allowOverlappingPodCIDRs is set (identities
// stay apart, since they are keyed by cluster id rather than address, but
// an address then names a pod in several clusters, so the consumer must
// not route or resolve such remote addresses by IP alone); no etcd
// endpoint, or one that is not http://host:port or host:port (TLS is not
// supported yet).
//
// # Key layout
//
// Everything cluster <name> publishes is under /fastpath/clusters/<name>/
// (Prefix), in its own etcd, as JSON:
//
//	cluster                    ClusterInfo: name, id, leaseTTLSeconds, podCIDRs, serviceCIDR
//	nodes/<node>               Node: name, ip
//	identities/<local id>      {"labels": {...}}: a local identity (decimal) and its label set
//	services/<ns>/<name>       GlobalService: namespace, name, affinity, ports with backends
//	endpoints/<pod ip>         Endpoint: ip, namespace, name, labels, node, nodeIP, identity (local)
//
// nodeIP is the tunnel endpoint peers encapsulate to. Services are
// published when annotated service.fastpath.dev/global: "true";
// service.fastpath.dev/affinity: local (or remote) makes a cluster prefer
// its own (or the others') backends (ServiceAnnotations reads both, as
// datapath/model does, which merges a global Service's backends across
// clusters). A published port has its name, protocol and number, and
// its backends: the cluster's serving endpoints that are its pods (ip,
// target port, node, pod; ready, or terminating and still serving,
// Terminating set).
// Identities are published local; the prefix says which cluster they
// belong to, and the watcher turns them into global ones.
//
// # Leases and publishing
//
// A Publisher grants one lease (the configured TTL, default 15 s) and
// attaches every key to it; the etcd client keeps it alive (a keep-alive
// every TTL/3). Publish(State) validates the State (addresses inside the
// cluster's pod CIDRs, every endpoint's identity published, identities
// that fit the layout, unique keys), then reads the prefix and writes
// only the difference: puts of new or changed keys (or keys on an older
// lease) first — cluster key, nodes, identities, services, endpoints, so
// that no endpoint appears before its identity — then deletes of keys no
// longer present, endpoints first. Operations go in transactions of at
// most 128 (etcd's default --max-txn-ops); a watcher sees one transaction
// at once, so a State of up to 128 changed keys replaces the previous one
// atomically, a larger one in that order. A failed write is retried every
// second. One Publisher owns a prefix: two for one cluster would delete
// each other's keys.
//
// When the lease is lost — the keep-alive channel closes because etcd
// answered that the lease is gone (revoked, or expired while the
// publisher could not reach its etcd) or gave no answer for a whole TTL —
// the publisher grants a new lease and writes the last State again under
// it. Stop ends the keep-alives as a crash would: the keys stay until the
// lease expires. Revoke deletes them at once (a cluster leaving the mesh).
// etcd extends every lease by its TTL when it restarts or elects a
// leader, so restarting a cluster's etcd does not by itself remove its
// keys.
//
// # Watching
//
// A Watcher runs, per peer, a client of the peer's etcd and a loop:
// list the prefix, watch it from the list's revision + 1 (with
// WithRequireLeader), and probe the etcd with a linearizable read of the
// cluster key every quarter of the peer's lease TTL (at least 250 ms, at
// most 5 s; timeout the same, at most 2 s). A watch error, a compaction
// or a probe succeeding after failures ends the loop and the prefix is
// listed again (backoff 200 ms doubling to 5 s while listing fails). The
// peer's keys are applied one watch response at a time and the peer's
// RemoteState rebuilt: endpoints by address with their global identity,
// identities by global identity (each with the label
// io.cilium.k8s.policy.cluster=<peer>), services by namespace/name, nodes.
// Keys that do not parse, endpoints outside the peer's configured pod
// CIDRs or whose identity is not published, Services whose namespace or
// name is not a Kubernetes one, a Service's ports that are not TCP, UDP
// or SCTP, numbered 0, badly named or listed twice, and backends without
// an IPv4 address and port, outside the peer's pod CIDRs or listed
// twice, are left out and listed in Problems. The state is used only while the peer's cluster key exists
// and names the configured name and id; otherwise the peer is empty.
// OnChange receives a Snapshot (every peer) after each change, from one
// goroutine; changes during a call are coalesced into the next.
//
// # Expiry: what happens when a peer goes away
//
//   - The peer's agent dies or is cut from its own etcd: keep-alives stop,
//     and its etcd deletes every key of the lease TTL after the last
//     keep-alive (etcd checks expiry every 500 ms), in one revision.
//     Watchers still connected to that etcd receive the deletions in one
//     response: the peer's endpoints, identities, services and nodes
//     vanish from the next Snapshot together (Published false, Connected
//     true). With a 2 s TTL this took 2.1–2.5 s after the keep-alives
//     stopped.
//   - The watcher cannot reach the peer's etcd (partition, etcd down):
//     the peer's last state stays in the Snapshot, marked Connected false
//     with Err, until the peer's lease TTL (from its cluster key) has
//     passed since the etcd last answered — a list, a watch response or a
//     probe — checked every 100 ms. Then the state is dropped: Expired
//     true, every map empty. Since the last answer may precede the loss by
//     up to one probe interval, the state outlives the loss by at most the
//     TTL; it is never kept longer than the publisher's lease could have
//     lived unrenewed. When the etcd answers again the prefix is listed
//     again and Expired cleared.
//   - For the datapath this means remote identities expire after their
//     lease: a consumer that programs the ipcache and policy from the
//     Snapshot removes the peer's endpoints and identities, so new
//     connections from or to that cluster's pods are no longer matched by
//     rules naming their identities and fail closed. Connections already
//     established are the datapath's business (conntrack), not this
//     package's.
//
// # Identity layout
//
// model.Identity is 32 bits; pod identities are allocated in
// model.FirstPodIdentity (256) .. 0xffff, reserved ones are below 256 and
// node-local CIDR identities start at 1<<24 (model.IdentityCIDRBase) and
// 2<<24. A pod's identity in the mesh (its global identity, the one the
// tunnel carries) is
//
//	global = clusterID<<16 | local
//
//	bits 31..24  0
//	bits 23..16  cluster id, 1..255
//	bits 15..0   local identity, 256..0xffff
//
// so global identities span 0x010100..0xffffff: 24 bits, exactly what a
// VXLAN VNI carries (lxc.MaxTunnelIdentity), below the CIDR identities,
// and a cluster's local identity never collides with another's. Reserved
// identities (host, world, remote-node, ...) mean the same thing in every
// cluster and keep cluster bits 0; GlobalIdentity refuses them, as it
// refuses cluster id 0 and local identities above 0xffff.
// SplitGlobalIdentity is the inverse and refuses anything that is not a
// global pod identity.
package clustermesh
