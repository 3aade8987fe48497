package sidecar

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/fastpath-bench/fastpath/datapath/model"
	"github.com/fastpath-bench/fastpath/harness/execx"
)

// Options configure the sidecar datapath.
type Options struct {
	// PodNetns says where a pod's network namespace is. Either a name
	// (under /run/netns) made from the pod's namespace and name, e.g.
	// "fp-1a2b3c-pod-{namespace}-{name}", which the netns provider
	// passes; or CNIPrefix and the agent's IPAM state file, e.g.
	// "cni:/var/run/fastpath/ipam.json": the namespace the runtime gave
	// the CNI plugin (CNI_NETNS) for the pod's sandbox, as the IPAM
	// recorded it (on kind, where the agent is the CNI).
	PodNetns string
	// Dir holds one directory of files per pod.
	Dir string
	// HAProxy is the proxy binary; empty: haproxy on PATH.
	HAProxy string
}

// Datapath runs one proxy per local pod.
type Datapath struct {
	opts    Options
	version string

	mu   sync.Mutex
	pods map[string]*pod
}

type pod struct {
	key    string
	netns  string
	dir    string
	digest string
	cmd    *exec.Cmd
	done   chan struct{}
}

// ApplyStats tells what Apply did.
type ApplyStats struct {
	Endpoints int
	Pending   []string
	Reloaded  int
}

var versionRE = regexp.MustCompile(`HAProxy version (\S+)`)

// New finds the proxy binary.
func New(opts Options) (*Datapath, error) {
	if err := checkPodNetns(opts.PodNetns); err != nil {
		return nil, err
	}
	if opts.HAProxy == "" {
		p, err := exec.LookPath("haproxy")
		if err != nil {
			return nil, errors.New("sidecar: no haproxy binary on PATH (apt-get install haproxy; Envoy cannot be had here)")
		}
		opts.HAProxy = p
	}
	out, err := execx.Output(context.Background(), opts.HAProxy, "-v")
	if err != nil {
		return nil, fmt.Errorf("sidecar: %w", err)
	}
	d := &Datapath{opts: opts, pods: map[string]*pod{}, version: "HAProxy"}
	if m := versionRE.FindSubmatch(out); m != nil {
		d.version = "HAProxy " + string(m[1])
	}
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, err
	}
	return d, nil
}

// Proxy names the proxy and its version ("HAProxy 2.6.12").
func (d *Datapath) Proxy() string { return d.version }

// PIDs lists the running proxy processes.
func (d *Datapath) PIDs() []int {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []int
	for _, p := range d.pods {
		if p.cmd != nil && p.cmd.Process != nil {
			out = append(out, p.cmd.Process.Pid)
		}
	}
	sort.Ints(out)
	return out
}

// Apply runs a proxy with the current policy in every pod of node: new
// pods get nat rules and a proxy, pods whose configuration changed get a
// reloaded proxy (haproxy -sf: the old process finishes its connections),
// pods that are gone lose theirs.
func (d *Datapath) Apply(r *model.Resolved, node string) (ApplyStats, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var st ApplyStats
	var errs []error
	seen := map[string]bool{}
	netnsOf, err := podNetns(d.opts.PodNetns)
	if err != nil {
		return st, err
	}
	for _, ep := range r.NodeEndpoints(node) {
		key := ep.Key()
		seen[key] = true
		ns := netnsOf(ep.Namespace, ep.Name)
		if ns == "" {
			st.Pending = append(st.Pending, key)
			continue
		}
		if _, err := os.Stat(execx.NetnsPath(ns)); err != nil {
			st.Pending = append(st.Pending, key)
			continue
		}
		dir := filepath.Join(d.opts.Dir, ep.Namespace+"_"+ep.Name)
		cfg := Render(r, ep, RenderOptions{Dir: dir})
		digest := cfg.digest()
		p := d.pods[key]
		if p != nil && p.netns != ns {
			// A new sandbox of the pod (same name, another namespace):
			// its proxy and rules start over in the new one.
			p.stop()
			delete(d.pods, key)
			p = nil
		}
		if p != nil && p.digest == digest && p.running() {
			st.Endpoints++
			continue
		}
		if err := writeConfig(dir, cfg); err != nil {
			errs = append(errs, fmt.Errorf("sidecar of %s: %w", key, err))
			continue
		}
		if p == nil {
			p = &pod{key: key, netns: ns, dir: dir}
			if err := restoreRules(ns, cfg.Rules); err != nil {
				errs = append(errs, fmt.Errorf("sidecar of %s: nat rules: %w", key, err))
				continue
			}
			d.pods[key] = p
		}
		if err := d.start(p); err != nil {
			errs = append(errs, fmt.Errorf("sidecar of %s: %w", key, err))
			continue
		}
		p.digest = digest
		st.Reloaded++
		st.Endpoints++
	}
	for key, p := range d.pods {
		if !seen[key] {
			p.stop()
			_ = os.RemoveAll(p.dir)
			delete(d.pods, key)
		}
	}
	sort.Strings(st.Pending)
	return st, errors.Join(errs...)
}

