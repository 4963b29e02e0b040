package controllers

import (
	"context"
	"errors"
	"fmt"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	ftpv1alpha1 "github.com/kubeftp/ftp-operator/api/v1alpha1"
)

// applyResult is what applying the desired set did.
type applyResult struct {
	// blockers are every problem only a person can fix, from the look-up and from the apply, in
	// the order found; conclude ranks them.
	blockers []blocker
	// workload is the Deployment or the StatefulSet that runs the pods, as the API server
	// answered our apply, or as it was when not applied.
	workload workload
	// pendingClaims are the server's claims not bound yet.
	pendingClaims []pendingClaim
	// scaleUpHeld: the StatefulSet stays at its size until the running replicas serve the
	// config naming the new peers (holdScaleUp).
	scaleUpHeld bool
	// served is the readiness handshake holdScaleUp made for a scale-up, which lookAtPods
	// reuses instead of asking every pod again in the same pass; nil when none was made.
	served *servedConfig
}

// onRefusal says what an object refused by the API server holds back.
type onRefusal int

const (
	goOn         onRefusal = iota // report it; apply the rest
	holdWorkload                  // report it; leave the users Secret and the workload as they are
	stopHere                      // report it; apply nothing after it (later objects use it)
)

// applyStep is one object of the desired set on its way to the API server.
type applyStep struct {
	desired  client.Object // nil: delete existing when it is ours (a disabled NetworkPolicy)
	existing client.Object // nil when absent
	// workload marks the objects built from inputs a blocker may have left incomplete (the
	// users, the config the pods run with); they wait while any blocker stands, so a deleted
	// Secret never takes a running server down.
	workload bool
	// waitsForConfig marks the config and the workload, which wait while the config cannot be
	// complete: they are left as they are while a relay Service has no cluster IP
	// (desiredSet.relayPending), and not created while the PASV address is unknown
	// (desiredSet.addressPending).
	waitsForConfig bool
	// retire, on a workload of the kind not wanted, deletes it only once the wanted one serves
	// (a change between 1 and several replicas swaps the Deployment for a StatefulSet).
	retire bool
	// refused turns an API refusal into a blocker and says what it holds back; nil for an
	// error worth retrying.
	refused func(err error) (*blocker, onRefusal)
}

