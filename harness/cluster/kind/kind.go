package kind

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"

	"sigs.k8s.io/kind/pkg/cluster"
	kindlog "sigs.k8s.io/kind/pkg/log"

	"github.com/fastpath-bench/fastpath/harness/execx"
	"github.com/fastpath-bench/fastpath/harness/hostsetup"
	"github.com/fastpath-bench/fastpath/harness/kindnode"
)

// Cluster is a kind cluster the harness created.
type Cluster struct {
	Name string
	// Kubeconfig is the file with the cluster's credentials.
	Kubeconfig string

	provider *cluster.Provider
}

// CreateOptions configure Create; zero values mean the defaults.
type CreateOptions struct {
	// Retain keeps the node containers of a failed creation (debugging).
	Retain bool
	// Kubeconfig is where the credentials are written (default: a file
	// named after the cluster in the working directory's .kube).
	Kubeconfig string
	// Logf reports progress (default: discarded).
	Logf func(format string, args ...any)
}

func newProvider(logf func(string, ...any)) *cluster.Provider {
	return cluster.NewProvider(cluster.ProviderWithDocker(), cluster.ProviderWithLogger(logger{logf}))
}

// Create creates the cluster c describes (after Preflight). Nodes are not
// Ready until a CNI runs on them: the agent is the cluster's CNI.
func Create(ctx context.Context, c Config, opts CreateOptions) (*Cluster, error) {
	cfg, err := c.KindConfig()
	if err != nil {
		return nil, err
	}
	if err := Preflight(ctx, c.Image); err != nil {
		return nil, err
	}
	if opts.Logf == nil {
		opts.Logf = func(string, ...any) {}
	}
	if opts.Kubeconfig == "" {
		opts.Kubeconfig = c.Name + ".kubeconfig"
	}
	// The network must stay until the nodes are on it (network.go).
	unlock, err := networkLock(false)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if err := ensureNetwork(ctx); err != nil {
		return nil, err
	}
	p := newProvider(opts.Logf)
	done := make(chan error, 1)
	go func() {
		done <- p.Create(c.Name,
			cluster.CreateWithV1Alpha4Config(cfg),
			cluster.CreateWithNodeImage(c.Image),
			cluster.CreateWithRetain(opts.Retain),
			cluster.CreateWithKubeconfigPath(opts.Kubeconfig),
			cluster.CreateWithDisplayUsage(false),
			cluster.CreateWithDisplaySalutation(false))
	}()
	select {
	case err = <-done:
	case <-ctx.Done():
		// kind's Create cannot be interrupted: let it finish, then delete.
		<-done
		err = ctx.Err()
	}
	if err != nil {
		if !opts.Retain {
			_ = p.Delete(c.Name, opts.Kubeconfig)
		}
		return nil, fmt.Errorf("create kind cluster %s: %w", c.Name, err)
	}
	return &Cluster{Name: c.Name, Kubeconfig: opts.Kubeconfig, provider: p}, nil
}

// Delete removes the cluster's nodes and its kubeconfig entry, then the
// Docker network when no other cluster is on it.
func (c *Cluster) Delete() error {
	err := c.provider.Delete(c.Name, c.Kubeconfig)
	if err != nil {
		return err
	}
	_ = os.Remove(c.Kubeconfig)
	return removeNetworkIfEmpty(context.Background())
}

// Nodes lists the cluster's node containers.
func (c *Cluster) Nodes() ([]string, error) {
	ns, err := c.provider.ListNodes(c.Name)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, n := range ns {
		out = append(out, n.String())
	}
	return out, nil
}

// Clean deletes every kind cluster whose name starts with NamePrefix (what
// runs of the harness created) and returns their names. Without Docker's
// engine there is nothing to clean.
func Clean(ctx context.Context) ([]string, error) {
	if _, err := exec.LookPath("docker"); err != nil || !hostsetup.EngineAnswers(ctx) {
		return nil, nil
	}
	p := newProvider(nil)
	names, err := p.List()
	if err != nil {
		return nil, err
	}
	var done []string
	var errs []error
	for _, n := range names {
		if !strings.HasPrefix(n, NamePrefix) {
			continue
		}
		if err := p.Delete(n, ""); err != nil {
			errs = append(errs, fmt.Errorf("kind cluster %s: %w", n, err))
			continue
		}
		done = append(done, n)
	}
	if err := removeNetworkIfEmpty(ctx); err != nil {
		errs = append(errs, err)
	}
	return done, errors.Join(errs...)
}

// Preflight checks, before anything is created, what a kind cluster
// needs, and names the fix of whatever is missing.
func Preflight(ctx context.Context, image string) error {
	if err := hostsetup.CheckEngine(ctx); err != nil {
		return err
	}
	bnd, err := hostsetup.BoundingSet()
	if err != nil {
		return err
	}
	if missing := hostsetup.MissingCaps(bnd); len(missing) > 0 {
		rt, err := dockerOut(ctx, "info", "--format", "{{.DefaultRuntime}}")
		if err != nil {
			return err
		}
		if strings.TrimSpace(rt) != hostsetup.RuntimeName {
			return fmt.Errorf("this host's capability bounding set lacks %s, so privileged containers (kind's nodes) cannot start with dockerd's default runtime %q: run `fastpath host-setup docker` (installs the %s wrapper)",
				strings.Join(missing, ", "), strings.TrimSpace(rt), hostsetup.RuntimeName)
		}
	}
	if image == "" {
		return errors.New("no node image: run `make kind-node-image`")
	}
	if !kindnode.ImageExists(ctx, image) {
		return fmt.Errorf("node image %s is not in Docker's image store: run `make kind-node-image` (builds it offline)", image)
	}
	return nil
}

// dockerOut runs docker and returns its combined output.
func dockerOut(ctx context.Context, args ...string) (string, error) {
	out, err := execx.Run(ctx, "docker", args...)
	return string(out), err
}

// logger adapts kind's logger to a printf function.
type logger struct{ logf func(string, ...any) }

func (l logger) Warn(message string)                      { l.printf("kind: %s", message) }
func (l logger) Warnf(format string, args ...any)         { l.printf("kind: "+format, args...) }
func (l logger) Error(message string)                     { l.printf("kind: %s", message) }
func (l logger) Errorf(format string, args ...any)        { l.printf("kind: "+format, args...) }
func (l logger) V(level kindlog.Level) kindlog.InfoLogger { return infoLogger{l, level <= 0} }
func (l logger) printf(format string, args ...any) {
	if l.logf != nil {
		l.logf("%s", strings.TrimRight(fmt.Sprintf(format, args...), "\n"))
	}
}

type infoLogger struct {
	l       logger
	enabled bool
}

func (i infoLogger) Info(message string) {
	if i.enabled {
		i.l.printf("kind: %s", message)
	}
}

func (i infoLogger) Infof(format string, args ...any) {
	if i.enabled {
		i.l.printf("kind: "+format, args...)
	}
}

func (i infoLogger) Enabled() bool { return i.enabled }
