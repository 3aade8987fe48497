package model

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestLoaderMatchesLoadDirAndReusesFiles: after a change of one file the
// Loader returns what LoadDir returns, decoding only that file again.
func TestLoaderMatchesLoadDirAndReusesFiles(t *testing.T) {
	dir := writeState(t, map[string]string{
		"a.yaml": "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: t, labels: {app: a}}\nstatus: {podIP: 10.0.0.1}\n",
		"b.yaml": "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: x, namespace: t}\nspec: {podSelector: {}}\n",
	})
	var l Loader
	if _, err := l.Load(dir); err != nil {
		t.Fatal(err)
	}
	before := l.files["a.yaml"].objs
	if err := os.WriteFile(filepath.Join(dir, "b.yaml"), []byte("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: x2, namespace: t}\nspec: {podSelector: {}}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := l.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	want, err := LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Loader:\n%+v\nLoadDir:\n%+v", got, want)
	}
	if l.files["a.yaml"].objs != before {
		t.Error("the unchanged file was decoded again")
	}
	if len(got.NetworkPolicies) != 1 || got.NetworkPolicies[0].Name != "x2" {
		t.Errorf("policies %+v", got.NetworkPolicies)
	}
	// A duplicate across files, and a bad file, are refused naming them.
	if err := os.WriteFile(filepath.Join(dir, "c.yaml"), []byte("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: x2, namespace: t}\nspec: {podSelector: {}}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Load(dir); err == nil || !strings.Contains(err.Error(), "duplicate object") || !strings.Contains(err.Error(), "c.yaml") {
		t.Fatalf("duplicate across files: %v", err)
	}
	os.Remove(filepath.Join(dir, "c.yaml"))
	if err := os.WriteFile(filepath.Join(dir, "b.yaml"), []byte("kind: ["), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Load(dir); err == nil || !strings.Contains(err.Error(), "b.yaml") {
		t.Fatalf("bad file: %v", err)
	}
}

// TestLoaderFileRemovedWhileLoading: a file listed but gone when it is
// read (a writer removed it meanwhile; a dangling link stands in for that
// race) is not part of the state, and not an error that would refuse it.
func TestLoaderFileRemovedWhileLoading(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "ns.yaml"), []byte("apiVersion: v1\nkind: Namespace\nmetadata: {name: t}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(dir, "nowhere"), filepath.Join(dir, "gone.yaml")); err != nil {
		t.Fatal(err)
	}
	var l Loader
	objs, err := l.Load(dir)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	h, err := HashDir(dir)
	if err != nil || h != objs.Hash {
		t.Fatalf("HashDir %q (%v), Load's digest %q", h, err, objs.Hash)
	}
}

// TestLoaderStatCache: a file whose times are well before the read is not
// read again while its stamp holds, and any rewrite is still seen: one of
// the same size just after a read (racy times), and one long after.
func TestLoaderStatCache(t *testing.T) {
	pod := func(ip string) string {
		return "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: t}\nstatus: {podIP: " + ip + "}\n"
	}
	dir := writeState(t, map[string]string{"a.yaml": pod("10.0.0.1")})
	path := filepath.Join(dir, "a.yaml")
	var l Loader
	load := func(want string) {
		t.Helper()
		objs, err := l.Load(dir)
		if err != nil {
			t.Fatal(err)
		}
		if got := objs.Pods[0].Status.PodIP; got != want {
			t.Fatalf("podIP %s, want %s", got, want)
		}
		if h, err := HashDir(dir); err != nil || h != objs.Hash {
			t.Fatalf("HashDir %q (%v), Load's digest %q", h, err, objs.Hash)
		}
	}
	load("10.0.0.1")
	if l.files["a.yaml"].trusted {
		t.Fatal("a file written just before the read is trusted by its stamp")
	}
	// Same size, at once: the racy entry is read again.
	if err := os.WriteFile(path, []byte(pod("10.0.0.2")), 0o644); err != nil {
		t.Fatal(err)
	}
	load("10.0.0.2")
	// Settled: trusted by its stamp from now on.
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(path, old, old); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * racyWindow) // the change time of Chtimes itself settles
	load("10.0.0.2")
	if !l.files["a.yaml"].trusted {
		t.Fatal("a settled file is not trusted")
	}
	// A rewrite of the same size long after the read is seen.
	if err := os.WriteFile(path, []byte(pod("10.0.0.3")), 0o644); err != nil {
		t.Fatal(err)
	}
	load("10.0.0.3")
}

// TestHasherMatchesHashDir: a Hasher reused across changes (a rewrite of
// the same size at once, a new file, a removal, a settled file rewritten)
// always returns what HashDir and the Loader compute.
func TestHasherMatchesHashDir(t *testing.T) {
	ns := func(name string) string { return "apiVersion: v1\nkind: Namespace\nmetadata: {name: " + name + "}\n" }
	dir := writeState(t, map[string]string{"a.yaml": ns("aa")})
	var h Hasher
	check := func(what string) {
		t.Helper()
		got, err := h.HashDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		want, err := HashDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		objs, err := LoadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		if got != want || got != objs.Hash {
			t.Fatalf("%s: Hasher %s, HashDir %s, LoadDir %s", what, got, want, objs.Hash)
		}
	}
	write := func(name, data string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	check("first")
	write("a.yaml", ns("ab"))
	check("same size at once")
	write("b.yaml", ns("b"))
	check("file added")
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(filepath.Join(dir, "a.yaml"), old, old); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * racyWindow)
	check("settled")
	write("a.yaml", ns("ac"))
	check("settled file rewritten")
	if err := os.Remove(filepath.Join(dir, "b.yaml")); err != nil {
		t.Fatal(err)
	}
	check("file removed")
}
