// Package model turns desired state, written as plain Kubernetes objects,
// into the resolved view every datapath programs: security identities (one
// per distinct label set), endpoints (pods with an address), and per-endpoint
// ingress and egress rules keyed by peer identity, protocol and port; and
// the load-balanced Services (Service and EndpointSlice objects) with their
// frontends and backends (service.go).
//
// The package is pure Go: it never touches the kernel. It also holds the
// reference evaluator (Evaluate), which answers "may A reach B on this port?"
// from the objects alone, without going through the resolved rules, so that
// datapaths and the resolver can be checked against an independent oracle.
// EvaluateService does the same for connections to a Service frontend.
//
// # Multi-cluster (cluster mesh)
//
// Objects.Cluster names the local cluster of a cluster mesh (issue #10) and
// Objects.Remote lists the other clusters with their pods (RemoteEndpoint:
// namespace, name, address, node and node address, global identity and
// the identity's labels, as datapath/clustermesh's watcher hands them out;
// the agent converts, since this package does not import clustermesh).
// Neither is read from state files. With the zero ClusterInfo and no
// remote cluster everything is exactly as in a single cluster.
//
// Identities. With the mesh on, every local pod's identity labels also
// carry LabelCluster (io.cilium.k8s.policy.cluster=<local name>), and its
// identity is global: GlobalIdentity(id, local) = id<<16 | local, the
// local part allocated as without the mesh (FirstPodIdentity..0xffff, from
// a hash of the labels). Global identities fit the 24 bits of the VXLAN
// VNI the overlay carries them in. Reserved identities (host, world,
// remote-node) keep cluster bits 0 and mean the same in every cluster;
// CIDR identities (1<<24 and up) never leave their node. A cluster
// publishes LocalIdentity of its identities; its peers add its id again.
// A remote endpoint's identity is its global one, as published.
//
// Remote pods are peers, never endpoints: Resolve puts their identities
// into Identities and lists them in RemoteEndpoints (with their Cluster),
// for the datapath's ipcache (identity and tunnel endpoint NodeIP);
// Endpoints, NodeEndpoints and EndpointByIP stay local. Remote nodes
// (RemoteNodes) are remote-node. IdentityOf gives an address, in this
// order, to a local pod, a local node (host or remote-node), a remote pod
// (of the cluster with the lowest id), a remote node, an ipBlock prefix,
// the world.
//
// Selectors follow Cilium ClusterMesh's classic behaviour (Cilium up to
// 1.18, whose documentation says policies "select endpoints from all
// clusters by default"; the later policy-default-local-cluster option is
// not modelled). Policies select local pods only (a remote pod has no
// local policy), but their peers are pods of every cluster:
//
//   - A pod's own labels include LabelCluster, for local pods (mesh on) and
//     remote ones alike, so podSelector, Cilium endpoint selectors and
//     AuthorizationPolicy selectors can name a cluster; a subject selector
//     naming another cluster selects nothing.
//   - NetworkPolicy: a peer without namespaceSelector matches pods of the
//     namespace with the policy's namespace name in every cluster
//     (namespace sameness); a namespaceSelector matches the labels the
//     pod's namespace has in the pod's own cluster (for remote pods, the
//     io.cilium.k8s.namespace.labels.* of their identity).
//   - Cilium fromEndpoints/toEndpoints match pods of every cluster (a
//     selector without the namespace label: that namespace name in every
//     cluster); [k8s:]io.cilium.k8s.policy.cluster restricts them. Deny
//     rules alike.
//   - Cilium entities: cluster is the local cluster only (Cilium: "all
//     network endpoints inside of the local cluster", with host and
//     remote-node); remote-node is every node but the local host, in any
//     cluster (Cilium: "any node in any of the connected clusters other
//     than the local host"), so it includes remote clusters' nodes; world
//     is neither a pod of any cluster nor a node; all is everything.
//   - ipBlock and CIDR rules match by address, remote pods and nodes like
//     any address (through the CIDR identity the ipcache gives it).
//   - Named ports: remote pods' container ports are not published, so an
//     egress rule's port name resolves to nothing for a remote destination
//     (fails closed); an ingress rule's names are the local destination's.
//   - AuthorizationPolicy: a principal is <trust domain>/ns/<ns>/sa/<sa>.
//     Local pods' principals are in cluster.local (TrustDomain) and, with
//     the mesh on, also in <local name>.local; a remote pod's are in
//     <its cluster>.local (TrustDomainOf), from its identity's namespace
//     and service account labels. Istio reads "cluster.local" in a policy
//     as the local trust domain and its aliases (pilot's trust domain
//     bundle), so the local cluster's trust domain is both; one trust
//     domain per cluster makes principals of one cluster expressible
//     ("west.local/ns/prod/sa/api") beside principals of any cluster
//     ("*/ns/prod/sa/api", the trust domain disregarded), whereas the
//     shared trust domain of an Istio multi-primary mesh could not tell
//     clusters apart. A cluster may therefore not be named "cluster".
//     namespaces match the namespace name in every cluster.
//
// A connection from a remote pod to a local one is decided by the local
// destination's ingress (network and mesh layers); the remote pod's own
// egress is its cluster's business. A connection from a local pod to a
// remote one is decided by the local source's egress alone.
//
// Overlapping addresses (pod CIDRs of clusters may overlap): an address a
// local pod has is the local pod's for every address-based lookup
// (IdentityOf, EndpointByIP, Allowed, Evaluate); among remote clusters the
// lowest id's. A remote endpoint that loses is Shadowed: the ipcache
// cannot hold it, and only the identity the overlay carries in the VNI
// tells its packets apart. Evaluate cannot name it by address;
// EvaluateFromRemote (and EvaluateRequestFromRemote) name the remote
// source explicitly, and Resolved.AllowedFromIdentity (and
// AllowedRequestFromIdentity) decide by identity, as the destination's
// node does for a packet from the overlay.
//
// The reference evaluator reads Objects.Remote directly, not Resolve's
// output.
//
// Global services (globalsvc.go), Cilium's global services: a Service
// annotated service.fastpath.dev/global: "true" is load-balanced over its
// own backends and those of the Services of the same namespace and name
// that the remote clusters publish (RemoteCluster.Services), which they
// publish only when the Service is global there too: it must exist and be
// global in both clusters. A local port takes the backends of the remote
// port of the same name and protocol; an unnamed local port (a Service
// with one port) those of the remote port of the same number and
// protocol. A remote backend is taken only when its address is a pod of
// that cluster that address lookups give to it (not a local pod's or
// node's address, not a lower id's pod's: RemoteEndpointByIP), so that
// the ipcache sends the translated packet into the overlay to that pod's
// node; an address and port the local slices list (in any state), or an
// earlier cluster's (in id order), is not taken again. Remote backends
// carry their Cluster and their published state (ready: active;
// terminating and serving: terminating). Then active backends of every
// cluster take new flows alike, terminating ones only when no cluster has
// an active one. service.fastpath.dev/affinity: local prefers the local
// cluster: while one of its backends is active the remote ones are on
// Standby (no new flows; existing flows keep them), else new flows go to
// every cluster's as above; affinity remote is the converse; none (or
// absent) prefers none. So failover is a change of the desired state: when
// a cluster's backends go (its pods deleted, or its lease expired so that
// its Services left Objects.Remote), Resolve gives the other clusters'.
// The affinity is the local Service's; a remote cluster's annotations
// decide only whether it publishes. A global Service without remote
// clusters is a local one. EvaluateService computes the same set from
// the objects on its own (remoteBackends). The annotations' values are
// validated ("true"/"false"; local/remote/none), naming
// metadata.annotations[...]; an affinity on a Service that is not global
// has no effect.
//
// Validation (Validate, and Resolve also for objects a Loader validated,
// since the agent sets the mesh afterwards) refuses, all at once and each
// naming the cluster and field ("RemoteCluster west:
// remote[0].endpoints[2].identity: ..."): a local cluster without a name
// when an id or remote clusters are given, or with id 0; names that are
// not DNS labels or are "cluster"; remote clusters with id 0, the local
// id or name, or an id or name used twice; remote endpoints without
// namespace, name, node, an IPv4 address and node address, or with an
// address used twice in their cluster; identities whose cluster bits are
// not their cluster's id or whose local part is outside 256..0xffff, or
// that stand for two label sets; labels that are invalid, lack
// LabelCluster or carry another cluster's, lack the service account, or
// name another namespace than the endpoint's; remote Services with
// invalid or duplicate names, ports that are not TCP or UDP, numbered 0,
// or share a name or number and protocol, backends that are not an IPv4
// address and port, not active or terminating, listed twice, set Standby
// or name another cluster.
package model
