package controllers

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	ftpv1alpha1 "github.com/kubeftp/ftp-operator/api/v1alpha1"
)

// serviceFor exposes the control port and every passive port. Kubernetes Services cannot
// express port ranges, so each passive port is its own Service port, named pasv-<port> and
// mapped to the same container port; the daemon advertises exactly these numbers.
func serviceFor(s *ftpv1alpha1.FTPServer) *corev1.Service {
	spec := s.Spec.Service
	svcType := spec.Type
	if svcType == "" {
		svcType = corev1.ServiceTypeLoadBalancer
	}

	control := corev1.ServicePort{
		Name:       "ftp",
		Protocol:   corev1.ProtocolTCP,
		Port:       s.Spec.Ports.Control,
		TargetPort: intstr.FromInt32(controlContainerPort),
	}
	if spec.ControlNodePort != nil && svcType != corev1.ServiceTypeClusterIP {
		control.NodePort = *spec.ControlNodePort
	}
	ports := []corev1.ServicePort{control}
	for p := s.Spec.Ports.Passive.Start; p <= s.Spec.Ports.Passive.End; p++ {
		sp := corev1.ServicePort{Name: passivePortName(p), Protocol: corev1.ProtocolTCP, Port: p, TargetPort: intstr.FromInt32(p)}
		if svcType == corev1.ServiceTypeNodePort {
			// Clients reach node:port and are told that same port in PASV replies.
			sp.NodePort = p
		}
		ports = append(ports, sp)
	}

	labels := commonLabels(s)
	for k, v := range spec.Labels {
		if _, reserved := labels[k]; !reserved {
			labels[k] = v
		}
	}
	svc := &corev1.Service{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: metav1.ObjectMeta{
			Name: s.Name, Namespace: s.Namespace,
			Labels: labels, Annotations: spec.Annotations,
			OwnerReferences: []metav1.OwnerReference{ownerReference(s)},
		},
		Spec: corev1.ServiceSpec{
			Type:     svcType,
			Selector: selectorLabels(s),
			Ports:    ports,
			// The data connection must reach the pod that sent the PASV reply. With one
			// replica that is given; with several, a replica that gets another's data
			// connection relays it (replicas_builder.go). ClientIP affinity keeps a client's
			// connections on one pod where kube-proxy can (it is kept per Service port), so
			// fewer are relayed.
			SessionAffinity: corev1.ServiceAffinityClientIP,
		},
	}
	if svcType != corev1.ServiceTypeClusterIP {
		// Local keeps the client's IP, which per-IP limits, bans and the data-connection
		// check rely on.
		svc.Spec.ExternalTrafficPolicy = spec.ExternalTrafficPolicy
	}
	if svcType == corev1.ServiceTypeLoadBalancer {
		svc.Spec.LoadBalancerClass = spec.LoadBalancerClass
		svc.Spec.LoadBalancerSourceRanges = spec.LoadBalancerSourceRanges
		svc.Spec.AllocateLoadBalancerNodePorts = spec.AllocateLoadBalancerNodePorts
	}
	return svc
}
