// Package controllers holds the FTPServer reconciler. The reconciler only fetches, builds,
// compares, writes and reports; the desired objects come from pure builder functions
// (*_builder.go) of the FTPServer and what was looked up.
package controllers

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	ftpv1alpha1 "github.com/kubeftp/ftp-operator/api/v1alpha1"
	"github.com/kubeftp/ftp-operator/ftpd/fileconfig"
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
// +kubebuilder:rbac:groups="",resources=configmaps;secrets;services;persistentvolumeclaims,verbs=get;list;watch;create;update;patch
// +kubebuilder:rbac:groups=apps,resources=deployments,verbs=get;list;watch;create;update;patch
// Pods: listed for the readiness handshake and annotated so the kubelet refreshes their volumes.
// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list;patch
// +kubebuilder:rbac:groups=networking.k8s.io,resources=networkpolicies,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconcile brings one FTPServer closer to its desired state and reports what it saw.
func (r *FTPServerReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var server ftpv1alpha1.FTPServer
	if err := r.Get(ctx, req.NamespacedName, &server); err != nil {
		if apierrors.IsNotFound(err) {
			r.warned.Delete(req.NamespacedName)
			return ctrl.Result{}, nil // deleted: owned objects go by garbage collection
		}
		return ctrl.Result{}, fmt.Errorf("get FTPServer %s: %w", req.NamespacedName, err)
	}
	if !server.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil
	}

	obs, cur, block, err := r.lookUp(ctx, &server)
	if err != nil {
		return ctrl.Result{}, err
	}
	outcome, err := r.applyAll(ctx, &server, obs, cur, block)
	if err != nil {
		return ctrl.Result{}, err
	}
	if outcome.blocker != nil {
		block = outcome.blocker
	}
	dep := cur.deployment
	if outcome.deployment != nil {
		dep = outcome.deployment
	}
	var served servedConfig
	var trouble *podTrouble
	if block == nil && replicasOf(&server) > 0 {
		pods, err := r.podsOf(ctx, &server)
		if err != nil {
			return ctrl.Result{}, err
		}
		if !rolledOut(dep, replicasOf(&server)) {
			trouble = diagnosePods(&server, pods, obs.pendingClaims)
		} else if outcome.address.known() {
			if err := r.announceInputs(ctx, pods, outcome.inputsVersion); err != nil {
				return ctrl.Result{}, err
			}
			served = r.checkServedConfig(ctx, pods, outcome.configDigest)
		}
	}
	c := conclude(&server, obs, dep, outcome, served, trouble, block)
	if err := r.report(ctx, &server, c); err != nil {
		return ctrl.Result{}, err
	}
	requeue := recheckAfter(c)
	if left := r.warnOfLongWait(&server, c); left > 0 && (requeue == 0 || left < requeue) {
		requeue = left
	}
	return ctrl.Result{RequeueAfter: requeue}, nil
}

// recheckAfter is when a reconcile looks again without a watch event: pod states (a crash loop,
// a scheduling failure) and a kubelet's volume refresh change nothing the operator watches.
func recheckAfter(c conclusion) time.Duration {
	switch c.reason {
	case ftpv1alpha1.ReasonWaitingForConfig:
		return servedConfigRecheck
	case ftpv1alpha1.ReasonWaitingForPods, ftpv1alpha1.ReasonClaimPending, ftpv1alpha1.ReasonUnschedulable,
		ftpv1alpha1.ReasonImagePullFailed, ftpv1alpha1.ReasonDaemonCrashLooping, ftpv1alpha1.ReasonContainerCannotStart:
		return podsRecheck
	}
	return 0
}

// applyOutcome is what applyAll did.
type applyOutcome struct {
	blocker *blocker
	// deployment as the server answered our apply, when we sent one: its generation tells
	// whether a rollout is due, which a cached copy may not know yet.
	deployment *appsv1.Deployment
	address    passiveAddress
	// configDigest is fileconfig.ContentDigest of the rendered ftpd.yaml: what every ready pod
	// must serve before the server is Ready.
	configDigest string
	// inputsVersion covers everything the pods mount from us (config, users, TLS Secret).
	inputsVersion string
}

