package vm

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/fastpath-bench/fastpath/harness/conformance"
)

// MatrixSchema is the version of matrix.json.
const MatrixSchema = 1

// Cell statuses.
const (
	Pass    = "pass"
	Fail    = "fail"
	Skip    = "skip"
	NotRun  = "not-run"
	Missing = "" // the row does not exist on that kernel
)

// Matrix is kernel × (test, case) → outcome, and kernel × program →
// verifier instruction count.
type Matrix struct {
	Schema  int            `json:"schema"`
	Created time.Time      `json:"created"`
	Kernels []KernelColumn `json:"kernels"`
	// Cases are conformance cases ("ebpf: netpol/deny-all"), Tests the Go
	// tests ("datapath/lxc TestPolicyVerdicts").
	Cases    []Row `json:"cases"`
	Tests    []Row `json:"tests"`
	Programs []Row `json:"programs"`
}

// KernelColumn describes one kernel of the matrix.
type KernelColumn struct {
	Name    string `json:"name"`
	Package string `json:"package,omitempty"`
	Version string `json:"version,omitempty"`
	Suite   string `json:"suite,omitempty"`
	Release string `json:"release,omitempty"`
	// Accel: kvm, tcg (software emulation) or host.
	Accel   string  `json:"accel"`
	Seconds float64 `json:"seconds"`
	// Error is why the run did not complete; Console keeps its log.
	Error   string `json:"error,omitempty"`
	Console string `json:"console,omitempty"`
	// AttachMode, Features (supported) and MissingFeatures as probed by
	// fastpath-agent features on that kernel.
	AttachMode      string   `json:"attachMode,omitempty"`
	Features        []string `json:"features,omitempty"`
	MissingFeatures []string `json:"missingFeatures,omitempty"`
	// Counts of cells by status, cases and tests together.
	Passed  int `json:"passed"`
	Failed  int `json:"failed"`
	Skipped int `json:"skipped"`
	NotRun  int `json:"notRun"`
	// Steps are the plan's steps with their exit status.
	Steps []StepSummary `json:"steps"`
}

// StepSummary is one step of a kernel run.
type StepSummary struct {
	Name    string  `json:"name"`
	Exit    int     `json:"exit"`
	Error   string  `json:"error,omitempty"`
	Seconds float64 `json:"seconds"`
}

// Row is one case, test or program across kernels.
type Row struct {
	Name  string          `json:"name"`
	Cells map[string]Cell `json:"cells"`
}

// Cell is one outcome. Value is the verifier's processed instruction count
// for program rows.
type Cell struct {
	Status string `json:"status,omitempty"`
	Reason string `json:"reason,omitempty"`
	Value  int    `json:"value,omitempty"`
}

// OK reports whether every cell passed or was skipped with a reason, and
// every kernel ran to the end.
func (m *Matrix) OK() bool {
	for _, k := range m.Kernels {
		if k.Error != "" || k.Failed > 0 || k.NotRun > 0 {
			return false
		}
	}
	return true
}

type featuresJSON struct {
	AttachMode string `json:"attachMode"`
	Features   []struct {
		Name      string `json:"name"`
		Supported bool   `json:"supported"`
	} `json:"features"`
	Programs []struct {
		Name      string `json:"name"`
		Processed int    `json:"processed"`
		Error     string `json:"error"`
	} `json:"programs"`
	LoadError string `json:"loadError"`
}

// testEvent is a line of test2json output.
type testEvent struct {
	Action  string
	Package string
	Test    string
	Output  string
}

