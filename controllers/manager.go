package controllers

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	ftpv1alpha1 "github.com/kubeftp/ftp-operator/api/v1alpha1"
	"github.com/kubeftp/ftp-operator/internal/operatormetrics"
)

// LeaderElectionID names the Lease the manager replicas elect a leader with.
const LeaderElectionID = "ftp-operator.kubeftp.dev"

// Client and worker defaults for a fleet of FTPServers. client-go's own 5 QPS (burst 10)
// throttles the first reconcile of 1000 servers (about 8 writes and a few reads each) to
// minutes; one worker makes every server wait for the reconciles ahead of it. See the controller
// benchmark in docs/benchmarks.md.
const (
	DefaultKubeAPIQPS              = 100
	DefaultKubeAPIBurst            = 200
	DefaultMaxConcurrentReconciles = 8
)

// eventSource is the component name on the events the controller emits.
const eventSource = "ftp-operator"

// ManagerOptions are what differs between the places that run the operator: `ftp-operator
// manager`, the test clusters (test/harness, test/realnode), the controller and GitOps tests and
// the controller benchmark. Everything else is wired by NewManager, the same for all of them.
type ManagerOptions struct {
	// Scheme must know the built-in kinds and ours; nil means NewScheme().
	Scheme *runtime.Scheme
	// Metrics is the metrics endpoint; nil serves none.
	Metrics *metricsserver.Options
	// HealthProbeBindAddress serves /healthz and /readyz; empty or "0" serves none.
	HealthProbeBindAddress string
	// LeaderElection elects one leader among the replicas (Lease LeaderElectionID in
	// LeaderElectionNamespace, the pod's namespace when empty); the lease is released on a clean
	// stop so a new leader takes over without waiting it out.
	LeaderElection          bool
	LeaderElectionNamespace string
	// ReadinessMetrics gets the per-FTPServer readiness gauge (operatormetrics) while this
	// manager leads; nil exports none. One registry takes one such collector at a time, so
	// managers running side by side in one process leave it nil.
	ReadinessMetrics prometheus.Registerer
	// SkipNameValidation lets several managers in one process register the controller (the
	// tests start one after another, or one per test cluster); controller-runtime refuses a
	// second "ftpserver" otherwise. A real process runs one manager.
	SkipNameValidation bool
	// KubeAPIQPS and KubeAPIBurst limit the manager's client; zero keeps cfg's limit, or when
	// cfg has none either, DefaultKubeAPIQPS and DefaultKubeAPIBurst.
	KubeAPIQPS   float32
	KubeAPIBurst int
	// MaxConcurrentReconciles is how many FTPServers are reconciled at once (zero:
	// DefaultMaxConcurrentReconciles); one FTPServer is never reconciled twice at once.
	MaxConcurrentReconciles int

	// The reconciler's settings (see FTPServerReconciler).
	DaemonImage      string
	BcryptCost       int
	ConfigProber     DaemonConfigProber
	WaitWarningAfter time.Duration
}

// NewScheme knows the built-in kinds and ours.
func NewScheme() *runtime.Scheme {
	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(ftpv1alpha1.AddToScheme(scheme))
	return scheme
}

// NewManager creates a manager for the cluster of cfg with the FTPServer controller registered
// (its field indexes, watches and event recorder), the readiness metrics when asked for, and
// the health checks. The caller starts it.
func NewManager(cfg *rest.Config, o ManagerOptions) (ctrl.Manager, error) {
	scheme := o.Scheme
	if scheme == nil {
		scheme = NewScheme()
	}
	cfg = rest.CopyConfig(cfg)
	if cfg.QPS == 0 {
		cfg.QPS, cfg.Burst = DefaultKubeAPIQPS, DefaultKubeAPIBurst
	}
	if o.KubeAPIQPS != 0 {
		cfg.QPS = o.KubeAPIQPS
	}
	if o.KubeAPIBurst != 0 {
		cfg.Burst = o.KubeAPIBurst
	}
	metrics := metricsserver.Options{BindAddress: "0"}
	if o.Metrics != nil {
		metrics = *o.Metrics
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                        scheme,
		Metrics:                       metrics,
		HealthProbeBindAddress:        o.HealthProbeBindAddress,
		LeaderElection:                o.LeaderElection,
		LeaderElectionID:              LeaderElectionID,
		LeaderElectionNamespace:       o.LeaderElectionNamespace,
		LeaderElectionReleaseOnCancel: true,
		Cache:                         cacheOptions(),
		Controller: config.Controller{
			SkipNameValidation:      &o.SkipNameValidation,
			MaxConcurrentReconciles: orDefault(o.MaxConcurrentReconciles, DefaultMaxConcurrentReconciles),
		},
	})
	if err != nil {
		return nil, fmt.Errorf("create manager: %w", err)
	}
	r := &FTPServerReconciler{
		Client:           mgr.GetClient(),
		Recorder:         mgr.GetEventRecorder(eventSource),
		DaemonImage:      o.DaemonImage,
		BcryptCost:       o.BcryptCost,
		ConfigProber:     o.ConfigProber,
		WaitWarningAfter: o.WaitWarningAfter,
	}
	if err := r.SetupWithManager(mgr); err != nil {
		return nil, fmt.Errorf("register FTPServer controller: %w", err)
	}
	if o.ReadinessMetrics != nil {
		// Per-FTPServer readiness for alerting, read from the manager's cache at each scrape.
		if err := mgr.Add(operatormetrics.NewReadiness(mgr.GetCache(), o.ReadinessMetrics)); err != nil {
			return nil, fmt.Errorf("add FTPServer readiness metrics: %w", err)
		}
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return nil, fmt.Errorf("add health check: %w", err)
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		return nil, fmt.Errorf("add ready check: %w", err)
	}
	return mgr, nil
}

func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}
