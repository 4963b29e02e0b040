package controllers

import (
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	ftpv1alpha1 "github.com/kubeftp/ftp-operator/api/v1alpha1"
)

// networkPolicyFor admits FTP traffic (the control port and the whole passive range, one rule
// with endPort) from the allowed sources, the ops port from the scrape sources and from the
// operator's pods (any namespace, by the operatorPodLabel), and nothing else. Ports are the pod's ports: NetworkPolicies see traffic after the Service's translation.
// Egress is limited to DNS (the daemon may resolve a PASV hostname) plus, with active mode on,
// connections back to the FTP clients on unprivileged ports.
func networkPolicyFor(s *ftpv1alpha1.FTPServer, facts clusterFacts) *networkingv1.NetworkPolicy {
	np := s.Spec.NetworkPolicy
	tcp := ptr.To(corev1.ProtocolTCP)
	ftpPorts := []networkingv1.NetworkPolicyPort{
		{Protocol: tcp, Port: ptr.To(intstr.FromInt32(controlContainerPort))},
		{Protocol: tcp, Port: ptr.To(intstr.FromInt32(s.Spec.Ports.Passive.Start)), EndPort: ptr.To(s.Spec.Ports.Passive.End)},
	}
	opsPort := []networkingv1.NetworkPolicyPort{{Protocol: tcp, Port: ptr.To(intstr.FromInt32(opsContainerPort))}}
	ingress := []networkingv1.NetworkPolicyIngressRule{
		{From: np.AllowedSources, Ports: ftpPorts},
		// The operator asks each pod which config it serves before reporting Ready.
		{From: []networkingv1.NetworkPolicyPeer{{
			NamespaceSelector: &metav1.LabelSelector{},
			PodSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{operatorPodLabel: "true"}},
		}}, Ports: opsPort},
	}
	relayPort := []networkingv1.NetworkPolicyPort{{Protocol: tcp, Port: ptr.To(intstr.FromInt32(relayContainerPort))}}
	peers := []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: selectorLabels(s)}}}
	if runsStatefulSet(s, facts) {
		// The replicas relay data connections to each other (replicas_builder.go).
		ingress = append(ingress, networkingv1.NetworkPolicyIngressRule{From: peers, Ports: relayPort})
	}
	if len(np.MetricsSources) > 0 {
		ingress = append(ingress, networkingv1.NetworkPolicyIngressRule{
			From:  np.MetricsSources,
			Ports: opsPort,
		})
	}

	dnsPort := intstr.FromInt32(53)
	egress := []networkingv1.NetworkPolicyEgressRule{{
		Ports: []networkingv1.NetworkPolicyPort{
			{Protocol: ptr.To(corev1.ProtocolUDP), Port: &dnsPort},
			{Protocol: tcp, Port: &dnsPort},
		},
	}}
	if runsStatefulSet(s, facts) {
		egress = append(egress, networkingv1.NetworkPolicyEgressRule{To: peers, Ports: relayPort})
	}
	if s.Spec.ActiveMode.Enabled {
		egress = append(egress, networkingv1.NetworkPolicyEgressRule{
			To:    np.AllowedSources,
			Ports: []networkingv1.NetworkPolicyPort{{Protocol: tcp, Port: ptr.To(intstr.FromInt32(1024)), EndPort: ptr.To(int32(65535))}},
		})
	}

	return &networkingv1.NetworkPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "NetworkPolicy"},
		ObjectMeta: objectMeta(s, s.Name),
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: selectorLabels(s)},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress},
			Ingress:     ingress,
			Egress:      egress,
		},
	}
}

// networkPolicyEnabled defaults to true.
func networkPolicyEnabled(s *ftpv1alpha1.FTPServer) bool {
	return s.Spec.NetworkPolicy.Enabled == nil || *s.Spec.NetworkPolicy.Enabled
}
