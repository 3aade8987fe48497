package sidecar

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/fastpath-bench/fastpath/datapath/ipam"
)

// CNIPrefix starts a PodNetns that takes pods' network namespaces from
// the agent's IPAM state file: the CNI plugin's ADD records there the
// namespace the runtime gave it (CNI_NETNS).
const CNIPrefix = "cni:"

// checkPodNetns validates Options.PodNetns.
func checkPodNetns(spec string) error {
	if file, ok := strings.CutPrefix(spec, CNIPrefix); ok {
		if !filepath.IsAbs(file) {
			return fmt.Errorf("sidecar: --pod-netns %q: want %s and the absolute path of the agent's IPAM state file", spec, CNIPrefix)
		}
		return nil
	}
	if spec == "" || !strings.Contains(spec, "{name}") || strings.Contains(spec, "/") {
		return errors.New("sidecar: --pod-netns must name pods' network namespaces (under /run/netns) with {namespace} and {name}, or be " +
			CNIPrefix + "FILE (the namespaces the CNI plugin was given, as the agent's IPAM state FILE records them)")
	}
	return nil
}

// podNetns returns, for one Apply, where each pod's network namespace is:
// a name under /run/netns, an absolute path, or "" while none is known
// (the pod is pending). With CNIPrefix the IPAM state file is read once.
func podNetns(spec string) (func(namespace, name string) string, error) {
	if file, ok := strings.CutPrefix(spec, CNIPrefix); ok {
		m, err := ipam.ReadNetns(file)
		if err != nil {
			return nil, fmt.Errorf("sidecar: pods' network namespaces: %w", err)
		}
		return func(namespace, name string) string { return m[namespace+"/"+name] }, nil
	}
	r := func(namespace, name string) string {
		return strings.NewReplacer("{namespace}", namespace, "{name}", name).Replace(spec)
	}
	return r, nil
}
