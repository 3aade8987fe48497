package embedetcd

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// TestRestart starts a member on free ports, writes a key, and starts it
// again on the same ports and data: the key is still there.
func TestRestart(t *testing.T) {
	dir := t.TempDir()
	opts := Options{Dir: filepath.Join(dir, "data"), LogFile: filepath.Join(dir, "etcd.log"), NoFsync: true}
	s, err := Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{s.Endpoint()}, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := cli.Put(ctx, "k", "v"); err != nil {
		t.Fatal(err)
	}
	s.Close()
	opts.ClientURL, opts.PeerURL = s.Endpoint(), s.PeerURL()
	s2, err := Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if s2.Endpoint() != s.Endpoint() {
		t.Errorf("endpoint %s, want %s", s2.Endpoint(), s.Endpoint())
	}
	resp, err := cli.Get(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "v" {
		t.Errorf("after restart: %v", resp.Kvs)
	}
	if _, err := Start(Options{}); err == nil {
		t.Error("Start without a data directory: no error")
	}
}
