// Package cni is the fastpath CNI plugin: the container runtime runs it
// (cmd/fastpath-cni) for every pod sandbox. ADD asks the node's agent
// (agentapi.Client.AllocateIP on the agent's unix socket) for the pod's
// address and wires the pod with podnet, giving the node side of the veth
// the name the eBPF datapath looks for (model.InterfaceName); DEL undoes
// both; CHECK verifies the wiring. The logic lives here, behind Plugin, so
// that it can be tested without exec'ing the binary.
package cni

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/fastpath-bench/fastpath/datapath/agentapi"
	"github.com/fastpath-bench/fastpath/datapath/model"
	"github.com/fastpath-bench/fastpath/datapath/podnet"
)

// PluginName is the plugin's binary name and its "type" in a network
// configuration.
const PluginName = "fastpath-cni"

// ConfListFile is the name of the network configuration list the agent
// installs in the runtime's CNI configuration directory
// (/etc/cni/net.d); the low number puts it before other networks.
const ConfListFile = "05-fastpath.conflist"

// NetworkName is the network's name in ConfList.
const NetworkName = "fastpath"

// DefaultAgentSocket is the agent's socket when the configuration names
// none.
const DefaultAgentSocket = "/var/run/fastpath/agent.sock"

// SupportedVersions are the CNI specification versions the plugin speaks.
var SupportedVersions = version.PluginSupports("0.3.1", "0.4.0", "1.0.0")

// About is the plugin's description for the runtime (and for a run with
// no CNI_COMMAND).
const About = "fastpath-cni: pod networking for the fastpath eBPF datapath"

// NetConf is the plugin's network configuration.
type NetConf struct {
	types.NetConf
	// AgentSocket is the node agent's unix socket; "" is
	// DefaultAgentSocket.
	AgentSocket string `json:"agentSocket,omitempty"`
}

