// Package controllers holds the FTPServer reconciler. The reconciler only fetches, compares,
// writes and reports; the desired objects come from pure builder functions in this package.
package controllers

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	ftpv1alpha1 "github.com/kubeftp/ftp-operator/api/v1alpha1"
)

// FTPServerReconciler turns FTPServers into running FTP services.
type FTPServerReconciler struct {
	client.Client

	// DaemonImage runs the FTP daemon when an FTPServer does not override spec.image; the
	// manager sets it to its own image so the operator and its daemons never skew.
	DaemonImage string
}

// +kubebuilder:rbac:groups=ftp.kubeftp.dev,resources=ftpservers,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=ftp.kubeftp.dev,resources=ftpservers/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=ftp.kubeftp.dev,resources=ftpservers/finalizers,verbs=update
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconcile brings one FTPServer closer to its desired state and reports what it saw.
func (r *FTPServerReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	logger := log.FromContext(ctx)

	var server ftpv1alpha1.FTPServer
	if err := r.Get(ctx, req.NamespacedName, &server); err != nil {
		if apierrors.IsNotFound(err) {
			return ctrl.Result{}, nil // deleted: owned objects go by garbage collection
		}
		return ctrl.Result{}, fmt.Errorf("get FTPServer %s: %w", req.NamespacedName, err)
	}

	// The workload builders (ConfigMap, Deployment, Service, NetworkPolicy) arrive with the
	// controller issue; until then the server is reported as not ready, truthfully.
	desired := server.Status.DeepCopy()
	observe(desired, server.Generation, readiness{
		ready:   false,
		reason:  ftpv1alpha1.ReasonProgressing,
		message: "the operator does not create workloads for FTPServers yet",
	})
	if equality.Semantic.DeepEqual(desired, &server.Status) {
		return ctrl.Result{}, nil
	}
	server.Status = *desired
	if err := r.Status().Update(ctx, &server); err != nil {
		return ctrl.Result{}, fmt.Errorf("update status of FTPServer %s: %w", req.NamespacedName, err)
	}
	logger.V(1).Info("status updated", "ready", false)
	return ctrl.Result{}, nil
}

// SetupWithManager registers the reconciler with the manager.
func (r *FTPServerReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&ftpv1alpha1.FTPServer{}).
		Named("ftpserver").
		Complete(r)
}
