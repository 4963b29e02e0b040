package controllers

import (
	"errors"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/utils/ptr"

	ftpv1alpha1 "github.com/kubeftp/ftp-operator/api/v1alpha1"
)

func TestPassiveAddressFor(t *testing.T) {
	cases := []struct {
		name        string
		serviceType corev1.ServiceType
		specAddress string
		ingress     []corev1.LoadBalancerIngress
		clusterIP   string
		want        passiveAddress
	}{
		{name: "load balancer IP", serviceType: corev1.ServiceTypeLoadBalancer,
			ingress: []corev1.LoadBalancerIngress{{IP: "203.0.113.7"}}, want: passiveAddress{static: "203.0.113.7"}},
		{name: "load balancer hostname is resolved by the daemon", serviceType: corev1.ServiceTypeLoadBalancer,
			ingress: []corev1.LoadBalancerIngress{{Hostname: "abc.elb.example.com"}}, want: passiveAddress{hostname: "abc.elb.example.com"}},
		{name: "IPv4 preferred over IPv6 and hostname", serviceType: corev1.ServiceTypeLoadBalancer,
			ingress: []corev1.LoadBalancerIngress{{IP: "2001:db8::7"}, {Hostname: "lb.example.com"}, {IP: "203.0.113.9"}}, want: passiveAddress{static: "203.0.113.9"}},
		{name: "IPv6-only load balancer is unusable for PASV", serviceType: corev1.ServiceTypeLoadBalancer,
			ingress: []corev1.LoadBalancerIngress{{IP: "2001:db8::7"}}, want: passiveAddress{}},
		{name: "no address yet", serviceType: corev1.ServiceTypeLoadBalancer, want: passiveAddress{}},
		{name: "spec address wins over the load balancer", serviceType: corev1.ServiceTypeLoadBalancer, specAddress: "198.51.100.1",
			ingress: []corev1.LoadBalancerIngress{{IP: "203.0.113.7"}}, want: passiveAddress{static: "198.51.100.1"}},
		{name: "spec hostname", serviceType: corev1.ServiceTypeNodePort, specAddress: "ftp.example.com", want: passiveAddress{hostname: "ftp.example.com"}},
		{name: "cluster IP", serviceType: corev1.ServiceTypeClusterIP, clusterIP: "10.96.0.10", want: passiveAddress{static: "10.96.0.10"}},
		{name: "headless has no address", serviceType: corev1.ServiceTypeClusterIP, clusterIP: "None", want: passiveAddress{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := minimalServer()
			s.Spec.Service.Type = tc.serviceType
			s.Spec.PassiveAddress.Address = tc.specAddress
			got := passiveAddressFor(s, observed{loadBalancerIngress: tc.ingress, clusterIP: tc.clusterIP})
			if got != tc.want {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestRestartChecksumIgnoresHotReloadedParts(t *testing.T) {
	s := minimalServer()
	base := ftpdConfigFor(s, observed{loadBalancerIngress: []corev1.LoadBalancerIngress{{IP: "203.0.113.7"}}})
	moved := ftpdConfigFor(s, observed{loadBalancerIngress: []corev1.LoadBalancerIngress{{IP: "203.0.113.99"}}})
	a, _ := restartChecksum(base)
	b, _ := restartChecksum(moved)
	if a != b {
		t.Fatal("a new PASV address changed the restart checksum: the pods would roll")
	}
	s.Spec.TLS = ftpv1alpha1.TLSSpec{Mode: ftpv1alpha1.TLSExplicit, SecretName: "x", MinVersion: "1.2"}
	c, _ := restartChecksum(ftpdConfigFor(s, observed{}))
	if c == a {
		t.Fatal("turning TLS on did not change the restart checksum")
	}
}

func TestServiceNodePortAllocationSwitch(t *testing.T) {
	s := minimalServer()
	s.Spec.Service.AllocateLoadBalancerNodePorts = ptr.To(false)
	if got := serviceFor(s).Spec.AllocateLoadBalancerNodePorts; got == nil || *got {
		t.Fatalf("allocateLoadBalancerNodePorts = %v, want false on the LoadBalancer Service", got)
	}
	s.Spec.Service.Type = corev1.ServiceTypeClusterIP
	if got := serviceFor(s).Spec.AllocateLoadBalancerNodePorts; got != nil {
		t.Fatalf("allocateLoadBalancerNodePorts set on a ClusterIP Service: %v", *got)
	}
}

// TestPortConflictRecognisesAllocationFailures: the API server's refusals of Service ports
// become PortConflict messages that say what to do; other errors do not.
func TestPortConflictRecognisesAllocationFailures(t *testing.T) {
	invalid := func(detail string) error {
		return apierrors.NewInvalid(schema.GroupKind{Kind: "Service"}, "files",
			field.ErrorList{field.Invalid(field.NewPath("spec", "ports").Index(1).Child("nodePort"), 30001, detail)})
	}
	cases := []struct {
		name string
		err  error
		want string // substring of the message; "" means not a port conflict
	}{
		{"node port held by another Service", invalid("provided port is already allocated"), "taken by another Service"},
		{"node ports exhausted", invalid("failed to allocate a nodePort: range is full"), "allocateLoadBalancerNodePorts: false"},
		{"cluster IPs exhausted is not a node-port problem", apierrors.NewInvalid(schema.GroupKind{Kind: "Service"}, "files",
			field.ErrorList{field.Invalid(field.NewPath("spec", "clusterIPs"), "", "failed to allocate IP: range is full")}), ""},
		{"unrelated validation error", invalid("must be between 30000 and 32767"), ""},
		{"not an Invalid error", errors.New("connection refused"), ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := portConflict(tc.err)
			if tc.want == "" && got != "" || tc.want != "" && !strings.Contains(got, tc.want) {
				t.Fatalf("portConflict = %q, want a message containing %q", got, tc.want)
			}
		})
	}
}
