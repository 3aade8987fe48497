package kind

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
)

// TestHostPIDsIn: proxies are found by their agent's PID namespace and
// their PID in it, not by the number alone (two nodes' agents have
// proxies with the same PID in their own namespaces).
func TestHostPIDsIn(t *testing.T) {
	proc := t.TempDir()
	proc1 := func(pid int, ns, nspid string) {
		d := filepath.Join(proc, strconv.Itoa(pid))
		if err := os.MkdirAll(filepath.Join(d, "ns"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(ns, filepath.Join(d, "ns", "pid")); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "status"), []byte("Name:\thaproxy\nNSpid:\t"+nspid+"\nVmHWM:\t1 kB\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	proc1(100, "pid:[1]", "100")           // a host process
	proc1(2001, "pid:[7]", "2001\t40\t7")  // agent on node a (its pid 7)
	proc1(2002, "pid:[7]", "2002\t41\t12") // proxy of node a
	proc1(3001, "pid:[9]", "3001\t50\t7")  // agent on node b
	proc1(3002, "pid:[9]", "3002\t51\t12") // proxy of node b, same inner PID
	proc1(3003, "pid:[9]", "3003\t52\t13") // another proxy of node b
	if err := os.MkdirAll(filepath.Join(proc, "self"), 0o755); err != nil {
		t.Fatal(err)
	}

	got := hostPIDsIn(proc, map[string]map[int]bool{"pid:[7]": {12: true}, "pid:[9]": {12: true, 13: true}})
	slices.Sort(got)
	if !slices.Equal(got, []int{2002, 3002, 3003}) {
		t.Fatalf("host PIDs %v", got)
	}
	if got := hostPIDsIn(proc, map[string]map[int]bool{"pid:[7]": {13: true}}); len(got) != 0 {
		t.Fatalf("a PID of another namespace matched: %v", got)
	}
	if p, ok := innerPID(filepath.Join(proc, "100", "status")); !ok || p != 100 {
		t.Fatalf("innerPID = %d, %v", p, ok)
	}
}
