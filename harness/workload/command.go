package workload

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"fortio.org/log"
	"github.com/spf13/cobra"
)

// NewCommand returns the hidden `workload` command the harness runs inside
// pod network namespaces:
//
//	workload serve --port 8080 [--payload-bytes N] [--delay D]
//	workload load --url URL [--protocol http|tcp|grpc] [--qps Q] [--connections C]
//	    [--duration D] [--resolution R] [--payload-bytes N] [--timeout T]
//
// serve runs until SIGINT or SIGTERM. load prints its Result as JSON on
// stdout, also when the run failed part-way (the error goes to stderr),
// and exits non-zero only when nothing at all could be measured.
func NewCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:    "workload",
		Short:  "Workload processes the harness runs in pods (fortio echo server, fortio load client)",
		Hidden: true,
		Args:   cobra.NoArgs,
	}
	cmd.AddCommand(newServeCommand(), newLoadCommand(), newPauseCommand())
	return cmd
}

// newPauseCommand is a pod's container on kind: it holds the pod (and its
// network namespace, which the CNI wired) until SIGTERM, while the
// harness runs servers and load clients in that namespace.
func newPauseCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "pause",
		Short: "Wait for SIGINT or SIGTERM (a pod's container)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signalContext(cmd)
			defer stop()
			<-ctx.Done()
			return nil
		},
	}
}

func newServeCommand() *cobra.Command {
	var opts ServerOptions
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the HTTP echo server (TCP echo on the next port, gRPC ping on the one after) until SIGINT/SIGTERM",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signalContext(cmd)
			defer stop()
			port := opts.Port
			if port == 0 {
				port = DefaultPort
			}
			tcp, grpc := "none", "none"
			if port < 65535 {
				tcp = fmt.Sprintf(":%d", port+1)
			}
			if port < 65534 {
				grpc = fmt.Sprintf(":%d", port+2)
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "workload serve: http on :%d, tcp echo on %s, grpc ping on %s, payload %d bytes, delay %v\n",
				port, tcp, grpc, opts.PayloadBytes, opts.Delay)
			if err := Serve(ctx, opts); err != nil {
				return fmt.Errorf("serve: %w", err)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&opts.Port, "port", DefaultPort, "HTTP port (TCP echo listens on the next one)")
	f.IntVar(&opts.PayloadBytes, "payload-bytes", 0, "response body size when the request asks for none (0: echo the request)")
	f.DurationVar(&opts.Delay, "delay", 0, "delay added to every HTTP response")
	return cmd
}

func newLoadCommand() *cobra.Command {
	var opts LoadOptions
	cmd := &cobra.Command{
		Use:   "load",
		Short: "Run a fortio load and print the result as JSON",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signalContext(cmd)
			defer stop()
			// fortio logs every failed request: at high rates against a
			// dead server that floods stderr, and the Result counts them.
			log.SetLogLevelQuiet(log.Critical)
			res, err := RunLoad(ctx, opts)
			if res != nil {
				var ru syscall.Rusage
				if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
					res.ProcessCPUSeconds = time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
					res.ProcessPeakRSSBytes = ru.Maxrss << 10 // kilobytes on Linux
				}
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				if jerr := enc.Encode(res); jerr != nil {
					return fmt.Errorf("write result: %w", jerr)
				}
			}
			if err == nil {
				return nil
			}
			if res != nil && res.Count > 0 {
				// Something was measured: it is on stdout; say what went
				// wrong and succeed.
				fmt.Fprintln(cmd.ErrOrStderr(), "workload load:", err)
				return nil
			}
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.URL, "url", "", "target: http://host:port/, tcp://host:port or grpc://host:port")
	f.StringVar(&opts.Protocol, "protocol", DefaultProtocol, "http, tcp or grpc")
	f.Float64Var(&opts.QPS, "qps", 0, "target requests per second over all connections (<= 0: as fast as possible)")
	f.IntVar(&opts.Connections, "connections", DefaultConnections, "concurrent connections")
	f.DurationVar(&opts.Duration, "duration", DefaultDuration, "how long to load")
	f.DurationVar(&opts.Resolution, "resolution", DefaultResolution, "finest latency histogram bucket width")
	f.IntVar(&opts.PayloadBytes, "payload-bytes", 0, "http: response body size to ask for; tcp: message size; grpc: ping payload size")
	f.DurationVar(&opts.Timeout, "timeout", DefaultTimeout, "per-request timeout")
	_ = cmd.MarkFlagRequired("url")
	return cmd
}

// signalContext returns the command's context, cancelled by SIGINT or
// SIGTERM.
func signalContext(cmd *cobra.Command) (context.Context, context.CancelFunc) {
	ctx := cmd.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	return signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
}
