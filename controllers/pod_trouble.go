package controllers

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"

	ftpv1alpha1 "github.com/kubeftp/ftp-operator/api/v1alpha1"
)

// podTrouble is why the daemon pods do not come up, read from the pods and claims as Kubernetes
// reports them, so that the status says what to do instead of "rolling out the daemon".
type podTrouble struct {
	reason  string
	message string
	// stalled: it will not resolve without a person (a wrong image, a daemon that keeps exiting).
	// Otherwise it is a wait that may resolve (a provisioner, a cluster autoscaler).
	stalled bool
}

// sysctlForbidden is the reason a kubelet gives a pod it refuses for its sysctls
// (k8s.io/kubernetes/pkg/kubelet/sysctl.ForbiddenReason).
const sysctlForbidden = "SysctlForbidden"

// pendingClaim is a claim of the server that is not bound yet.
type pendingClaim struct {
	name         string
	storageClass string // "" when the claim names none
}

// diagnosePods finds the most telling trouble of a rollout: a pull failure or a crash loop
// first (a person must act), then a pod the scheduler cannot place, blamed on an unbound claim
// when there is one (the usual root cause). nil when nothing is wrong yet.
func diagnosePods(s *ftpv1alpha1.FTPServer, pods []corev1.Pod, pending []pendingClaim) *podTrouble {
	var unschedulable *podTrouble
	for i := range pods {
		p := &pods[i]
		if p.DeletionTimestamp != nil {
			continue
		}
		// The kubelet refuses, at admission, a pod with a sysctl it does not allow; the pod
		// fails at once and the ReplicaSet makes another, which fares no better.
		if p.Status.Phase == corev1.PodFailed && p.Status.Reason == sysctlForbidden {
			return &podTrouble{reason: ftpv1alpha1.ReasonSysctlForbidden, stalled: true, message: fmt.Sprintf(
				"the node refuses pod %s: %s; spec.pod.sysctls may only hold sysctls the nodes allow: Kubernetes' safe ones anywhere, others (net.core.somaxconn, ...) only where the kubelet runs with --allowed-unsafe-sysctls",
				p.Name, strings.TrimSpace(p.Status.Message))}
		}
		for _, cs := range p.Status.ContainerStatuses {
			if t := containerTrouble(s, p, cs); t != nil {
				return t
			}
		}
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable && unschedulable == nil {
				unschedulable = &podTrouble{reason: ftpv1alpha1.ReasonUnschedulable, message: fmt.Sprintf(
					"pod %s cannot be scheduled: %s; check spec.pod.nodeSelector, tolerations, affinity and resources against the nodes (kubectl -n %s describe pod %s)",
					p.Name, strings.TrimSpace(c.Message), s.Namespace, p.Name)}
			}
		}
	}
	// A claim is Pending for a while at every first start (a provisioner at work, or a class
	// that binds only once the pod is scheduled); it is trouble when the scheduler gives up on
	// the pod for it.
	// The scheduler's verdict stays on the pod until its next attempt: "unbound immediate
	// PersistentVolumeClaims" while no claim is pending any more is a claim bound since, and the
	// scheduler retries on that binding. A wait, not trouble.
	if unschedulable != nil && len(pending) == 0 && strings.Contains(strings.ToLower(unschedulable.message), "unbound immediate persistentvolumeclaims") {
		return nil
	}
	if unschedulable != nil && len(pending) > 0 && blamesVolumes(unschedulable.message) {
		c := pending[0]
		class := fmt.Sprintf("StorageClass %q", c.storageClass)
		if c.storageClass == "" {
			class = "no StorageClass (the cluster has no default one, or the claim asks for none)"
		}
		return &podTrouble{reason: ftpv1alpha1.ReasonClaimPending, message: fmt.Sprintf(
			"PersistentVolumeClaim %s/%s is Pending with %s: no PersistentVolume is bound to it, so the daemon pod cannot start; "+
				"check the provisioner's events (kubectl -n %s describe pvc %s), set claimTemplate.storageClassName to a class that exists, or create a matching PersistentVolume",
			s.Namespace, c.name, class, s.Namespace, c.name)}
	}
	return unschedulable
}

// lastLines keeps the end of a termination message (the log's tail) within max bytes.
func lastLines(msg string, max int) string {
	msg = strings.Join(strings.Fields(msg), " ")
	if len(msg) > max {
		msg = "..." + msg[len(msg)-max:]
	}
	return msg
}

// blamesVolumes tells whether the scheduler's words are about the pod's volumes ("unbound
// immediate PersistentVolumeClaims", a missing StorageClass). With a class that binds only once
// the pod is placed, a claim stays Pending because the pod cannot be placed, not the reverse.
func blamesVolumes(schedulerMessage string) bool {
	m := strings.ToLower(schedulerMessage)
	return strings.Contains(m, "persistentvolumeclaim") || strings.Contains(m, "storageclass") || strings.Contains(m, "volume")
}

// containerTrouble reads a container's waiting state the way `kubectl get pods` shows it.
func containerTrouble(s *ftpv1alpha1.FTPServer, p *corev1.Pod, cs corev1.ContainerStatus) *podTrouble {
	w := cs.State.Waiting
	if w == nil {
		return nil
	}
	switch w.Reason {
	case "ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull":
		return &podTrouble{reason: ftpv1alpha1.ReasonImagePullFailed, stalled: true, message: fmt.Sprintf(
			"pod %s cannot get image %s (%s: %s); check spec.image (empty: the operator's own image) and spec.pod.imagePullSecrets",
			p.Name, cs.Image, w.Reason, strings.TrimSpace(w.Message))}
	case "CrashLoopBackOff":
		last := "its last exit is unknown"
		if t := cs.LastTerminationState.Terminated; t != nil {
			last = fmt.Sprintf("last exit code %d", t.ExitCode)
			if msg := strings.TrimSpace(t.Message); msg != "" {
				last += ", ending with: " + lastLines(msg, 600)
			}
		}
		return &podTrouble{reason: ftpv1alpha1.ReasonDaemonCrashLooping, stalled: true, message: fmt.Sprintf(
			"the daemon in pod %s keeps exiting: %d restarts, %s; its log says why: kubectl -n %s logs %s --previous",
			p.Name, cs.RestartCount, last, s.Namespace, p.Name)}
	case "CreateContainerConfigError", "CreateContainerError", "RunContainerError":
		return &podTrouble{reason: ftpv1alpha1.ReasonContainerCannotStart, stalled: true, message: fmt.Sprintf(
			"the container of pod %s cannot start (%s: %s); kubectl -n %s describe pod %s",
			p.Name, w.Reason, strings.TrimSpace(w.Message), s.Namespace, p.Name)}
	}
	return nil
}
