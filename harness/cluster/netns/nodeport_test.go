package netns

import (
	"context"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/fastpath-bench/fastpath/harness/cluster"
	"github.com/fastpath-bench/fastpath/harness/execx"
	"github.com/fastpath-bench/fastpath/harness/probe"
)

// Two NodePort services: "here" on 30081 with its backend on n1 (server),
// "there" on 30082 with its backend on n2 (server2).
const nodePortServices = `apiVersion: v1
kind: Service
metadata: {name: here, namespace: t}
spec:
  type: NodePort
  clusterIP: 10.96.1.1
  ports:
  - {name: tcp, protocol: TCP, port: 80, targetPort: 8080, nodePort: 30081}
  - {name: udp, protocol: UDP, port: 80, targetPort: 8080, nodePort: 30081}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: here, namespace: t, labels: {kubernetes.io/service-name: here}}
addressType: IPv4
endpoints:
- addresses: ["{{server}}"]
  conditions: {ready: true}
ports:
- {name: tcp, protocol: TCP, port: 8080}
- {name: udp, protocol: UDP, port: 8080}
---
apiVersion: v1
kind: Service
metadata: {name: there, namespace: t}
spec:
  type: NodePort
  clusterIP: 10.96.1.2
  ports:
  - {name: tcp, protocol: TCP, port: 80, targetPort: 8080, nodePort: 30082}
  - {name: udp, protocol: UDP, port: 80, targetPort: 8080, nodePort: 30082}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: there, namespace: t, labels: {kubernetes.io/service-name: there}}
addressType: IPv4
endpoints:
- addresses: ["{{server2}}"]
  conditions: {ready: true}
ports:
- {name: tcp, protocol: TCP, port: 8080}
- {name: udp, protocol: UDP, port: 8080}
`

// The servers admit the nodes' network (the external host and, for the
// iptables baseline's masqueraded connections, the nodes) on 8080.
const nodePortPolicy = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: servers, namespace: t}
spec:
  podSelector: {matchLabels: {app: server}}
  policyTypes: [Ingress]
  ingress:
  - from: [{ipBlock: {cidr: 198.18.0.0/24}}]
    ports: [{protocol: TCP, port: 8080}, {protocol: UDP, port: 8080}]
`

// The same, with the external host excepted.
const nodePortPolicyNoExternal = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: servers, namespace: t}
spec:
  podSelector: {matchLabels: {app: server}}
  policyTypes: [Ingress]
  ingress:
  - from: [{ipBlock: {cidr: 198.18.0.0/24, except: [198.18.0.254/32]}}]
    ports: [{protocol: TCP, port: 8080}, {protocol: UDP, port: 8080}]
`

// TestNodePort connects from the host outside the cluster to NodePorts on
// both nodes, with backends on the same node (translated at the uplink,
// delivered to the pod, replies translated back at the pod) and on the
// other node (direct server return: the backend's node sends the replies
// as the node the client connected to). The eBPF datapath keeps the
// client's address, so the backend's policy can tell the external host
// from the nodes; it runs at the TC hook of the uplink, and with
// --xdp-nodeport in XDP. The iptables baseline (kube-proxy style) gives
// the same connectivity.
func TestNodePort(t *testing.T) {
	for _, tc := range []struct {
		name, datapath string
		flags          []string
	}{
		{"ebpf-tc", "ebpf", nil},
		{"ebpf-xdp", "ebpf", []string{"--xdp-nodeport"}},
		{"iptables", "iptables", nil},
	} {
		t.Run(tc.name, func(t *testing.T) { testNodePort(t, tc.datapath, tc.flags) })
	}
}

