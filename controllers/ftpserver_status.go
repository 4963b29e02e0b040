package controllers

import (
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	ftpv1alpha1 "github.com/kubeftp/ftp-operator/api/v1alpha1"
)

// readiness is what one reconcile concluded about an FTPServer.
type readiness struct {
	ready       bool
	reason      string
	message     string
	reconciling bool // still converging, e.g. a rollout in progress
	stalled     bool // cannot progress without a human
}

// observe records a reconcile's conclusion in status following kstatus: Ready is always present,
// Reconciling and Stalled only while True (a False one is removed, not kept), and every condition
// carries the generation it describes. LastTransitionTime only moves when a status flips, so an
// unchanged conclusion leaves the status byte-for-byte equal and nothing is written.
func observe(status *ftpv1alpha1.FTPServerStatus, generation int64, r readiness) {
	status.ObservedGeneration = generation

	readyStatus := metav1.ConditionFalse
	if r.ready {
		readyStatus = metav1.ConditionTrue
	}
	meta.SetStatusCondition(&status.Conditions, metav1.Condition{
		Type:               ftpv1alpha1.ConditionReady,
		Status:             readyStatus,
		Reason:             r.reason,
		Message:            r.message,
		ObservedGeneration: generation,
	})
	setWhileTrue(status, ftpv1alpha1.ConditionReconciling, r.reconciling, r.reason, r.message, generation)
	setWhileTrue(status, ftpv1alpha1.ConditionStalled, r.stalled, r.reason, r.message, generation)
}

func setWhileTrue(status *ftpv1alpha1.FTPServerStatus, condType string, on bool, reason, message string, generation int64) {
	if !on {
		meta.RemoveStatusCondition(&status.Conditions, condType)
		return
	}
	meta.SetStatusCondition(&status.Conditions, metav1.Condition{
		Type:               condType,
		Status:             metav1.ConditionTrue,
		Reason:             reason,
		Message:            message,
		ObservedGeneration: generation,
	})
}
