package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/fastpath-bench/fastpath/datapath/cni"
)

// newInstallCNI is the DaemonSet's init container: it copies the CNI
// plugin onto the node and writes the network configuration that makes
// the agent the node's CNI. Both are replaced atomically, so the kubelet
// never runs a partial binary or reads a partial file.
func newInstallCNI() *cobra.Command {
	var binDir, confDir, socket, plugin string
	cmd := &cobra.Command{
		Use:   "install-cni",
		Short: "Install the CNI plugin and its network configuration on the node (the DaemonSet's init container)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := copyAtomic(plugin, filepath.Join(binDir, cni.PluginName), 0o755); err != nil {
				return fmt.Errorf("install plugin: %w", err)
			}
			conf, err := cni.ConfList(socket)
			if err != nil {
				return err
			}
			dst := filepath.Join(confDir, cni.ConfListFile)
			if err := writeAtomic(dst, conf, 0o644); err != nil {
				return fmt.Errorf("install network configuration: %w", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "installed %s and %s\n", filepath.Join(binDir, cni.PluginName), dst)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&binDir, "bin-dir", "/opt/cni/bin", "the node's CNI plugin directory")
	f.StringVar(&confDir, "conf-dir", "/etc/cni/net.d", "the node's CNI configuration directory")
	f.StringVar(&socket, "agent-socket", "/var/run/fastpath/agent.sock", "the agent's unix socket, as seen from the node")
	f.StringVar(&plugin, "plugin", "/fastpath-cni", "the plugin binary to install")
	return cmd
}

func copyAtomic(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	data, err := io.ReadAll(in)
	if err != nil {
		return err
	}
	return writeAtomic(dst, data, mode)
}

// writeAtomic writes a dot-file beside dst and renames it over dst.
func writeAtomic(dst string, data []byte, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	tmp := filepath.Join(filepath.Dir(dst), "."+filepath.Base(dst)+".tmp")
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return err
	}
	if err := os.Chmod(tmp, mode); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, dst); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}
