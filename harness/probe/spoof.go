package probe

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// A spoofed probe sends UDP datagrams from one namespace with another
// address as source (a pod forging a peer's address) and asks whether a
// probe server of this process received them: no reply can come back
// (it would go to the owner of the forged address), so delivery is seen
// at the server. Only servers started by Serve in this process count.

// spoofPrefix starts a spoofed probe's payload; the UDP server reports
// such datagrams instead of echoing them.
const spoofPrefix = "fp-spoof-"

var (
	spoofSeq        atomic.Uint64
	spoofDeliveries sync.Map // token -> chan struct{}
)

// delivered records the arrival of an expected datagram.
func delivered(payload []byte) bool {
	if !strings.HasPrefix(string(payload), spoofPrefix) {
		return false
	}
	if ch, ok := spoofDeliveries.Load(string(payload)); ok {
		select {
		case ch.(chan struct{}) <- struct{}{}:
		default:
		}
	}
	return true
}

// Expected is a datagram a probe server of this process reports when it
// arrives (instead of echoing it): for probes whose reply cannot come
// back, such as forged sources.
type Expected struct {
	// Payload is what to send.
	Payload []byte
	got     chan struct{}
}

// ExpectDatagram registers a new expected datagram; Close it after use.
func ExpectDatagram() *Expected {
	e := &Expected{Payload: fmt.Appendf(nil, "%s%d", spoofPrefix, spoofSeq.Add(1)), got: make(chan struct{}, 1)}
	spoofDeliveries.Store(string(e.Payload), e.got)
	return e
}

// Arrived is readable once a server received the datagram.
func (e *Expected) Arrived() <-chan struct{} { return e.got }

// Close forgets the datagram.
func (e *Expected) Close() { spoofDeliveries.Delete(string(e.Payload)) }

// Resend calls send three times within timeout (datagrams may be lost)
// until the datagram arrived: Connected when it did.
func (e *Expected) Resend(ctx context.Context, timeout time.Duration, send func() error) Result {
	start := time.Now()
	res := Result{}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(timeout / 3)
	defer tick.Stop()
	for {
		if err := send(); err != nil {
			res.Err = err
			res.Elapsed = time.Since(start)
			return res
		}
		select {
		case <-e.got:
			res.Connected = true
			res.Elapsed = time.Since(start)
			return res
		case <-ctx.Done():
			res.Err = fmt.Errorf("the datagram did not arrive within %s", timeout)
			res.Elapsed = time.Since(start)
			return res
		case <-tick.C:
		}
	}
}

// Spoofed sends UDP datagrams from namespace ns with source address src
// (not ns's own: the socket is transparent, IP_TRANSPARENT) to dst:port,
// three times within timeout, and reports Connected when a probe server
// of this process received one.
func Spoofed(ctx context.Context, ns string, src, dst netip.Addr, port int, timeout time.Duration) Result {
	e := ExpectDatagram()
	defer e.Close()
	var fd int
	err := inNS(ns, func() error {
		var err error
		fd, err = syscall.Socket(syscall.AF_INET, syscall.SOCK_DGRAM|syscall.SOCK_CLOEXEC, syscall.IPPROTO_UDP)
		if err != nil {
			return err
		}
		if err := syscall.SetsockoptInt(fd, syscall.SOL_IP, syscall.IP_TRANSPARENT, 1); err != nil {
			syscall.Close(fd)
			return fmt.Errorf("IP_TRANSPARENT: %w", err)
		}
		if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: src.As4()}); err != nil {
			syscall.Close(fd)
			return fmt.Errorf("bind %s: %w", src, err)
		}
		return nil
	})
	if err != nil {
		return Result{Err: err}
	}
	defer syscall.Close(fd)
	to := &syscall.SockaddrInet4{Port: port, Addr: dst.As4()}
	return e.Resend(ctx, timeout, func() error {
		if err := syscall.Sendto(fd, e.Payload, 0, to); err != nil {
			return fmt.Errorf("send from %s: %w", src, err)
		}
		return nil
	})
}