// applyAll writes the desired objects. With a blocker, the objects that depend on the missing
// input (the users Secret and the Deployment) are left as they are, so a deleted Secret never
// takes a running server down; it is reported instead. An object of one of our names that is not
// ours is never touched, and blocks the objects that would use it.
func (r *FTPServerReconciler) applyAll(ctx context.Context, s *ftpv1alpha1.FTPServer, obs observed, cur live, block *blocker) (applyOutcome, error) {
	a := applier{client: r.Client, server: s}
	var out applyOutcome
	holdWorkload := block != nil

	// Claims first: data outlives everything else.
	for _, claim := range claimsFor(s) {
		existing, err := getOptional(ctx, r.Client, claim.Namespace, claim.Name, &corev1.PersistentVolumeClaim{})
		if err != nil {
			return out, err
		}
		_, err = a.apply(ctx, claim, asObject(existing))
		switch {
		case err == nil:
		case nameConflict(err) != nil:
			out.blocker, holdWorkload = nameConflict(err), true
		case apierrors.IsInvalid(err) || apierrors.IsForbidden(err):
			// Most of a bound claim is immutable. The claim as it is still serves, so the rest
			// of the spec goes ahead; the refused change is reported.
			msg := fmt.Sprintf(
				"PersistentVolumeClaim %s/%s cannot take the claimTemplate's change (storage class, access modes and a smaller size cannot change on an existing claim); revert it or move the data to a new volume: %v",
				claim.Namespace, claim.Name, err)
			if out.blocker != nil && out.blocker.reason == ftpv1alpha1.ReasonClaimUpdateRejected {
				msg = out.blocker.message + "; " + msg // every refused claim is named
			}
			out.blocker = &blocker{reason: ftpv1alpha1.ReasonClaimUpdateRejected, message: msg}
		default:
			return out, err
		}
	}

	if _, err := a.apply(ctx, serviceFor(s), asObject(cur.service)); err != nil {
		if conflict := portConflict(err); conflict != "" {
			out.blocker = &blocker{reason: ftpv1alpha1.ReasonPortConflict, message: conflict}
			return out, nil
		}
		if b := nameConflict(err); b != nil {
			out.blocker = b
			return out, nil
		}
		return out, err
	}

	cfg := ftpdConfigFor(s, obs)
	out.address = passiveAddressFor(s, obs)
	cm, err := configMapFor(s, cfg)
	if err != nil {
		return out, err
	}
	out.configDigest = fileconfig.ContentDigest([]byte(cm.Data[fileconfig.ConfigFileName]))
	if _, err := a.apply(ctx, cm, asObject(cur.configMap)); err != nil {
		if b := nameConflict(err); b != nil {
			out.blocker = b
			return out, nil // the pods must not mount someone else's config
		}
		return out, err
	}

	if err := r.applyNetworkPolicy(ctx, a, s); err != nil {
		if b := nameConflict(err); b != nil {
			out.blocker = b
		} else {
			return out, err
		}
	}

	if holdWorkload {
		return out, nil
	}
	users, err := usersSecretFor(s, obs.users)
	if err != nil {
		return out, err
	}
	out.inputsVersion = inputsVersion(out.configDigest, users.Data[fileconfig.UsersFileName], obs.tlsSecretVersion)
	if _, err := a.apply(ctx, users, asObject(cur.usersSecret)); err != nil {
		if b := nameConflict(err); b != nil {
			out.blocker = b
			return out, nil
		}
		return out, err
	}
	checksum, err := restartChecksum(cfg)
	if err != nil {
		return out, fmt.Errorf("checksum config of %s/%s: %w", s.Namespace, s.Name, err)
	}
	applied, err := a.apply(ctx, deploymentFor(s, obs, checksum), asObject(cur.deployment))
	if b := nameConflict(err); b != nil {
		out.blocker = b
		return out, nil
	}
	if err != nil || applied == nil {
		return out, err
	}
	out.deployment = &appsv1.Deployment{}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(applied.Object, out.deployment); err != nil {
		return out, fmt.Errorf("read back Deployment %s/%s: %w", s.Namespace, s.Name, err)
	}
	return out, nil
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

func (r *FTPServerReconciler) applyNetworkPolicy(ctx context.Context, a applier, s *ftpv1alpha1.FTPServer) error {
	existing, err := getOptional(ctx, r.Client, s.Namespace, s.Name, &networkingv1.NetworkPolicy{})
	if err != nil {
		return err
	}
	if networkPolicyEnabled(s) {
		_, err := a.apply(ctx, networkPolicyFor(s), asObject(existing))
		return err
	}
	if existing != nil && a.ours(existing) {
		if err := r.Delete(ctx, existing); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("delete disabled NetworkPolicy %s/%s: %w", s.Namespace, s.Name, err)
		}
	}
	return nil
}

// portConflict recognises the API server's refusal of a Service port someone else holds.
func portConflict(err error) string {
	if !apierrors.IsInvalid(err) && !apierrors.IsConflict(err) {
		return ""
	}
	msg := err.Error()
	switch {
	case strings.Contains(msg, "already allocated") || strings.Contains(msg, "port is already"):
		return fmt.Sprintf("a port of the Service is taken by another Service; choose other ports.passive or service.controlNodePort (%s)", msg)
	case strings.Contains(msg, "nodePort") && (strings.Contains(msg, "range is full") || strings.Contains(msg, "failed to allocate")):
		return fmt.Sprintf("the cluster has no node ports left for the Service (each passive port takes one); set service.allocateLoadBalancerNodePorts: false if your load balancer reaches pods directly, or narrow ports.passive (%s)", msg)
	}
	return ""
}

// asObject turns a typed nil pointer into a nil interface, so apply knows the object is absent.
func asObject[T client.Object](obj T) client.Object {
	var zero T
	if any(obj) == any(zero) {
		return nil
	}
	return obj
}

// DefaultWaitWarningAfter bounds the expected waits before they are warned about: a cloud load
// balancer or a first rollout with an image pull takes a minute or two; five is a problem.
const DefaultWaitWarningAfter = 5 * time.Minute

// expectedWait tells the reasons that are normal steps of a start or a change: their events
// are Normal, and only a wait past WaitWarningAfter gets a Warning.
func expectedWait(reason string) bool {
	switch reason {
	case ftpv1alpha1.ReasonReady, ftpv1alpha1.ReasonWaitingForAddress, ftpv1alpha1.ReasonWaitingForPods,
		ftpv1alpha1.ReasonWaitingForConfig, ftpv1alpha1.ReasonStopping, ftpv1alpha1.ReasonStopped:
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
	apply(desired, s.Generation, c)
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
