package clustermesh

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// MaxTxnOps is the most operations the publisher puts in one etcd
// transaction (etcd's default --max-txn-ops).
const MaxTxnOps = 128

// publishRetry is how often the publisher retries a failed write, and
// grants a new lease after losing its lease; backgroundTimeout bounds
// each such attempt (Publish waits for it).
const (
	publishRetry      = time.Second
	backgroundTimeout = 5 * time.Second
)

// Publisher writes one cluster's State under its prefix in the cluster's
// own etcd, every key attached to one lease that it keeps alive. One
// Publisher owns a prefix: a second one for the same cluster would delete
// the first one's keys.
//
// When the lease is lost (etcd unreachable for longer than the TTL, so the
// lease expired and its keys were deleted; or the lease was revoked) the
// publisher grants a new lease and writes the last State again; a Publish
// that failed is retried in the background until one succeeds.
type Publisher struct {
	cli  *clientv3.Client
	self Cluster
	ttl  time.Duration
	info ClusterInfo
	logf func(string, ...any)

	mu      sync.Mutex // serializes writes; guards the fields below
	lease   clientv3.LeaseID
	desired []kv // last State, encoded; nil before the first Publish
	dirty   bool // desired is not known to be written
	stopped bool

	kick   chan struct{} // a new lease was granted
	cancel context.CancelFunc
	done   chan struct{}
}

// NewPublisher returns a publisher for cfg's cluster writing through cli,
// a client of the cluster's own etcd. logf (nil: silent) gets a line
// for each lost lease and failed background write.
func NewPublisher(cfg *Config, cli *clientv3.Client, logf func(string, ...any)) (*Publisher, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logf == nil {
		logf = func(string, ...any) {}
	}
	ttl := cfg.TTL()
	return &Publisher{
		cli:  cli,
		self: cfg.Cluster,
		ttl:  ttl,
		info: ClusterInfo{
			Name: cfg.Name, ID: cfg.ClusterID(), LeaseTTLSeconds: int64(ttl / time.Second),
			PodCIDRs: prefixStrings(cfg.PodPrefixes()), ServiceCIDR: cfg.ServicePrefix().String(),
		},
		logf: logf,
		kick: make(chan struct{}, 1),
	}, nil
}

