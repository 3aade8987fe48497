package hostsetup

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func TestParseWrapperArgs(t *testing.T) {
	for _, tc := range []struct {
		name    string
		args    []string
		sub     string
		spec    string
		process bool
	}{
		{"create with bundle", []string{"--root", "/run/runc", "--log", "/x/log.json", "--log-format", "json", "create", "--bundle", "/b", "--pid-file", "/b/pid", "id1"}, "create", "/b/config.json", false},
		{"create in cwd", []string{"--systemd-cgroup", "create", "id1"}, "create", "/cwd/config.json", false},
		{"run with -b=", []string{"run", "--bundle=/c", "id"}, "run", "/c/config.json", false},
		{"exec with process", []string{"--root", "/r", "exec", "--process", "/tmp/p.json", "--detach", "id"}, "exec", "/tmp/p.json", true},
		{"exec with -p", []string{"exec", "-p", "/tmp/q.json", "id"}, "exec", "/tmp/q.json", true},
		{"state", []string{"--root", "/r", "state", "id"}, "state", "", false},
		{"version", []string{"--version"}, "", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := parseWrapperArgs(tc.args, "/cwd")
			if c.Sub != tc.sub || c.Spec != tc.spec || c.Process != tc.process {
				t.Fatalf("got sub %q spec %q process %v", c.Sub, c.Spec, c.Process)
			}
		})
	}
}

func TestDropCaps(t *testing.T) {
	all := []any{"CAP_CHOWN", "CAP_SYS_RESOURCE", "CAP_SYS_ADMIN"}
	bundle := map[string]any{
		"ociVersion": "1.0.2",
		"process": map[string]any{
			"args": []any{"/sbin/init"},
			"capabilities": map[string]any{
				"bounding": all, "effective": all, "permitted": all, "inheritable": all,
			},
		},
		"hooks": map[string]any{"createContainer": []any{map[string]any{"path": "/kind/bin/mount-product-files.sh"}}},
	}
	data, _ := json.Marshal(bundle)
	out, changed, err := dropCaps(data, []string{"CAP_SYS_RESOURCE"}, false)
	if err != nil || !changed {
		t.Fatalf("changed %v, %v", changed, err)
	}
	var got map[string]any
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	for set, v := range got["process"].(map[string]any)["capabilities"].(map[string]any) {
		if want := []any{"CAP_CHOWN", "CAP_SYS_ADMIN"}; !reflect.DeepEqual(v, want) {
			t.Errorf("%s: %v, want %v", set, v, want)
		}
	}
	if got["hooks"] == nil || got["ociVersion"] != "1.0.2" {
		t.Errorf("other fields lost: %v", got)
	}
	// A process spec (runc exec --process) has the sets at the top.
	proc, _ := json.Marshal(map[string]any{"args": []any{"sh"}, "capabilities": map[string]any{"bounding": all}})
	out, changed, err = dropCaps(proc, []string{"CAP_SYS_RESOURCE"}, true)
	if err != nil || !changed {
		t.Fatalf("process: changed %v, %v", changed, err)
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	if b := got["capabilities"].(map[string]any)["bounding"]; !reflect.DeepEqual(b, []any{"CAP_CHOWN", "CAP_SYS_ADMIN"}) {
		t.Errorf("process bounding %v", b)
	}
	// Nothing to drop: the bytes are returned as they were.
	if out, changed, err := dropCaps(data, []string{"CAP_BPF"}, false); err != nil || changed || string(out) != string(data) {
		t.Errorf("no-op: changed %v, %v", changed, err)
	}
	if _, _, err := dropCaps([]byte("{"), nil, false); err == nil {
		t.Error("bad JSON accepted")
	}
}

func TestMissingCaps(t *testing.T) {
	// This sandbox's bounding set: everything up to CAP_CHECKPOINT_RESTORE
	// but CAP_SYS_RESOURCE.
	bnd, err := parseCapBnd("Name:\tx\nCapInh:\t0000000000000000\nCapBnd:\t000001fffeffffff\n")
	if err != nil {
		t.Fatal(err)
	}
	if got := MissingCaps(bnd); !reflect.DeepEqual(got, []string{"CAP_SYS_RESOURCE"}) {
		t.Fatalf("missing %v", got)
	}
	if got := MissingCaps(1<<41 - 1); len(got) != 0 {
		t.Fatalf("full set: missing %v", got)
	}
	if _, err := parseCapBnd("Name:\tx\n"); err == nil {
		t.Fatal("status without CapBnd accepted")
	}
}

// TestRunWrapperEditsBundle runs the wrapper's main on a bundle, as dockerd
// would call it, with this process's real bounding set.
func TestRunWrapperEditsBundle(t *testing.T) {
	bnd, err := BoundingSet()
	if err != nil {
		t.Fatal(err)
	}
	missing := MissingCaps(bnd)
	dir := t.TempDir()
	caps := []any{"CAP_CHOWN", "CAP_SYS_RESOURCE", "CAP_NET_ADMIN"}
	data, _ := json.Marshal(map[string]any{"process": map[string]any{"capabilities": map[string]any{"bounding": caps}}})
	cfg := filepath.Join(dir, "config.json")
	if err := os.WriteFile(cfg, data, 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"--root", "/run/x", "create", "--bundle", dir, "c1"}
	runc, err := RunWrapper(args)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(runc, args) {
		t.Fatalf("runc args %v", runc)
	}
	out, _ := os.ReadFile(cfg)
	var got map[string]any
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	b := got["process"].(map[string]any)["capabilities"].(map[string]any)["bounding"].([]any)
	hasSysResource := slices.Contains(b, any("CAP_SYS_RESOURCE"))
	if hasSysResource == slices.Contains(missing, "CAP_SYS_RESOURCE") {
		t.Fatalf("bounding %v with this host's missing capabilities %v", b, missing)
	}
	if fi, _ := os.Stat(cfg); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", fi.Mode())
	}
}

