package model

import (
	"regexp"
	"slices"
	"strings"
	"sync"
)

// Request is an HTTP request as the L7 proxy sees it.
type Request struct {
	Method string
	// Path is the request target's path (without the query).
	Path string
}

// HTTPRule is the L7 part of a rule: which HTTP requests it matches. A
// rule's HTTP list matches a request when one of its entries does.
//
// Cilium rules.http give Method and Path as regular expressions that must
// match the whole method or path (RE2 syntax, as Envoy matches them); an
// empty one matches everything. Istio operations give lists: Methods are
// exact names; Paths are Istio string matches (see principalMatches); a
// Not list excludes; an empty list matches everything.
type HTTPRule struct {
	Method     string   `json:"method,omitempty"`
	Path       string   `json:"path,omitempty"`
	Methods    []string `json:"methods,omitempty"`
	NotMethods []string `json:"notMethods,omitempty"`
	Paths      []string `json:"paths,omitempty"`
	NotPaths   []string `json:"notPaths,omitempty"`
}

// Matches reports whether req satisfies every part of h.
func (h HTTPRule) Matches(req Request) bool {
	if h.Method != "" && !fullMatch(h.Method, req.Method) {
		return false
	}
	if h.Path != "" && !fullMatch(h.Path, req.Path) {
		return false
	}
	if len(h.Methods) > 0 && !slices.Contains(h.Methods, req.Method) {
		return false
	}
	if slices.Contains(h.NotMethods, req.Method) {
		return false
	}
	if len(h.Paths) > 0 && !anyMatch(h.Paths, req.Path) {
		return false
	}
	return !anyMatch(h.NotPaths, req.Path) // Istio string match, as for principals
}

func (h HTTPRule) String() string {
	var parts []string
	if h.Method != "" {
		parts = append(parts, "method ~ "+h.Method)
	}
	if h.Path != "" {
		parts = append(parts, "path ~ "+h.Path)
	}
	if len(h.Methods) > 0 {
		parts = append(parts, "method in "+strings.Join(h.Methods, ","))
	}
	if len(h.NotMethods) > 0 {
		parts = append(parts, "method not in "+strings.Join(h.NotMethods, ","))
	}
	if len(h.Paths) > 0 {
		parts = append(parts, "path in "+strings.Join(h.Paths, ","))
	}
	if len(h.NotPaths) > 0 {
		parts = append(parts, "path not in "+strings.Join(h.NotPaths, ","))
	}
	if len(parts) == 0 {
		return "any request"
	}
	return strings.Join(parts, " and ")
}

func httpMatches(rules []HTTPRule, req Request) bool {
	for _, h := range rules {
		if h.Matches(req) {
			return true
		}
	}
	return false
}

// compiled caches anchored regular expressions by source; validation has
// already refused the ones that do not compile.
var compiled sync.Map // string -> *regexp.Regexp

func fullMatch(expr, s string) bool {
	re, ok := compiled.Load(expr)
	if !ok {
		r, err := compileFull(expr)
		if err != nil {
			return false
		}
		re, _ = compiled.LoadOrStore(expr, r)
	}
	return re.(*regexp.Regexp).MatchString(s)
}

func compileFull(expr string) (*regexp.Regexp, error) {
	return regexp.Compile("^(?:" + expr + ")$")
}
