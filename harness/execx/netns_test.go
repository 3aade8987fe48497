package execx

import "testing"

func TestNetnsPath(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"fp-1a2b3c-pod-default-a", "/run/netns/fp-1a2b3c-pod-default-a"},
		{"/var/run/netns/cni-0b6f3c1e-2d4a-11ef", "/var/run/netns/cni-0b6f3c1e-2d4a-11ef"},
		{"/proc/1234/ns/net", "/proc/1234/ns/net"},
		{"/var/run/netns/../netns/cni-1", "/var/run/netns/cni-1"},
	} {
		if got := NetnsPath(c.in); got != c.want {
			t.Errorf("NetnsPath(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestRunInNetnsMissing(t *testing.T) {
	err := RunInNetns("/var/run/netns/fastpath-no-such-netns", func() error { return nil })
	if err == nil {
		t.Fatal("entered a network namespace that does not exist")
	}
}
