package controllers

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	ftpv1alpha1 "github.com/kubeftp/ftp-operator/api/v1alpha1"
)

func TestDiagnosePodsPrecedence(t *testing.T) {
	waiting := func(reason string) corev1.Pod {
		return corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p-" + reason}, Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{{
			Name: "ftpd", Image: "img", RestartCount: 3, State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason}},
			LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 2}},
		}}}}
	}
	unschedulableFor := func(why string) corev1.Pod {
		return corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p-unsched"}, Status: corev1.PodStatus{Conditions: []corev1.PodCondition{{
			Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: corev1.PodReasonUnschedulable, Message: why,
		}}}}
	}
	unschedulable := unschedulableFor("0/1 nodes are available: pod has unbound immediate PersistentVolumeClaims")
	noNodeMatches := unschedulableFor("0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector")
	deleting := waiting("CrashLoopBackOff")
	deleting.DeletionTimestamp = &metav1.Time{}
	pending := []pendingClaim{{name: "files-data", storageClass: "fast"}}
	tests := []struct {
		name    string
		pods    []corev1.Pod
		pending []pendingClaim
		want    string // reason; "" for no trouble
		stalled bool
	}{
		{"nothing wrong", []corev1.Pod{{}}, nil, "", false},
		{"crash loop wins over a pending claim", []corev1.Pod{unschedulable, waiting("CrashLoopBackOff")}, pending, ftpv1alpha1.ReasonDaemonCrashLooping, true},
		{"image pull", []corev1.Pod{waiting("ImagePullBackOff")}, nil, ftpv1alpha1.ReasonImagePullFailed, true},
		{"a pending claim explains an unschedulable pod", []corev1.Pod{unschedulable}, pending, ftpv1alpha1.ReasonClaimPending, false},
		{"unschedulable", []corev1.Pod{noNodeMatches}, nil, ftpv1alpha1.ReasonUnschedulable, false},
		{"a verdict about a claim bound since is a wait (the scheduler retries)", []corev1.Pod{unschedulable}, nil, "", false},
		{"a claim waiting for its pod to be placed is not the cause", []corev1.Pod{noNodeMatches}, pending, ftpv1alpha1.ReasonUnschedulable, false},
		{"a pending claim alone is a provisioner at work", []corev1.Pod{{}}, pending, "", false},
		{"a terminating pod's crash is history", []corev1.Pod{deleting}, nil, "", false},
		{"container cannot start", []corev1.Pod{waiting("CreateContainerConfigError")}, nil, ftpv1alpha1.ReasonContainerCannotStart, true},
		{"a sysctl the kubelet does not allow", []corev1.Pod{{ObjectMeta: metav1.ObjectMeta{Name: "p-sysctl"}, Status: corev1.PodStatus{
			Phase: corev1.PodFailed, Reason: "SysctlForbidden", Message: `Pod was rejected: forbidden sysctl: "net.core.somaxconn" not allowlisted`,
		}}}, nil, ftpv1alpha1.ReasonSysctlForbidden, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := diagnosePods(minimalServer(), tt.pods, tt.pending)
			if tt.want == "" {
				if got != nil {
					t.Fatalf("trouble %+v, want none", got)
				}
				return
			}
			if got == nil || got.reason != tt.want || got.stalled != tt.stalled || got.message == "" {
				t.Fatalf("trouble %+v, want reason %s (stalled %v) with a message", got, tt.want, tt.stalled)
			}
		})
	}
}
