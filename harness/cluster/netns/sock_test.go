package netns

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fastpath-bench/fastpath/datapath/agentapi"
	"github.com/fastpath-bench/fastpath/harness/cluster"
	"github.com/fastpath-bench/fastpath/harness/execx"
)

// sockCluster is a two-node cluster for the socket program tests: client
// and server on n1, server2 on n2, echo servers on 8080 (TCP, UDP) and
// 9090 (TCP) in both servers. The test process joins n1's pod cgroup
// before it creates any socket, so its sockets are what a process in a
// pod of n1 would create: the n1 agent's socket programs apply to them.
type sockCluster struct {
	c    *Cluster
	pods map[string]cluster.Pod
}

func newSockCluster(t *testing.T, state map[string]string, agentFlags ...string) *sockCluster {
	t.Helper()
	c := testCluster(t, []string{"n1", "n2"},
		cluster.PodSpec{Namespace: "t", Name: "client", Node: "n1", Labels: map[string]string{"app": "client"}},
		cluster.PodSpec{Namespace: "t", Name: "server", Node: "n1", Labels: map[string]string{"app": "server"}},
		cluster.PodSpec{Namespace: "t", Name: "server2", Node: "n2", Labels: map[string]string{"app": "server"}})
	if c.NodeCgroup("n1") == "" {
		t.Fatal("no cgroup v2 hierarchy: socket programs cannot be tested")
	}
	restore, err := JoinCgroup(c.NodeCgroup("n1"))
	if err != nil {
		t.Fatal(err)
	}
	// Runs before Destroy (cleanups run last-in first-out), which kills
	// whatever is left in the run's cgroups.
	t.Cleanup(func() {
		if err := restore(); err != nil {
			t.Errorf("leave cgroup: %v", err)
		}
	})
	sc := &sockCluster{c: c, pods: podsByName(c)}
	serve(t, c, 8080, []string{"TCP", "UDP"}, "t/server", "t/server2")
	serve(t, c, 9090, []string{"TCP"}, "t/server", "t/server2")
	for name, doc := range state {
		if _, err := c.WriteState(name, []byte(sc.expand(doc))); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.StartAgents(context.Background(), cluster.AgentOptions{Datapath: "ebpf", ExtraArgs: agentFlags}); err != nil {
		t.Fatal(err)
	}
	return sc
}

// expand replaces {{pod}} with the pod's address.
func (sc *sockCluster) expand(doc string) string {
	for name, p := range sc.pods {
		doc = strings.ReplaceAll(doc, "{{"+name+"}}", p.IP.String())
	}
	return doc
}

func (sc *sockCluster) write(t *testing.T, name, doc string) {
	t.Helper()
	hash, err := sc.c.WriteState(name, []byte(sc.expand(doc)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := sc.c.WaitProgrammed(ctx, hash, time.Now()); err != nil {
		t.Fatal(err)
	}
}

// dial connects from the client pod.
func (sc *sockCluster) dial(network, addr string, timeout time.Duration) (net.Conn, error) {
	var conn net.Conn
	err := execx.RunInNetns(sc.c.PodNetns("t/client"), func() error {
		var err error
		conn, err = net.DialTimeout(network, addr, timeout)
		return err
	})
	return conn, err
}

// kernelPeer returns the remote address the kernel's TCP socket with local
// port lport in the client pod is connected to (/proc/net/tcp), which is
// what the packets carry, whatever getpeername() says.
func (sc *sockCluster) kernelPeer(lport int) (netip.AddrPort, error) {
	var out netip.AddrPort
	err := execx.RunInNetns(sc.c.PodNetns("t/client"), func() error {
		f, err := os.Open("/proc/thread-self/net/tcp")
		if err != nil {
			return err
		}
		defer f.Close()
		s := bufio.NewScanner(f)
		for s.Scan() {
			fields := strings.Fields(s.Text())
			if len(fields) < 3 || fields[0] == "sl" {
				continue
			}
			local, err1 := parseProcAddr(fields[1])
			remote, err2 := parseProcAddr(fields[2])
			if err1 == nil && err2 == nil && int(local.Port()) == lport {
				out = remote
				return nil
			}
		}
		return fmt.Errorf("no TCP socket with local port %d", lport)
	})
	return out, err
}

// parseProcAddr parses "0100007F:1F90" (address in host order on
// little-endian machines, port in hex).
func parseProcAddr(s string) (netip.AddrPort, error) {
	a, p, ok := strings.Cut(s, ":")
	if !ok || len(a) != 8 {
		return netip.AddrPort{}, fmt.Errorf("bad address %q", s)
	}
	b, err := hex.DecodeString(a)
	if err != nil {
		return netip.AddrPort{}, err
	}
	port, err := strconv.ParseUint(p, 16, 16)
	if err != nil {
		return netip.AddrPort{}, err
	}
	var ip [4]byte
	binary.BigEndian.PutUint32(ip[:], binary.LittleEndian.Uint32(b))
	return netip.AddrPortFrom(netip.AddrFrom4(ip), uint16(port)), nil
}

// echo sends msg and reads it back; msg must be at least 4 bytes (the probe
// server peeks 4 bytes to tell HTTP from an echo).
func echo(conn net.Conn, msg string) error {
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := conn.Write([]byte(msg)); err != nil {
		return err
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(conn, buf); err != nil {
		return err
	}
	if string(buf) != msg {
		return fmt.Errorf("echo %q, want %q", buf, msg)
	}
	return nil
}

// metric reads a datapath counter of an agent from /metrics.
func (sc *sockCluster) metric(t *testing.T, node, reason string) int64 {
	t.Helper()
	b, err := agentapi.NewClient(sc.c.AgentSocket(node)).Get(context.Background(), "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "fastpath_datapath_packets_total{") && strings.Contains(line, `reason="`+reason+`"`) {
			f := strings.Fields(line)
			n, _ := strconv.ParseInt(f[len(f)-1], 10, 64)
			total += n
		}
	}
	return total
}

const sockServices = `apiVersion: v1
kind: Service
metadata: {name: local, namespace: t}
spec:
  clusterIP: 10.96.0.10
  ports:
  - {name: tcp, protocol: TCP, port: 80, targetPort: 8080}
  - {name: udp, protocol: UDP, port: 80, targetPort: 8080}
  - {name: closed, protocol: TCP, port: 90, targetPort: 9090}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: local, namespace: t, labels: {kubernetes.io/service-name: local}}
addressType: IPv4
endpoints:
- addresses: ["{{server}}"]
  conditions: {ready: true}
ports:
- {name: tcp, protocol: TCP, port: 8080}
- {name: udp, protocol: UDP, port: 8080}
- {name: closed, protocol: TCP, port: 9090}
---
apiVersion: v1
kind: Service
metadata: {name: remote, namespace: t}
spec:
  clusterIP: 10.96.0.11
  ports:
  - {name: tcp, protocol: TCP, port: 80, targetPort: 8080}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: remote, namespace: t, labels: {kubernetes.io/service-name: remote}}
addressType: IPv4
endpoints:
- addresses: ["{{server2}}"]
  conditions: {ready: true}
ports:
- {name: tcp, protocol: TCP, port: 8080}
---
apiVersion: v1
kind: Service
metadata: {name: empty, namespace: t}
spec:
  clusterIP: 10.96.0.12
  ports:
  - {name: tcp, protocol: TCP, port: 80, targetPort: 8080}
`

// Servers admit the client on 8080 (TCP and UDP) only.
const sockPolicy = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: servers, namespace: t}
spec:
  podSelector: {matchLabels: {app: server}}
  policyTypes: [Ingress]
  ingress:
  - from: [{podSelector: {matchLabels: {app: client}}}]
    ports: [{protocol: TCP, port: 8080}, {protocol: UDP, port: 8080}]
`

// The same servers admitting nobody.
const sockPolicyDenyAll = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: servers, namespace: t}
spec:
  podSelector: {matchLabels: {app: server}}
  policyTypes: [Ingress]
`

// TestSocketLB: with --socket-lb a pod's connect() and sendmsg() to a
// ClusterIP go straight to the backend (the kernel socket's peer is the
// backend: nothing is translated per packet), while getpeername() and
// recvfrom() report the ClusterIP; policy still applies to the backend; a
// service without backends fails connect() at once.
func TestSocketLB(t *testing.T) {
	sc := newSockCluster(t, map[string]string{"10-services.yaml": sockServices, "20-policy.yaml": sockPolicy}, "--socket-lb")
	server, server2 := sc.pods["server"].IP, sc.pods["server2"].IP

	for _, tc := range []struct {
		vip     string
		backend netip.Addr
	}{{"10.96.0.10:80", server}, {"10.96.0.11:80", server2}} {
		conn, err := sc.dial("tcp4", tc.vip, 2*time.Second)
		if err != nil {
			t.Fatalf("connect %s: %v", tc.vip, err)
		}
		if err := echo(conn, "hello "+tc.vip); err != nil {
			t.Errorf("%s: %v", tc.vip, err)
		}
		if got := conn.RemoteAddr().String(); got != tc.vip {
			t.Errorf("%s: getpeername says %s, want the ClusterIP", tc.vip, got)
		}
		lport := conn.LocalAddr().(*net.TCPAddr).Port
		peer, err := sc.kernelPeer(lport)
		if err != nil {
			t.Fatal(err)
		}
		if want := netip.AddrPortFrom(tc.backend, 8080); peer != want {
			t.Errorf("%s: the kernel socket is connected to %s, want the backend %s", tc.vip, peer, want)
		}
		conn.Close()
	}
	if n := sc.metric(t, "n1", "REASON_SOCK_LB"); n < 2 {
		t.Errorf("n1 counted %d socket translations, want at least 2", n)
	}

	// Policy applies to the backend's port: 9090 is not admitted.
	if conn, err := sc.dial("tcp4", "10.96.0.10:90", 500*time.Millisecond); err == nil {
		conn.Close()
		t.Error("10.96.0.10:90 -> server:9090 connected; the servers' policy admits only 8080")
	}

	// No backend: connect fails at once (EPERM from the cgroup hook).
	start := time.Now()
	if conn, err := sc.dial("tcp4", "10.96.0.12:80", 2*time.Second); err == nil {
		conn.Close()
		t.Error("a service without backends connected")
	} else if !errors.Is(err, syscall.EPERM) || time.Since(start) > time.Second {
		t.Errorf("service without backends: %v after %s, want EPERM at once", err, time.Since(start))
	}

	// UDP, unconnected: sendto(ClusterIP) reaches the backend, and the
	// reply's source is the ClusterIP (recvmsg4).
	err := execx.RunInNetns(sc.c.PodNetns("t/client"), func() error {
		pc, err := net.ListenPacket("udp4", ":0")
		if err != nil {
			return err
		}
		defer pc.Close()
		vip := &net.UDPAddr{IP: net.IPv4(10, 96, 0, 10), Port: 80}
		_ = pc.SetDeadline(time.Now().Add(2 * time.Second))
		if _, err := pc.WriteTo([]byte("udp ping"), vip); err != nil {
			return fmt.Errorf("sendto: %w", err)
		}
		buf := make([]byte, 64)
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return fmt.Errorf("recvfrom: %w", err)
		}
		if string(buf[:n]) != "udp ping" {
			return fmt.Errorf("UDP echo %q", buf[:n])
		}
		if from.String() != vip.String() {
			return fmt.Errorf("UDP reply from %s, want the ClusterIP %s", from, vip)
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
	// UDP, connected.
	if conn, err := sc.dial("udp4", "10.96.0.10:80", time.Second); err != nil {
		t.Error(err)
	} else {
		if err := echo(conn, "connected udp"); err != nil {
			t.Errorf("connected UDP: %v", err)
		}
		if got := conn.RemoteAddr().String(); got != "10.96.0.10:80" {
			t.Errorf("connected UDP: getpeername says %s", got)
		}
		conn.Close()
	}
}

// TestSockmap: with --sockmap a TCP connection between two pods of n1 is
// accelerated (payload moved socket to socket, counted as REASON_SOCKMAP),
// a cross-node one is not; a policy change that denies the established
// connection stops it (sends fail), and allowing it again resumes it.
func TestSockmap(t *testing.T) {
	sc := newSockCluster(t, map[string]string{"20-policy.yaml": sockPolicy}, "--sockmap")
	server := netip.AddrPortFrom(sc.pods["server"].IP, 8080)
	server2 := netip.AddrPortFrom(sc.pods["server2"].IP, 8080)

	before := sc.metric(t, "n1", "REASON_SOCKMAP")
	conn, err := sc.dial("tcp4", server.String(), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for i := 0; i < 10; i++ {
		if err := echo(conn, fmt.Sprintf("message %d", i)); err != nil {
			t.Fatalf("same-node echo %d: %v", i, err)
		}
	}
	// Both directions of ten exchanges went socket to socket.
	if got := sc.metric(t, "n1", "REASON_SOCKMAP") - before; got < 20 {
		t.Errorf("n1 redirected %d messages, want at least 20", got)
	}

	remote, err := sc.dial("tcp4", server2.String(), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	before = sc.metric(t, "n1", "REASON_SOCKMAP")
	if err := echo(remote, "cross-node"); err != nil {
		t.Fatal(err)
	}
	remote.Close()
	if got := sc.metric(t, "n1", "REASON_SOCKMAP") - before; got != 0 {
		t.Errorf("a cross-node connection was redirected (%d messages)", got)
	}

	// Deny: the established, accelerated connection stops.
	sc.write(t, "20-policy.yaml", sockPolicyDenyAll)
	if err := echo(conn, "after deny"); err == nil {
		t.Error("an accelerated connection the policy now denies still exchanges data")
	} else if !errors.Is(err, syscall.EACCES) {
		t.Logf("send after deny: %v", err)
	}
	if n := sc.metric(t, "n1", "DROP_POLICY"); n == 0 {
		t.Error("the refused send was not counted as DROP_POLICY")
	}
	if c2, err := sc.dial("tcp4", server.String(), 300*time.Millisecond); err == nil {
		c2.Close()
		t.Error("a new connection connected under deny-all")
	}

	// Allowed again: a new connection is accelerated again.
	sc.write(t, "20-policy.yaml", sockPolicy)
	conn2, err := sc.dial("tcp4", server.String(), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn2.Close()
	before = sc.metric(t, "n1", "REASON_SOCKMAP")
	if err := echo(conn2, "allowed again"); err != nil {
		t.Fatal(err)
	}
	if got := sc.metric(t, "n1", "REASON_SOCKMAP") - before; got < 2 {
		t.Errorf("redirected %d messages after the allow, want 2", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := agentapi.NewClient(sc.c.AgentSocket("n1")).WaitFor(ctx, 50*time.Millisecond, func(st *agentapi.Status) bool {
		return st.SockmapFlows >= 2
	}); err != nil {
		t.Errorf("agent status never counted the accelerated connection's two sockets: %v", err)
	}
}

// backendOf returns the server pod holding the other end of conn (a TCP
// connection from the client pod), from the servers' /proc/net/tcp.
func (sc *sockCluster) backendOf(t *testing.T, conn net.Conn) string {
	t.Helper()
	client := netip.AddrPortFrom(sc.pods["client"].IP, uint16(conn.LocalAddr().(*net.TCPAddr).Port))
	found := ""
	for _, name := range []string{"server", "server2"} {
		err := execx.RunInNetns(sc.c.PodNetns("t/"+name), func() error {
			b, err := os.ReadFile("/proc/thread-self/net/tcp")
			if err != nil {
				return err
			}
			for _, line := range strings.Split(string(b), "\n") {
				f := strings.Fields(line)
				if len(f) < 4 || f[0] == "sl" || f[3] != "01" {
					continue
				}
				if remote, err := parseProcAddr(f[2]); err == nil && remote == client {
					found = name
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if found == "" {
		t.Fatalf("no server holds the connection from %s", client)
	}
	return found
}

// pairService is a ClusterIP with backends server and server2, each ready,
// terminating (still serving) or absent.
func pairService(states map[string]string, ips map[string]cluster.Pod) string {
	var eps strings.Builder
	for _, name := range []string{"server", "server2"} {
		switch states[name] {
		case "ready":
			fmt.Fprintf(&eps, "- addresses: [%q]\n  conditions: {ready: true}\n", ips[name].IP)
		case "terminating":
			fmt.Fprintf(&eps, "- addresses: [%q]\n  conditions: {ready: false, serving: true, terminating: true}\n", ips[name].IP)
		}
	}
	return `apiVersion: v1
kind: Service
metadata: {name: pair, namespace: t}
spec:
  clusterIP: 10.96.0.20
  ports:
  - {name: tcp, protocol: TCP, port: 80, targetPort: 8080}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: pair, namespace: t, labels: {kubernetes.io/service-name: pair}}
addressType: IPv4
endpoints:
` + eps.String() + `ports:
- {name: tcp, protocol: TCP, port: 8080}
`
}

// TestServiceFlows follows real connections through the TC load balancer
// (no socket programs): they survive an agent restart (conntrack and the
// backend ids are in pinned maps) on the same backend; a backend turning
// terminating keeps its flows and gets no new ones; a backend removed
// mid-flow gets its flows reset at once (their next packet is sent to
// another backend, which answers with a RST) instead of leaving them to
// time out, and new flows go to the backend left.
func TestServiceFlows(t *testing.T) {
	sc := newSockCluster(t, map[string]string{"20-policy.yaml": sockPolicy, "10-pair.yaml": ""})
	both := map[string]string{"server": "ready", "server2": "ready"}
	sc.write(t, "10-pair.yaml", pairService(both, sc.pods))

	var conns []net.Conn
	backends := map[string]string{}
	for i := 0; i < 6; i++ {
		conn, err := sc.dial("tcp4", "10.96.0.20:80", 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if err := echo(conn, "first"); err != nil {
			t.Fatal(err)
		}
		conns = append(conns, conn)
		backends[conn.LocalAddr().String()] = sc.backendOf(t, conn)
	}

	// Agent restart: every flow keeps its backend.
	ctx := context.Background()
	if err := sc.c.StopAgents(ctx); err != nil {
		t.Fatal(err)
	}
	if err := sc.c.StartAgents(ctx, cluster.AgentOptions{Datapath: "ebpf"}); err != nil {
		t.Fatal(err)
	}
	for _, conn := range conns {
		if err := echo(conn, "after restart"); err != nil {
			t.Errorf("flow %s after the agents restarted: %v", conn.LocalAddr(), err)
		} else if b := sc.backendOf(t, conn); b != backends[conn.LocalAddr().String()] {
			t.Errorf("flow %s moved from %s to %s", conn.LocalAddr(), backends[conn.LocalAddr().String()], b)
		}
	}

	// Terminating: its flows go on, new flows go to the other backend.
	victim := backends[conns[0].LocalAddr().String()]
	other := map[string]string{"server": "server2", "server2": "server"}[victim]
	sc.write(t, "10-pair.yaml", pairService(map[string]string{victim: "terminating", other: "ready"}, sc.pods))
	if err := echo(conns[0], "while terminating"); err != nil {
		t.Errorf("a flow to a terminating backend: %v", err)
	}
	for i := 0; i < 4; i++ {
		conn, err := sc.dial("tcp4", "10.96.0.20:80", 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if err := echo(conn, "new flow"); err != nil {
			t.Error(err)
		} else if b := sc.backendOf(t, conn); b != other {
			t.Errorf("a new flow went to %s, which is terminating", b)
		}
		conn.Close()
	}

	// Removed: its flows are reset at once.
	sc.write(t, "10-pair.yaml", pairService(map[string]string{other: "ready"}, sc.pods))
	start := time.Now()
	err := echo(conns[0], "after removal")
	if err == nil {
		t.Error("a flow to a removed backend still works")
	} else if !errors.Is(err, syscall.ECONNRESET) || time.Since(start) > time.Second {
		t.Errorf("a flow to a removed backend: %v after %s, want a reset at once", err, time.Since(start))
	}
	conn, err := sc.dial("tcp4", "10.96.0.20:80", 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := echo(conn, "new flow"); err != nil {
		t.Error(err)
	} else if b := sc.backendOf(t, conn); b != other {
		t.Errorf("a new flow went to %s, which was removed", b)
	}
}
