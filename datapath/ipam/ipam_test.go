package ipam

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fastpath-bench/fastpath/datapath/agentapi"
)

var cidr = netip.MustParsePrefix("10.244.1.0/24")

func newAlloc(t *testing.T, opts Options) *Allocator {
	t.Helper()
	a, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func mustAlloc(t *testing.T, a *Allocator, id, ns, name string, req netip.Addr) netip.Addr {
	t.Helper()
	ip, err := a.Allocate(id, ns, name, req)
	if err != nil {
		t.Fatalf("allocate %s (%s/%s): %v", id, ns, name, err)
	}
	return ip
}

func TestAllocationOrder(t *testing.T) {
	a := newAlloc(t, Options{CIDR: cidr})
	for i, want := range []string{"10.244.1.2", "10.244.1.3", "10.244.1.4"} {
		id := string(rune('a' + i))
		if got := mustAlloc(t, a, id, "default", "p"+id, netip.Addr{}); got.String() != want {
			t.Fatalf("allocation %d: got %s, want %s", i, got, want)
		}
	}
	// A released address is the lowest free one again.
	if err := a.Release("a"); err != nil {
		t.Fatal(err)
	}
	if err := a.Release("unknown"); err != nil {
		t.Fatalf("release of an unknown container: %v", err)
	}
	if got := mustAlloc(t, a, "d", "default", "pd", netip.Addr{}); got.String() != "10.244.1.2" {
		t.Fatalf("after release: got %s, want 10.244.1.2", got)
	}
	if n := len(a.Allocations()); n != 3 {
		t.Fatalf("%d allocations, want 3", n)
	}
}

func TestIdempotent(t *testing.T) {
	a := newAlloc(t, Options{CIDR: cidr})
	ip1 := mustAlloc(t, a, "c1", "default", "p1", netip.Addr{})
	ip2 := mustAlloc(t, a, "c1", "default", "p1", netip.Addr{})
	if ip1 != ip2 {
		t.Fatalf("same container: %s then %s", ip1, ip2)
	}
	if n := len(a.Allocations()); n != 1 {
		t.Fatalf("%d allocations, want 1", n)
	}
	// A new sandbox of the same pod keeps the address; the old
	// container's release afterwards does not free it.
	ip3 := mustAlloc(t, a, "c2", "default", "p1", netip.Addr{})
	if ip3 != ip1 {
		t.Fatalf("restarted sandbox got %s, want %s", ip3, ip1)
	}
	if err := a.Release("c1"); err != nil {
		t.Fatal(err)
	}
	al, ok := a.Allocations()["c2"]
	if !ok || al.IP != ip1 || al.Namespace != "default" || al.Name != "p1" {
		t.Fatalf("allocations after restart: %+v", a.Allocations())
	}
	if _, err := a.Allocate("", "default", "p1", netip.Addr{}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("empty container id: %v", err)
	}
}

func TestRequested(t *testing.T) {
	a := newAlloc(t, Options{CIDR: cidr})
	in := netip.MustParseAddr("10.244.1.50")
	out := netip.MustParseAddr("10.99.7.7")
	if got := mustAlloc(t, a, "c1", "default", "in", in); got != in {
		t.Fatalf("requested in CIDR: got %s", got)
	}
	if got := mustAlloc(t, a, "c2", "default", "out", out); got != out {
		t.Fatalf("requested outside CIDR: got %s", got)
	}
	// A requested address is the pod's choice; only conflicts are refused.
	_, err := a.Allocate("c3", "other", "thief", in)
	if !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), "default/in") {
		t.Fatalf("conflict: %v", err)
	}
	if _, err := a.Allocate("c3", "other", "v6", netip.MustParseAddr("fd00::1")); !errors.Is(err, ErrInvalid) {
		t.Fatalf("IPv6 request: %v", err)
	}
	// Unrequested allocations skip requested ones.
	a2 := newAlloc(t, Options{CIDR: cidr})
	mustAlloc(t, a2, "r", "default", "r", netip.MustParseAddr("10.244.1.2"))
	if got := mustAlloc(t, a2, "n", "default", "n", netip.Addr{}); got.String() != "10.244.1.3" {
		t.Fatalf("after a requested base+2: got %s", got)
	}
}

func TestExhaustion(t *testing.T) {
	p := netip.MustParsePrefix("10.0.0.4/30")
	a := newAlloc(t, Options{CIDR: p})
	if got := mustAlloc(t, a, "c1", "default", "p1", netip.Addr{}); got.String() != "10.0.0.6" {
		t.Fatalf("got %s, want 10.0.0.6", got)
	}
	_, err := a.Allocate("c2", "default", "p2", netip.Addr{})
	if !errors.Is(err, ErrExhausted) || !strings.Contains(err.Error(), "10.0.0.4/30") {
		t.Fatalf("exhausted /30: %v", err)
	}
	if _, err := New(Options{CIDR: netip.MustParsePrefix("10.0.0.0/31")}); err == nil {
		t.Fatal("a /31 was accepted")
	}
	if _, err := New(Options{CIDR: netip.MustParsePrefix("fd00::/64")}); err == nil {
		t.Fatal("an IPv6 CIDR was accepted")
	}
}

