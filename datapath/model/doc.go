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
package model