func (c Config) digest() string {
	var keys []string
	for k := range c.Maps {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString(c.HAProxy)
	for _, k := range keys {
		b.WriteString(k + "\x00" + c.Maps[k])
	}
	return b.String()
}

func writeConfig(dir string, c Config) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for name, body := range c.Maps {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			return err
		}
	}
	return os.WriteFile(filepath.Join(dir, "haproxy.cfg"), []byte(c.HAProxy), 0o644)
}

// restoreRules replaces the pod's nat table.
func restoreRules(ns, rules string) error {
	return execx.RunInNetns(ns, func() error {
		cmd := exec.Command("iptables-restore", "-w")
		cmd.Stdin = strings.NewReader(rules)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("iptables-restore in %s: %w: %s", ns, err, out.String())
		}
		return nil
	})
}

func (p *pod) running() bool {
	if p.done == nil {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// start starts the proxy in the pod's namespace; a running one is told to
// finish (-sf) and replaced.
func (d *Datapath) start(p *pod) error {
	args := []string{"-db", "-f", filepath.Join(p.dir, "haproxy.cfg")}
	old := p.cmd
	if old != nil && p.running() {
		args = append(args, "-sf", strconv.Itoa(old.Process.Pid))
	}
	cmd := exec.Command(d.opts.HAProxy, args...)
	logf, err := os.OpenFile(filepath.Join(p.dir, "haproxy.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := execx.StartInNetns(p.netns, cmd); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	p.cmd, p.done = cmd, done
	// The new process must be serving before the state counts as
	// programmed: wait until it answers on the stats socket (after a
	// reload, the old one answers there until the new one took over).
	sock := filepath.Join(p.dir, "stats.sock")
	deadline := time.Now().Add(5 * time.Second)
	for {
		if pid, err := ProxyPID(sock); err == nil && pid == cmd.Process.Pid {
			break
		}
		select {
		case <-done:
			b, _ := os.ReadFile(filepath.Join(p.dir, "haproxy.log"))
			return fmt.Errorf("haproxy exited: %s", lastLines(string(b), 5))
		default:
		}
		if time.Now().After(deadline) {
			return errors.New("haproxy did not open its stats socket within 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// An old process finishes its connections and exits on its own
	// (-sf); its Wait goroutine reaps it.
	return nil
}

func (p *pod) stop() {
	if p.cmd == nil || !p.running() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(3 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// Close stops every proxy and removes the pods' nat rules.
func (d *Datapath) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	var errs []error
	for key, p := range d.pods {
		p.stop()
		if err := restoreRules(p.netns, "*nat\nCOMMIT\n"); err != nil && !strings.Contains(err.Error(), "open netns") {
			errs = append(errs, fmt.Errorf("sidecar of %s: %w", key, err))
		}
		delete(d.pods, key)
	}
	return errors.Join(errs...)
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}
