// Package scenario reads benchmark suite files.
//
// A suite is a YAML document of kind Suite (apiVersion
// fastpath.dev/v1alpha1) describing a cluster topology (nodes, pods and
// namespace labels), the network policies to install, the datapaths to
// compare, and the scenarios to measure: which pod loads which other pod,
// with what protocol, rate, concurrency and duration.
//
// LoadFile and Decode read a suite strictly: a field the schema does not
// know is an error naming its path. They then apply defaults (zero-valued
// options mean defaults, see Suite.Default and Load.Normalized) and
// validate the whole suite at once, so that every problem is reported in
// one go, each as "<file>: <field path>: <problem>".
package scenario
