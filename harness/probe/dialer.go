package probe

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/fastpath-bench/fastpath/harness/execx"
)

// Dialer opens many TCP probe connections from one namespace cheaply: one
// thread stays in the namespace and only creates sockets (a socket belongs
// to the namespace it is created in), a batch at a time; connecting and the
// echo exchange run on ordinary goroutines, and a probe connection ends
// with a reset rather than a FIN handshake. Connect makes a thread per
// call, which is fine for a few probes and too slow for one every
// millisecond: a prober must disturb the system it measures as little as
// it can (every thread hand-off is a context switch on the same CPUs).
type Dialer struct {
	reqs chan chan socketResult
	done chan struct{}

	mu    sync.Mutex
	spare []int // sockets made ahead
}

type socketResult struct {
	fds []int
	err error
}

// dialerBatch is how many sockets the namespace thread makes per hand-off.
const dialerBatch = 32

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
				var res socketResult
				for len(res.fds) < dialerBatch {
					fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, syscall.IPPROTO_TCP)
					if err != nil {
						if len(res.fds) == 0 {
							res.err = err
						}
						break
					}
					res.fds = append(res.fds, fd)
				}
				reply <- res
			}
		}
	}()
	if err := <-ready; err != nil {
		return nil, err
	}
	return d, nil
}

// Close stops the Dialer's thread and closes the sockets made ahead.
func (d *Dialer) Close() {
	close(d.done)
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, fd := range d.spare {
		syscall.Close(fd)
	}
	d.spare = nil
}

// Connect is the package's Connect for TCP, from the Dialer's namespace.
func (d *Dialer) Connect(ctx context.Context, dst netip.Addr, port int, timeout time.Duration) Result {
	start := time.Now()
	res := d.connect(ctx, dst, port, timeout)
	res.Elapsed = time.Since(start)
	return res
}

// socket returns a socket made in the namespace.
func (d *Dialer) socket(ctx context.Context) (int, error) {
	d.mu.Lock()
	if n := len(d.spare); n > 0 {
		fd := d.spare[n-1]
		d.spare = d.spare[:n-1]
		d.mu.Unlock()
		return fd, nil
	}
	d.mu.Unlock()
	reply := make(chan socketResult, 1)
	select {
	case d.reqs <- reply:
	case <-d.done:
		return -1, errors.New("dialer closed")
	case <-ctx.Done():
		return -1, ctx.Err()
	}
	s := <-reply
	if s.err != nil {
		return -1, s.err
	}
	d.mu.Lock()
	select {
	case <-d.done:
		// Closed meanwhile: keep none.
		for _, fd := range s.fds[1:] {
			syscall.Close(fd)
		}
	default:
		d.spare = append(d.spare, s.fds[1:]...)
	}
	d.mu.Unlock()
	return s.fds[0], nil
}

func (d *Dialer) connect(ctx context.Context, dst netip.Addr, port int, timeout time.Duration) Result {
	fd, err := d.socket(ctx)
	if err != nil {
		return Result{Err: fmt.Errorf("socket: %w", err)}
	}
	s := struct{ fd int }{fd}
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
	defer func() {
		// A reset ends the probe: no FIN handshake, no TIME_WAIT.
		if tc, ok := conn.(*net.TCPConn); ok {
			_ = tc.SetLinger(0)
		}
		conn.Close()
	}()
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
