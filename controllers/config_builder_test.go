package controllers

import (
	"errors"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/utils/ptr"

	ftpv1alpha1 "github.com/kubeftp/ftp-operator/api/v1alpha1"
	"github.com/kubeftp/ftp-operator/ftpd/fileconfig"
)

func TestPassiveAddressFor(t *testing.T) {
	cases := []struct {
		name        string
		serviceType corev1.ServiceType
		specAddress string
		ingress     []corev1.LoadBalancerIngress
		clusterIP   string
		want        advertisedAddress
	}{
		{name: "load balancer IP", serviceType: corev1.ServiceTypeLoadBalancer,
			ingress: []corev1.LoadBalancerIngress{{IP: "203.0.113.7"}}, want: advertisedAddress{static: "203.0.113.7"}},
		{name: "load balancer hostname is resolved by the daemon", serviceType: corev1.ServiceTypeLoadBalancer,
			ingress: []corev1.LoadBalancerIngress{{Hostname: "abc.elb.example.com"}}, want: advertisedAddress{hostname: "abc.elb.example.com"}},
		{name: "IPv4 preferred over IPv6 and hostname", serviceType: corev1.ServiceTypeLoadBalancer,
			ingress: []corev1.LoadBalancerIngress{{IP: "2001:db8::7"}, {Hostname: "lb.example.com"}, {IP: "203.0.113.9"}}, want: advertisedAddress{static: "203.0.113.9"}},
		{name: "IPv6-only load balancer is unusable for PASV", serviceType: corev1.ServiceTypeLoadBalancer,
			ingress: []corev1.LoadBalancerIngress{{IP: "2001:db8::7"}}, want: advertisedAddress{}},
		{name: "no address yet", serviceType: corev1.ServiceTypeLoadBalancer, want: advertisedAddress{}},
		{name: "spec address wins over the load balancer", serviceType: corev1.ServiceTypeLoadBalancer, specAddress: "198.51.100.1",
			ingress: []corev1.LoadBalancerIngress{{IP: "203.0.113.7"}}, want: advertisedAddress{static: "198.51.100.1"}},
		{name: "spec hostname", serviceType: corev1.ServiceTypeNodePort, specAddress: "ftp.example.com", want: advertisedAddress{hostname: "ftp.example.com"}},
		{name: "cluster IP", serviceType: corev1.ServiceTypeClusterIP, clusterIP: "10.96.0.10", want: advertisedAddress{static: "10.96.0.10"}},
		{name: "headless has no address", serviceType: corev1.ServiceTypeClusterIP, clusterIP: "None", want: advertisedAddress{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := minimalServer()
			s.Spec.Service.Type = tc.serviceType
			s.Spec.PassiveAddress.Address = tc.specAddress
			got := advertisedAddressFor(s, clusterFacts{loadBalancerIngress: tc.ingress, clusterIP: tc.clusterIP})
			if got != tc.want {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

// TestRestartChecksumFollowsWhatTheDaemonReloads: the pods roll for changes the daemon cannot
// apply live, and only for those (the classification is fileconfig's, shared with the daemon).
func TestRestartChecksumFollowsWhatTheDaemonReloads(t *testing.T) {
	lb := clusterFacts{loadBalancerIngress: []corev1.LoadBalancerIngress{{IP: "203.0.113.7"}}}
	checksum := func(t *testing.T, s *ftpv1alpha1.FTPServer, facts clusterFacts) string {
		t.Helper()
		sum, err := restartChecksum(ftpdConfigFor(s, facts, advertisedAddressFor(s, facts)))
		if err != nil {
			t.Fatal(err)
		}
		return sum
	}
	base := checksum(t, minimalServer(), lb)
	tests := []struct {
		name   string
		change func(*ftpv1alpha1.FTPServer, *clusterFacts)
		rolls  bool
	}{
		{"a new load balancer address", func(_ *ftpv1alpha1.FTPServer, o *clusterFacts) {
			o.loadBalancerIngress = []corev1.LoadBalancerIngress{{IP: "203.0.113.99"}}
		}, false},
		{"session limits", func(s *ftpv1alpha1.FTPServer, _ *clusterFacts) {
			s.Spec.Limits.MaxSessions, s.Spec.Limits.MaxSessionsPerIP = 7, 2
		}, false},
		{"ban settings", func(s *ftpv1alpha1.FTPServer, _ *clusterFacts) { s.Spec.Limits.MaxFailedLogins = 9 }, false},
		{"TLS on", func(s *ftpv1alpha1.FTPServer, _ *clusterFacts) {
			s.Spec.TLS = ftpv1alpha1.TLSSpec{Mode: ftpv1alpha1.TLSExplicit, SecretName: "x", MinVersion: "1.2"}
		}, true},
		{"idle timeout", func(s *ftpv1alpha1.FTPServer, _ *clusterFacts) {
			s.Spec.Limits.IdleTimeout = &metav1.Duration{Duration: time.Minute}
		}, true},
		{"passive range", func(s *ftpv1alpha1.FTPServer, _ *clusterFacts) { s.Spec.Ports.Passive.End++ }, true},
		{"drain timeout", func(s *ftpv1alpha1.FTPServer, _ *clusterFacts) {
			s.Spec.DrainTimeout = &metav1.Duration{Duration: 17 * time.Second}
		}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, facts := minimalServer(), lb
			tt.change(s, &facts)
			if rolled := checksum(t, s, facts) != base; rolled != tt.rolls {
				t.Fatalf("restart checksum changed = %v, want %v", rolled, tt.rolls)
			}
		})
	}
}

// TestDrainTimeoutEdges: the daemon's drain timeout and the pod's grace period agree for every
// value the API accepts, 0s included (no drain, not the daemon's default).
func TestDrainTimeoutEdges(t *testing.T) {
	tests := []struct {
		drain time.Duration
		grace int64
	}{
		{0, 2 + drainGrace}, // the daemon's 2 s shutdown delay comes first
		{1500 * time.Millisecond, 2 + 2 + drainGrace},
		{2 * time.Minute, 2 + 120 + drainGrace},
		{24 * time.Hour, 2 + 86400 + drainGrace},
	}
	for _, tt := range tests {
		t.Run(tt.drain.String(), func(t *testing.T) {
			s := minimalServer()
			s.Spec.DrainTimeout = &metav1.Duration{Duration: tt.drain}
			cm, err := configMapFor(s, ftpdConfigFor(s, clusterFacts{}, advertisedAddress{}))
			if err != nil {
				t.Fatal(err)
			}
			parsed, err := fileconfig.Parse([]byte(cm.Data[fileconfig.ConfigFileName]))
			if err != nil {
				t.Fatal(err)
			}
			if got := parsed.DrainTimeout.Duration; got != tt.drain {
				t.Fatalf("the daemon reads drainTimeout %v, want %v", got, tt.drain)
			}
			dep := deploymentFor(s, clusterFacts{}, "sum")
			if got := *dep.Spec.Template.Spec.TerminationGracePeriodSeconds; got != tt.grace {
				t.Fatalf("terminationGracePeriodSeconds = %d, want %d", got, tt.grace)
			}
		})
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
