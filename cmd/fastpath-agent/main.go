// Command fastpath-agent is the node agent: it runs inside a node's network
// namespace, watches a directory of Kubernetes YAML, and programs the chosen
// datapath (ebpf or none). Subcommands query a running agent.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/fastpath-bench/fastpath/datapath/agent"
	"github.com/fastpath-bench/fastpath/datapath/agentapi"
	"github.com/fastpath-bench/fastpath/datapath/attach"
	"github.com/fastpath-bench/fastpath/datapath/features"
	"github.com/fastpath-bench/fastpath/datapath/lxc"
)

func main() {
	if err := newRoot().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "fastpath-agent:", err)
		os.Exit(1)
	}
}

// publishes says whether the agent of node publishes its cluster's state:
// --clustermesh-publish, or --clustermesh-publish-node naming it.
func publishes(publish bool, publishNode, node string) bool {
	return publish || (publishNode != "" && publishNode == node)
}

func newRoot() *cobra.Command {
	var cfg agent.Config
	var attachMode, logLevel, publishNode string
	var iptablesServices bool
	root := &cobra.Command{
		Use:           "fastpath-agent",
		Short:         "Node agent: programs a datapath from a directory of Kubernetes YAML",
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			mode, err := attach.ParseMode(attachMode)
			if err != nil {
				return fmt.Errorf("--attach: %w", err)
			}
			cfg.AttachMode = mode
			cfg.IptablesSkipServices = !iptablesServices
			cfg.ClusterMeshPublish = publishes(cfg.ClusterMeshPublish, publishNode, cfg.Node)
			var lvl slog.Level
			if err := lvl.UnmarshalText([]byte(logLevel)); err != nil {
				return fmt.Errorf("--log-level: %w", err)
			}
			cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl})).With("node", cfg.Node)
			a, err := agent.New(cfg)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return a.Run(ctx)
		},
	}
	f := root.Flags()
	f.StringVar(&cfg.Node, "node", "", "this node's name (matched against pods' spec.nodeName)")
	f.StringVar(&cfg.Source, "source", agent.SourceDir, "where the desired state comes from: dir (--state-dir) or kubernetes (the API server, through informers; the agent is then also the node's IPAM for its CNI plugin)")
	f.StringVar(&cfg.StateDir, "state-dir", "", "directory of desired state: Kubernetes YAML (Namespaces, Nodes, Pods, NetworkPolicies)")
	f.StringVar(&cfg.Kubeconfig, "kubeconfig", "", "kubeconfig for --source kubernetes (empty: in-cluster configuration)")
	f.StringVar(&cfg.IPAMState, "ipam-state", agent.DefaultIPAMState, "file keeping pod address allocations (--source kubernetes)")
	f.StringVar(&cfg.Listen, "listen", "", "ip:port for the read-only HTTP API: /v1/status, /metrics, /healthz, /readyz (empty: none)")
	f.StringVar(&cfg.Datapath, "datapath", "ebpf", "datapath to program: ebpf, iptables, sidecar or none")
	f.StringVar(&cfg.PinPath, "pin-path", "", "bpffs directory to pin maps in (empty: no pinning)")
	f.StringVar(&cfg.Socket, "api-socket", "", "unix socket for the status API (empty: none)")
	f.DurationVar(&cfg.Resync, "resync", time.Second, "re-read the state this often even without file events")
	f.StringVar(&attachMode, "attach", "auto", "TC attach mechanism: auto, tcx or tc")
	f.StringVar(&cfg.LB.Algorithm, "lb-algorithm", "random", "service backend selection (ebpf): random or maglev")
	f.Uint32Var(&cfg.LB.MaglevTableSize, "maglev-table-size", 0, "Maglev table size M, a prime (default 16381)")
	f.StringVar(&cfg.Sock.Cgroup, "cgroup", "", "cgroup v2 directory holding the node's pods, for --socket-lb and --sockmap")
	f.BoolVar(&cfg.Sock.LB, "socket-lb", false, "translate service addresses at connect()/sendmsg() (cgroup sock_addr hooks) instead of per packet (ebpf)")
	f.BoolVar(&cfg.Sock.Sockmap, "sockmap", false, "move same-node TCP payload socket to socket (sock_ops + sk_msg) for connections the policy admits (ebpf)")
	f.StringVar(&cfg.ClusterMesh, "clustermesh", "", "cluster mesh configuration (this cluster, its etcd, its peers): program the peers' pods as policy peers (needs --tunnel vxlan)")
	f.BoolVar(&cfg.ClusterMeshPublish, "clustermesh-publish", false, "publish this cluster's pods, identities and nodes to its etcd (one agent per cluster)")
	f.StringVar(&publishNode, "clustermesh-publish-node", "", "publish as --clustermesh-publish when --node is this name (one DaemonSet for every node of a cluster, one publisher)")
	f.StringVar(&cfg.Tunnel, "tunnel", "", "overlay to other nodes: vxlan (ebpf: the sender's identity travels in the VNI, the receiver takes it from there, not from the source address) or geneve (the identity travels in a Geneve option); default: routed")
	f.BoolVar(&cfg.XDPNodePort, "xdp-nodeport", false, "translate NodePort traffic from outside in XDP on the uplinks, sending it on to other nodes' backends with XDP_TX (ebpf; default: at the uplink's TC hook)")
	f.BoolVar(&iptablesServices, "iptables-services", true, "program Services in the nat table (iptables); false: kube-proxy owns them, the datapath programs the NetworkPolicy chains only")
	f.StringVar(&cfg.PodNetns, "pod-netns", "", "where pods' network namespaces are, for the sidecar datapath (it runs a proxy in each): a name under /run/netns with {namespace} and {name}, or cni:FILE, the namespace each pod's CNI ADD was given (CNI_NETNS) as the IPAM state FILE records it (--source kubernetes)")
	f.StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn, error")
	f.StringSliceVar(&cfg.Uplinks, "uplink", nil, "devices packets from other nodes arrive on, for the L7 proxy redirect (ebpf; default: the device holding this node's address)")

	var socket string
	status := &cobra.Command{
		Use:   "status",
		Short: "Print a running agent's status as JSON",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			body, err := agentapi.NewClient(socket).Get(cmd.Context(), "/v1/status")
			if err != nil {
				return err
			}
			_, err = os.Stdout.Write(body)
			return err
		},
	}
	metrics := &cobra.Command{
		Use:   "metrics",
		Short: "Print a running agent's datapath counters (Prometheus text)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			body, err := agentapi.NewClient(socket).Get(context.Background(), "/metrics")
			if err != nil {
				return err
			}
			_, err = os.Stdout.Write(body)
			return err
		},
	}
	var eventType string
	monitor := &cobra.Command{
		Use:   "monitor",
		Short: "Stream a running agent's flow events (policy verdicts and drops) as JSON lines",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			path := "/v1/monitor"
			if eventType != "" {
				path += "?type=" + eventType
			}
			return agentapi.NewClient(socket).Stream(ctx, path, func(line []byte) error {
				_, err := fmt.Fprintf(os.Stdout, "%s\n", line)
				return err
			})
		},
	}
	monitor.Flags().StringVar(&eventType, "type", "", "only events of this type: drop or verdict")
	policy := &cobra.Command{Use: "policy", Short: "Inspect endpoint policy"}
	policyGet := &cobra.Command{
		Use:   "get NAMESPACE/POD",
		Short: "Print a pod's resolved rules and, on its node, the live policy map",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ns, name, ok := strings.Cut(args[0], "/")
			if !ok {
				ns, name = "default", args[0]
			}
			body, err := agentapi.NewClient(socket).Get(cmd.Context(), "/v1/policy/"+ns+"/"+name)
			if err != nil {
				return err
			}
			_, err = os.Stdout.Write(body)
			return err
		},
	}
	policy.AddCommand(policyGet)
	root.AddCommand(newInstallCNI())
	policy.PersistentFlags().StringVar(&socket, "api-socket", "", "the agent's status socket")
	_ = policy.MarkPersistentFlagRequired("api-socket")
	root.AddCommand(policy)
	root.AddCommand(newFeatures(), newLB(), newPrefilter())
	for _, c := range []*cobra.Command{status, metrics, monitor} {
		c.Flags().StringVar(&socket, "api-socket", "", "the agent's status socket")
		_ = c.MarkFlagRequired("api-socket")
		root.AddCommand(c)
	}
	return root
}

