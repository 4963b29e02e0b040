package controllers

import (
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"

	ftpv1alpha1 "github.com/kubeftp/ftp-operator/api/v1alpha1"
)

// TestPodSysctls: spec.pod.sysctls reach the pod security context, whether it is the
// operator's or the user's, and never change the rest of it.
func TestPodSysctls(t *testing.T) {
	sysctls := []ftpv1alpha1.PodSysctl{{Name: "net.ipv4.tcp_syncookies", Value: "2"}, {Name: "net.ipv4.ip_unprivileged_port_start", Value: "21"}}
	want := []corev1.Sysctl{{Name: "net.ipv4.tcp_syncookies", Value: "2"}, {Name: "net.ipv4.ip_unprivileged_port_start", Value: "21"}}
	userContext := &corev1.PodSecurityContext{RunAsNonRoot: ptr.To(true)}
	cases := []struct {
		name     string
		context  *corev1.PodSecurityContext
		sysctls  []ftpv1alpha1.PodSysctl
		want     []corev1.Sysctl
		wantUser *int64 // RunAsUser of the result: the operator's 65532, or the user's (none)
	}{
		{"operator's context, no sysctls", nil, nil, nil, ptr.To(int64(daemonUID))},
		{"operator's context", nil, sysctls, want, ptr.To(int64(daemonUID))},
		{"user's context", userContext, sysctls, want, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := minimalServer()
			s.Spec.Pod.SecurityContext, s.Spec.Pod.Sysctls = tc.context, tc.sysctls
			got := deploymentFor(s, factsFor(s), "sum").Spec.Template.Spec.SecurityContext
			if !reflect.DeepEqual(got.Sysctls, tc.want) {
				t.Errorf("sysctls = %v, want %v", got.Sysctls, tc.want)
			}
			if !reflect.DeepEqual(got.RunAsUser, tc.wantUser) || got.RunAsNonRoot == nil || !*got.RunAsNonRoot {
				t.Errorf("security context changed: %+v", got)
			}
			if tc.context != nil && tc.context.Sysctls != nil {
				t.Errorf("the FTPServer's own security context was modified")
			}
		})
	}
}
