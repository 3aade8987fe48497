package features

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/fastpath-bench/fastpath/internal/testutil"
)

func TestCheckNamesMissingFeatures(t *testing.T) {
	r := Report{Kernel: "4.19.0-test", Features: []Feature{
		{Name: "map:lpm_trie", Since: "4.11", Required: true, Supported: true},
		{Name: "map:ringbuf", Since: "5.8", Required: true, Used: "flow events", Detail: fmt.Errorf("ring buffer: %w", ebpf.ErrNotSupported).Error()},
		{Name: "helper:sk_assign", Since: "5.7", Required: true, Used: "L7 proxy redirect", Detail: fmt.Errorf("x: %w", ebpf.ErrNotSupported).Error()},
		{Name: "link:tcx", Since: "6.6", Required: false, Detail: ebpf.ErrNotSupported.Error()},
	}}
	err := r.Check()
	if !errors.Is(err, ErrMissing) {
		t.Fatalf("want ErrMissing, got %v", err)
	}
	for _, want := range []string{"kernel 4.19.0-test", "map:ringbuf (Linux 5.8+, for flow events)", "helper:sk_assign (Linux 5.7+, for L7 proxy redirect)"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
	if strings.Contains(err.Error(), "tcx") {
		t.Errorf("an optional feature made Check fail: %v", err)
	}
	// A probe that failed for another reason is not reported as missing.
	r.Features = []Feature{{Name: "map:ringbuf", Required: true, Detail: "operation not permitted"}}
	if err := r.Check(); err == nil || errors.Is(err, ErrMissing) || !strings.Contains(err.Error(), "probe map:ringbuf: operation not permitted") {
		t.Errorf("non-support error: %v", err)
	}
}

func TestProbeHost(t *testing.T) {
	testutil.RequireRoot(t)
	r := Probe()
	if err := r.Check(); err != nil {
		testutil.SkipOrFail(t, errors.Is(err, ErrMissing), err.Error())
	}
	if len(r.Features) != len(probes) || r.Kernel == "" {
		t.Fatalf("report: %+v", r)
	}
	want := "tc"
	if r.Supported("link:tcx") {
		want = "tcx"
	}
	if r.AttachMode != want {
		t.Errorf("attach mode %q with link:tcx supported=%v", r.AttachMode, r.Supported("link:tcx"))
	}
	for _, f := range r.Features {
		if f.Supported != (f.Detail == "") {
			t.Errorf("%s: supported=%v detail=%q", f.Name, f.Supported, f.Detail)
		}
	}
}
