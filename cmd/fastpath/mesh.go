package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/fastpath-bench/fastpath/datapath/clustermesh"
)

// newMesh is `fastpath mesh`: tools for cluster meshes.
func newMesh() *cobra.Command {
	cmd := &cobra.Command{Use: "mesh", Short: "Cluster mesh tools"}
	check := &cobra.Command{
		Use:   "check FILE",
		Short: "Validate a --clustermesh configuration and check that every etcd endpoint answers, before any agent uses it",
		Long: `Decodes a cluster mesh configuration (the agent's --clustermesh file) strictly,
validates it all at once (names, cluster ids 1-255 without duplicates, pod and
service CIDRs that do not overlap, endpoints), then checks that every etcd
endpoint of every cluster answers within a few seconds. Exits non-zero, naming
the cluster, the field or the endpoint, when anything is wrong.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := clustermesh.LoadConfig(args[0])
			if err != nil {
				return err
			}
			if err := clustermesh.Preflight(context.Background(), cfg); err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: cluster %q (id %d) and %d peers: configuration valid, every etcd endpoint answers\n", args[0], cfg.Name, cfg.ID, len(cfg.Peers))
			return nil
		},
	}
	cmd.AddCommand(check)
	return cmd
}