// featuresOutput is what `fastpath-agent features --json` prints.
type featuresOutput struct {
	features.Report
	// Programs are the verifier's figures for every datapath program.
	Programs []lxc.ProgramStats `json:"programs"`
	// LoadError is set when the kernel refused the programs.
	LoadError string `json:"loadError,omitempty"`
}

func newFeatures() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "features",
		Short: "Probe the kernel for what the ebpf datapath uses, load its programs, and print the verifier's instruction counts",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := featuresOutput{Report: features.Probe()}
			progs, loadErr := lxc.VerifierStats()
			out.Programs = progs
			if loadErr != nil {
				out.LoadError = loadErr.Error()
			}
			checkErr := out.Check()
			if asJSON {
				enc := json.NewEncoder(os.Stdout)
				enc.SetIndent("", "  ")
				if err := enc.Encode(out); err != nil {
					return err
				}
			} else {
				w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
				fmt.Fprintf(w, "kernel\t%s\nBTF\t%v\nattach\t%s\n\n", out.Kernel, out.BTF, out.AttachMode)
				fmt.Fprintln(w, "FEATURE\tSINCE\tREQUIRED\tSUPPORTED\tUSED FOR")
				for _, f := range out.Features {
					fmt.Fprintf(w, "%s\t%s\t%v\t%v\t%s\n", f.Name, f.Since, f.Required, f.Supported, f.Used)
				}
				fmt.Fprintln(w, "\nPROGRAM\tINSNS\tVERIFIER PROCESSED")
				for _, p := range out.Programs {
					fmt.Fprintf(w, "%s\t%d\t%d\t%s\n", p.Name, p.Instructions, p.Processed, p.Error)
				}
				w.Flush()
			}
			return errors.Join(checkErr, loadErr)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func newLB() *cobra.Command {
	var socket string
	var asJSON bool
	get := func(cmd *cobra.Command, service string) ([]agentapi.LBFrontend, error) {
		path := "/v1/lb"
		if service != "" {
			path += "?service=" + url.QueryEscape(service)
		}
		body, err := agentapi.NewClient(socket).Get(cmd.Context(), path)
		if err != nil {
			return nil, err
		}
		if asJSON {
			_, err := os.Stdout.Write(body)
			return nil, err
		}
		var fronts []agentapi.LBFrontend
		return fronts, json.Unmarshal(body, &fronts)
	}
	lb := &cobra.Command{Use: "lb", Short: "Inspect the service load balancer (ebpf)"}
	list := &cobra.Command{
		Use:   "list",
		Short: "List service frontends with their backends, as the maps hold them",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fronts, err := get(cmd, "")
			if err != nil || asJSON {
				return err
			}
			w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(w, "SERVICE\tFRONTEND\tID\tALGORITHM\tAFFINITY\tBACKENDS")
			for _, f := range fronts {
				var bs []string
				for _, b := range f.Backends {
					s := b.Address
					var notes []string
					if b.State != "" && b.State != "active" {
						notes = append(notes, b.State)
					}
					if b.Cluster != "" {
						notes = append(notes, "cluster "+b.Cluster)
					}
					if b.Standby {
						notes = append(notes, "standby")
					}
					if len(notes) > 0 {
						s += " (" + strings.Join(notes, ", ") + ")"
					}
					bs = append(bs, s)
				}
				aff := "-"
				if f.AffinitySeconds > 0 {
					aff = fmt.Sprintf("%ds", f.AffinitySeconds)
				}
				fmt.Fprintf(w, "%s\t%s\t%d\t%s\t%s\t%s\n", f.Service, f.Frontend, f.ID, f.Algorithm, aff, strings.Join(bs, ", "))
			}
			return w.Flush()
		},
	}
	maglevCmd := &cobra.Command{
		Use:   "maglev NAMESPACE/SERVICE",
		Short: "Show how a service's selection table spreads over its backends",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			fronts, err := get(cmd, args[0])
			if err != nil || asJSON {
				return err
			}
			w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
			for _, f := range fronts {
				fmt.Fprintf(w, "%s %s (%s, table size %d)\n", f.Service, f.Frontend, f.Algorithm, f.TableSize)
				fmt.Fprintln(w, "  BACKEND\tSTATE\tSLOTS\tSHARE")
				for _, b := range f.Backends {
					share := 0.0
					if f.TableSize > 0 {
						share = 100 * float64(b.Slots) / float64(f.TableSize)
					}
					fmt.Fprintf(w, "  %s\t%s\t%d\t%.2f%%\n", b.Address, b.State, b.Slots, share)
				}
			}
			return w.Flush()
		},
	}
	lb.AddCommand(list, maglevCmd)
	lb.PersistentFlags().StringVar(&socket, "api-socket", "", "the agent's status socket")
	lb.PersistentFlags().BoolVar(&asJSON, "json", false, "print JSON")
	_ = lb.MarkPersistentFlagRequired("api-socket")
	return lb
}

func newPrefilter() *cobra.Command {
	var socket string
	var asJSON bool
	pf := &cobra.Command{Use: "prefilter", Short: "Inspect the XDP prefilter (ebpf)"}
	list := &cobra.Command{
		Use:   "list",
		Short: "List the denied source prefixes, the devices and the counters",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			body, err := agentapi.NewClient(socket).Get(cmd.Context(), "/v1/prefilter")
			if err != nil {
				return err
			}
			if asJSON {
				_, err := os.Stdout.Write(body)
				return err
			}
			var p agentapi.Prefilter
			if err := json.Unmarshal(body, &p); err != nil {
				return err
			}
			fmt.Printf("devices: %s\ndropped: %d packets (%d bytes); passed: %d packets\n", strings.Join(p.Devices, ", "), p.DroppedPackets, p.DroppedBytes, p.PassedPackets)
			for _, s := range p.Prefixes {
				fmt.Println(s)
			}
			return nil
		},
	}
	pf.AddCommand(list)
	pf.PersistentFlags().StringVar(&socket, "api-socket", "", "the agent's status socket")
	pf.PersistentFlags().BoolVar(&asJSON, "json", false, "print JSON")
	_ = pf.MarkPersistentFlagRequired("api-socket")
	return pf
}
