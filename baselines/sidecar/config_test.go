package sidecar

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fastpath-bench/fastpath/datapath/model"
)

const state = `apiVersion: v1
kind: Namespace
metadata: {name: t}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: t, labels: {app: client}}
spec: {nodeName: n1}
status: {podIP: 10.0.0.1}
---
apiVersion: v1
kind: Pod
metadata: {name: server, namespace: t, labels: {app: server}}
spec:
  nodeName: n1
  containers: [{name: c, ports: [{containerPort: 8080}]}]
status: {podIP: 10.0.0.2}
---
apiVersion: v1
kind: Pod
metadata: {name: other, namespace: t, labels: {app: other}}
spec: {nodeName: n1}
status: {podIP: 10.0.0.3}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: np, namespace: t}
spec:
  podSelector: {matchLabels: {app: server}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: client}}}, {ipBlock: {cidr: 192.168.0.0/16, except: [192.168.1.0/24]}}]
    ports: [{port: 8080}]
`

func resolve(t *testing.T) *model.Resolved {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "state.yaml"), []byte(state), 0o644); err != nil {
		t.Fatal(err)
	}
	objs, err := model.LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	r, err := model.Resolve(objs)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// mapVerdict looks addr up in an LPM map file the way HAProxy's map_ip
// does: the longest matching prefix decides.
func mapVerdict(t *testing.T, m, addr string) string {
	t.Helper()
	best, verdict := -1, "deny"
	for _, line := range strings.Split(strings.TrimSpace(m), "\n") {
		f := strings.Fields(line)
		p, err := netip.ParsePrefix(f[0])
		if err != nil {
			t.Fatal(err)
		}
		if p.Contains(netip.MustParseAddr(addr)) && p.Bits() > best {
			best, verdict = p.Bits(), f[1]
		}
	}
	return verdict
}

func TestRenderInboundMaps(t *testing.T) {
	r := resolve(t)
	ep, _ := r.Endpoint("t/server")
	c := Render(r, ep, RenderOptions{Dir: "/run/x"})
	m, ok := c.Maps["in-8080.map"]
	if !ok {
		t.Fatalf("no map for port 8080: %v", c.Maps)
	}
	for addr, want := range map[string]string{
		"10.0.0.1":    "allow", // client
		"10.0.0.3":    "deny",  // other
		"192.168.7.7": "allow", // in the ipBlock
		"192.168.1.9": "deny",  // in its except
		"8.8.8.8":     "deny",  // world
	} {
		if got := mapVerdict(t, m, addr); got != want {
			t.Errorf("inbound 8080 from %s: %s, want %s", addr, got, want)
		}
	}
	// Other ports of a policed pod: nobody.
	if got := mapVerdict(t, c.Maps["in-default.map"], "10.0.0.1"); got != "deny" {
		t.Errorf("inbound default from client: %s", got)
	}
	// An unpoliced pod admits everyone.
	cl, _ := r.Endpoint("t/client")
	cc := Render(r, cl, RenderOptions{Dir: "/run/x"})
	if got := mapVerdict(t, cc.Maps["in-default.map"], "8.8.8.8"); got != "allow" {
		t.Errorf("unpoliced pod, inbound from the world: %s", got)
	}
	for _, want := range []string{"bind 0.0.0.0:15006", "bind 0.0.0.0:15001", "uid 1337", "server original 0.0.0.0:0", "map_ip(/run/x/in-8080.map,deny)"} {
		if !strings.Contains(c.HAProxy, want) {
			t.Errorf("haproxy.cfg lacks %q", want)
		}
	}
	if !strings.Contains(c.Rules, "--uid-owner 1337 -j RETURN") || !strings.Contains(c.Rules, "REDIRECT --to-ports 15006") {
		t.Errorf("nat rules:\n%s", c.Rules)
	}
}
