package sidecar

import (
	"net/netip"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fastpath-bench/fastpath/datapath/ipam"
)

func TestCheckPodNetns(t *testing.T) {
	for _, ok := range []string{"fp-1a2b3c-pod-{namespace}-{name}", "cni:/var/run/fastpath/ipam.json"} {
		if err := checkPodNetns(ok); err != nil {
			t.Errorf("checkPodNetns(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"", "fp-pod-{namespace}", "cni:", "cni:ipam.json", "/run/netns/{name}"} {
		if err := checkPodNetns(bad); err == nil || !strings.Contains(err.Error(), "--pod-netns") {
			t.Errorf("checkPodNetns(%q) = %v, want an error naming --pod-netns", bad, err)
		}
	}
}

// TestPodNetnsFromCNI: with cni:FILE a pod's namespace is the path its
// sandbox's CNI ADD recorded in the IPAM state; a pod without a record
// is unknown (""), so Apply leaves it pending.
func TestPodNetnsFromCNI(t *testing.T) {
	state := filepath.Join(t.TempDir(), "ipam.json")
	al, err := ipam.New(ipam.Options{CIDR: netip.MustParsePrefix("10.244.1.0/24"), StateFile: state})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := al.AllocateIn("sb1", "default", "a", "/var/run/netns/cni-1111", netip.Addr{}); err != nil {
		t.Fatal(err)
	}
	if _, err := al.AllocateIn("sb2", "default", "b", "", netip.Addr{}); err != nil {
		t.Fatal(err)
	}
	of, err := podNetns(CNIPrefix + state)
	if err != nil {
		t.Fatal(err)
	}
	if got := of("default", "a"); got != "/var/run/netns/cni-1111" {
		t.Fatalf("default/a: %q", got)
	}
	for _, n := range []string{"b", "c"} {
		if got := of("default", n); got != "" {
			t.Fatalf("default/%s: %q, want unknown", n, got)
		}
	}
	// Before the first pod: no state file yet, every pod unknown.
	of, err = podNetns(CNIPrefix + filepath.Join(t.TempDir(), "ipam.json"))
	if err != nil || of("default", "a") != "" {
		t.Fatalf("no state file: %v", err)
	}

	of, err = podNetns("fp-x-pod-{namespace}-{name}")
	if err != nil || of("ns1", "web") != "fp-x-pod-ns1-web" {
		t.Fatalf("pattern: %v", err)
	}
}
