package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	ftpv1alpha1 "github.com/kubeftp/ftp-operator/api/v1alpha1"
	"github.com/kubeftp/ftp-operator/controllers"
)

// defaultDaemonImage is stamped at build time (-ldflags -X main.defaultDaemonImage=...) so the
// manager runs daemons from its own image; FTP_OPERATOR_IMAGE or --daemon-image override it.
var defaultDaemonImage = "ghcr.io/kubeftp/ftp-operator:dev"

// managerOptions are the manager's command-line settings.
type managerOptions struct {
	metricsAddr   string
	probeAddr     string
	leaderElect   bool
	leaderElectNS string
	daemonImage   string
	zap           zap.Options
}

func parseManagerFlags(args []string) (*managerOptions, error) {
	opts := &managerOptions{zap: zap.Options{Development: false}}
	fs := flag.NewFlagSet("manager", flag.ContinueOnError)
	fs.SetOutput(os.Stdout)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: ftp-operator manager [flags]\n\n"+
			"Runs the FTPServer controller. In a cluster it uses the pod's service account; outside,\n"+
			"the kubeconfig from --kubeconfig, $KUBECONFIG or ~/.kube/config.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	fs.StringVar(&opts.metricsAddr, "metrics-bind-address", ":8080", "address of the Prometheus metrics endpoint (\"0\" disables it)")
	fs.StringVar(&opts.probeAddr, "health-probe-bind-address", ":8081", "address of the /healthz and /readyz endpoints")
	fs.BoolVar(&opts.leaderElect, "leader-elect", true, "elect a leader so that only one of several manager replicas reconciles")
	fs.StringVar(&opts.leaderElectNS, "leader-election-namespace", "", "namespace of the leader-election Lease (the pod's namespace when empty)")
	image := os.Getenv("FTP_OPERATOR_IMAGE")
	if image == "" {
		image = defaultDaemonImage
	}
	fs.StringVar(&opts.daemonImage, "daemon-image", image, "image of the FTP daemon pods unless an FTPServer sets spec.image (env FTP_OPERATOR_IMAGE)")
	// The kubeconfig flag is registered by controller-runtime on the global flag set; mirror it.
	if f := flag.CommandLine.Lookup("kubeconfig"); f != nil {
		fs.Var(f.Value, f.Name, f.Usage)
	}
	opts.zap.BindFlags(fs)
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return nil, err
		}
		return nil, usageError{err}
	}
	if fs.NArg() > 0 {
		return nil, usageError{fmt.Errorf("unexpected arguments: %v", fs.Args())}
	}
	if opts.daemonImage == "" {
		return nil, usageError{fmt.Errorf("--daemon-image must not be empty")}
	}
	return opts, nil
}

// newScheme knows the built-in kinds and ours.
func newScheme() *runtime.Scheme {
	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(ftpv1alpha1.AddToScheme(scheme))
	return scheme
}

func runManager(args []string) error {
	opts, err := parseManagerFlags(args)
	if err != nil {
		return err
	}
	return runManagerUntil(ctrl.SetupSignalHandler(), opts)
}

// runManagerUntil runs the manager until ctx ends (SIGTERM/SIGINT in production).
func runManagerUntil(ctx context.Context, opts *managerOptions) error {
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&opts.zap)))
	setupLog := ctrl.Log.WithName("setup")

	cfg, err := ctrl.GetConfig()
	if err != nil {
		return fmt.Errorf("load kubeconfig: %w", err)
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                  newScheme(),
		Metrics:                 metricsserver.Options{BindAddress: opts.metricsAddr},
		HealthProbeBindAddress:  opts.probeAddr,
		LeaderElection:          opts.leaderElect,
		LeaderElectionID:        "ftp-operator.kubeftp.dev",
		LeaderElectionNamespace: opts.leaderElectNS,
		// Release the lease on a clean stop so a new leader takes over without waiting it out.
		LeaderElectionReleaseOnCancel: true,
	})
	if err != nil {
		return fmt.Errorf("create manager: %w", err)
	}
	if err := (&controllers.FTPServerReconciler{
		Client:      mgr.GetClient(),
		DaemonImage: opts.daemonImage,
		Recorder:    mgr.GetEventRecorder("ftp-operator"),
	}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("register FTPServer controller: %w", err)
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return fmt.Errorf("add health check: %w", err)
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		return fmt.Errorf("add ready check: %w", err)
	}

	setupLog.Info("starting manager", "daemonImage", opts.daemonImage, "leaderElection", opts.leaderElect)
	if err := mgr.Start(ctx); err != nil {
		return fmt.Errorf("run manager: %w", err)
	}
	return nil
}
