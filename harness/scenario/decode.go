package scenario

import (
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"

	"sigs.k8s.io/yaml"
)

// LoadFile reads the suite file at path: it decodes it strictly, applies
// defaults, makes policy file paths absolute (relative to the file's
// directory) and validates it. Errors name path and the field at fault.
func LoadFile(path string) (*Suite, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read suite: %w", err)
	}
	dir, err := filepath.Abs(filepath.Dir(path))
	if err != nil {
		return nil, fmt.Errorf("%s: resolve directory: %w", path, err)
	}
	return Decode(path, data, dir)
}

// Decode reads a suite from data, which came from the file called name
// (used in error messages only). Fields the schema does not know are
// errors. Relative policy file paths are joined to baseDir (left as they
// are when baseDir is empty). Decode then applies defaults and validates.
// Every problem found is returned, joined with errors.Join: unknown fields
// and validation problems as *FieldError; YAML syntax errors, duplicate
// keys and values of the wrong type (which stop decoding) as errors
// prefixed with name.
func Decode(name string, data []byte, baseDir string) (*Suite, error) {
	js, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	var generic any
	if err := json.Unmarshal(js, &generic); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if generic == nil {
		return nil, &FieldError{File: name, Message: "empty document"}
	}
	var errs []error
	for _, u := range unknownFields(reflect.TypeFor[Suite](), generic, "") {
		errs = append(errs, &FieldError{File: name, Field: u.path, Message: "unknown field (known here: " + strings.Join(u.known, ", ") + ")"})
	}
	// Unknown fields are reported above, with their paths; decode the
	// rest so that the suite's other problems are reported too. The YAML
	// decoder (rather than encoding/json on js) turns YAML scalars into
	// the strings the schema expects, e.g. label values like "yes" or 1.
	var s Suite
	if err := yaml.Unmarshal(data, &s); err != nil {
		return nil, errors.Join(append(errs, fmt.Errorf("%s: %w", name, err))...)
	}
	s.Default()
	s.resolvePolicyFiles(baseDir)
	if err := s.Validate(name); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return &s, nil
}

// resolvePolicyFiles joins relative policy file paths to baseDir.
func (s *Suite) resolvePolicyFiles(baseDir string) {
	if baseDir == "" {
		return
	}
	for i, f := range s.Spec.Policies.Files {
		if f != "" && !filepath.IsAbs(f) {
			s.Spec.Policies.Files[i] = filepath.Join(baseDir, f)
		}
	}
}

var (
	jsonUnmarshalerType = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// unknownField is a key of a document that its schema type has no field
// for.
type unknownField struct {
	path  string   // e.g. "spec.scenarios[1].load.qsp"
	known []string // the field names valid there, sorted
}

// unknownFields returns the keys in v (a value decoded from JSON into any)
// that type t has no field for. Keys must match the json names exactly
// (encoding/json would accept any case). Values of the wrong shape are left
// for the typed decoder to report.
func unknownFields(t reflect.Type, v any, path string) []unknownField {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if reflect.PointerTo(t).Implements(jsonUnmarshalerType) || reflect.PointerTo(t).Implements(textUnmarshalerType) {
		return nil
	}
	var out []unknownField
	switch t.Kind() {
	case reflect.Struct:
		obj, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		fields := jsonFields(t)
		keys := make([]string, 0, len(obj))
		for k := range obj {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			p := joinPath(path, k)
			ft, ok := fields[k]
			if !ok {
				known := make([]string, 0, len(fields))
				for name := range fields {
					known = append(known, name)
				}
				slices.Sort(known)
				out = append(out, unknownField{path: p, known: known})
				continue
			}
			out = append(out, unknownFields(ft, obj[k], p)...)
		}
	case reflect.Slice, reflect.Array:
		arr, ok := v.([]any)
		if !ok {
			return nil
		}
		for i, e := range arr {
			out = append(out, unknownFields(t.Elem(), e, fmt.Sprintf("%s[%d]", path, i))...)
		}
	case reflect.Map:
		obj, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		keys := make([]string, 0, len(obj))
		for k := range obj {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			out = append(out, unknownFields(t.Elem(), obj[k], joinPath(path, k))...)
		}
	}
	return out
}

// jsonFields maps the json names of t's exported fields to their types,
// following embedded structs the way encoding/json does.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	fields := map[string]reflect.Type{}
	for f := range t.Fields() {
		if !f.IsExported() && !f.Anonymous {
			continue
		}
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			et := f.Type
			if et.Kind() == reflect.Pointer {
				et = et.Elem()
			}
			if et.Kind() == reflect.Struct {
				for k, v := range jsonFields(et) {
					if _, ok := fields[k]; !ok {
						fields[k] = v
					}
				}
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		fields[name] = f.Type
	}
	return fields
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}
