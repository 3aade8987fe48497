package lxc

import (
	"fmt"
	"regexp"
	"sort"
	"strconv"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/rlimit"
)

// ProgramStats is what the verifier said about one program.
type ProgramStats struct {
	Name string `json:"name"`
	// Instructions in the object file.
	Instructions int `json:"instructions"`
	// Processed is the verifier's "processed N insns": the instructions it
	// walked, the figure the kernel's complexity limit applies to.
	Processed int `json:"processed"`
	// Error is the load error when the program does not load.
	Error string `json:"error,omitempty"`
}

var (
	processedRE = regexp.MustCompile(`processed (\d+) insns`)
	refusedRE   = regexp.MustCompile(`^program (\w+): `)
)

// VerifierStats loads every program of the datapath (maps unpinned, nothing
// attached) with verifier statistics on, and returns them by name. A
// program the kernel refuses is returned with its error, and the error is
// also returned.
func VerifierStats() ([]ProgramStats, error) {
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("raise RLIMIT_MEMLOCK: %w", err)
	}
	var out []ProgramStats
	for _, obj := range []struct {
		name string
		load func() (*ebpf.CollectionSpec, error)
	}{{"lxc", loadLxc}, {"sock", loadSock}} {
		stats, err := verifierStats(obj.name, obj.load)
		out = append(out, stats...)
		if err != nil {
			return out, err
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func verifierStats(object string, load func() (*ebpf.CollectionSpec, error)) ([]ProgramStats, error) {
	spec, err := load()
	if err != nil {
		return nil, err
	}
	for _, m := range spec.Maps {
		m.Pinning = ebpf.PinNone
	}
	var out []ProgramStats
	coll, err := ebpf.NewCollectionWithOptions(spec, ebpf.CollectionOptions{Programs: ebpf.ProgramOptions{LogLevel: ebpf.LogLevelStats}})
	if err != nil {
		// cilium/ebpf names the program it could not load: "program
		// fp_from_container: load program: ...".
		name := ""
		if m := refusedRE.FindStringSubmatch(err.Error()); m != nil && spec.Programs[m[1]] != nil {
			name = m[1]
		}
		out = append(out, ProgramStats{Name: name, Error: err.Error()})
		return out, fmt.Errorf("load %s programs: %w", object, err)
	}
	defer coll.Close()
	for name, p := range coll.Programs {
		s := ProgramStats{Name: name, Instructions: len(spec.Programs[name].Instructions)}
		if m := processedRE.FindStringSubmatch(p.VerifierLog); m != nil {
			s.Processed, _ = strconv.Atoi(m[1])
		}
		out = append(out, s)
	}
	return out, nil
}
