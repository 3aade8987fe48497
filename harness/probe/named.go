package probe

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"
)

// NameServer answers every TCP connection with a fixed text (a pod's
// name, say) and closes it: a client sees which backend a load balancer
// chose.
type NameServer struct {
	l    net.Listener
	wg   sync.WaitGroup
	once sync.Once
}

// ServeName starts a NameServer on port in network namespace ns (by
// name; "" means the caller's) that answers text.
func ServeName(ns string, port int, text string) (*NameServer, error) {
	s := &NameServer{}
	if err := inNS(ns, func() (err error) {
		s.l, err = net.Listen("tcp4", fmt.Sprintf("0.0.0.0:%d", port))
		return err
	}); err != nil {
		return nil, fmt.Errorf("name server on %s:%d: %w", ns, port, err)
	}
	s.wg.Go(func() {
		for {
			c, err := s.l.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write([]byte(text))
			c.Close()
		}
	})
	return s, nil
}

// Close stops the server: connections to its port are refused from then
// on, as when the pod's process is gone. Closing twice is no error.
func (s *NameServer) Close() error {
	s.once.Do(func() {
		s.l.Close()
		s.wg.Wait()
	})
	return nil
}

// AskName connects from namespace ns to dst:port and returns what a
// NameServer there answered (the text up to its close).
func AskName(ns string, dst netip.AddrPort, timeout time.Duration) (string, error) {
	var c net.Conn
	if err := inNS(ns, func() (err error) {
		c, err = net.DialTimeout("tcp4", dst.String(), timeout)
		return err
	}); err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	b, err := io.ReadAll(c)
	return string(b), err
}

// peerLog keeps the peer addresses of a Server's TCP connections.
type peerLog struct {
	once sync.Once
	ch   chan netip.Addr
}

// PeerBuffer is how many peer addresses Server.Peers holds unread; later
// ones are dropped.
const PeerBuffer = 64

// Peers gives the peer address of each TCP connection the server
// accepts from now on, in order (the source a destination sees: after
// SNAT, the translated one).
func (s *Server) Peers() <-chan netip.Addr {
	s.peers.once.Do(func() {
		s.mu.Lock()
		s.peers.ch = make(chan netip.Addr, PeerBuffer)
		s.mu.Unlock()
	})
	return s.peers.ch
}

// notePeer records c's peer for Peers.
func (s *Server) notePeer(c net.Conn) {
	s.mu.Lock()
	ch := s.peers.ch
	s.mu.Unlock()
	if ch == nil {
		return
	}
	ap, err := netip.ParseAddrPort(c.RemoteAddr().String())
	if err != nil {
		return
	}
	select {
	case ch <- ap.Addr().Unmap():
	default:
	}
}
