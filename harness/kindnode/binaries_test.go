package kindnode

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestStagingVersion(t *testing.T) {
	if v, err := stagingVersion("v1.35.0"); err != nil || v != "v0.35.0" {
		t.Fatalf("%q %v", v, err)
	}
	for _, bad := range []string{"1.35.0", "v2.0.0", "v1.35", "latest"} {
		if _, err := stagingVersion(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestStagingModules(t *testing.T) {
	gomod := filepath.Join(t.TempDir(), "go.mod")
	os.WriteFile(gomod, []byte(`module k8s.io/kubernetes

go 1.25.0

require (
	k8s.io/api v0.0.0
)

replace (
	k8s.io/api => ./staging/src/k8s.io/api
	k8s.io/apimachinery => ./staging/src/k8s.io/apimachinery
	github.com/x/y => github.com/x/y v1.0.0
)

replace k8s.io/kubectl => ./staging/src/k8s.io/kubectl
`), 0o644)
	got, err := stagingModules(gomod)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"k8s.io/api", "k8s.io/apimachinery", "k8s.io/kubectl"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("%v, want %v", got, want)
	}
	os.WriteFile(gomod, []byte("module x\n"), 0o644)
	if _, err := stagingModules(gomod); err == nil {
		t.Fatal("a go.mod without staging replacements accepted")
	}
}

func TestVersionLDFlags(t *testing.T) {
	f := versionLDFlags("v1.35.0")
	for _, want := range []string{"version.gitVersion=v1.35.0", "version.gitMajor=1", "version.gitMinor=35"} {
		if !strings.Contains(f, want) {
			t.Errorf("%q lacks %q", f, want)
		}
	}
}
