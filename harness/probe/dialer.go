package probe

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"

	"github.com/fastpath-bench/fastpath/harness/execx"
)

// Dialer opens many TCP probe connections from one namespace cheaply: one
// thread stays in the namespace and only creates sockets (a socket belongs
// to the namespace it is created in); connecting and the echo exchange run
// on ordinary goroutines. Connect makes a thread per call, which is fine
// for a few probes and too slow for one every millisecond.
type Dialer struct {
	reqs chan chan socketResult
	done chan struct{}
}

type socketResult struct {
	fd  int
	err error
}

// NewDialer starts a Dialer for namespace ns (by name).
func NewDialer(ns string) (*Dialer, error) {
	d := &Dialer{reqs: make(chan chan socketResult), done: make(chan struct{})}
	ready := make(chan error, 1)
	go func() {
		if err := execx.LockThreadInNetns(ns); err != nil {
			ready <- err
			return
		}
		ready <- nil
		for {
			select {
			case <-d.done:
				return
			case reply := <-d.reqs:
				fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, syscall.IPPROTO_TCP)
				reply <- socketResult{fd, err}
			}
		}
	}()
	if err := <-ready; err != nil {
		return nil, err
	}
	return d, nil
}

// Close stops the Dialer's thread.
func (d *Dialer) Close() { close(d.done) }

// Connect is the package's Connect for TCP, from the Dialer's namespace.
func (d *Dialer) Connect(ctx context.Context, dst netip.Addr, port int, timeout time.Duration) Result {
	start := time.Now()
	res := d.connect(ctx, dst, port, timeout)
	res.Elapsed = time.Since(start)
	return res
}

func (d *Dialer) connect(ctx context.Context, dst netip.Addr, port int, timeout time.Duration) Result {
	reply := make(chan socketResult, 1)
	select {
	case d.reqs <- reply:
	case <-d.done:
		return Result{Err: errors.New("dialer closed")}
	case <-ctx.Done():
		return Result{Err: ctx.Err()}
	}
	s := <-reply
	if s.err != nil {
		return Result{Err: fmt.Errorf("socket: %w", s.err)}
	}
	sa := &syscall.SockaddrInet4{Port: port, Addr: dst.As4()}
	if err := syscall.Connect(s.fd, sa); err != nil && !errors.Is(err, syscall.EINPROGRESS) {
		syscall.Close(s.fd)
		return Result{Err: fmt.Errorf("connect: %w", err)}
	}
	f := os.NewFile(uintptr(s.fd), "probe")
	conn, err := net.FileConn(f)
	f.Close()
	if err != nil {
		return Result{Err: err}
	}
	defer conn.Close()
	deadline := time.Now().Add(timeout)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	_ = conn.SetDeadline(deadline)
	// The write waits for the connection to be established (or fails when
	// it is refused, or times out when the SYN is dropped).
	if err := exchange(conn); err != nil {
		return Result{Err: err}
	}
	return Result{Connected: true}
}
