// Package embedetcd runs an etcd server inside the process
// (go.etcd.io/etcd/server/v3/embed): the per-cluster etcd of the netns
// provider's clusters, and of the clustermesh tests. It is a package of
// its own so that importers of clustermesh (the agent) link the etcd
// client only.
package embedetcd

import (
	"errors"
	"fmt"
	"net/url"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
)

// Options configure a single-member etcd.
type Options struct {
	// Name is the member name (default "default").
	Name string
	// Dir is the data directory (required). Starting again with the same
	// directory keeps the data and the revisions.
	Dir string
	// ClientURL and PeerURL are where etcd listens (default
	// http://127.0.0.1:0 each: a free port; Endpoint says which).
	ClientURL, PeerURL string
	// LogLevel is etcd's (zap) log level (default "error").
	LogLevel string
	// LogFile receives etcd's log (default: standard error). Close logs
	// a few spurious "server closed" errors.
	LogFile string
	// StartTimeout bounds the wait for the member to be ready (default
	// 30s).
	StartTimeout time.Duration
	// NoFsync skips fsync (tests only: a crash loses data).
	NoFsync bool
}

// Server is a running etcd member.
type Server struct {
	e              *embed.Etcd
	endpoint, peer string
}

// Start starts the member and waits until it serves clients.
func Start(o Options) (*Server, error) {
	if o.Dir == "" {
		return nil, errors.New("embedetcd: no data directory")
	}
	if o.Name == "" {
		o.Name = "default"
	}
	if o.ClientURL == "" {
		o.ClientURL = "http://127.0.0.1:0"
	}
	if o.PeerURL == "" {
		o.PeerURL = "http://127.0.0.1:0"
	}
	if o.LogLevel == "" {
		o.LogLevel = "error"
	}
	if o.StartTimeout == 0 {
		o.StartTimeout = 30 * time.Second
	}
	cu, err := url.Parse(o.ClientURL)
	if err != nil {
		return nil, fmt.Errorf("embedetcd: client URL: %w", err)
	}
	pu, err := url.Parse(o.PeerURL)
	if err != nil {
		return nil, fmt.Errorf("embedetcd: peer URL: %w", err)
	}
	cfg := embed.NewConfig()
	cfg.Name = o.Name
	cfg.Dir = o.Dir
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*cu}, []url.URL{*cu}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*pu}, []url.URL{*pu}
	cfg.InitialCluster = cfg.InitialClusterFromName(o.Name)
	cfg.LogLevel = o.LogLevel
	if o.LogFile != "" {
		cfg.LogOutputs = []string{o.LogFile}
	}
	cfg.UnsafeNoFsync = o.NoFsync
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, fmt.Errorf("embedetcd: start %s in %s: %w", o.Name, o.Dir, err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("embedetcd: %s: %w", o.Name, err)
	case <-time.After(o.StartTimeout):
		e.Server.Stop()
		e.Close()
		return nil, fmt.Errorf("embedetcd: %s not ready within %s", o.Name, o.StartTimeout)
	}
	return &Server{e: e, endpoint: "http://" + e.Clients[0].Addr().String(), peer: "http://" + e.Peers[0].Addr().String()}, nil
}

// Endpoint is the client URL with the port actually bound.
func (s *Server) Endpoint() string { return s.endpoint }

// PeerURL is the peer URL with the port actually bound (to start the
// member again on the same ports).
func (s *Server) PeerURL() string { return s.peer }

// Close stops the member and closes its listeners.
func (s *Server) Close() { s.e.Close() }

// Kill stops the member at once, as a crash or a cut cable would: the
// server stops serving now, and the listeners are closed in the
// background (Close waits several seconds for clients' streams); the
// returned channel is closed once they are, and the ports free.
func (s *Server) Kill() <-chan struct{} {
	s.e.Server.HardStop()
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.e.Close()
	}()
	return done
}