// ConfList renders the network configuration list the agent installs as
// ConfListFile; agentSocket "" is DefaultAgentSocket.
func ConfList(agentSocket string) ([]byte, error) {
	if agentSocket == "" {
		agentSocket = DefaultAgentSocket
	}
	type plugin struct {
		Type        string `json:"type"`
		AgentSocket string `json:"agentSocket"`
	}
	list := struct {
		CNIVersion string   `json:"cniVersion"`
		Name       string   `json:"name"`
		Plugins    []plugin `json:"plugins"`
	}{"1.0.0", NetworkName, []plugin{{PluginName, agentSocket}}}
	data, err := json.MarshalIndent(list, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(data, '\n'), nil
}

// ParseConf decodes the plugin's configuration (what the runtime gives on
// stdin: one plugin of the list, with the list's name and cniVersion). An
// undecodable configuration is a CNI decoding error (code 6); a missing
// cniVersion, name or type, or another type, is an invalid network
// configuration (code 7).
func ParseConf(data []byte) (*NetConf, error) {
	var conf NetConf
	if err := json.Unmarshal(data, &conf); err != nil {
		return nil, types.NewError(types.ErrDecodingFailure, "fastpath-cni: decode network configuration", err.Error())
	}
	var missing []string
	for _, f := range []struct{ name, value string }{
		{"cniVersion", conf.CNIVersion}, {"name", conf.Name}, {"type", conf.Type},
	} {
		if f.value == "" {
			missing = append(missing, f.name)
		}
	}
	if len(missing) > 0 {
		return nil, types.NewError(types.ErrInvalidNetworkConfig, "fastpath-cni: invalid network configuration", "missing "+strings.Join(missing, ", "))
	}
	if conf.Type != PluginName {
		return nil, types.NewError(types.ErrInvalidNetworkConfig, "fastpath-cni: invalid network configuration",
			fmt.Sprintf("type %q, want %q", conf.Type, PluginName))
	}
	if conf.AgentSocket == "" {
		conf.AgentSocket = DefaultAgentSocket
	}
	return &conf, nil
}

// K8sArgs are the Kubernetes arguments (CNI_ARGS) the kubelet passes.
type K8sArgs struct {
	types.CommonArgs
	K8S_POD_NAMESPACE          types.UnmarshallableString //nolint:revive // the CNI_ARGS key
	K8S_POD_NAME               types.UnmarshallableString //nolint:revive
	K8S_POD_INFRA_CONTAINER_ID types.UnmarshallableString //nolint:revive
	K8S_POD_UID                types.UnmarshallableString //nolint:revive
}

// parseK8sArgs decodes CNI_ARGS (unknown keys are ignored). required says
// whether the pod's namespace and name must be there; a malformed or
// incomplete CNI_ARGS is an invalid environment variable (code 4).
func parseK8sArgs(args string, required bool) (*K8sArgs, error) {
	var k K8sArgs
	k.IgnoreUnknown = true
	if err := types.LoadArgs(args, &k); err != nil {
		return nil, types.NewError(types.ErrInvalidEnvironmentVariables, "fastpath-cni: parse CNI_ARGS", err.Error())
	}
	if required {
		var missing []string
		if k.K8S_POD_NAMESPACE == "" {
			missing = append(missing, "K8S_POD_NAMESPACE")
		}
		if k.K8S_POD_NAME == "" {
			missing = append(missing, "K8S_POD_NAME")
		}
		if len(missing) > 0 {
			return nil, types.NewError(types.ErrInvalidEnvironmentVariables, "fastpath-cni: CNI_ARGS lacks the pod", "missing "+strings.Join(missing, ", "))
		}
	}
	return &k, nil
}

// Plugin runs the CNI commands. The zero Plugin writes to the process's
// stdout and stderr and wires pods from the calling thread's namespace.
type Plugin struct {
	// Stdout receives ADD's result; nil is os.Stdout.
	Stdout io.Writer
	// Stderr receives warnings (DEL with the agent unreachable); nil is
	// os.Stderr.
	Stderr io.Writer
	// NodeNetns is the node's network namespace (podnet.Options); "" is
	// the calling thread's.
	NodeNetns string
	// Timeout bounds each call to the agent; 0 is 10s.
	Timeout time.Duration
}

func (p *Plugin) stdout() io.Writer {
	if p.Stdout != nil {
		return p.Stdout
	}
	return os.Stdout
}

func (p *Plugin) stderr() io.Writer {
	if p.Stderr != nil {
		return p.Stderr
	}
	return os.Stderr
}

func (p *Plugin) context() (context.Context, context.CancelFunc) {
	t := p.Timeout
	if t == 0 {
		t = 10 * time.Second
	}
	return context.WithTimeout(context.Background(), t)
}

// agentError turns an error from the agent into a CNI error: an agent
// that cannot be reached, or that answers 503 (it cannot look the pod up
// yet), is "try again later" (code 11); anything else is internal.
func agentError(op string, err error) *types.Error {
	if unreachable(err) || strings.Contains(err.Error(), ": 503 ") {
		return types.NewError(types.ErrTryAgainLater, "fastpath-cni: "+op+": agent not available", err.Error())
	}
	return types.NewError(types.ErrInternal, "fastpath-cni: "+op, err.Error())
}

// unreachable says whether err is a failure to talk to the agent at all
// (no socket, connection refused, timeout) rather than an answer.
func unreachable(err error) bool {
	var ue *url.Error
	var ne net.Error
	return errors.As(err, &ue) || errors.As(err, &ne) || errors.Is(err, context.DeadlineExceeded)
}

// Add is CNI ADD: allocate the pod's address, wire the pod, print the
// result in the configuration's CNI version.
func (p *Plugin) Add(args *skel.CmdArgs) error {
	conf, err := ParseConf(args.StdinData)
	if err != nil {
		return err
	}
	k8s, err := parseK8sArgs(args.Args, true)
	if err != nil {
		return err
	}
	if args.ContainerID == "" {
		return types.NewError(types.ErrInvalidEnvironmentVariables, "fastpath-cni: no CNI_CONTAINERID", "")
	}
	if args.Netns == "" {
		return types.NewError(types.ErrInvalidEnvironmentVariables, "fastpath-cni: no CNI_NETNS", "")
	}
	ifName := args.IfName
	if ifName == "" {
		ifName = podnet.DefaultPodIfName
	}
	ns, name := string(k8s.K8S_POD_NAMESPACE), string(k8s.K8S_POD_NAME)
	pod := ns + "/" + name

	client := agentapi.NewClient(conf.AgentSocket)
	ctx, cancel := p.context()
	defer cancel()
	alloc, err := client.AllocateIP(ctx, agentapi.IPAMRequest{ContainerID: args.ContainerID, Namespace: ns, Name: name, Netns: args.Netns})
	if err != nil {
		return agentError("allocate address for "+pod, err)
	}
	ip, err := netip.ParseAddr(alloc.IP)
	if err == nil && !ip.Is4() {
		err = errors.New("not IPv4")
	}
	var gw netip.Addr
	if err == nil && alloc.Gateway != "" {
		gw, err = netip.ParseAddr(alloc.Gateway)
	}
	if err != nil {
		p.release(conf, args.ContainerID)
		return types.NewError(types.ErrInternal, fmt.Sprintf("fastpath-cni: agent gave %s address %q gateway %q", pod, alloc.IP, alloc.Gateway), err.Error())
	}

	res, err := podnet.Setup(podnet.Options{
		NodeNetns:  p.NodeNetns,
		PodNetns:   args.Netns,
		HostIfName: model.InterfaceName(ns, name),
		PodIfName:  ifName,
		IP:         ip,
		Gateway:    gw,
		Owner:      args.ContainerID,
	})
	if err != nil {
		p.release(conf, args.ContainerID)
		return types.NewError(types.ErrInternal, "fastpath-cni: wire pod "+pod, err.Error())
	}

	result := &current.Result{
		CNIVersion: current.ImplementedSpecVersion,
		Interfaces: []*current.Interface{
			{Name: res.HostIfName, Mac: res.HostMAC.String(), Mtu: res.MTU},
			{Name: res.PodIfName, Mac: res.PodMAC.String(), Mtu: res.MTU, Sandbox: args.Netns},
		},
		IPs: []*current.IPConfig{{
			Interface: current.Int(1),
			Address:   net.IPNet{IP: res.IP.AsSlice(), Mask: net.CIDRMask(32, 32)},
			Gateway:   res.Gateway.AsSlice(),
		}},
		Routes: []*types.Route{{
			Dst: net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)},
			GW:  res.Gateway.AsSlice(),
		}},
	}
	out, err := result.GetAsVersion(conf.CNIVersion)
	if err != nil {
		return types.NewError(types.ErrIncompatibleCNIVersion, "fastpath-cni: result for cniVersion "+conf.CNIVersion, err.Error())
	}
	return out.PrintTo(p.stdout())
}

