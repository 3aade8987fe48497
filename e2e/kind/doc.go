// Package kind holds e2e-framework suites (sigs.k8s.io/e2e-framework) that
// run on one kind cluster with the agent as its CNI and eBPF datapath:
// every conformance case of scenarios/conformance and the scenarios of
// the benchmark suite scenarios/bench/quick.yaml, each a feature (Setup,
// one Assess per probe or load, Teardown) with labels to select them.
//
// The suites are slow (a kind cluster, then minutes of probes and loads),
// so they build only with the e2e tag; `make e2e-kind` runs them (it
// builds the agent image first), with E2E_LABELS selecting the features:
//
//	make e2e-kind                                  # tier=smoke: a few cases of each corpus and the bench scenarios
//	make e2e-kind E2E_LABELS=suite=conformance     # the whole corpus (about 16 minutes)
//	make e2e-kind E2E_LABELS=corpus=netpol,corpus=services
//	make e2e-kind E2E_LABELS=case=netpol/006-default-deny-all
//	make e2e-kind E2E_LABELS=suite=bench
//	make e2e-kind E2E_LABELS=                      # everything
//
// Labels: suite (conformance, bench), corpus (the case's first directory:
// netpol, cilium, istio, services), case (the case's directory below
// scenarios/conformance), bench (the suite's name), scenario (a bench
// scenario's name) and tier=smoke on the default subset. Features whose
// labels do not match are skipped; a selection that matches none fails
// before any cluster is built. The other flags of e2e-framework work as
// well (after -args: --feature, --assess, --skip-labels, --fail-fast).
//
// The cluster is named fp-e2e-<random>; the environment's Finish deletes
// it, also after Ctrl-C or when go test's -timeout comes close.
package kind