// Start grants the lease and writes the cluster key (an empty State, or
// the State of an earlier Publish), within ctx; then it keeps the lease
// alive in the background until Stop or Revoke (ctx ending does not stop
// it).
func (p *Publisher) Start(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done != nil || p.stopped {
		return errors.New("publisher already started")
	}
	if err := p.grantLocked(ctx); err != nil {
		return err
	}
	if p.desired == nil {
		var empty State
		p.desired, _ = empty.encode(p.self, p.info)
	}
	if err := p.syncLocked(ctx); err != nil {
		return err
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	ka, err := p.cli.KeepAlive(runCtx, p.lease)
	if err != nil {
		cancel()
		return fmt.Errorf("keep lease %x alive: %w", p.lease, err)
	}
	p.cancel, p.done = cancel, make(chan struct{})
	go p.run(runCtx, ka, p.lease)
	return nil
}

// Lease returns the current lease (0 while none is held).
func (p *Publisher) Lease() clientv3.LeaseID {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lease
}

// Publish replaces the published state by st: it writes the keys that are
// new or changed (or attached to an older lease) and deletes those no
// longer present, in transactions of at most MaxTxnOps operations
// (puts first, the cluster key, nodes and identities before the
// endpoints that use them; then deletes, endpoints first). A watcher sees
// each transaction at once, so a State that fits in one transaction
// replaces the previous one atomically. An invalid State is refused and
// nothing is written. When the write fails, st stays the desired state and
// is retried in the background. Before Start, Publish only records st.
func (p *Publisher) Publish(ctx context.Context, st State) error {
	kvs, err := st.encode(p.self, p.info)
	if err != nil {
		return fmt.Errorf("publish %s: %w", p.self.Name, err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		return fmt.Errorf("publish %s: publisher stopped", p.self.Name)
	}
	p.desired, p.dirty = kvs, true
	if p.done == nil {
		return nil // Start writes it
	}
	return p.syncLocked(ctx)
}

// Stop stops keeping the lease alive, as a crash would: the keys stay in
// etcd until the lease expires (at most the TTL later), then vanish
// together.
func (p *Publisher) Stop() {
	p.mu.Lock()
	cancel, done := p.cancel, p.done
	p.stopped = true
	p.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

// Revoke stops the publisher and revokes its lease: every key goes at once,
// as when a cluster leaves the mesh.
func (p *Publisher) Revoke(ctx context.Context) error {
	p.Stop()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.lease == 0 {
		return nil
	}
	_, err := p.cli.Revoke(ctx, p.lease)
	p.lease = 0
	return err
}

// run keeps the lease alive (ka is the keep-alive channel of lease
// kaLease), notices its loss and retries writes.
func (p *Publisher) run(ctx context.Context, ka <-chan *clientv3.LeaseKeepAliveResponse, kaLease clientv3.LeaseID) {
	defer close(p.done)
	retry := time.NewTicker(publishRetry)
	defer retry.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case _, ok := <-ka:
			if ok {
				continue
			}
			if ctx.Err() != nil {
				return
			}
			// The client closes the channel when the lease expired or no
			// keep-alive answer came for a whole TTL: etcd has deleted,
			// or will delete, every key attached to it.
			p.mu.Lock()
			p.logf("clustermesh: %s: lease %x lost; granting a new one and publishing again", p.self.Name, kaLease)
			if p.lease == kaLease {
				p.lease = 0
			}
			p.dirty = true
			p.mu.Unlock()
			ka, kaLease = nil, 0
		case <-p.kick:
		case <-retry.C:
		}
		p.mu.Lock()
		if p.dirty || p.lease == 0 {
			sctx, cancel := context.WithTimeout(ctx, backgroundTimeout)
			err := p.syncLocked(sctx)
			cancel()
			if err != nil && ctx.Err() == nil {
				p.logf("clustermesh: %s: publish: %v", p.self.Name, err)
			}
		}
		if p.lease != 0 && p.lease != kaLease {
			// A new lease (granted here or by Publish): keep it alive.
			// The old keep-alive, if any, ends with its lease.
			var err error
			if ka, err = p.cli.KeepAlive(ctx, p.lease); err != nil {
				p.logf("clustermesh: %s: keep lease %x alive: %v", p.self.Name, p.lease, err)
				ka, kaLease = nil, 0
			} else {
				kaLease = p.lease
			}
		}
		p.mu.Unlock()
	}
}

func (p *Publisher) grantLocked(ctx context.Context) error {
	resp, err := p.cli.Grant(ctx, int64(p.ttl/time.Second))
	if err != nil {
		return fmt.Errorf("grant lease (TTL %s) in %s's etcd: %w", p.ttl, p.self.Name, err)
	}
	p.lease = resp.ID
	select {
	case p.kick <- struct{}{}:
	default:
	}
	return nil
}

// syncLocked makes the prefix hold exactly p.desired, attached to p.lease
// (granting one when none is held).
func (p *Publisher) syncLocked(ctx context.Context) error {
	if p.lease == 0 {
		if err := p.grantLocked(ctx); err != nil {
			return err
		}
	}
	prefix := Prefix(p.self.Name)
	cur, err := p.cli.Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		return fmt.Errorf("read %s: %w", prefix, err)
	}
	type entry struct {
		value string
		lease clientv3.LeaseID
	}
	existing := make(map[string]entry, len(cur.Kvs))
	for _, e := range cur.Kvs {
		existing[strings.TrimPrefix(string(e.Key), prefix)] = entry{string(e.Value), clientv3.LeaseID(e.Lease)}
	}
	var ops []clientv3.Op
	want := make(map[string]bool, len(p.desired))
	for _, e := range p.desired {
		want[e.key] = true
		if old, ok := existing[e.key]; ok && old.value == e.value && old.lease == p.lease {
			continue
		}
		ops = append(ops, clientv3.OpPut(prefix+e.key, e.value, clientv3.WithLease(p.lease)))
	}
	// Deletes: endpoints first, then services, identities and nodes.
	for _, dir := range []string{dirEndpoints, dirServices, dirIdentities, dirNodes, ""} {
		for _, e := range cur.Kvs {
			k := strings.TrimPrefix(string(e.Key), prefix)
			if want[k] || !strings.HasPrefix(k, dir) {
				continue
			}
			want[k] = true // deleted once
			ops = append(ops, clientv3.OpDelete(prefix+k))
		}
	}
	for len(ops) > 0 {
		n := min(len(ops), MaxTxnOps)
		resp, err := p.cli.Txn(ctx).Then(ops[:n]...).Commit()
		if err != nil {
			if isLeaseNotFound(err) {
				p.lease = 0
			}
			return fmt.Errorf("write %s: %w", prefix, err)
		}
		if !resp.Succeeded {
			return fmt.Errorf("write %s: transaction not applied", prefix)
		}
		ops = ops[n:]
	}
	p.dirty = false
	return nil
}

func prefixStrings(ps []netip.Prefix) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.String()
	}
	return out
}

func isLeaseNotFound(err error) bool {
	return errors.Is(err, rpctypes.ErrLeaseNotFound) || err != nil && strings.Contains(err.Error(), rpctypes.ErrLeaseNotFound.Error())
}