func testNodePort(t *testing.T, datapath string, flags []string) {
	ctx := context.Background()
	c := testCluster(t, []string{"n1", "n2"},
		cluster.PodSpec{Namespace: "t", Name: "server", Node: "n1", Labels: map[string]string{"app": "server"}},
		cluster.PodSpec{Namespace: "t", Name: "server2", Node: "n2", Labels: map[string]string{"app": "server"}})
	pods := podsByName(c)
	serve(t, c, 8080, []string{"TCP", "UDP"}, "t/server", "t/server2")
	expand := func(doc string) []byte {
		for name, p := range pods {
			doc = strings.ReplaceAll(doc, "{{"+name+"}}", p.IP.String())
		}
		return []byte(doc)
	}
	if _, err := c.WriteState("10-services.yaml", expand(nodePortServices)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.WriteState("20-policy.yaml", []byte(nodePortPolicy)); err != nil {
		t.Fatal(err)
	}
	if err := c.StartAgents(ctx, cluster.AgentOptions{Datapath: datapath, ExtraArgs: flags}); err != nil {
		t.Fatal(err)
	}

	type target struct {
		node    int
		port    int
		backend string
	}
	targets := []target{{0, 30081, "server"}, {0, 30082, "server2"}, {1, 30081, "server"}, {1, 30082, "server2"}}
	for _, tg := range targets {
		addr := netip.AddrPortFrom(NodeIP(tg.node), uint16(tg.port))
		var conn net.Conn
		err := execx.RunInNetns(c.ExternalNetns(), func() error {
			var err error
			conn, err = net.DialTimeout("tcp4", addr.String(), 2*time.Second)
			return err
		})
		if err != nil {
			t.Errorf("external -> %s (backend %s): %v", addr, tg.backend, err)
			continue
		}
		for i := 0; i < 3; i++ {
			if err := echo(conn, "north-south"); err != nil {
				t.Errorf("external -> %s: %v", addr, err)
			}
		}
		// The backend sees the client's own address with eBPF; the
		// iptables baseline masquerades connections it sends to another
		// node.
		lport := uint16(conn.LocalAddr().(*net.TCPAddr).Port)
		peer := serverPeer(t, c.PodNetns("t/"+tg.backend), lport)
		remote := (tg.backend == "server") != (tg.node == 0)
		if datapath == "ebpf" && peer != c.ExternalIP() {
			t.Errorf("external -> %s: backend %s sees the connection from %s, want the client %s", addr, tg.backend, peer, c.ExternalIP())
		}
		if datapath == "iptables" && !remote && peer != c.ExternalIP() {
			t.Errorf("external -> %s: local backend %s sees %s", addr, tg.backend, peer)
		}
		conn.Close()

		// UDP the same way.
		err = execx.RunInNetns(c.ExternalNetns(), func() error {
			u, err := net.DialTimeout("udp4", addr.String(), time.Second)
			if err != nil {
				return err
			}
			defer u.Close()
			return echo(u, "north-south udp")
		})
		if err != nil {
			t.Errorf("external -> %s UDP: %v", addr, err)
		}
	}
	if datapath == "ebpf" && len(flags) > 0 {
		sc := &sockCluster{c: c}
		if n := sc.metric(t, "n1", "REASON_NODEPORT_XDP"); n == 0 {
			t.Error("n1 translated no NodePort packet in XDP")
		}
	}
	if datapath != "ebpf" {
		return
	}
	// The backends' policy sees the external client: excepting it denies.
	hash, err := c.WriteState("20-policy.yaml", []byte(nodePortPolicyNoExternal))
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if _, err := c.WaitProgrammed(wctx, hash, time.Now()); err != nil {
		t.Fatal(err)
	}
	for _, tg := range targets {
		addr := netip.AddrPortFrom(NodeIP(tg.node), uint16(tg.port))
		if r := probe.Connect(ctx, c.ExternalNetns(), addr.Addr(), int(addr.Port()), "TCP", 400*time.Millisecond); r.Connected {
			t.Errorf("external -> %s connected; the backend's policy excepts the external host", addr)
		}
	}
}

// serverPeer returns the address an established TCP connection in netns ns
// whose remote port is port comes from.
func serverPeer(t *testing.T, ns string, port uint16) netip.Addr {
	t.Helper()
	var out netip.Addr
	err := execx.RunInNetns(ns, func() error {
		b, err := os.ReadFile("/proc/thread-self/net/tcp")
		if err != nil {
			return err
		}
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Fields(line)
			if len(f) < 4 || f[0] == "sl" || f[3] != "01" {
				continue
			}
			if remote, err := parseProcAddr(f[2]); err == nil && remote.Port() == port {
				out = remote.Addr()
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
