// Package kube is the node agent's Kubernetes source. It owns the watch on
// the API server: client-go informers for the built-in kinds the model
// knows (Namespaces, Nodes, Pods, Services, EndpointSlices,
// NetworkPolicies) and dynamic informers for the custom kinds
// (CiliumNetworkPolicy, Istio AuthorizationPolicy, fastpath Prefilter and
// EgressGatewayPolicy), each only when the API server serves it.
//
// A Source turns its caches into the desired state the rest of the agent
// programs, a *model.Objects (Snapshot), signals every change (Changed),
// and serves the single-object lookups the agent needs (Pod, Node).
// Translate, the pure part of Snapshot, decides what of a real cluster
// the model sees: pods that are not endpoints are dropped, and what the
// IPv4-only model would refuse but real clusters legitimately contain
// (IPv6 addresses of dual-stack objects, ExternalName Services, SCTP
// Service ports, ...) is stripped. Validation is not this package's job:
// model.Resolve does it.
package kube
