package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/fastpath-bench/fastpath/harness/hostsetup"
)

func newHostSetup() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "host-setup",
		Short: "Prepare this host for a cluster provider (explicitly; says what it changes)",
	}
	docker := &cobra.Command{
		Use:   "docker",
		Short: "Install and start Docker's engine for the kind provider",
		Long: `Installs Debian's docker.io where dockerd is missing, and starts dockerd
(with systemd where it runs the host, else as a daemon of its own).

Where this host's capability bounding set lacks capabilities that a privileged
container asks for (CAP_SYS_RESOURCE in some sandboxes and CI containers),
installs the runtime wrapper ` + hostsetup.WrapperName + ` (this executable, which removes
them from the container's spec before running runc), registers it as dockerd's
default runtime in /etc/docker/daemon.json (other settings are kept) and
restarts dockerd. Without it kind cannot start its nodes.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := interruptible()
			defer cancel()
			rep, err := hostsetup.SetupDocker(ctx, hostsetup.DockerOptions{
				Logf: func(format string, args ...any) { fmt.Fprintf(os.Stderr, "fastpath: "+format+"\n", args...) },
			})
			if err != nil {
				return err
			}
			missing := "none"
			if len(rep.MissingCaps) > 0 {
				missing = strings.Join(rep.MissingCaps, ", ")
			}
			fmt.Printf("docker %s ready (default runtime %s; capabilities missing from the bounding set: %s)\n",
				rep.ServerVersion, rep.DefaultRuntime, missing)
			for _, f := range rep.Changed {
				fmt.Println("changed:", f)
			}
			return nil
		},
	}
	cmd.AddCommand(docker)
	return cmd
}

// runAsWrapper runs the container runtime wrapper when this executable was
// called as it (dockerd runs it for every container); it does not return.
func runAsWrapper() {
	args, err := hostsetup.RunWrapper(os.Args[1:])
	if err == nil {
		var runc string
		runc, err = findRunc()
		if err == nil {
			err = syscall.Exec(runc, append([]string{"runc"}, args...), os.Environ())
		}
	}
	fmt.Fprintln(os.Stderr, hostsetup.WrapperName+":", err)
	os.Exit(1)
}

func findRunc() (string, error) {
	if p, err := exec.LookPath("runc"); err == nil {
		return p, nil
	}
	for _, p := range []string{"/usr/sbin/runc", "/usr/bin/runc", "/usr/local/sbin/runc"} {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", hostsetup.ErrNoRunc
}

func calledAsWrapper() bool { return filepath.Base(os.Args[0]) == hostsetup.WrapperName }
