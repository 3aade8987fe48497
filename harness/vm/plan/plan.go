// Package plan is what a kernel run executes and how its output comes back:
// a list of steps (commands with a timeout), run in order inside a VM by
// fastpath-vminit or on the host directly, and a framed stream of their
// outputs that survives a serial line.
//
// Stream format: for each step, one header line
//
//	FASTPATH-STEP {"name":...,"exit":0,"seconds":1.5,"bytes":1234}\n
//
// followed by exactly `bytes` bytes of gzip-compressed standard output, then
// a newline. The stream ends with the line "FASTPATH-END\n". Anything else
// before a header (kernel messages when the console is shared) is skipped.
package plan

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"
)

// Plan is what one kernel run does.
type Plan struct {
	// Modules are kernel modules to load first, in order (dependencies
	// before their users), as paths inside the image. Empty on the host.
	Modules []string `json:"modules,omitempty"`
	Steps   []Step   `json:"steps"`
}

// Step is one command.
type Step struct {
	// Name identifies the output ("features", "test:datapath/lxc",
	// "conformance:ebpf").
	Name string   `json:"name"`
	Args []string `json:"args"`
	// Dir is the working directory; empty: the current one.
	Dir string `json:"dir,omitempty"`
	// Env entries added to the environment.
	Env []string `json:"env,omitempty"`
	// Timeout of the step; 0 means 10 minutes. A step that runs out is
	// killed and reported with exit -1.
	Timeout Duration `json:"timeout,omitempty"`
}

// Duration is a time.Duration written as a Go duration string.
type Duration time.Duration

// MarshalJSON writes "1m30s".
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads "1m30s".
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	*d = Duration(v)
	return err
}

// Output is one step's result.
type Output struct {
	Name string `json:"name"`
	// Exit is the exit status; -1 when the step could not start or timed
	// out (Error says which).
	Exit    int     `json:"exit"`
	Error   string  `json:"error,omitempty"`
	Seconds float64 `json:"seconds"`
	// StderrTail is the end of the command's standard error (all of it
	// also goes to the console/log), for messages about failed steps.
	StderrTail string `json:"stderrTail,omitempty"`
	// Stdout of the command.
	Stdout []byte `json:"-"`
}

const (
	headerPrefix = "FASTPATH-STEP "
	endLine      = "FASTPATH-END"
)

type header struct {
	Name    string  `json:"name"`
	Exit    int     `json:"exit"`
	Error   string  `json:"error,omitempty"`
	Seconds float64 `json:"seconds"`
	Bytes   int     `json:"bytes"`
	Stderr  string  `json:"stderr,omitempty"`
}

// Run executes the steps in order, writing each one's framed output to out
// as soon as it ends and its standard error to log. A failing step does not
// stop the plan.
func Run(ctx context.Context, steps []Step, out io.Writer, log io.Writer) error {
	for _, s := range steps {
		o := RunStep(ctx, s, log)
		if err := WriteOutput(out, o); err != nil {
			return err
		}
		fmt.Fprintf(log, "fastpath-vm: step %s: exit %d in %.1fs %s\n", s.Name, o.Exit, o.Seconds, o.Error)
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	_, err := io.WriteString(out, endLine+"\n")
	return err
}

// RunStep runs one step.
func RunStep(ctx context.Context, s Step, log io.Writer) Output {
	timeout := time.Duration(s.Timeout)
	if timeout == 0 {
		timeout = 10 * time.Minute
	}
	o := Output{Name: s.Name}
	if len(s.Args) == 0 {
		o.Exit, o.Error = -1, "no command"
		return o
	}
	sctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(sctx, s.Args[0], s.Args[1:]...)
	cmd.Dir = s.Dir
	cmd.Env = append(os.Environ(), s.Env...)
	var stdout bytes.Buffer
	tail := &tailBuffer{max: 2048}
	cmd.Stdout = &stdout
	cmd.Stderr = io.MultiWriter(log, tail)
	cmd.WaitDelay = 5 * time.Second
	start := time.Now()
	err := cmd.Run()
	o.Seconds = time.Since(start).Seconds()
	o.Stdout = stdout.Bytes()
	o.StderrTail = string(tail.buf)
	var ee *exec.ExitError
	switch {
	case sctx.Err() == context.DeadlineExceeded:
		o.Exit, o.Error = -1, fmt.Sprintf("timed out after %s", timeout)
	case errors.As(err, &ee):
		o.Exit = ee.ExitCode()
	case err != nil:
		o.Exit, o.Error = -1, err.Error()
	}
	return o
}

// WriteOutput frames one output.
func WriteOutput(w io.Writer, o Output) error {
	var z bytes.Buffer
	zw := gzip.NewWriter(&z)
	zw.Write(o.Stdout)
	zw.Close()
	h, _ := json.Marshal(header{Name: o.Name, Exit: o.Exit, Error: o.Error, Seconds: o.Seconds, Bytes: z.Len(), Stderr: o.StderrTail})
	var b bytes.Buffer
	b.WriteString(headerPrefix)
	b.Write(h)
	b.WriteByte('\n')
	b.Write(z.Bytes())
	b.WriteByte('\n')
	_, err := w.Write(b.Bytes())
	return err
}

// ErrTruncated says the stream ended before FASTPATH-END: the run was cut
// short (timeout, panic, power loss). The outputs read so far are returned.
var ErrTruncated = errors.New("result stream ended before the last step (the run was cut short)")

// Read parses a stream written by Run.
func Read(r io.Reader) ([]Output, error) {
	br := bufio.NewReaderSize(r, 1<<16)
	var outs []Output
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return outs, ErrTruncated
		}
		line = strings.TrimRight(line, "\r\n")
		if line == endLine {
			return outs, nil
		}
		i := strings.Index(line, headerPrefix)
		if i < 0 {
			continue
		}
		var h header
		if err := json.Unmarshal([]byte(line[i+len(headerPrefix):]), &h); err != nil {
			return outs, fmt.Errorf("bad step header %q: %w", line, err)
		}
		z := make([]byte, h.Bytes)
		if _, err := io.ReadFull(br, z); err != nil {
			return outs, ErrTruncated
		}
		zr, err := gzip.NewReader(bytes.NewReader(z))
		if err != nil {
			return outs, fmt.Errorf("step %s: %w", h.Name, err)
		}
		data, err := io.ReadAll(zr)
		if err != nil {
			return outs, fmt.Errorf("step %s: %w", h.Name, err)
		}
		outs = append(outs, Output{Name: h.Name, Exit: h.Exit, Error: h.Error, Seconds: h.Seconds, StderrTail: h.Stderr, Stdout: data})
	}
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	max int
	buf []byte
}

func (t *tailBuffer) Write(b []byte) (int, error) {
	t.buf = append(t.buf, b...)
	if len(t.buf) > t.max {
		t.buf = append([]byte(nil), t.buf[len(t.buf)-t.max:]...)
	}
	return len(b), nil
}
