// Package controllers holds the FTPServer reconciler. The reconciler only fetches, builds,
// compares, writes and reports; the desired objects come from pure builder functions
// (*_builder.go) of the FTPServer and what was looked up.
package controllers

import (
	"context"
	"fmt"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	ftpv1alpha1 "github.com/kubeftp/ftp-operator/api/v1alpha1"
)

// FTPServerReconciler turns FTPServers into running FTP services.
type FTPServerReconciler struct {
	client.Client

	// DaemonImage runs the FTP daemon when an FTPServer does not override spec.image; the
	// manager sets it to its own image so the operator and its daemons never skew.
	DaemonImage string
	// Recorder emits events on Ready transitions; optional.
	Recorder events.EventRecorder
	// BcryptCost for hashing plain passwords (bcrypt.DefaultCost when zero).
	BcryptCost int

	// ConfigProber asks daemon pods which config they serve (the readiness handshake,
	// served_config.go); nil asks them over HTTP.
	ConfigProber DaemonConfigProber
	// WaitWarningAfter is how long an expected wait (the load balancer, the rollout, the pods
	// catching up) may last before a Warning event says so; zero means DefaultWaitWarningAfter.
	WaitWarningAfter time.Duration

	// warned remembers the waits already warned about (by server), so each gets one event.
	warned sync.Map
	// compared remembers which objects were last found as desired (apply.go).
	compared comparisonMemo

	hasher *passwordHasher
	// apiReader reads Secrets and Pods from the API server, not from a cache: the manager only
	// watches Secrets' metadata and no Pods, so it never holds every Secret or Pod of the
	// cluster in memory.
	apiReader client.Reader
}

// +kubebuilder:rbac:groups=ftp.kubeftp.dev,resources=ftpservers,verbs=get;list;watch
// +kubebuilder:rbac:groups=ftp.kubeftp.dev,resources=ftpservers/status,verbs=get;update;patch
// Owner references with blockOwnerDeletion need update on the owner's finalizers where the
// OwnerReferencesPermissionEnforcement admission plugin is on (e.g. OpenShift).
// +kubebuilder:rbac:groups=ftp.kubeftp.dev,resources=ftpservers/finalizers,verbs=update
// +kubebuilder:rbac:groups="",resources=configmaps;persistentvolumeclaims,verbs=get;list;watch;create;update;patch
// Services and Secrets of several replicas (the relay Services, the relay key) are deleted when
// the server scales down or returns to one replica; so are the workload of the other kind and the
// disruption budget.
// +kubebuilder:rbac:groups="",resources=secrets;services,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=apps,resources=deployments;statefulsets,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=policy,resources=poddisruptionbudgets,verbs=get;list;watch;create;update;patch;delete
// Pods: listed for the readiness handshake and annotated so the kubelet refreshes their volumes.
// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list;patch
// EndpointSlices: Ready waits until the Service forwards to the pods.
// +kubebuilder:rbac:groups=discovery.k8s.io,resources=endpointslices,verbs=get;list
// +kubebuilder:rbac:groups=networking.k8s.io,resources=networkpolicies,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconcile brings one FTPServer closer to its desired state and reports what it saw, in
// phases: look up, build the whole desired set (pure), apply it, look at the pods, conclude.
func (r *FTPServerReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var server ftpv1alpha1.FTPServer
	if err := r.Get(ctx, req.NamespacedName, &server); err != nil {
		if apierrors.IsNotFound(err) {
			r.warned.Delete(req.NamespacedName)
			r.compared.forget(req.NamespacedName)
			return ctrl.Result{}, nil // deleted: owned objects go by garbage collection
		}
		return ctrl.Result{}, fmt.Errorf("get FTPServer %s/%s: %w", req.Namespace, req.Name, err)
	}
	if !server.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil
	}

	state, err := r.lookUp(ctx, &server)
	if err != nil {
		return ctrl.Result{}, err
	}
	desired, err := desiredSetFor(&server, state.facts)
	if err != nil {
		return ctrl.Result{}, err
	}
	applied, err := r.applyDesired(ctx, &server, desired, state)
	if err != nil {
		return ctrl.Result{}, err
	}
	pods, err := r.lookAtPods(ctx, &server, desired, applied, state)
	if err != nil {
		return ctrl.Result{}, err
	}
	c := conclude(&server, state.facts, applied, desired.address, pods)
	if err := r.report(ctx, &server, c); err != nil {
		return ctrl.Result{}, err
	}
	requeue := recheckAfter(c)
	if state.facts.replicaPodsUpTo > replicasOf(&server) && (requeue == 0 || requeue > podsRecheck) {
		// Removed replicas are draining as peers; their pods' end is not watched: look again
		// to drop them from the config and prune their relay Services.
		requeue = podsRecheck
	}
	if left := r.warnOfLongWait(&server, c); left > 0 && (requeue == 0 || left < requeue) {
		requeue = left
	}
	return ctrl.Result{RequeueAfter: requeue}, nil
}