// release gives the container's address back after a failed ADD; a
// failure is only reported on stderr (the ADD error matters more).
func (p *Plugin) release(conf *NetConf, containerID string) {
	ctx, cancel := p.context()
	defer cancel()
	if err := agentapi.NewClient(conf.AgentSocket).ReleaseIP(ctx, containerID); err != nil {
		fmt.Fprintf(p.stderr(), "fastpath-cni: release address of container %s: %v\n", containerID, err)
	}
}

// Del is CNI DEL, idempotent: remove the pod's veth (gone already is
// fine) and release its address. Without the pod's name in CNI_ARGS the
// veth is found from the pod's side; an unreachable agent is reported on
// stderr only (the runtime would retry DEL forever otherwise).
func (p *Plugin) Del(args *skel.CmdArgs) error {
	conf, err := ParseConf(args.StdinData)
	if err != nil {
		return err
	}
	k8s, err := parseK8sArgs(args.Args, false)
	if err != nil {
		// Still tear down what can be found and release.
		fmt.Fprintf(p.stderr(), "fastpath-cni: DEL of container %s: %v\n", args.ContainerID, err)
		k8s = &K8sArgs{}
	}
	ifName := args.IfName
	if ifName == "" {
		ifName = podnet.DefaultPodIfName
	}
	opts := podnet.Options{NodeNetns: p.NodeNetns, PodNetns: args.Netns, PodIfName: ifName, Owner: args.ContainerID}
	if k8s.K8S_POD_NAMESPACE != "" && k8s.K8S_POD_NAME != "" {
		opts.HostIfName = model.InterfaceName(string(k8s.K8S_POD_NAMESPACE), string(k8s.K8S_POD_NAME))
	}
	if opts.HostIfName != "" || opts.PodNetns != "" {
		if err := podnet.Teardown(opts); err != nil {
			return types.NewError(types.ErrInternal, "fastpath-cni: tear down container "+args.ContainerID, err.Error())
		}
	}
	if args.ContainerID == "" {
		return nil
	}
	ctx, cancel := p.context()
	defer cancel()
	if err := agentapi.NewClient(conf.AgentSocket).ReleaseIP(ctx, args.ContainerID); err != nil {
		if unreachable(err) {
			fmt.Fprintf(p.stderr(), "fastpath-cni: DEL of container %s: address not released: %v\n", args.ContainerID, err)
			return nil
		}
		return agentError("release address of container "+args.ContainerID, err)
	}
	return nil
}

// Check is CNI CHECK: the pod must be wired as ADD left it, with the
// address of the previous result.
func (p *Plugin) Check(args *skel.CmdArgs) error {
	conf, err := ParseConf(args.StdinData)
	if err != nil {
		return err
	}
	k8s, err := parseK8sArgs(args.Args, true)
	if err != nil {
		return err
	}
	if err := version.ParsePrevResult(&conf.NetConf); err != nil {
		return types.NewError(types.ErrDecodingFailure, "fastpath-cni: CHECK: prevResult", err.Error())
	}
	if conf.PrevResult == nil {
		return types.NewError(types.ErrInvalidNetworkConfig, "fastpath-cni: CHECK: no prevResult", "")
	}
	prev, err := current.NewResultFromResult(conf.PrevResult)
	if err != nil {
		return types.NewError(types.ErrDecodingFailure, "fastpath-cni: CHECK: prevResult", err.Error())
	}
	var ip, gw netip.Addr
	for _, c := range prev.IPs {
		if a, ok := netip.AddrFromSlice(c.Address.IP.To4()); ok && c.Address.IP.To4() != nil {
			ip = a
			gw, _ = netip.AddrFromSlice(c.Gateway.To4())
			break
		}
	}
	if !ip.IsValid() {
		return types.NewError(types.ErrInvalidNetworkConfig, "fastpath-cni: CHECK: prevResult has no IPv4 address", "")
	}
	ifName := args.IfName
	if ifName == "" {
		ifName = podnet.DefaultPodIfName
	}
	err = podnet.Check(podnet.Options{
		NodeNetns:  p.NodeNetns,
		PodNetns:   args.Netns,
		HostIfName: model.InterfaceName(string(k8s.K8S_POD_NAMESPACE), string(k8s.K8S_POD_NAME)),
		PodIfName:  ifName,
		IP:         ip,
		Gateway:    gw,
		Owner:      args.ContainerID,
	})
	if err != nil {
		return types.NewError(types.ErrInternal, "fastpath-cni: CHECK of container "+args.ContainerID, err.Error())
	}
	return nil
}
