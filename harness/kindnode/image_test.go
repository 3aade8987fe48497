package kindnode

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParseAptSources(t *testing.T) {
	for _, tc := range []struct {
		name, text, mirror, suite string
	}{
		{"deb822", `Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main

Types: deb
# a comment
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main
`, "http://mirror.example/debian", "bookworm"},
		{"one-line", "# x\ndeb [arch=amd64 signed-by=/k.gpg] http://m.example/debian bookworm-updates main\ndeb http://m.example/debian bookworm main\n", "http://m.example/debian", "bookworm"},
		{"none", "deb http://m.example/debian-security bookworm-security main\n", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, s := parseAptSources(tc.text)
			if m != tc.mirror || s != tc.suite {
				t.Fatalf("%q %q, want %q %q", m, s, tc.mirror, tc.suite)
			}
		})
	}
}

func TestImagesFor(t *testing.T) {
	list := []string{
		"registry.k8s.io/kube-apiserver:v1.35.0", "registry.k8s.io/kube-controller-manager:v1.35.0",
		"registry.k8s.io/kube-scheduler:v1.35.0", "registry.k8s.io/kube-proxy:v1.35.0",
		"registry.k8s.io/coredns/coredns:v1.13.1", "registry.k8s.io/pause:3.10.1", "registry.k8s.io/etcd:3.6.6-0",
	}
	imgs, skipped := imagesFor(list)
	if !reflect.DeepEqual(skipped, []string{"registry.k8s.io/coredns/coredns:v1.13.1"}) {
		t.Fatalf("skipped %v", skipped)
	}
	got := map[string]controlPlaneImage{}
	for _, im := range imgs {
		got[im.Ref] = im
	}
	if im := got["registry.k8s.io/etcd:3.6.6-0"]; im.Binary != "etcd" || im.Debian {
		t.Errorf("etcd %+v", im)
	}
	if im := got["registry.k8s.io/kube-proxy:v1.35.0"]; !im.Debian || im.Path != "/usr/local/bin/kube-proxy" {
		t.Errorf("kube-proxy %+v (needs iptables: not scratch)", im)
	}
	if im := got["registry.k8s.io/pause:3.10.1"]; im.Path != "/pause" {
		t.Errorf("pause %+v", im)
	}
}

func TestInputsHash(t *testing.T) {
	files := t.TempDir()
	os.WriteFile(filepath.Join(files, "entrypoint"), []byte("#!/bin/sh\n"), 0o755)
	opts := Options{KubernetesVersion: "v1.35.0", EtcdVersion: "v3.6.6", KindVersion: "v0.33.0"}
	a, err := inputsHash(opts, files)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := inputsHash(opts, files); a != b {
		t.Fatalf("not deterministic: %s %s", a, b)
	}
	opts.KubernetesVersion = "v1.35.1"
	if b, _ := inputsHash(opts, files); a == b {
		t.Fatal("another Kubernetes version, same hash")
	}
	opts.KubernetesVersion = "v1.35.0"
	os.WriteFile(filepath.Join(files, "entrypoint"), []byte("#!/bin/sh\nexit 1\n"), 0o755)
	if b, _ := inputsHash(opts, files); a == b {
		t.Fatal("other kind files, same hash")
	}
}

func TestRenderAssets(t *testing.T) {
	dir := t.TempDir()
	df := filepath.Join(dir, "Dockerfile")
	if err := renderAsset("node.Dockerfile", df, map[string]string{"Rootfs": "fastpath/kind-rootfs:abc", "KubernetesVersion": "v1.35.0"}); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(df)
	for _, want := range []string{"FROM fastpath/kind-rootfs:abc", `echo "v1.35.0" > /kind/version`, "restrict_oom_score_adj = true", "STOPSIGNAL SIGRTMIN+3"} {
		if !strings.Contains(string(data), want) {
			t.Errorf("node Dockerfile lacks %q", want)
		}
	}
	if err := renderAsset("node.Dockerfile", df, map[string]string{"Rootfs": "x"}); err == nil {
		t.Error("a missing template value was accepted")
	}
	pkgs, err := packages()
	if err != nil || len(pkgs) < 10 {
		t.Fatalf("packages %v %v", pkgs, err)
	}
	for _, p := range []string{"containerd", "systemd", "jq", "iptables"} {
		found := false
		for _, q := range pkgs {
			found = found || q == p
		}
		if !found {
			t.Errorf("package list lacks %s", p)
		}
	}
}
