package model

import (
	"net/netip"
	"sort"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Prefilter (fastpath.dev/v1alpha1, cluster-scoped) lists IPv4 source
// prefixes every node's XDP prefilter drops on its uplink, before the
// stack and before policy: the equivalent of Cilium's prefilter CIDRs.
// Several Prefilter objects add up.
type Prefilter struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              PrefilterSpec `json:"spec"`
}

// PrefilterSpec is a Prefilter's content.
type PrefilterSpec struct {
	// Deny are CIDRs ("203.0.113.0/24"; a bare address means /32).
	Deny []string `json:"deny"`
}

// MaxPrefilterPrefixes is how many prefixes the prefilter holds in all.
const MaxPrefilterPrefixes = 65536

func validatePrefilter(p *Prefilter) field.ErrorList {
	var all field.ErrorList
	fp := field.NewPath("spec", "deny")
	if len(p.Spec.Deny) == 0 {
		all = append(all, field.Required(fp, "at least one CIDR"))
	}
	for i, s := range p.Spec.Deny {
		if _, err := parsePrefilterCIDR(s); err != nil {
			all = append(all, field.Invalid(fp.Index(i), s, "not an IPv4 CIDR (the prefilter is IPv4 only)"))
		}
	}
	return all
}

func parsePrefilterCIDR(s string) (netip.Prefix, error) {
	if a, err := netip.ParseAddr(s); err == nil {
		if !a.Is4() {
			return netip.Prefix{}, errNotIPv4
		}
		return netip.PrefixFrom(a, 32), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	if !p.Addr().Is4() {
		return netip.Prefix{}, errNotIPv4
	}
	return p.Masked(), nil
}

type prefilterError string

func (e prefilterError) Error() string { return string(e) }

const errNotIPv4 = prefilterError("not IPv4")

// prefilterPrefixes is the union of every Prefilter's prefixes, sorted,
// without duplicates.
func prefilterPrefixes(objs *Objects) []netip.Prefix {
	seen := map[netip.Prefix]bool{}
	var out []netip.Prefix
	for _, p := range objs.Prefilters {
		for _, s := range p.Spec.Deny {
			if pr, err := parsePrefilterCIDR(s); err == nil && !seen[pr] {
				seen[pr] = true
				out = append(out, pr)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if c := out[i].Addr().Compare(out[j].Addr()); c != 0 {
			return c < 0
		}
		return out[i].Bits() < out[j].Bits()
	})
	return out
}
