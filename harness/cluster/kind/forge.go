package kind

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"strconv"
	"strings"

	vnetns "github.com/vishvananda/netns"

	"github.com/fastpath-bench/fastpath/datapath/agentapi"
	"github.com/fastpath-bench/fastpath/deploy"
	"github.com/fastpath-bench/fastpath/harness/cluster/netns"
	"github.com/fastpath-bench/fastpath/harness/execx"
)

// The agents' VXLAN overlay as seen from outside (datapath/lxc's
// TunnelPort and the device's fixed MAC; the harness does not import the
// datapath).
const overlayPort = 8472

var overlayMAC = net.HardwareAddr{0x02, 0xfa, 0x57, 0x00, 0x00, 0x01}

// nodeContainerPID is the host PID of a kind node container.
func nodeContainerPID(ctx context.Context, kindNode string) (int, error) {
	out, err := execx.Output(ctx, "docker", "inspect", "--format", "{{.State.Pid}}", kindNode)
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil || pid == 0 {
		return 0, fmt.Errorf("node container %s: no process (%q)", kindNode, out)
	}
	return pid, nil
}

// ForgeOverlay sends, from node from's network (its node container's
// namespace), a VXLAN packet to node to's overlay port carrying a UDP
// datagram from src to dst:port with payload and identity vni in the
// header: what anything with a node's network can put on the wire. The
// receiving node must judge it by the VNI, whatever src says.
func (t *Topology) ForgeOverlay(from, to string, vni uint32, src, dst netip.Addr, port int, payload []byte) error {
	kn, toIP := t.KindNode(from), t.NodeIP(to)
	if kn == "" || !toIP.IsValid() {
		return fmt.Errorf("forge overlay packet %s -> %s: no such node", from, to)
	}
	pid, err := nodeContainerPID(context.Background(), kn)
	if err != nil {
		return err
	}
	frame := netns.VXLANFrame(vni, overlayMAC, src, dst, uint16(port), payload)
	errc := make(chan error, 1)
	go func() {
		// The thread stays locked (and is discarded) once moved.
		runtime.LockOSThread()
		h, err := vnetns.GetFromPid(pid)
		if err != nil {
			errc <- err
			return
		}
		defer h.Close()
		if err := vnetns.Set(h); err != nil {
			errc <- fmt.Errorf("enter node %s's network: %w", kn, err)
			return
		}
		conn, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(toIP, overlayPort)))
		if err != nil {
			errc <- err
			return
		}
		defer conn.Close()
		_, err = conn.Write(frame)
		errc <- err
	}()
	return <-errc
}

// AgentSocketClient talks to node's agent on its unix socket (all of its
// API: the read-only port has status and metrics only), through the
// node container's root.
func (t *Topology) AgentSocketClient(node string) *agentapi.Client {
	pid, err := nodeContainerPID(context.Background(), t.KindNode(node))
	if err != nil {
		return agentapi.NewClient("/nonexistent/" + node)
	}
	// /var/run is a link to /run in the node: resolve it inside.
	sock := strings.Replace(deploy.DefaultSocket, "/var/run/", "/run/", 1)
	return agentapi.NewClient(fmt.Sprintf("/proc/%d/root%s", pid, sock))
}
