package kind

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/fastpath-bench/fastpath/harness/execx"
)

// Istio on kind (the suites' datapath "istio", sidecar mode, and
// "istio+ambient"): Istio's control plane and its proxies come only as
// images (Envoy is not built here, nor packaged by Debian), installed by
// istioctl. IstioPreflight says, before anything is created, what a run
// lacks. This machine has neither the images nor a registry, so the
// install itself was not built: a run whose preflight passes is refused
// with ErrIstioInstall rather than measured by code never run.

// IstioHubEnv overrides the registry path of Istio's images (default
// DefaultIstioHub), as istioctl's --set hub= does.
const IstioHubEnv = "FASTPATH_ISTIO_HUB"

// DefaultIstioHub is where Istio publishes its images.
const DefaultIstioHub = "docker.io/istio"

// ErrIstioInstall is IstioPreflight's answer when everything Istio needs
// is there: the harness does not install Istio into kind yet.
var ErrIstioInstall = errors.New("istioctl and Istio's images are present, but this version of the harness does not install Istio into kind (it was written where no Istio image could be had; see docs/architecture.md)")

// IstioImages are the images an install of that mode runs: istiod, and
// the sidecar proxy or ambient's node proxy and CNI agent.
func IstioImages(hub, tag string, ambient bool) []string {
	imgs := []string{"pilot"}
	if ambient {
		imgs = append(imgs, "ztunnel", "install-cni")
	} else {
		imgs = append(imgs, "proxyv2")
	}
	for i, n := range imgs {
		imgs[i] = fmt.Sprintf("%s/%s:%s", strings.TrimSuffix(hub, "/"), n, tag)
	}
	return imgs
}

// IstioPreflight checks what an Istio run on kind needs: istioctl on PATH
// (its client version is the images' tag) and each of IstioImages in
// Docker, or pulled from the hub within a short wait. It returns one
// error naming everything missing and its fix, or ErrIstioInstall.
func IstioPreflight(ctx context.Context, ambient bool) error {
	hub := os.Getenv(IstioHubEnv)
	if hub == "" {
		hub = DefaultIstioHub
	}
	var missing []string
	tag := "<istioctl's version>"
	if _, err := exec.LookPath("istioctl"); err != nil {
		missing = append(missing, "istioctl is not on PATH (install Istio's release of it)")
	} else if out, err := execx.Output(ctx, "istioctl", "version", "--remote=false", "--short"); err != nil {
		missing = append(missing, fmt.Sprintf("istioctl version: %v", err))
	} else {
		tag = strings.TrimSpace(string(out))
	}
	var absent []string
	for _, img := range IstioImages(hub, tag, ambient) {
		if strings.Contains(tag, "<") || !imagePresent(ctx, img) {
			absent = append(absent, img)
		}
	}
	if len(absent) > 0 {
		missing = append(missing, fmt.Sprintf("images %s are not in Docker and none could be pulled from %s (no registry reachable?): docker load them, or set %s to a registry that has them",
			strings.Join(absent, ", "), hub, IstioHubEnv))
	}
	if len(missing) > 0 {
		return fmt.Errorf("istio on kind: %s", strings.Join(missing, "; "))
	}
	return ErrIstioInstall
}

// imagePresent is true when Docker has ref, or pulls it within 30 s.
func imagePresent(ctx context.Context, ref string) bool {
	if _, err := execx.Run(ctx, "docker", "image", "inspect", ref); err == nil {
		return true
	}
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	_, err := execx.Run(pctx, "docker", "pull", "--quiet", ref)
	return err == nil
}