// BuildMatrix turns kernel runs into the matrix. Steps a kernel did not
// reach are rows marked not-run with the run's error.
func BuildMatrix(runs []*KernelRun, want PlanOptions) *Matrix {
	m := &Matrix{Schema: MatrixSchema, Created: time.Now().UTC()}
	cases := map[string]*Row{}
	tests := map[string]*Row{}
	progs := map[string]*Row{}
	row := func(rows map[string]*Row, name string) *Row {
		r := rows[name]
		if r == nil {
			r = &Row{Name: name, Cells: map[string]Cell{}}
			rows[name] = r
		}
		return r
	}
	for _, run := range runs {
		col := KernelColumn{Name: run.Kernel.Name, Release: run.Release, Accel: run.Accel, Seconds: run.Seconds, Console: run.Console}
		if run.Fetched != nil {
			col.Package, col.Version, col.Suite = run.Fetched.Package, run.Fetched.Version, run.Fetched.Suite
		}
		if run.Err != nil {
			col.Error = run.Err.Error()
		}
		seen := map[string]bool{}
		for _, o := range run.Outputs {
			seen[o.Name] = true
			col.Steps = append(col.Steps, StepSummary{Name: o.Name, Exit: o.Exit, Error: o.Error, Seconds: o.Seconds})
			kind, arg, _ := strings.Cut(o.Name, ":")
			switch kind {
			case "features":
				var f featuresJSON
				if err := json.Unmarshal(o.Stdout, &f); err != nil {
					col.Error = strings.TrimSpace(col.Error + "; features: " + err.Error())
					continue
				}
				col.AttachMode = f.AttachMode
				for _, ft := range f.Features {
					if ft.Supported {
						col.Features = append(col.Features, ft.Name)
					} else {
						col.MissingFeatures = append(col.MissingFeatures, ft.Name)
					}
				}
				for _, p := range f.Programs {
					c := Cell{Status: Pass, Value: p.Processed}
					if p.Error != "" {
						c = Cell{Status: Fail, Reason: p.Error}
					}
					row(progs, p.Name).Cells[col.Name] = c
				}
				if f.LoadError != "" && len(f.Programs) == 0 {
					row(progs, "(load)").Cells[col.Name] = Cell{Status: Fail, Reason: f.LoadError}
				}
			case "test":
				for name, c := range parseTestEvents(o.Stdout) {
					row(tests, arg+" "+name).Cells[col.Name] = c
				}
				if o.Exit != 0 && o.Error != "" {
					row(tests, arg+" (binary)").Cells[col.Name] = Cell{Status: Fail, Reason: o.Error}
				}
			case "conformance":
				var res conformance.Result
				if err := json.Unmarshal(o.Stdout, &res); err != nil {
					reason := "no result: " + lastLine(o.StderrTail, o.Error, err.Error())
					row(cases, arg+": (run)").Cells[col.Name] = Cell{Status: Fail, Reason: reason}
					continue
				}
				for _, cr := range res.Cases {
					row(cases, arg+": "+cr.Name).Cells[col.Name] = caseCell(cr)
				}
			}
		}
		// Steps the run never reached.
		for _, s := range Steps("/", "", want) {
			if seen[s.Name] {
				continue
			}
			reason := "the run stopped before this step"
			if run.Err != nil {
				reason = firstLine(run.Err.Error())
			}
			rows := cases
			if strings.HasPrefix(s.Name, "test:") {
				rows = tests
			}
			row(rows, s.Name+" (not reached)").Cells[col.Name] = Cell{Status: NotRun, Reason: reason}
		}
		m.Kernels = append(m.Kernels, col)
	}
	m.Cases, m.Tests, m.Programs = sortRows(cases), sortRows(tests), sortRows(progs)
	for i := range m.Kernels {
		k := &m.Kernels[i]
		for _, rows := range [][]Row{m.Cases, m.Tests} {
			for _, r := range rows {
				switch r.Cells[k.Name].Status {
				case Pass:
					k.Passed++
				case Fail:
					k.Failed++
				case Skip:
					k.Skipped++
				case NotRun:
					k.NotRun++
				}
			}
		}
	}
	return m
}

func sortRows(rows map[string]*Row) []Row {
	out := make([]Row, 0, len(rows))
	for _, r := range rows {
		out = append(out, *r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// lastLine is the last non-empty line of the first non-empty string.
func lastLine(ss ...string) string {
	for _, s := range ss {
		if s = strings.TrimSpace(s); s != "" {
			lines := strings.Split(s, "\n")
			return strings.TrimSpace(lines[len(lines)-1])
		}
	}
	return ""
}

func firstLine(ss ...string) string {
	for _, s := range ss {
		if s = strings.TrimSpace(s); s != "" {
			l, _, _ := strings.Cut(s, "\n")
			return l
		}
	}
	return ""
}

// caseCell: pass when every probe passed, skip when every probe that did
// not pass was skipped (with the first reason), fail otherwise (with the
// first failing probe).
func caseCell(cr conformance.CaseResult) Cell {
	if cr.Error != "" {
		return Cell{Status: Fail, Reason: firstLine(cr.Error)}
	}
	c := Cell{Status: Pass}
	for _, p := range cr.Probes {
		switch {
		case p.Skipped != "":
			if c.Status == Pass {
				c = Cell{Status: Skip, Reason: p.Skipped}
			}
		case !p.Passed:
			reason := fmt.Sprintf("%s: want connected=%v, got %v", p.Probe, p.Connected, p.Got)
			if p.Error != "" {
				reason += " (" + firstLine(p.Error) + ")"
			}
			return Cell{Status: Fail, Reason: reason}
		}
	}
	return c
}

// parseTestEvents reads test2json output: top-level tests and subtests by
// name, with a skip's reason (the test's last log line) and a failure's
// first log line.
func parseTestEvents(data []byte) map[string]Cell {
	out := map[string]Cell{}
	logs := map[string][]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		var e testEvent
		if json.Unmarshal(sc.Bytes(), &e) != nil || e.Test == "" {
			continue
		}
		switch e.Action {
		case "output":
			line := strings.TrimSpace(e.Output)
			if line != "" && !strings.HasPrefix(line, "=== ") && !strings.HasPrefix(line, "--- ") {
				logs[e.Test] = append(logs[e.Test], line)
			}
		case "pass":
			out[e.Test] = Cell{Status: Pass}
		case "skip":
			out[e.Test] = Cell{Status: Skip, Reason: last(logs[e.Test])}
		case "fail":
			out[e.Test] = Cell{Status: Fail, Reason: failure(logs[e.Test])}
		}
	}
	return out
}

// failure is a failed test's reason: its first line from the test itself
// ("file_test.go:N: ..."), else its first line (the code under test may
// log before it).
func failure(lines []string) string {
	for _, l := range lines {
		if i := strings.Index(l, "_test.go:"); i > 0 && !strings.ContainsAny(l[:i], " \t") {
			return l
		}
	}
	return first(lines)
}

func last(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[len(s)-1]
}

func first(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}

// Write stores matrix.json and matrix.md in dir.
func (m *Matrix) Write(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "matrix.json"), append(data, '\n'), 0o644); err != nil {
		return err
	}
	var b bytes.Buffer
	m.WriteMarkdown(&b)
	return os.WriteFile(filepath.Join(dir, "matrix.md"), b.Bytes(), 0o644)
}

