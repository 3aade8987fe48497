package deploy

import (
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// TestRenderSidecar: the sidecar datapath runs from the baselines image,
// takes each pod's network namespace from the IPAM state (the CNI's
// record), and mounts the node's netns directory so that containerd's
// namespaces, made after the agent started, appear in it.
func TestRenderSidecar(t *testing.T) {
	o := validOptions()
	o.Datapath = "sidecar"
	if err := o.Validate(); err == nil || !strings.Contains(err.Error(), "Options.IptablesImage: required with datapath sidecar") {
		t.Fatalf("no IptablesImage: %v", err)
	}
	o.IptablesImage = "fastpath/agent-baselines:def456"
	r := render(t, o)
	ps := r.ds.Spec.Template.Spec
	a := container(t, ps.Containers, "agent")
	if a.Image != "fastpath/agent-baselines:def456" {
		t.Errorf("agent image %q", a.Image)
	}
	if ic := container(t, ps.InitContainers, "install-cni"); ic.Image != "fastpath/agent:abc123" {
		t.Errorf("install-cni image %q", ic.Image)
	}
	if !slices.Contains(a.Args, "--datapath=sidecar") || !slices.Contains(a.Args, "--pod-netns=cni:/var/run/fastpath/ipam.json") ||
		slices.Contains(a.Args, "--iptables-services=false") {
		t.Errorf("args %q", a.Args)
	}
	// The IPAM state the flag names lies in the mounted socket directory.
	var run *corev1.VolumeMount
	mounts := map[string]corev1.VolumeMount{}
	for i, m := range a.VolumeMounts {
		mounts[m.MountPath] = m
		if m.Name == "run" {
			run = &a.VolumeMounts[i]
		}
	}
	if run == nil || !strings.HasPrefix(IPAMState, run.MountPath+"/") {
		t.Errorf("IPAM state %s is not under the mounted run directory %+v", IPAMState, run)
	}
	ns, ok := mounts["/var/run/netns"]
	if !ok || ns.MountPropagation == nil || *ns.MountPropagation != corev1.MountPropagationHostToContainer || ns.ReadOnly {
		t.Fatalf("netns mount %+v (mounts %v)", ns, mounts)
	}
	var vol *corev1.Volume
	for i, v := range ps.Volumes {
		if v.Name == ns.Name {
			vol = &ps.Volumes[i]
		}
	}
	if vol == nil || vol.HostPath == nil || vol.HostPath.Path != "/var/run/netns" ||
		vol.HostPath.Type == nil || *vol.HostPath.Type != corev1.HostPathDirectoryOrCreate {
		t.Errorf("netns volume %+v", vol)
	}
	// The image's iptables-restore follows the node's backend.
	for _, want := range []string{"/run/xtables.lock", "/etc/alternatives"} {
		if _, ok := mounts[want]; !ok {
			t.Errorf("agent mounts %v lack %s", mounts, want)
		}
	}
	if !ps.HostNetwork || a.SecurityContext == nil || a.SecurityContext.Privileged == nil || !*a.SecurityContext.Privileged {
		t.Error("the sidecar agent must be privileged on the host network (it enters pods' namespaces)")
	}

	// Other datapaths: no netns mount, no --pod-netns.
	for _, dp := range []string{"ebpf", "iptables", "none"} {
		o.Datapath = dp
		a := container(t, render(t, o).ds.Spec.Template.Spec.Containers, "agent")
		for _, m := range a.VolumeMounts {
			if m.MountPath == NetnsDir {
				t.Errorf("%s mounts %s", dp, NetnsDir)
			}
		}
		if slices.ContainsFunc(a.Args, func(s string) bool { return strings.HasPrefix(s, "--pod-netns") }) {
			t.Errorf("%s args %q", dp, a.Args)
		}
	}
}