func TestPersistence(t *testing.T) {
	file := filepath.Join(t.TempDir(), "sub", "ipam.json")
	a := newAlloc(t, Options{CIDR: cidr, StateFile: file})
	ip1 := mustAlloc(t, a, "c1", "default", "p1", netip.Addr{})
	ip2 := mustAlloc(t, a, "c2", "kube-system", "p2", netip.MustParseAddr("10.99.0.9"))
	mustAlloc(t, a, "c3", "default", "p3", netip.Addr{})
	if err := a.Release("c3"); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(filepath.Dir(file))
	if len(ents) != 1 {
		t.Fatalf("state directory holds %d files, want 1 (temporary files left?)", len(ents))
	}

	b := newAlloc(t, Options{CIDR: cidr, StateFile: file})
	got := b.Allocations()
	want := map[string]Allocation{
		"c1": {IP: ip1, Namespace: "default", Name: "p1", ContainerID: "c1"},
		"c2": {IP: ip2, Namespace: "kube-system", Name: "p2", ContainerID: "c2"},
	}
	if len(got) != len(want) {
		t.Fatalf("reloaded %v, want %v", got, want)
	}
	for id, w := range want {
		if got[id] != w {
			t.Fatalf("reloaded %s: %+v, want %+v", id, got[id], w)
		}
	}
	if ip := mustAlloc(t, b, "c1", "default", "p1", netip.Addr{}); ip != ip1 {
		t.Fatalf("after reload c1 got %s, want %s", ip, ip1)
	}
	if ip := mustAlloc(t, b, "c4", "default", "p4", netip.Addr{}); ip == ip1 || ip == ip2 {
		t.Fatalf("after reload a new pod got a held address %s", ip)
	}
}

func TestCorruptStateFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "ipam.json")
	if err := os.WriteFile(file, []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := New(Options{CIDR: cidr, StateFile: file})
	if err == nil || !strings.Contains(err.Error(), file) {
		t.Fatalf("corrupt state file: %v", err)
	}
	if err := os.WriteFile(file, []byte(`{"allocations":[{"ip":"10.0.0.1"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := New(Options{CIDR: cidr, StateFile: file}); err == nil || !strings.Contains(err.Error(), file) {
		t.Fatalf("allocation without container id: %v", err)
	}
}

// serve runs h on a unix socket in a temporary directory and returns a
// client for it.
func serve(t *testing.T, h http.Handler) *agentapi.Client {
	t.Helper()
	dir, err := os.MkdirTemp("", "ipam")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "agent.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return agentapi.NewClient(sock)
}

func TestHandlerWithClient(t *testing.T) {
	a := newAlloc(t, Options{CIDR: cidr})
	requested := netip.MustParseAddr("10.99.0.5")
	lookup := func(_ context.Context, ns, name string) (netip.Addr, error) {
		switch name {
		case "fixed":
			return requested, nil
		case "broken":
			return netip.Addr{}, errors.New("apiserver down")
		}
		return netip.Addr{}, nil
	}
	c := serve(t, Handler(a, lookup))
	ctx := context.Background()

	r, err := c.AllocateIP(ctx, agentapi.IPAMRequest{ContainerID: "c1", Namespace: "default", Name: "p1"})
	if err != nil {
		t.Fatal(err)
	}
	if r.IP != "10.244.1.2" || r.Gateway != "169.254.1.1" || r.CIDR != "10.244.1.0/24" {
		t.Fatalf("allocate: %+v", r)
	}
	r, err = c.AllocateIP(ctx, agentapi.IPAMRequest{ContainerID: "c2", Namespace: "default", Name: "fixed"})
	if err != nil || r.IP != requested.String() {
		t.Fatalf("allocate requested: %+v, %v", r, err)
	}
	if _, err := c.AllocateIP(ctx, agentapi.IPAMRequest{ContainerID: "c3", Namespace: "default", Name: "broken"}); err == nil ||
		!strings.Contains(err.Error(), "503") || !strings.Contains(err.Error(), "apiserver down") {
		t.Fatalf("lookup failure: %v", err)
	}
	if _, err := c.AllocateIP(ctx, agentapi.IPAMRequest{ContainerID: "c4", Name: "p4"}); err == nil ||
		!strings.Contains(err.Error(), "400") || !strings.Contains(err.Error(), "namespace") {
		t.Fatalf("missing namespace: %v", err)
	}
	if err := c.ReleaseIP(ctx, "c1"); err != nil {
		t.Fatal(err)
	}
	if err := c.ReleaseIP(ctx, "c1"); err != nil {
		t.Fatalf("second release: %v", err)
	}
	if _, ok := a.Allocations()["c1"]; ok {
		t.Fatal("c1 still allocated after release")
	}
}

func TestHandlerErrors(t *testing.T) {
	a := newAlloc(t, Options{CIDR: netip.MustParsePrefix("10.0.0.0/30")})
	h := Handler(a, nil)
	for _, tc := range []struct {
		method, path, body string
		status             int
		want               string
	}{
		{"GET", "/v1/ipam/allocate", "", http.StatusMethodNotAllowed, "POST"},
		{"POST", "/v1/ipam/allocate", "{", http.StatusBadRequest, "decode"},
		{"POST", "/v1/ipam/allocate", `{"namespace":"a","name":"b"}`, http.StatusBadRequest, "containerID"},
		{"POST", "/v1/ipam/allocate", `{"containerID":"x","namespace":"a"}`, http.StatusBadRequest, "name"},
		{"POST", "/v1/ipam/allocate", `{"containerID":"x","namespace":"a","name":"b"}`, http.StatusOK, `"ip":"10.0.0.2"`},
		{"POST", "/v1/ipam/allocate", `{"containerID":"y","namespace":"a","name":"c"}`, http.StatusConflict, "10.0.0.0/30"},
		{"POST", "/v1/ipam/release", "", http.StatusBadRequest, "containerID"},
		{"POST", "/v1/ipam/release?containerID=x", "", http.StatusOK, "{}"},
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(tc.method, tc.path, strings.NewReader(tc.body)))
		if rec.Code != tc.status || !strings.Contains(rec.Body.String(), tc.want) {
			t.Errorf("%s %s %s: %d %q, want %d containing %q", tc.method, tc.path, tc.body, rec.Code, rec.Body.String(), tc.status, tc.want)
		}
	}
}

// TestNetns: the network namespace of a sandbox (CNI_NETNS) is recorded
// with its allocation, follows the pod to a new sandbox, survives a
// restart (ReadNetns from the state file) and goes with a release.
func TestNetns(t *testing.T) {
	state := filepath.Join(t.TempDir(), "ipam.json")
	a := newAlloc(t, Options{CIDR: cidr, StateFile: state})
	if _, err := a.AllocateIn("c1", "default", "p1", "/var/run/netns/cni-1", netip.Addr{}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.AllocateIn("c2", "default", "p2", "", netip.Addr{}); err != nil {
		t.Fatal(err)
	}
	if got := a.Netns("default", "p1"); got != "/var/run/netns/cni-1" {
		t.Fatalf("Netns(p1) = %q", got)
	}
	if got := a.Netns("default", "p2"); got != "" {
		t.Fatalf("Netns(p2) = %q, want none recorded", got)
	}
	// A retried ADD that now names the namespace records it.
	ip2 := a.Allocations()["c2"].IP
	if ip, err := a.AllocateIn("c2", "default", "p2", "/var/run/netns/cni-2", netip.Addr{}); err != nil || ip != ip2 {
		t.Fatalf("retried ADD: %s, %v (had %s)", ip, err, ip2)
	}
	// A new sandbox of p1 takes its address and its record.
	if _, err := a.AllocateIn("c3", "default", "p1", "/var/run/netns/cni-3", netip.Addr{}); err != nil {
		t.Fatal(err)
	}
	m, err := ReadNetns(state)
	if err != nil {
		t.Fatal(err)
	}
	if len(m) != 2 || m["default/p1"] != "/var/run/netns/cni-3" || m["default/p2"] != "/var/run/netns/cni-2" {
		t.Fatalf("ReadNetns = %v", m)
	}
	// Restarted: the same records.
	b := newAlloc(t, Options{CIDR: cidr, StateFile: state})
	if got := b.Netns("default", "p1"); got != "/var/run/netns/cni-3" {
		t.Fatalf("after restart Netns(p1) = %q", got)
	}
	if err := b.Release("c3"); err != nil {
		t.Fatal(err)
	}
	if m, err := ReadNetns(state); err != nil || len(m) != 1 || m["default/p1"] != "" {
		t.Fatalf("after release ReadNetns = %v, %v", m, err)
	}
	if m, err := ReadNetns(filepath.Join(t.TempDir(), "none.json")); err != nil || len(m) != 0 {
		t.Fatalf("missing file: %v, %v", m, err)
	}
	if err := os.WriteFile(state, []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadNetns(state); err == nil || !strings.Contains(err.Error(), "corrupt") {
		t.Fatalf("corrupt file: %v", err)
	}
}