// podsSeen is what the pods told: why a rollout does not progress, or which config they serve.
type podsSeen struct {
	trouble *podTrouble
	served  servedConfig
}

// lookAtPods reads the daemon pods (or takes those the look-up listed) once nothing blocks: during a rollout, why they do not come
// up (pod_trouble.go); once rolled out, which config each ready pod serves, annotating those
// that serve older inputs so their kubelet refreshes the volumes (served_config.go).
func (r *FTPServerReconciler) lookAtPods(ctx context.Context, s *ftpv1alpha1.FTPServer, desired desiredSet, applied applyResult, state clusterState) (podsSeen, error) {
	var seen podsSeen
	// No pod runs before the workload exists (it waits for the address, or a blocker holds it).
	if len(applied.blockers) > 0 || replicasOf(s) == 0 || !applied.workload.exists() {
		return seen, nil
	}
	var err error
	pods := state.pods
	if !state.podsListed {
		if pods, err = r.podsOf(ctx, s); err != nil {
			return seen, err
		}
	}
	if !applied.workload.rolledOut(replicasOf(s)) {
		seen.trouble = diagnosePods(s, pods, applied.pendingClaims)
		// Several replicas serve while some are missing (Degraded): ask those that are up.
		if !replicated(s) || applied.workload.available == 0 {
			return seen, nil
		}
	}
	if !desired.address.known() {
		return seen, nil
	}
	if applied.served != nil {
		seen.served = *applied.served // asked in this pass already (holdScaleUp)
	} else {
		seen.served = r.checkServedConfig(ctx, pods, desired.served)
	}
	if err := r.announceInputs(ctx, pods, seen.served.olderPods, desired.inputsVersion); err != nil {
		return seen, err
	}
	seen.served.inputsVersion = desired.inputsVersion
	if seen.served.endpoints, err = r.servedEndpoints(ctx, s, pods); err != nil {
		return seen, err
	}
	return seen, nil
}

// recheckAfter is when a reconcile looks again without a watch event: pod states (a crash loop,
// a scheduling failure) and a kubelet's volume refresh change nothing the operator watches.
func recheckAfter(c conclusion) time.Duration {
	switch c.reason {
	case ftpv1alpha1.ReasonWaitingForConfig, ftpv1alpha1.ReasonWaitingForEndpoints:
		return servedConfigRecheck
	case ftpv1alpha1.ReasonWaitingForPods, ftpv1alpha1.ReasonClaimPending, ftpv1alpha1.ReasonUnschedulable,
		ftpv1alpha1.ReasonImagePullFailed, ftpv1alpha1.ReasonDaemonCrashLooping, ftpv1alpha1.ReasonContainerCannotStart,
		ftpv1alpha1.ReasonSysctlForbidden,
		// A replica that comes back changes its pod and the EndpointSlices, neither watched.
		ftpv1alpha1.ReasonDegraded:
		return podsRecheck
	}
	return 0
}

// DefaultWaitWarningAfter bounds the expected waits before they are warned about: a cloud load
// balancer or a first rollout with an image pull takes a minute or two; five is a problem.
const DefaultWaitWarningAfter = 5 * time.Minute

// expectedWait tells the reasons that are normal steps of a start or a change: their events
// are Normal, and only a wait past WaitWarningAfter gets a Warning.
func expectedWait(reason string) bool {
	switch reason {
	case ftpv1alpha1.ReasonReady, ftpv1alpha1.ReasonWaitingForAddress, ftpv1alpha1.ReasonWaitingForPods,
		ftpv1alpha1.ReasonWaitingForConfig, ftpv1alpha1.ReasonWaitingForEndpoints, ftpv1alpha1.ReasonStopping, ftpv1alpha1.ReasonStopped:
		return true
	}
	return false
}