// applyDesired applies the desired set in one loop, in dependency order: claims first (data
// outlives everything), the Service (its ports may clash, and its address goes into the
// config), the config, the NetworkPolicy, then the workload; a new server's config and workload
// wait for the Service's address. It returns every blocker; an object of one of our names that
// is not ours is never touched, and holds back what would use it.
func (r *FTPServerReconciler) applyDesired(ctx context.Context, s *ftpv1alpha1.FTPServer, d desiredSet, state clusterState) (applyResult, error) {
	a := applier{client: r.Client, server: s, equal: r.compared.of(client.ObjectKeyFromObject(s))}
	ex := state.existing
	out := applyResult{blockers: append([]blocker(nil), state.blockers...), pendingClaims: state.facts.pendingClaims}
	out.workload = workloadOfDeployment(ex.deployment)
	if runsStatefulSet(s, state.facts) {
		out.workload = workloadOfStatefulSet(ex.statefulSet)
	}
	holding := len(out.blockers) > 0
	statefulSet, served := r.holdScaleUp(ctx, d, state)
	out.scaleUpHeld, out.served = statefulSet != d.statefulSet, served

	var steps []applyStep
	for _, claim := range d.claims {
		steps = append(steps, applyStep{desired: claim, existing: asObject(ex.claims[claim.Name]), refused: claimRefused(claim)})
	}
	steps = append(steps, applyStep{desired: d.service, existing: asObject(ex.service), refused: serviceRefused})
	// The relay Services come before the config that names their addresses; those past the
	// replicas wanted are pruned.
	for i, svc := range ex.replicaServices {
		if i >= int32(len(d.replicaServices)) {
			steps = append(steps, applyStep{existing: svc})
		}
	}
	for i, svc := range d.replicaServices {
		steps = append(steps, applyStep{desired: svc, existing: asObject(ex.replicaServices[int32(i)]), refused: refusedAs(holdWorkload)})
	}
	steps = append(steps,
		applyStep{desired: asObject(d.relaySecret), existing: asObject(ex.relaySecret), refused: refusedAs(holdWorkload)},
		applyStep{desired: d.configMap, existing: asObject(ex.configMap), waitsForConfig: true, refused: refusedAs(stopHere)}, // the pods must not mount someone else's config
		applyStep{desired: asObject(d.networkPolicy), existing: asObject(ex.networkPolicy), refused: refusedAs(goOn)},
		applyStep{desired: asObject(d.podDisruptionBudget), existing: asObject(ex.podDisruptionBudget), refused: refusedAs(goOn)},
		applyStep{desired: d.usersSecret, existing: asObject(ex.usersSecret), workload: true, refused: refusedAs(stopHere)},
		applyStep{desired: asObject(d.deployment), existing: asObject(ex.deployment), workload: true, waitsForConfig: true, retire: d.deployment == nil, refused: refusedAs(goOn)},
		applyStep{desired: asObject(statefulSet), existing: asObject(ex.statefulSet), workload: true, waitsForConfig: true, retire: d.statefulSet == nil, refused: refusedAs(goOn)},
	)
	for _, step := range steps {
		if (step.workload && holding) || (step.waitsForConfig && (d.relayPending || (d.addressPending && step.existing == nil))) {
			continue
		}
		if step.desired == nil {
			if step.retire && replicasOf(s) > 0 && out.workload.ready == 0 {
				continue // the other workload's pods serve until the new ones do
			}
			if err := r.deleteIfOurs(ctx, a, step.existing); err != nil {
				return out, err
			}
			continue
		}
		applied, err := a.apply(ctx, step.desired, step.existing)
		if err != nil {
			b, effect := step.refused(err)
			if b == nil {
				return out, err
			}
			out.blockers = append(out.blockers, *b)
			if effect == stopHere {
				return out, nil
			}
			holding = holding || effect == holdWorkload
			continue
		}
		if kind := step.desired.GetObjectKind().GroupVersionKind().Kind; (kind == "Deployment" || kind == "StatefulSet") && applied != nil {
			if out.workload, err = workloadOfApplied(kind, applied); err != nil {
				return out, fmt.Errorf("%s/%s: %w", s.Namespace, s.Name, err)
			}
		}
	}
	return out, nil
}

// holdScaleUp returns the StatefulSet to apply: the desired one, or, while a scale-up waits,
// the same at the replicas it runs now; and the readiness handshake it made, if any. A
// scale-up waits until every ready replica serves the config that names the new peers. Until
// a replica has reloaded it, it refuses the data connections the load balancer brings it for
// a new replica's slice, and kube-proxy sends it those as soon as the new replica is ready.
// The config is written in the same pass, so the first pass always waits; the pods are
// annotated (lookAtPods), and the kubelet refreshes them within a recheck or two.
func (r *FTPServerReconciler) holdScaleUp(ctx context.Context, d desiredSet, state clusterState) (*appsv1.StatefulSet, *servedConfig) {
	want, existing := d.statefulSet, state.existing.statefulSet
	if want == nil || existing == nil || !state.podsListed {
		return want, nil
	}
	running := ptr.Deref(existing.Spec.Replicas, 0)
	if ptr.Deref(want.Spec.Replicas, 0) <= running || running == 0 {
		return want, nil
	}
	served := r.checkServedConfig(ctx, state.pods, d.served)
	if len(served.stale) == 0 {
		return want, &served
	}
	log.FromContext(ctx).Info("the scale-up waits for the running replicas to serve the config naming the new peers",
		"replicas", running, "wanted", ptr.Deref(want.Spec.Replicas, 0), "waiting for", strings.Join(served.stale, "; "))
	held := want.DeepCopy()
	held.Spec.Replicas = ptr.To(running)
	return held, &served
}

// deleteIfOurs removes an object we no longer want (a disabled NetworkPolicy), never one that is
// not ours.
func (r *FTPServerReconciler) deleteIfOurs(ctx context.Context, a applier, existing client.Object) error {
	if existing == nil || !a.ours(existing) {
		return nil
	}
	if err := r.Delete(ctx, existing); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete %T %s/%s: %w", existing, existing.GetNamespace(), existing.GetName(), err)
	}
	return nil
}

