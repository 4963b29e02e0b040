package controllers

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	ftpv1alpha1 "github.com/kubeftp/ftp-operator/api/v1alpha1"
)

func TestApplySetsKstatusConditions(t *testing.T) {
	cases := []struct {
		name            string
		in              conclusion
		wantReady       metav1.ConditionStatus
		wantReconciling bool
		wantStalled     bool
	}{
		{name: "ready", in: conclusion{ready: true, reason: ftpv1alpha1.ReasonReady, message: "serving"},
			wantReady: metav1.ConditionTrue},
		{name: "rolling out", in: conclusion{reason: ftpv1alpha1.ReasonWaitingForPods, message: "0/1 pods available", reconciling: true},
			wantReady: metav1.ConditionFalse, wantReconciling: true},
		{name: "needs a human", in: conclusion{reason: ftpv1alpha1.ReasonSecretNotFound, message: "secret x not found", stalled: true},
			wantReady: metav1.ConditionFalse, wantStalled: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var status ftpv1alpha1.FTPServerStatus
			writeConclusion(&status, 7, tc.in)

			if status.ObservedGeneration != 7 {
				t.Errorf("observedGeneration = %d, want 7", status.ObservedGeneration)
			}
			ready := meta.FindStatusCondition(status.Conditions, ftpv1alpha1.ConditionReady)
			if ready == nil {
				t.Fatal("Ready condition missing; it must always be present")
			}
			if ready.Status != tc.wantReady || ready.Reason != tc.in.reason || ready.Message != tc.in.message || ready.ObservedGeneration != 7 {
				t.Errorf("Ready = %+v, want status %s reason %s message %q generation 7", *ready, tc.wantReady, tc.in.reason, tc.in.message)
			}
			if got := meta.IsStatusConditionTrue(status.Conditions, ftpv1alpha1.ConditionReconciling); got != tc.wantReconciling {
				t.Errorf("Reconciling true = %v, want %v", got, tc.wantReconciling)
			}
			if got := meta.IsStatusConditionTrue(status.Conditions, ftpv1alpha1.ConditionStalled); got != tc.wantStalled {
				t.Errorf("Stalled true = %v, want %v", got, tc.wantStalled)
			}
		})
	}
}

func TestApplyDropsConditionsThatTurnFalse(t *testing.T) {
	var status ftpv1alpha1.FTPServerStatus
	writeConclusion(&status, 1, conclusion{reason: ftpv1alpha1.ReasonWaitingForPods, message: "rolling", reconciling: true, stalled: true})
	writeConclusion(&status, 2, conclusion{ready: true, reason: ftpv1alpha1.ReasonReady, message: "serving"})

	if len(status.Conditions) != 1 || status.Conditions[0].Type != ftpv1alpha1.ConditionReady {
		t.Fatalf("conditions = %+v, want only Ready: Reconciling and Stalled are present only while True", status.Conditions)
	}
}

func TestApplyIsStableWhenNothingChanged(t *testing.T) {
	var first ftpv1alpha1.FTPServerStatus
	in := conclusion{reason: ftpv1alpha1.ReasonWaitingForAddress, message: "no address yet", reconciling: true}
	writeConclusion(&first, 3, in)
	second := *first.DeepCopy()
	writeConclusion(&second, 3, in)
	if !equality.Semantic.DeepEqual(first, second) {
		t.Fatalf("observing the same conclusion twice changed the status:\n%+v\n%+v", first, second)
	}
}

// TestEveryBlockerIsReported: several blockers at once are all in the message, the one that
// explains most first; none replaces another.
func TestEveryBlockerIsReported(t *testing.T) {
	applied := applyResult{blockers: []blocker{
		{reason: ftpv1alpha1.ReasonClaimUpdateRejected, message: "claim files-data refuses"},
		{reason: ftpv1alpha1.ReasonSecretNotFound, message: "Secret alice-ftp is missing"},
		{reason: ftpv1alpha1.ReasonNameConflict, message: "Secret files-users is not ours"},
	}}
	c := conclude(minimalServer(), clusterFacts{}, applied, advertisedAddress{}, podsSeen{})
	if c.reason != ftpv1alpha1.ReasonNameConflict || !c.stalled || c.ready {
		t.Fatalf("conclusion %+v, want Stalled with NameConflict first", c)
	}
	for _, b := range applied.blockers {
		if !strings.Contains(c.message, b.message) {
			t.Errorf("message %q leaves out %s", c.message, b.reason)
		}
	}
	if !strings.Contains(c.message, "also "+ftpv1alpha1.ReasonSecretNotFound) {
		t.Errorf("message %q does not name the other blockers' reasons", c.message)
	}
}
