package report

import (
	"bytes"
	"strings"
	"testing"
)

func TestPartitionMarkdown(t *testing.T) {
	kept, failed := 2.02, 2.07
	r := &Report{Partition: []Partition{{Datapath: "ebpf", From: "b/c", To: "b/s", Cut: "east", LeaseTTLSeconds: 2, CutSeconds: 6,
		NewKeptWorkingSeconds: &kept, NewFailedFromSeconds: &failed, NewAttempts: 72, NewSucceeded: 37, Established: 4, EstablishedKept: 4,
		Errors: []string{"new connections did not work again within 60s of the restart"}}}}
	var b bytes.Buffer
	if err := r.WriteMarkdown(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{"## Partition", "| `ebpf` | b/c → b/s | east for 6.00s | 2.00s | 2.02s | 2.07s | 37 / 72 | 4 / 4 | never |", "`ebpf` partition: new connections did not work again"} {
		if !strings.Contains(out, want) {
			t.Errorf("markdown lacks %q:\n%s", want, out)
		}
	}
	b.Reset()
	if err := r.WriteHTML(&b); err != nil {
		t.Fatal(err)
	}
	if h := b.String(); !strings.Contains(h, `<section id="partition">`) || !strings.Contains(h, "37 / 72") {
		t.Errorf("html lacks the partition table")
	}
}
