package prefilter

import (
	"net"
	"testing"

	"golang.org/x/sys/unix"
)

// sendRaw writes frame count times on the named device with an AF_PACKET
// socket (the frame's source MAC and addresses are as given).
func sendRaw(t *testing.T, ifname string, frame []byte, count int) {
	t.Helper()
	iface, err := net.InterfaceByName(ifname)
	if err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	copy(frame[0:6], iface.HardwareAddr) // any unicast destination does for XDP
	sa := &unix.SockaddrLinklayer{Ifindex: iface.Index, Halen: 6}
	for i := 0; i < count; i++ {
		if err := unix.Sendto(fd, frame, 0, sa); err != nil {
			t.Fatal(err)
		}
	}
}
