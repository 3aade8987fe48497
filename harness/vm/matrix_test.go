package vm

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/fastpath-bench/fastpath/harness/vm/plan"
)

func TestBuildMatrix(t *testing.T) {
	want := PlanOptions{Tests: []string{"datapath/lxc"}, Datapaths: []string{"ebpf"}}
	features := `{"kernel":"5.10.0-32-amd64","attachMode":"tc","features":[{"name":"map:ringbuf","supported":true},{"name":"link:tcx","supported":false}],
	"programs":[{"name":"fp_from_container","processed":8599},{"name":"fp_to_container","processed":7416}]}`
	tests := strings.Join([]string{
		`{"Action":"run","Package":"datapath/lxc","Test":"TestA"}`,
		`{"Action":"output","Package":"datapath/lxc","Test":"TestA","Output":"=== RUN   TestA\n"}`,
		`{"Action":"pass","Package":"datapath/lxc","Test":"TestA"}`,
		`{"Action":"output","Package":"datapath/lxc","Test":"TestB","Output":"    b_test.go:10: kernel lacks link:tcx\n"}`,
		`{"Action":"output","Package":"datapath/lxc","Test":"TestB","Output":"--- SKIP: TestB (0.00s)\n"}`,
		`{"Action":"skip","Package":"datapath/lxc","Test":"TestB"}`,
		`{"Action":"output","Package":"datapath/lxc","Test":"TestC","Output":"    c_test.go:5: verdict 5, want 0\n"}`,
		`{"Action":"fail","Package":"datapath/lxc","Test":"TestC"}`,
		`{"Action":"fail","Package":"datapath/lxc"}`,
	}, "\n")
	conf := `{"datapath":"ebpf","cases":[
	 {"name":"netpol/a","probes":[{"from":"x/a","to":"x/b","port":80,"connected":true,"got":true,"passed":true}]},
	 {"name":"netpol/sctp","probes":[{"from":"x/a","to":"x/b","port":80,"connected":true,"skipped":"SCTP probes need SCTP sockets"}]},
	 {"name":"netpol/b","probes":[{"from":"x/a","to":"x/b","port":81,"connected":false,"got":true,"passed":false}]}]}`
	runs := []*KernelRun{
		{Kernel: Kernel{Name: "5.10"}, Accel: "tcg", Release: "5.10.0-32-amd64", Outputs: []plan.Output{
			{Name: "features", Stdout: []byte(features)},
			{Name: "test:datapath/lxc", Exit: 1, Stdout: []byte(tests)},
			{Name: "conformance:ebpf", Exit: 1, Stdout: []byte(conf)},
		}},
		// A run cut short after its first step.
		{Kernel: Kernel{Name: "6.1"}, Accel: "tcg", Err: errors.New("VM timed out after 1m0s\nconsole: ..."), Outputs: []plan.Output{
			{Name: "features", Stdout: []byte(features)},
		}},
	}
	m := BuildMatrix(runs, want)
	cell := func(rows []Row, name, kernel string) Cell {
		for _, r := range rows {
			if r.Name == name {
				return r.Cells[kernel]
			}
		}
		t.Fatalf("no row %q", name)
		return Cell{}
	}
	if c := cell(m.Tests, "datapath/lxc TestA", "5.10"); c.Status != Pass {
		t.Errorf("TestA: %+v", c)
	}
	if c := cell(m.Tests, "datapath/lxc TestB", "5.10"); c.Status != Skip || c.Reason != "b_test.go:10: kernel lacks link:tcx" {
		t.Errorf("TestB: %+v", c)
	}
	if c := cell(m.Tests, "datapath/lxc TestC", "5.10"); c.Status != Fail || !strings.Contains(c.Reason, "verdict 5") {
		t.Errorf("TestC: %+v", c)
	}
	if c := cell(m.Cases, "ebpf: netpol/b", "5.10"); c.Status != Fail || !strings.Contains(c.Reason, "want connected=false, got true") {
		t.Errorf("netpol/b: %+v", c)
	}
	if c := cell(m.Cases, "ebpf: netpol/sctp", "5.10"); c.Status != Skip || !strings.Contains(c.Reason, "SCTP") {
		t.Errorf("sctp: %+v", c)
	}
	if c := cell(m.Programs, "fp_from_container", "6.1"); c.Value != 8599 {
		t.Errorf("verifier count: %+v", c)
	}
	if c := cell(m.Tests, "test:datapath/lxc (not reached)", "6.1"); c.Status != NotRun || c.Reason != "VM timed out after 1m0s" {
		t.Errorf("not reached: %+v", c)
	}
	if c := cell(m.Cases, "conformance:ebpf (not reached)", "6.1"); c.Status != NotRun {
		t.Errorf("not reached: %+v", c)
	}
	k := m.Kernels[0]
	if k.Passed != 2 || k.Failed != 2 || k.Skipped != 2 || k.AttachMode != "tc" || len(k.MissingFeatures) != 1 {
		t.Errorf("5.10 column: %+v", k)
	}
	if m.OK() {
		t.Error("a matrix with failures is not OK")
	}
	var b bytes.Buffer
	m.WriteMarkdown(&b)
	for _, s := range []string{"| 5.10 |", "**6.1 did not complete:** VM timed out", "| ebpf: netpol/b | 5.10 | fail |", "5.10 lacks: link:tcx", "| fp_from_container | 8599 | 8599 |"} {
		if !strings.Contains(b.String(), s) {
			t.Errorf("markdown lacks %q:\n%s", s, b.String())
		}
	}
	// Everything passing or skipped with a reason, on every kernel that
	// completed, is OK.
	ok := BuildMatrix(runs[:1], want)
	ok.Kernels[0].Failed = 0
	if !ok.OK() {
		t.Error("want OK")
	}
}

// TestFailureReason: a failed test's reason is its own first failure
// line, not a log line of the code under test before it.
func TestFailureReason(t *testing.T) {
	events := `{"Action":"output","Test":"TestX","Output":"=== RUN   TestX\n"}
{"Action":"output","Test":"TestX","Output":"2026/12/05 WARN uplink not found: L7 rules cannot be enforced\n"}
{"Action":"output","Test":"TestX","Output":"    mesh_test.go:321: east's t/echo as west sees it: map[]\n"}
{"Action":"fail","Test":"TestX"}
{"Action":"output","Test":"TestY","Output":"panic: boom\n"}
{"Action":"fail","Test":"TestY"}
`
	got := parseTestEvents([]byte(events))
	if r := got["TestX"].Reason; r != "mesh_test.go:321: east's t/echo as west sees it: map[]" {
		t.Errorf("TestX reason %q", r)
	}
	if r := got["TestY"].Reason; r != "panic: boom" {
		t.Errorf("TestY reason %q", r)
	}
}