// WriteMarkdown renders the matrix: kernels, then every row that did not
// pass everywhere (with reasons), then the verifier figures, then the full
// tables.
func (m *Matrix) WriteMarkdown(w io.Writer) {
	fmt.Fprintf(w, "# Conformance matrix\n\n%s\n\n", m.Created.Format(time.RFC3339))
	fmt.Fprintln(w, "| kernel | package | release | run | attach | passed | failed | skipped | not run | seconds |")
	fmt.Fprintln(w, "|---|---|---|---|---|---:|---:|---:|---:|---:|")
	for _, k := range m.Kernels {
		pkg := k.Package
		if k.Version != "" {
			pkg += " " + k.Version + " (" + k.Suite + ")"
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %d | %d | %d | %d | %.0f |\n", k.Name, dash(pkg), dash(k.Release), k.Accel, dash(k.AttachMode), k.Passed, k.Failed, k.Skipped, k.NotRun, k.Seconds)
	}
	for _, k := range m.Kernels {
		if k.Error != "" {
			fmt.Fprintf(w, "\n**%s did not complete:** %s (console log: `%s`)\n", k.Name, mdEscape(firstLine(k.Error)), k.Console)
		}
		if len(k.MissingFeatures) > 0 {
			fmt.Fprintf(w, "\n%s lacks: %s\n", k.Name, strings.Join(k.MissingFeatures, ", "))
		}
	}
	var notes []string
	for _, rows := range [][]Row{m.Tests, m.Cases} {
		for _, r := range rows {
			for _, k := range m.Kernels {
				c, ok := r.Cells[k.Name]
				if ok && c.Status != Pass {
					notes = append(notes, fmt.Sprintf("| %s | %s | %s | %s |", mdEscape(r.Name), k.Name, c.Status, mdEscape(c.Reason)))
				}
			}
		}
	}
	if len(notes) > 0 {
		fmt.Fprintf(w, "\n## Not passing (%d)\n\n| row | kernel | status | reason |\n|---|---|---|---|\n%s\n", len(notes), strings.Join(notes, "\n"))
	}
	fmt.Fprintln(w, "\n## Verifier: instructions processed per program")
	m.table(w, m.Programs, func(c Cell) string {
		if c.Status == Fail {
			return "refused"
		}
		return fmt.Sprint(c.Value)
	})
	status := func(c Cell) string { return c.Status }
	fmt.Fprintf(w, "\n## Go tests (%d)\n", len(m.Tests))
	m.table(w, m.Tests, status)
	fmt.Fprintf(w, "\n## Conformance cases (%d)\n", len(m.Cases))
	m.table(w, m.Cases, status)
}

func (m *Matrix) table(w io.Writer, rows []Row, cell func(Cell) string) {
	fmt.Fprint(w, "\n| |")
	for _, k := range m.Kernels {
		fmt.Fprintf(w, " %s |", k.Name)
	}
	fmt.Fprint(w, "\n|---|")
	for range m.Kernels {
		fmt.Fprint(w, "---|")
	}
	fmt.Fprintln(w)
	for _, r := range rows {
		fmt.Fprintf(w, "| %s |", mdEscape(r.Name))
		for _, k := range m.Kernels {
			c, ok := r.Cells[k.Name]
			s := "—"
			if ok {
				s = cell(c)
			}
			fmt.Fprintf(w, " %s |", s)
		}
		fmt.Fprintln(w)
	}
}

func dash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}

func mdEscape(s string) string { return strings.ReplaceAll(s, "|", `\|`) }
