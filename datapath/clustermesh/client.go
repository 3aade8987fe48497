package clustermesh

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// PreflightTimeout bounds Preflight's check of each etcd endpoint.
const PreflightTimeout = 3 * time.Second

// NewClient returns an etcd client for endpoints (URLs validated by
// Config.Validate). It does not wait for a connection: requests made while
// no endpoint answers fail when their context ends.
func NewClient(endpoints []string) (*clientv3.Client, error) {
	return clientv3.New(clientv3.Config{
		Endpoints:            endpoints,
		DialTimeout:          2 * time.Second,
		DialKeepAliveTime:    5 * time.Second,
		DialKeepAliveTimeout: 2 * time.Second,
		Logger:               zap.NewNop(),
	})
}

// Preflight validates cfg and then checks every etcd endpoint of every
// cluster (this one and its peers), concurrently: each must answer a
// linearizable read of its cluster's prefix (so it is an etcd with a
// leader) within PreflightTimeout. The error names each cluster and
// endpoint that did not answer. Nothing is written.
func Preflight(ctx context.Context, cfg *Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	type check struct {
		what     string
		cluster  string
		endpoint string
	}
	var checks []check
	for i, cl := range append([]Cluster{cfg.Cluster}, cfg.Peers...) {
		what := fmt.Sprintf("cluster %q (id %d, this cluster)", cl.Name, cl.ID)
		if i > 0 {
			what = fmt.Sprintf("cluster %q (id %d, peers[%d])", cl.Name, cl.ID, i-1)
		}
		for _, ep := range cl.Endpoints {
			checks = append(checks, check{what, cl.Name, ep})
		}
	}
	errs := make([]error, len(checks))
	var wg sync.WaitGroup
	for i, c := range checks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := pingEndpoint(ctx, c.endpoint, Prefix(c.cluster)); err != nil {
				errs[i] = fmt.Errorf("%s: etcd endpoint %s unreachable: %w", c.what, c.endpoint, err)
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func pingEndpoint(ctx context.Context, endpoint, prefix string) error {
	cli, err := NewClient([]string{endpoint})
	if err != nil {
		return err
	}
	defer cli.Close()
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, PreflightTimeout)
	defer cancel()
	if _, err := cli.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithCountOnly()); err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("no answer within %s", time.Since(start).Round(100*time.Millisecond))
		}
		return err
	}
	return nil
}
