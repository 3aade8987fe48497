package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/fastpath-bench/fastpath/harness/cluster/kind"
	"github.com/fastpath-bench/fastpath/harness/images"
	"github.com/fastpath-bench/fastpath/harness/kindnode"
)

func newKindNodeImage() *cobra.Command {
	var opts kindnode.Options
	var binariesOnly bool
	cmd := &cobra.Command{
		Use:   "kind-node-image",
		Short: "Build the kind node image offline (Kubernetes, etcd and pause from their Go modules)",
		Long: `Builds a kind node image that needs no registry: the Kubernetes commands, etcd
and pause from their Go modules at pinned versions (static, cached under
~/.cache/fastpath/kind-node), the control-plane images FROM scratch under the
names kubeadm asks for, and a Debian rootfs (debootstrap) with systemd and
containerd carrying kind's base-image files from the sigs.k8s.io/kind module.
The tag carries a hash of every input; an image built for the same inputs is
not built again. Needs Docker's engine (fastpath host-setup docker).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := interruptible() // Ctrl-C stops the go and docker builds too
			defer cancel()
			opts.Logf = func(format string, args ...any) { fmt.Fprintf(os.Stderr, "fastpath: "+format+"\n", args...) }
			if binariesOnly {
				b, err := kindnode.BuildBinaries(ctx, opts)
				if err != nil {
					return err
				}
				fmt.Println(b.Dir)
				return nil
			}
			img, err := kindnode.BuildImage(ctx, opts)
			if err != nil {
				return err
			}
			fmt.Println(img.Tag)
			return nil
		},
	}
	cmd.Flags().StringVar(&opts.KubernetesVersion, "kubernetes-version", kindnode.DefaultKubernetesVersion, "Kubernetes version (k8s.io/kubernetes module)")
	cmd.Flags().StringVar(&opts.EtcdVersion, "etcd-version", kindnode.DefaultEtcdVersion, "etcd version (go.etcd.io/etcd/server/v3 module)")
	cmd.Flags().StringVar(&opts.CacheDir, "cache-dir", "", "build cache (default ~/.cache/fastpath/kind-node)")
	cmd.Flags().BoolVar(&binariesOnly, "binaries-only", false, "build the binaries only")
	return cmd
}

func newImage() *cobra.Command {
	var binDir string
	var iptables bool
	cmd := &cobra.Command{
		Use:   "image",
		Short: "Build the agent images from static binaries (make image builds them)",
		Long: `Builds fastpath/agent:<digest>: fastpath-agent, fastpath-cni and fastpath,
static, FROM scratch. The tag is a digest of the binaries: an unchanged image
is not built again. The kind provider loads it into the nodes (the agent
DaemonSet and the pods' containers run it).

With --iptables (the default) also fastpath/agent-baselines:<digest>, the
agent of the iptables and the sidecar datapath: the same binaries on the
Debian rootfs the kind node image is built on (its iptables, legacy and
nft), with ipset and haproxy from Debian's mirror. The rootfs is bootstrapped when Docker's store lacks it
(make kind-node-image leaves it there). Needs Docker's engine. Prints one
reference a line.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := interruptible()
			defer cancel()
			logf := func(format string, args ...any) { fmt.Fprintf(os.Stderr, "fastpath: "+format+"\n", args...) }
			ref, err := images.Build(ctx, binDir, logf)
			if err != nil {
				return err
			}
			fmt.Println(ref)
			if !iptables {
				return nil
			}
			ref, err = kind.BuildIptablesImage(ctx, binDir, logf)
			if err != nil {
				return err
			}
			fmt.Println(ref)
			return nil
		},
	}
	cmd.Flags().StringVar(&binDir, "bin-dir", "bin/image", "directory of the static binaries")
	cmd.Flags().BoolVar(&iptables, "iptables", true, "also build the baselines' agent image (iptables and sidecar datapaths)")
	return cmd
}
