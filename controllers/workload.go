package controllers

import (
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// workload is the controller of the daemon pods as the status reads it: the Deployment of one
// replica or the StatefulSet of several. The zero value is an absent workload.
type workload struct {
	kind string // "Deployment" or "StatefulSet"; "" when absent
	// observed: its controller has seen the latest spec, so the counts below are of it.
	observed bool
	// settled: no pod of an older revision is left (a StatefulSet's current revision is its
	// update revision; a Deployment's pods are all updated).
	settled                             bool
	replicas, updated, available, ready int32
}

func (w workload) exists() bool { return w.kind != "" }

// rolledOut: the controller has seen the latest spec and every wanted replica is updated and
// available, with no pod of an older template left.
func (w workload) rolledOut(want int32) bool {
	return w.exists() && w.observed && w.settled && w.updated >= want && w.available >= want
}

func workloadOfDeployment(d *appsv1.Deployment) workload {
	if d == nil {
		return workload{}
	}
	st := d.Status
	return workload{
		kind: "Deployment", observed: st.ObservedGeneration >= d.Generation, settled: st.Replicas == st.UpdatedReplicas,
		replicas: st.Replicas, updated: st.UpdatedReplicas, available: st.AvailableReplicas, ready: st.ReadyReplicas,
	}
}

func workloadOfStatefulSet(s *appsv1.StatefulSet) workload {
	if s == nil {
		return workload{}
	}
	st := s.Status
	return workload{
		kind: "StatefulSet", observed: st.ObservedGeneration >= s.Generation,
		settled:  st.UpdateRevision == "" || st.CurrentRevision == st.UpdateRevision || st.UpdatedReplicas == st.Replicas,
		replicas: st.Replicas, updated: st.UpdatedReplicas, available: st.AvailableReplicas, ready: st.ReadyReplicas,
	}
}

// workloadOfApplied reads the workload back from the API server's answer to our apply (its
// generation tells whether a rollout is due, which a cached copy may not know yet).
func workloadOfApplied(kind string, obj runtime.Unstructured) (workload, error) {
	switch kind {
	case "Deployment":
		var d appsv1.Deployment
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(obj.UnstructuredContent(), &d); err != nil {
			return workload{}, fmt.Errorf("read back Deployment: %w", err)
		}
		return workloadOfDeployment(&d), nil
	case "StatefulSet":
		var s appsv1.StatefulSet
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(obj.UnstructuredContent(), &s); err != nil {
			return workload{}, fmt.Errorf("read back StatefulSet: %w", err)
		}
		return workloadOfStatefulSet(&s), nil
	}
	return workload{}, fmt.Errorf("not a workload kind: %s", kind)
}
