package kind

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/fastpath-bench/fastpath/harness/cluster"
)

// StartIn runs a workload command as a container of pod: an ephemeral
// container from the project's image (the image the pod's own container
// runs), with the arguments cmd has after its executable ("workload
// serve ...", "workload load ..."). It is a real container of the pod
// (kubelet starts it in the pod's sandbox, so in its network namespace
// and cgroup), not a process the harness starts in the pod's namespace.
// When it ends, its log goes to cmd.Stdout (the API server's log merges
// stdout and stderr: workload.DecodeResult finds a load's result in it).
// Ephemeral containers cannot be removed: they end with their process
// (Stop signals it through its host PID) and go with the pod.
func (t *Topology) StartIn(pod string, cmd *exec.Cmd) (*cluster.Process, error) {
	if t.mesh != nil {
		if m := t.memberOfPod(pod); m != nil {
			return m.topo.StartIn(pod, cmd)
		}
		return nil, fmt.Errorf("no pod %s", pod)
	}
	ns, name, ok := strings.Cut(pod, "/")
	if !ok || t.PodNetns(pod) == "" {
		return nil, fmt.Errorf("no pod %s", pod)
	}
	if len(cmd.Args) < 2 || cmd.Args[1] != "workload" {
		return nil, fmt.Errorf("pod %s: only `workload` commands run as containers (got %q)", pod, cmd.Args)
	}
	cname := fmt.Sprintf("%s-%d", cmd.Args[2], containerSeq.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pods := t.client.Kube.CoreV1().Pods(ns)
	p, err := pods.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("pod %s: %w", pod, err)
	}
	p.Spec.EphemeralContainers = append(p.Spec.EphemeralContainers, corev1.EphemeralContainer{
		EphemeralContainerCommon: corev1.EphemeralContainerCommon{
			Name:            cname,
			Image:           t.opts.AgentImage,
			ImagePullPolicy: corev1.PullNever,
			Command:         append([]string{"/fastpath"}, cmd.Args[1:]...),
		},
	})
	if _, err := pods.UpdateEphemeralContainers(ctx, name, p, metav1.UpdateOptions{}); err != nil {
		return nil, fmt.Errorf("pod %s: add container %s: %w", pod, cname, err)
	}
	var id string
	err = poll(ctx, time.Minute, "container "+cname+" of pod "+pod+" started", func() (bool, error) {
		st, err := ephemeralStatus(ctx, t, ns, name, cname)
		if err != nil || st == nil {
			return false, nil
		}
		if w := st.State.Waiting; w != nil && w.Reason != "" && w.Reason != "ContainerCreating" && w.Reason != "PodInitializing" {
			return false, fmt.Errorf("container %s of pod %s: %s: %s", cname, pod, w.Reason, w.Message)
		}
		if st.State.Running == nil && st.State.Terminated == nil {
			return false, nil
		}
		id = st.ContainerID
		return true, nil
	})
	if err != nil {
		return nil, fmt.Errorf("%w%s", err, t.podEvents(ctx, ns, name))
	}
	done := make(chan struct{})
	c := &workloadContainer{t: t, ns: ns, pod: name, name: cname, out: cmd.Stdout, done: done}
	c.pid, _ = containerPID(id) // 0 when it has already ended
	go c.watch()
	proc := &cluster.Process{Name: pod, Container: &cluster.Container{
		Pod: pod, Name: cname, PID: c.pid, Done: done, Err: c.result, Stop: c.stop,
	}}
	t.mu.Lock()
	t.procs = append(t.procs, proc)
	t.mu.Unlock()
	return proc, nil
}