// refusedAs handles the refusal every object can meet: its name is taken by an object that is
// not ours.
func refusedAs(effect onRefusal) func(error) (*blocker, onRefusal) {
	return func(err error) (*blocker, onRefusal) {
		if b := nameConflict(err); b != nil {
			return b, effect
		}
		return nil, goOn
	}
}

// claimRefused: a taken name holds the workload (its pods would mount someone else's data); a
// change the existing claim cannot take is reported while the claim as it is still serves.
func claimRefused(claim *corev1.PersistentVolumeClaim) func(error) (*blocker, onRefusal) {
	return func(err error) (*blocker, onRefusal) {
		if b := nameConflict(err); b != nil {
			return b, holdWorkload
		}
		if apierrors.IsInvalid(err) || apierrors.IsForbidden(err) {
			return &blocker{reason: ftpv1alpha1.ReasonClaimUpdateRejected, message: fmt.Sprintf(
				"PersistentVolumeClaim %s/%s cannot take the claimTemplate's change (storage class, access modes and a smaller size cannot change on an existing claim); revert it or move the data to a new volume: %v",
				claim.Namespace, claim.Name, err)}, goOn
		}
		return nil, goOn
	}
}

// serviceRefused: a port someone else holds, or a taken name; either way nothing after the
// Service is applied.
func serviceRefused(err error) (*blocker, onRefusal) {
	if conflict := portConflict(err); conflict != "" {
		return &blocker{reason: ftpv1alpha1.ReasonPortConflict, message: conflict}, stopHere
	}
	if b := nameConflict(err); b != nil {
		return b, stopHere
	}
	return nil, goOn
}

// nameConflict turns an apply refused because the object is not ours into a blocker.
func nameConflict(err error) *blocker {
	var notOurs *notOursError
	if !errors.As(err, &notOurs) {
		return nil
	}
	return &blocker{reason: ftpv1alpha1.ReasonNameConflict, message: fmt.Sprintf(
		"%s %s/%s already exists and is not this FTPServer's; the operator will not take it over. Rename or delete it, or rename the FTPServer or volume",
		notOurs.kind, notOurs.namespace, notOurs.name)}
}

// portConflict recognises the API server's refusal of a Service port: the causes of an Invalid
// error name the field (spec.ports[i].nodePort) and say why. The allocators' wording ("already
// allocated", "range is full") is the only signal of which refusal it is; it has been stable
// across Kubernetes releases.
func portConflict(err error) string {
	var status apierrors.APIStatus
	if !errors.As(err, &status) || (!apierrors.IsInvalid(err) && !apierrors.IsConflict(err)) {
		return ""
	}
	st := status.Status()
	causes := []metav1.StatusCause{{Message: st.Message}}
	if st.Details != nil && len(st.Details.Causes) > 0 {
		causes = st.Details.Causes
	}
	for _, c := range causes {
		msg := c.Message
		switch {
		case strings.Contains(msg, "already allocated") || strings.Contains(msg, "port is already"):
			return fmt.Sprintf("a port of the Service is taken by another Service (%s%s); choose other ports.passive or service.controlNodePort", fieldOf(c), msg)
		case strings.Contains(c.Field, "nodePort") || strings.Contains(msg, "nodePort"):
			if strings.Contains(msg, "range is full") || strings.Contains(msg, "failed to allocate") {
				return fmt.Sprintf("the cluster has no node ports left for the Service (each passive port takes one); set service.allocateLoadBalancerNodePorts: false if your load balancer reaches pods directly, or narrow ports.passive (%s%s)", fieldOf(c), msg)
			}
		}
	}
	return ""
}

func fieldOf(c metav1.StatusCause) string {
	if c.Field == "" {
		return ""
	}
	return c.Field + ": "
}

// asObject turns a typed nil pointer into a nil interface, so apply knows the object is absent.
func asObject[T client.Object](obj T) client.Object {
	var zero T
	if any(obj) == any(zero) {
		return nil
	}
	return obj
}
