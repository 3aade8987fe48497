package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/fastpath-bench/fastpath/harness/kindnode"
)

func newKindNodeImage() *cobra.Command {
	var opts kindnode.Options
	var binariesOnly bool
	cmd := &cobra.Command{
		Use:   "kind-node-image",
		Short: "Build the kind node image offline (Kubernetes, etcd and pause from their Go modules)",
		Long: `Builds the Kubernetes commands, etcd and pause from their Go modules at pinned
versions (static, cached under ~/.cache/fastpath/kind-node), for a kind node
image that needs no registry. (Work in progress, issue #9: --binaries-only
builds the binaries; the image assembly follows.)`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts.Logf = func(format string, args ...any) { fmt.Fprintf(os.Stderr, "fastpath: "+format+"\n", args...) }
			if !binariesOnly {
				return fmt.Errorf("only --binaries-only is implemented yet (issue #9)")
			}
			b, err := kindnode.BuildBinaries(cmd.Context(), opts)
			if err != nil {
				return err
			}
			fmt.Println(b.Dir)
			return nil
		},
	}
	cmd.Flags().StringVar(&opts.KubernetesVersion, "kubernetes-version", kindnode.DefaultKubernetesVersion, "Kubernetes version (k8s.io/kubernetes module)")
	cmd.Flags().StringVar(&opts.EtcdVersion, "etcd-version", kindnode.DefaultEtcdVersion, "etcd version (go.etcd.io/etcd/server/v3 module)")
	cmd.Flags().StringVar(&opts.CacheDir, "cache-dir", "", "build cache (default ~/.cache/fastpath/kind-node)")
	cmd.Flags().BoolVar(&binariesOnly, "binaries-only", false, "build the binaries only")
	return cmd
}
