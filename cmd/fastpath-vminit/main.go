// Command fastpath-vminit is /init of the VM images built by `fastpath vm`:
// it mounts the pseudo filesystems, loads the kernel modules the plan names,
// runs the plan's steps and sends their framed output over the second serial
// port (ttyS1), then powers the VM off. Its own log goes to the console
// (ttyS0), which the host keeps with the result.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/fastpath-bench/fastpath/harness/vm/plan"
)

const (
	planPath    = "/fastpath/plan.json"
	resultsPort = "/dev/ttyS1"
)

func main() {
	if os.Getpid() != 1 {
		// Only the VM's init runs the plan; anywhere else it just says
		// which kernel it is on (a check that images are put together
		// right).
		var uts unix.Utsname
		unix.Uname(&uts)
		fmt.Println(unix.ByteSliceToString(uts.Release[:]))
		return
	}
	log := os.Stderr
	if console, err := os.OpenFile("/dev/console", os.O_WRONLY, 0); err == nil {
		log = console
	}
	if err := run(log); err != nil {
		fmt.Fprintln(log, "fastpath-vminit: error:", err)
	}
	unix.Sync()
	unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	select {}
}

func run(log *os.File) error {
	if err := mountAll(); err != nil {
		return err
	}
	var uts unix.Utsname
	unix.Uname(&uts)
	fmt.Fprintf(log, "fastpath-vminit: kernel %s\n", unix.ByteSliceToString(uts.Release[:]))
	data, err := os.ReadFile(planPath)
	if err != nil {
		return err
	}
	var p plan.Plan
	if err := json.Unmarshal(data, &p); err != nil {
		return fmt.Errorf("%s: %w", planPath, err)
	}
	out, err := os.OpenFile(resultsPort, os.O_WRONLY|unix.O_NOCTTY, 0)
	if err != nil {
		return err
	}
	defer out.Close()
	if err := makeRaw(int(out.Fd())); err != nil {
		return fmt.Errorf("%s: raw mode: %w", resultsPort, err)
	}
	for _, m := range p.Modules {
		if err := loadModule(m); err != nil {
			// Not fatal: the step that needs it fails with its own error,
			// and the console log says which module was missing.
			fmt.Fprintf(log, "fastpath-vminit: module %s: %v\n", m, err)
		}
	}
	if err := setupLoopback(); err != nil {
		fmt.Fprintln(log, "fastpath-vminit: loopback:", err)
	}
	return plan.Run(context.Background(), p.Steps, out, log)
}

func mountAll() error {
	mounts := []struct{ src, dst, fstype, data string }{
		{"proc", "/proc", "proc", ""},
		{"sysfs", "/sys", "sysfs", ""},
		{"devtmpfs", "/dev", "devtmpfs", ""},
		{"tmpfs", "/run", "tmpfs", "mode=0755"},
		{"tmpfs", "/tmp", "tmpfs", "mode=1777"},
		{"bpf", "/sys/fs/bpf", "bpf", ""},
		{"cgroup2", "/sys/fs/cgroup", "cgroup2", ""},
		{"debugfs", "/sys/kernel/debug", "debugfs", ""},
	}
	for _, m := range mounts {
		if err := os.MkdirAll(m.dst, 0o755); err != nil {
			return err
		}
		if err := unix.Mount(m.src, m.dst, m.fstype, 0, m.data); err != nil && err != unix.EBUSY {
			return fmt.Errorf("mount %s on %s: %w", m.fstype, m.dst, err)
		}
	}
	os.Symlink("/proc/self/fd", "/dev/fd")
	os.MkdirAll("/var", 0o755)
	os.Symlink("/run", "/var/run")
	os.Setenv("PATH", "/fastpath/bin:/usr/sbin:/usr/bin:/sbin:/bin")
	os.Setenv("HOME", "/root")
	os.MkdirAll("/root", 0o700)
	unix.Sethostname([]byte("fastpath-vm"))
	return nil
}

func loadModule(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	err = unix.FinitModule(int(f.Fd()), "", 0)
	if err == unix.EEXIST {
		return nil
	}
	return err
}

// setupLoopback brings lo up in the initial network namespace.
func setupLoopback() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
}

// makeRaw turns off the tty's output processing so binary frames pass
// unchanged.
func makeRaw(fd int) error {
	t, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return err
	}
	t.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
	t.Oflag &^= unix.OPOST
	t.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	t.Cflag &^= unix.CSIZE | unix.PARENB
	t.Cflag |= unix.CS8
	return unix.IoctlSetTermios(fd, unix.TCSETS, t)
}
