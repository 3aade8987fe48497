package conformance

import (
	"context"
	"fmt"
	"math/rand"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fastpath-bench/fastpath/datapath/model"
	"github.com/fastpath-bench/fastpath/internal/testutil"
)

// writeCorpus writes n cases that share one cluster (9 pods on 2 nodes, each
// with TCP and UDP on two ports and an SCTP port) and differ in their random
// NetworkPolicies; expect.yaml holds the reference evaluator's verdicts.
func writeCorpus(tb testing.TB, dir string, n int) {
	tb.Helper()
	rng := rand.New(rand.NewSource(7))
	var cl strings.Builder
	for _, ns := range []string{"a", "b", "c"} {
		fmt.Fprintf(&cl, "---\napiVersion: v1\nkind: Namespace\nmetadata: {name: %s, labels: {team: t%s}}\n", ns, ns)
	}
	var pods []string
	for i := 0; i < 9; i++ {
		ns := []string{"a", "b", "c"}[i%3]
		name := fmt.Sprintf("p%d", i)
		pods = append(pods, ns+"/"+name)
		fmt.Fprintf(&cl, "---\napiVersion: v1\nkind: Pod\nmetadata: {name: %s, namespace: %s, labels: {app: x%d, tier: t%d}}\n", name, ns, i%4, i%2)
		fmt.Fprintf(&cl, "spec:\n  nodeName: node%d\n  containers:\n  - name: main\n    ports:\n", 1+i%2)
		for _, port := range []int{80, 81} {
			for _, proto := range []string{"TCP", "UDP", "SCTP"} {
				fmt.Fprintf(&cl, "    - {containerPort: %d, protocol: %s}\n", port, proto)
			}
		}
		fmt.Fprintf(&cl, "status: {podIP: 198.19.%d.%d}\n", 1+i%2, 100+i)
	}
	objsBase := &model.Objects{}
	if err := objsBase.Decode("cluster.yaml", []byte(cl.String())); err != nil {
		tb.Fatal(err)
	}
	for c := 0; c < n; c++ {
		var pol strings.Builder
		for p := 0; p < 1+rng.Intn(3); p++ {
			fmt.Fprintf(&pol, "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: np%d, namespace: %s}\n", p, []string{"a", "b", "c"}[rng.Intn(3)])
			fmt.Fprintf(&pol, "spec:\n  podSelector: {matchLabels: {tier: t%d}}\n  ingress:\n  - from: [{podSelector: {matchLabels: {app: x%d}}, namespaceSelector: {}}]\n", rng.Intn(2), rng.Intn(4))
			fmt.Fprintf(&pol, "    ports: [{port: %d, protocol: %s}]\n", 80+rng.Intn(2), []string{"TCP", "UDP"}[rng.Intn(2)])
		}
		objs := &model.Objects{Namespaces: objsBase.Namespaces, Pods: objsBase.Pods}
		if err := objs.Decode("policies.yaml", []byte(pol.String())); err != nil {
			tb.Fatal(err)
		}
		var exp strings.Builder
		exp.WriteString("probes:\n")
		for _, from := range pods {
			for _, to := range pods {
				if from == to {
					continue
				}
				for _, port := range []int{80, 81} {
					for _, proto := range []string{"TCP", "UDP", "SCTP"} {
						pr, _ := model.ParseProtocol(proto)
						v := model.Evaluate(objs, podIP(objs, from), podIP(objs, to), pr, uint16(port))
						fmt.Fprintf(&exp, "- {from: %s, to: %s, port: %d, protocol: %s, connected: %v}\n", from, to, port, proto, v.Allowed)
					}
				}
			}
		}
		d := filepath.Join(dir, fmt.Sprintf("%03d", c))
		os.MkdirAll(d, 0o755)
		os.WriteFile(filepath.Join(d, "cluster.yaml"), []byte(cl.String()), 0o644)
		os.WriteFile(filepath.Join(d, "policies.yaml"), []byte(pol.String()), 0o644)
		os.WriteFile(filepath.Join(d, "expect.yaml"), []byte(exp.String()), 0o644)
	}
}

func podIP(objs *model.Objects, key string) netip.Addr {
	for _, p := range objs.Pods {
		if p.Namespace+"/"+p.Name == key {
			return netip.MustParseAddr(p.Status.PodIP)
		}
	}
	return netip.Addr{}
}

// BenchmarkLargeCorpus runs 250 cases over 9 pods × 2 ports × 3 protocols
// (one shared topology) on the eBPF datapath and reports seconds per
// corpus; the target is under 10 minutes on a 2-core machine:
//
//	go test -run - -bench LargeCorpus -benchtime 1x ./harness/conformance/
func BenchmarkLargeCorpus(b *testing.B) {
	testutil.RequireRoot(b)
	dir := b.TempDir()
	n := 250
	if s := os.Getenv("FASTPATH_CORPUS_CASES"); s != "" {
		fmt.Sscan(s, &n)
	}
	writeCorpus(b, dir, n)
	cases, err := LoadCases(dir)
	if err != nil {
		b.Fatal(err)
	}
	agent := buildAgentTB(b)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		var fails strings.Builder
		res, err := Run(context.Background(), cases, Options{Datapath: "ebpf", AgentBinary: agent, RunID: testutil.RunID("big"), LogDir: b.TempDir(), Out: &fails})
		if err != nil {
			b.Fatal(err)
		}
		if res.Failed > 0 {
			b.Fatalf("%s\n%s", res.Summary(), fails.String())
		}
		b.ReportMetric(res.Seconds, "s/corpus")
		b.ReportMetric(float64(res.Passed), "probes")
	}
}
