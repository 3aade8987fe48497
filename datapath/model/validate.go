package model

import (
	"errors"
	"fmt"
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Validate checks every object and returns all problems at once. Each error
// names the file, the object and the field path.
func (o *Objects) Validate() error {
	errs := append(o.validateObjects(), o.validateRefs()...)
	return errors.Join(append(errs, o.validateMesh()...)...)
}

// validateRefs checks what involves more than one object.
func (o *Objects) validateRefs() []error {
	return o.validateServiceRefs()
}

// validateObjects checks each object on its own.
func (o *Objects) validateObjects() []error {
	var errs []error
	add := func(kind, ns, name string, list field.ErrorList) {
		for _, e := range list {
			errs = append(errs, fmt.Errorf("%s: %s", o.where(kind, ns, name), e.Error()))
		}
	}
	for i := range o.Nodes {
		n := &o.Nodes[i]
		add("Node", "", n.Name, validateNode(n))
	}
	for i := range o.Pods {
		p := &o.Pods[i]
		add("Pod", p.Namespace, p.Name, validatePod(p))
	}
	for i := range o.NetworkPolicies {
		np := &o.NetworkPolicies[i]
		add("NetworkPolicy", np.Namespace, np.Name, validateNetworkPolicy(np))
	}
	for i := range o.CiliumNetworkPolicies {
		c := &o.CiliumNetworkPolicies[i]
		add("CiliumNetworkPolicy", c.Namespace, c.Name, validateCNP(c))
	}
	for i := range o.AuthorizationPolicies {
		a := &o.AuthorizationPolicies[i]
		add("AuthorizationPolicy", a.Namespace, a.Name, validateAuthz(a))
	}
	for i := range o.Prefilters {
		p := &o.Prefilters[i]
		add("Prefilter", "", p.Name, validatePrefilter(p))
	}
	n := 0
	for _, p := range o.Prefilters {
		n += len(p.Spec.Deny)
	}
	if n > MaxPrefilterPrefixes {
		errs = append(errs, fmt.Errorf("Prefilter: %d prefixes in all, more than the %d the prefilter holds", n, MaxPrefilterPrefixes))
	}
	for i := range o.EgressGatewayPolicies {
		p := &o.EgressGatewayPolicies[i]
		add("EgressGatewayPolicy", "", p.Name, validateEgressGateway(p))
	}
	for i := range o.Services {
		s := &o.Services[i]
		add("Service", s.Namespace, s.Name, validateService(s))
	}
	for i := range o.EndpointSlices {
		es := &o.EndpointSlices[i]
		add("EndpointSlice", es.Namespace, es.Name, validateEndpointSlice(es))
	}
	return errs
}

func validateNode(n *corev1.Node) field.ErrorList {
	var all field.ErrorList
	if n.Spec.PodCIDR != "" {
		if _, err := netip.ParsePrefix(n.Spec.PodCIDR); err != nil {
			all = append(all, field.Invalid(field.NewPath("spec", "podCIDR"), n.Spec.PodCIDR, "not a CIDR"))
		}
	}
	for i, a := range n.Status.Addresses {
		if a.Type == corev1.NodeInternalIP || a.Type == corev1.NodeExternalIP {
			if _, err := netip.ParseAddr(a.Address); err != nil {
				all = append(all, field.Invalid(field.NewPath("status", "addresses").Index(i).Child("address"), a.Address, "not an IP address"))
			}
		}
	}
	return all
}

func validatePod(p *corev1.Pod) field.ErrorList {
	var all field.ErrorList
	all = append(all, validateLabels(p.Labels, field.NewPath("metadata", "labels"))...)
	if p.Status.PodIP != "" {
		if a, err := netip.ParseAddr(p.Status.PodIP); err != nil || !a.Is4() {
			all = append(all, field.Invalid(field.NewPath("status", "podIP"), p.Status.PodIP, "not an IPv4 address"))
		}
	}
	for ci, c := range p.Spec.Containers {
		for pi, port := range c.Ports {
			fp := field.NewPath("spec", "containers").Index(ci).Child("ports").Index(pi)
			if port.ContainerPort < 1 || port.ContainerPort > 65535 {
				all = append(all, field.Invalid(fp.Child("containerPort"), port.ContainerPort, "must be between 1 and 65535"))
			}
			if _, ok := protocolOf(port.Protocol); !ok {
				all = append(all, field.NotSupported(fp.Child("protocol"), port.Protocol, []string{"TCP", "UDP", "SCTP"}))
			}
			if port.Name != "" {
				for _, msg := range validation.IsValidPortName(port.Name) {
					all = append(all, field.Invalid(fp.Child("name"), port.Name, msg))
				}
			}
		}
	}
	return all
}

func validateLabels(labels map[string]string, fp *field.Path) field.ErrorList {
	var all field.ErrorList
	for k, v := range labels {
		for _, msg := range validation.IsQualifiedName(k) {
			all = append(all, field.Invalid(fp.Key(k), k, msg))
		}
		for _, msg := range validation.IsValidLabelValue(v) {
			all = append(all, field.Invalid(fp.Key(k), v, msg))
		}
	}
	return all
}

func validateSelector(sel *metav1.LabelSelector, fp *field.Path) field.ErrorList {
	if sel == nil {
		return nil
	}
	if _, err := metav1.LabelSelectorAsSelector(sel); err != nil {
		// Point at the offending expression where we can.
		for i, e := range sel.MatchExpressions {
			switch e.Operator {
			case metav1.LabelSelectorOpIn, metav1.LabelSelectorOpNotIn, metav1.LabelSelectorOpExists, metav1.LabelSelectorOpDoesNotExist:
			default:
				return field.ErrorList{field.NotSupported(fp.Child("matchExpressions").Index(i).Child("operator"), e.Operator,
					[]string{"In", "NotIn", "Exists", "DoesNotExist"})}
			}
		}
		return field.ErrorList{field.Invalid(fp, sel, err.Error())}
	}
	return nil
}

func validateNetworkPolicy(np *networkingv1.NetworkPolicy) field.ErrorList {
	var all field.ErrorList
	spec := field.NewPath("spec")
	all = append(all, validateSelector(&np.Spec.PodSelector, spec.Child("podSelector"))...)
	for i, t := range np.Spec.PolicyTypes {
		if t != networkingv1.PolicyTypeIngress && t != networkingv1.PolicyTypeEgress {
			all = append(all, field.NotSupported(spec.Child("policyTypes").Index(i), t, []string{"Ingress", "Egress"}))
		}
	}
	for i, r := range np.Spec.Ingress {
		fp := spec.Child("ingress").Index(i)
		all = append(all, validatePeers(r.From, fp.Child("from"))...)
		all = append(all, validatePorts(r.Ports, fp.Child("ports"))...)
	}
	for i, r := range np.Spec.Egress {
		fp := spec.Child("egress").Index(i)
		all = append(all, validatePeers(r.To, fp.Child("to"))...)
		all = append(all, validatePorts(r.Ports, fp.Child("ports"))...)
	}
	return all
}

func validatePeers(peers []networkingv1.NetworkPolicyPeer, fp *field.Path) field.ErrorList {
	var all field.ErrorList
	for i, p := range peers {
		pp := fp.Index(i)
		if p.PodSelector == nil && p.NamespaceSelector == nil && p.IPBlock == nil {
			all = append(all, field.Required(pp, "one of podSelector, namespaceSelector or ipBlock"))
		}
		if p.IPBlock != nil && (p.PodSelector != nil || p.NamespaceSelector != nil) {
			all = append(all, field.Forbidden(pp.Child("ipBlock"), "may not be combined with podSelector or namespaceSelector"))
		}
		all = append(all, validateSelector(p.PodSelector, pp.Child("podSelector"))...)
		all = append(all, validateSelector(p.NamespaceSelector, pp.Child("namespaceSelector"))...)
		if p.IPBlock != nil {
			all = append(all, validateIPBlock(p.IPBlock, pp.Child("ipBlock"))...)
		}
	}
	return all
}

func validateIPBlock(b *networkingv1.IPBlock, fp *field.Path) field.ErrorList {
	var all field.ErrorList
	cidr, err := netip.ParsePrefix(b.CIDR)
	if err != nil {
		return field.ErrorList{field.Invalid(fp.Child("cidr"), b.CIDR, "not a CIDR")}
	}
	for i, e := range b.Except {
		ex, err := netip.ParsePrefix(e)
		switch {
		case err != nil:
			all = append(all, field.Invalid(fp.Child("except").Index(i), e, "not a CIDR"))
		case ex.Addr().Is4() != cidr.Addr().Is4() || ex.Bits() < cidr.Bits() || !cidr.Contains(ex.Masked().Addr()):
			all = append(all, field.Invalid(fp.Child("except").Index(i), e, fmt.Sprintf("must be inside cidr %s", b.CIDR)))
		}
	}
	return all
}

func validatePorts(ports []networkingv1.NetworkPolicyPort, fp *field.Path) field.ErrorList {
	var all field.ErrorList
	for i, p := range ports {
		pp := fp.Index(i)
		if p.Protocol != nil {
			if _, ok := protocolOf(*p.Protocol); !ok {
				all = append(all, field.NotSupported(pp.Child("protocol"), *p.Protocol, []string{"TCP", "UDP", "SCTP"}))
			}
		}
		if p.Port != nil {
			switch p.Port.Type {
			case intstr.Int:
				if p.Port.IntVal < 1 || p.Port.IntVal > 65535 {
					all = append(all, field.Invalid(pp.Child("port"), p.Port.IntVal, "must be between 1 and 65535"))
				}
			case intstr.String:
				for _, msg := range validation.IsValidPortName(p.Port.StrVal) {
					all = append(all, field.Invalid(pp.Child("port"), p.Port.StrVal, msg))
				}
			}
		}
		if p.EndPort != nil {
			switch {
			case p.Port == nil || p.Port.Type != intstr.Int:
				all = append(all, field.Forbidden(pp.Child("endPort"), "may only be set with a numeric port"))
			case *p.EndPort < p.Port.IntVal:
				all = append(all, field.Invalid(pp.Child("endPort"), *p.EndPort, fmt.Sprintf("must be >= port %d", p.Port.IntVal)))
			case *p.EndPort > 65535:
				all = append(all, field.Invalid(pp.Child("endPort"), *p.EndPort, "must be between 1 and 65535"))
			}
		}
	}
	return all
}

// protocolOf maps a Kubernetes protocol ("" means TCP) to its IP protocol number.
func protocolOf(p corev1.Protocol) (Protocol, bool) {
	switch p {
	case "", corev1.ProtocolTCP:
		return ProtoTCP, true
	case corev1.ProtocolUDP:
		return ProtoUDP, true
	case corev1.ProtocolSCTP:
		return ProtoSCTP, true
	}
	return 0, false
}
