// Package run executes a benchmark suite: it builds the cluster, writes the
// desired state, starts servers, and for each repetition runs every
// datapath in turn (A B A B ..., so that slow drifts of the machine hit all
// datapaths alike), with agents restarted per datapath, a warm-up and a
// measured fortio load per scenario. It returns a report.
package run