func ephemeralStatus(ctx context.Context, t *Topology, ns, pod, name string) (*corev1.ContainerStatus, error) {
	p, err := t.client.Kube.CoreV1().Pods(ns).Get(ctx, pod, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	for i := range p.Status.EphemeralContainerStatuses {
		if st := &p.Status.EphemeralContainerStatuses[i]; st.Name == name {
			return st, nil
		}
	}
	return nil, nil
}

// containerPID finds the host PID of the container with CRI id
// ("containerd://<hex>"): the process whose cgroup path names the id.
func containerPID(id string) (int, error) {
	_, hex, ok := strings.Cut(id, "://")
	if !ok || hex == "" {
		return 0, fmt.Errorf("container id %q", id)
	}
	pid, err := pidInCgroup(hex)
	if err != nil {
		return 0, fmt.Errorf("no process of container %s in /proc", id)
	}
	return pid, nil
}

// containerSeq numbers the workload containers (names unique in a pod).
var containerSeq atomic.Int64

// workloadContainer follows one ephemeral container until it ends.
type workloadContainer struct {
	t             *Topology
	ns, pod, name string
	pid           int
	out           io.Writer
	done          chan struct{}
	mu            sync.Mutex
	err           error
	stopRequested bool
}

func (c *workloadContainer) result() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// watch waits until the container has terminated, copies its log to out
// and closes done.
func (c *workloadContainer) watch() {
	defer close(c.done)
	ctx := context.Background()
	exit, err := c.terminated(ctx)
	if err != nil {
		c.setErr(fmt.Errorf("container %s of pod %s/%s: status lost: %w", c.name, c.ns, c.pod, err))
		return
	}
	if c.out != nil {
		rc, err := c.t.client.Kube.CoreV1().Pods(c.ns).GetLogs(c.pod, &corev1.PodLogOptions{Container: c.name}).Stream(ctx)
		if err == nil {
			_, err = io.Copy(c.out, rc)
			rc.Close()
		}
		if err != nil {
			c.setErr(fmt.Errorf("container %s of pod %s/%s: log: %w", c.name, c.ns, c.pod, err))
			return
		}
	}
	if exit.ExitCode != 0 {
		c.mu.Lock()
		stopped := c.stopRequested
		c.mu.Unlock()
		if !stopped {
			c.setErr(fmt.Errorf("container %s of pod %s/%s exited with %d (%s)", c.name, c.ns, c.pod, exit.ExitCode, exit.Reason))
		}
	}
}

// terminated waits until the container has ended, through a watch of its
// pod: a server's container runs for a whole benchmark, and polling its
// status would load the API server, whose node shares the CPUs being
// measured. An error when the pod is gone (Reset, Destroy: so is the
// container) or cannot be watched.
func (c *workloadContainer) terminated(ctx context.Context) (*corev1.ContainerStateTerminated, error) {
	pods := c.t.client.Kube.CoreV1().Pods(c.ns)
	sel := fields.OneTermEqualSelector("metadata.name", c.pod).String()
	failures := 0
	for {
		// Without a resourceVersion the watch starts with the pod as it
		// is, so an end before the watch is seen too.
		w, err := pods.Watch(ctx, metav1.ListOptions{FieldSelector: sel})
		if err != nil {
			if failures++; failures > 20 {
				return nil, err
			}
			time.Sleep(100 * time.Millisecond)
			continue
		}
		for ev := range w.ResultChan() {
			if ev.Type == watch.Deleted {
				w.Stop()
				return nil, errors.New("pod deleted")
			}
			pod, ok := ev.Object.(*corev1.Pod)
			if !ok {
				continue
			}
			for _, st := range pod.Status.EphemeralContainerStatuses {
				if st.Name == c.name && st.State.Terminated != nil {
					w.Stop()
					return st.State.Terminated, nil
				}
			}
		}
		w.Stop() // the server ended the watch: watch again
	}
}

func (c *workloadContainer) setErr(err error) {
	c.mu.Lock()
	c.err = err
	c.mu.Unlock()
}

// stop signals the container's process (SIGTERM, SIGKILL after 3 s) and
// waits until the container is seen to end.
func (c *workloadContainer) stop() {
	c.mu.Lock()
	c.stopRequested = true
	c.mu.Unlock()
	select {
	case <-c.done:
		return
	default:
	}
	if c.pid > 0 {
		_ = syscall.Kill(c.pid, syscall.SIGTERM)
	}
	select {
	case <-c.done:
		return
	case <-time.After(3 * time.Second):
	}
	if c.pid > 0 {
		_ = syscall.Kill(c.pid, syscall.SIGKILL)
	}
	select {
	case <-c.done:
	case <-time.After(30 * time.Second):
	}
}

func stopProcess(p *cluster.Process) {
	if p.Container != nil {
		p.Container.Stop()
		return
	}
	if p.Cmd == nil || p.Cmd.Process == nil || p.Cmd.ProcessState != nil {
		return
	}
	_ = p.Cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _, _ = p.Cmd.Process.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(3 * time.Second):
		_ = p.Cmd.Process.Kill()
	}
}