// warnOfLongWait emits one Warning event when an expected wait has lasted past the bound, and
// otherwise returns how long until it would (0: nothing to watch).
func (r *FTPServerReconciler) warnOfLongWait(s *ftpv1alpha1.FTPServer, c conclusion) time.Duration {
	if !c.reconciling || !expectedWait(c.reason) || r.Recorder == nil {
		r.warned.Delete(client.ObjectKeyFromObject(s))
		return 0
	}
	ready := meta.FindStatusCondition(s.Status.Conditions, ftpv1alpha1.ConditionReady)
	if ready == nil {
		return 0
	}
	bound := r.WaitWarningAfter
	if bound == 0 {
		bound = DefaultWaitWarningAfter
	}
	waited := time.Since(ready.LastTransitionTime.Time)
	if waited < bound {
		return bound - waited + time.Second
	}
	key := c.reason + "@" + ready.LastTransitionTime.String()
	if prev, ok := r.warned.Load(client.ObjectKeyFromObject(s)); ok && prev == key {
		return 0
	}
	r.warned.Store(client.ObjectKeyFromObject(s), key)
	r.Recorder.Eventf(s, nil, corev1.EventTypeWarning, c.reason, "Reconcile", "still %s after %s: %s", c.reason, waited.Round(time.Second), c.message)
	return 0
}

// report writes the status when it changed and emits an event when readiness changed: Normal
// for the expected steps, Warning for problems.
func (r *FTPServerReconciler) report(ctx context.Context, s *ftpv1alpha1.FTPServer, c conclusion) error {
	before := s.Status.DeepCopy()
	desired := s.Status.DeepCopy()
	writeConclusion(desired, s.Generation, c)
	if equality.Semantic.DeepEqual(desired, before) {
		return nil
	}
	s.Status = *desired
	if err := r.Status().Update(ctx, s); err != nil {
		return fmt.Errorf("update status of FTPServer %s/%s: %w", s.Namespace, s.Name, err)
	}
	log.FromContext(ctx).V(1).Info("status updated", "ready", c.ready, "reason", c.reason)
	if r.Recorder != nil && readinessChanged(before, desired) {
		eventType := corev1.EventTypeWarning
		if expectedWait(c.reason) {
			eventType = corev1.EventTypeNormal
		}
		r.Recorder.Eventf(s, nil, eventType, c.reason, "Reconcile", "%s", c.message)
	}
	return nil
}

// SetupWithManager registers the reconciler, its field indexes and its watches.
func (r *FTPServerReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.hasher == nil {
		r.hasher = newPasswordHasher(r.BcryptCost)
	}
	r.apiReader = mgr.GetAPIReader()
	if r.ConfigProber == nil {
		r.ConfigProber = &HTTPDaemonConfigProber{}
	}
	ctx := context.Background()
	indexer := mgr.GetFieldIndexer()
	if err := indexer.IndexField(ctx, &ftpv1alpha1.FTPServer{}, indexSecretNames, referencedSecrets); err != nil {
		return fmt.Errorf("index FTPServers by Secret: %w", err)
	}
	if err := indexer.IndexField(ctx, &ftpv1alpha1.FTPServer{}, indexClaimNames, referencedClaims); err != nil {
		return fmt.Errorf("index FTPServers by claim: %w", err)
	}
	return ctrl.NewControllerManagedBy(mgr).
		// Our own status writes do not change the generation and need no reconcile.
		For(&ftpv1alpha1.FTPServer{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Owns(&appsv1.Deployment{}).
		Owns(&appsv1.StatefulSet{}).
		Owns(&policyv1.PodDisruptionBudget{}).
		Owns(&corev1.Service{}).
		Owns(&corev1.ConfigMap{}).
		Owns(&networkingv1.NetworkPolicy{}).
		Owns(&corev1.PersistentVolumeClaim{}).
		// Secrets are watched by metadata only (a change still bumps their resourceVersion) and
		// read from the API server when needed.
		Owns(&corev1.Secret{}, builder.OnlyMetadata).
		// Referenced Secrets (passwords, TLS) and claims are not ours, and retained claims have
		// no owner reference; the indexes and the server label map them back.
		Watches(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(serversReferencing(mgr.GetClient(), indexSecretNames)), builder.OnlyMetadata).
		Watches(&corev1.PersistentVolumeClaim{}, handler.EnqueueRequestsFromMapFunc(serversOfClaim(mgr.GetClient()))).
		Named("ftpserver").
		Complete(r)
}
