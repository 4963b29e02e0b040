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
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	ftpv1alpha1 "github.com/kubeftp/ftp-operator/api/v1alpha1"
)

// applyResult is what applying the desired set did.
type applyResult struct {
	// blockers are every problem only a person can fix, from the look-up and from the apply, in
	// the order found; conclude ranks them.
	blockers []blocker
	// deployment as the API server answered our apply (its generation tells whether a rollout
	// is due, which a cached copy may not know yet), or as it was when not applied.
	deployment *appsv1.Deployment
	// pendingClaims are the server's claims not bound yet.
	pendingClaims []pendingClaim
}

// onRefusal says what an object refused by the API server holds back.
type onRefusal int

const (
	goOn         onRefusal = iota // report it; apply the rest
	holdWorkload                  // report it; leave the users Secret and the Deployment as they are
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
	// refused turns an API refusal into a blocker and says what it holds back; nil for an
	// error worth retrying.
	refused func(err error) (*blocker, onRefusal)
}

// applyDesired applies the desired set in one loop, in dependency order: claims first (data
// outlives everything), the Service (its ports may clash), the config, the NetworkPolicy, then
// the workload. It returns every blocker; an object of one of our names that is not ours is
// never touched, and holds back what would use it.
func (r *FTPServerReconciler) applyDesired(ctx context.Context, s *ftpv1alpha1.FTPServer, d desiredSet, state clusterState) (applyResult, error) {
	a := applier{client: r.Client, server: s}
	out := applyResult{blockers: append([]blocker(nil), state.blockers...), deployment: state.existing.deployment, pendingClaims: state.facts.pendingClaims}
	holding := len(out.blockers) > 0

	var steps []applyStep
	for _, claim := range d.claims {
		steps = append(steps, applyStep{desired: claim, existing: asObject(state.existing.claims[claim.Name]), refused: claimRefused(claim)})
	}
	steps = append(steps,
		applyStep{desired: d.service, existing: asObject(state.existing.service), refused: serviceRefused},
		applyStep{desired: d.configMap, existing: asObject(state.existing.configMap), refused: refusedAs(stopHere)}, // the pods must not mount someone else's config
		applyStep{desired: asObject(d.networkPolicy), existing: asObject(state.existing.networkPolicy), refused: refusedAs(goOn)},
		applyStep{desired: d.usersSecret, existing: asObject(state.existing.usersSecret), workload: true, refused: refusedAs(stopHere)},
		applyStep{desired: d.deployment, existing: asObject(state.existing.deployment), workload: true, refused: refusedAs(goOn)},
	)
	for _, step := range steps {
		if step.workload && holding {
			continue
		}
		if step.desired == nil {
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
		if dep, ok := step.desired.(*appsv1.Deployment); ok && applied != nil {
			out.deployment = &appsv1.Deployment{}
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(applied.Object, out.deployment); err != nil {
				return out, fmt.Errorf("read back Deployment %s/%s: %w", dep.Namespace, dep.Name, err)
			}
		}
	}
	return out, nil
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
