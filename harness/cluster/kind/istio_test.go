package kind

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestIstioImages(t *testing.T) {
	if got, want := IstioImages("docker.io/istio/", "1.28.0", false), []string{"docker.io/istio/pilot:1.28.0", "docker.io/istio/proxyv2:1.28.0"}; !slices.Equal(got, want) {
		t.Errorf("sidecar: %v, want %v", got, want)
	}
	if got, want := IstioImages("r.example/istio", "1.28.0", true), []string{"r.example/istio/pilot:1.28.0", "r.example/istio/ztunnel:1.28.0", "r.example/istio/install-cni:1.28.0"}; !slices.Equal(got, want) {
		t.Errorf("ambient: %v, want %v", got, want)
	}
}

// TestIstioPreflightNamesWhatIsMissing: without istioctl, the preflight
// names it and every image of the mode, under the hub asked for, and is
// not ErrIstioInstall.
func TestIstioPreflightNamesWhatIsMissing(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	t.Setenv(IstioHubEnv, "r.example/istio")
	err := IstioPreflight(context.Background(), true)
	if err == nil || errors.Is(err, ErrIstioInstall) {
		t.Fatalf("preflight without istioctl: %v", err)
	}
	for _, want := range []string{"istioctl is not on PATH", "r.example/istio/ztunnel:<istioctl's version>", "r.example/istio/install-cni", IstioHubEnv} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q does not name %q", err, want)
		}
	}
}