func TestMergeDaemonConfig(t *testing.T) {
	cfg := map[string]any{
		"log-level": "warn",
		"runtimes":  map[string]any{"other": map[string]any{"path": "/x"}},
	}
	got := mergeDaemonConfig(cfg, true, "/w")
	want := map[string]any{
		"log-level":       "warn",
		"default-runtime": RuntimeName,
		"runtimes":        map[string]any{"other": map[string]any{"path": "/x"}, RuntimeName: map[string]any{"path": "/w"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("with wrapper:\n%v\nwant\n%v", got, want)
	}
	if _, ok := cfg["default-runtime"]; ok {
		t.Fatal("the input was modified")
	}
	back := mergeDaemonConfig(got, false, "/w")
	if !reflect.DeepEqual(back, cfg) {
		t.Fatalf("without wrapper:\n%v\nwant\n%v", back, cfg)
	}
}

func TestWriteDaemonJSON(t *testing.T) {
	path := filepath.Join(t.TempDir(), "docker", "daemon.json")
	if changed, err := writeDaemonJSON(path, false, "/w"); err != nil || changed {
		t.Fatalf("no wrapper, no file: changed %v, %v", changed, err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatal("a file was written with nothing to say")
	}
	if changed, err := writeDaemonJSON(path, true, "/w"); err != nil || !changed {
		t.Fatalf("register: changed %v, %v", changed, err)
	}
	if changed, err := writeDaemonJSON(path, true, "/w"); err != nil || changed {
		t.Fatalf("again: changed %v, %v", changed, err)
	}
	var cfg map[string]any
	data, _ := os.ReadFile(path)
	if err := json.Unmarshal(data, &cfg); err != nil || cfg["default-runtime"] != RuntimeName {
		t.Fatalf("file %s (%v)", data, err)
	}
	if err := os.WriteFile(path, []byte("{bad"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := writeDaemonJSON(path, true, "/w"); err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("bad JSON: %v", err)
	}
}

func TestRaiseSysctl(t *testing.T) {
	p := filepath.Join(t.TempDir(), "max_user_instances")
	os.WriteFile(p, []byte("128\n"), 0o644)
	if changed, err := raiseSysctl(p, 512); err != nil || !changed {
		t.Fatalf("128 -> 512: changed %v, %v", changed, err)
	}
	if b, _ := os.ReadFile(p); string(b) != "512" {
		t.Fatalf("file holds %q", b)
	}
	if changed, err := raiseSysctl(p, 256); err != nil || changed {
		t.Fatalf("512 is above 256: changed %v, %v", changed, err)
	}
	os.WriteFile(p, []byte("lots"), 0o644)
	if _, err := raiseSysctl(p, 512); err == nil {
		t.Fatal("a non-number was accepted")
	}
}
