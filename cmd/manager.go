package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"os"

	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/kubeftp/ftp-operator/controllers"
)

// defaultDaemonImage is stamped at build time (-ldflags -X main.defaultDaemonImage=...) so the
// manager runs daemons from its own image; FTP_OPERATOR_IMAGE or --daemon-image override it.
var defaultDaemonImage = "ghcr.io/kubeftp/ftp-operator:dev"

// managerOptions are the manager's command-line settings.
type managerOptions struct {
	metricsAddr string
	// metricsSecure serves metrics over HTTPS and lets only callers the API server authenticates
	// (TokenReview) and authorizes (SubjectAccessReview, GET on /metrics) read them.
	metricsSecure bool
	// metricsCertDir holds metricsCertName and metricsCertKey (a mounted Secret, e.g. from
	// cert-manager); empty means a self-signed certificate generated at start.
	metricsCertDir  string
	metricsCertName string
	metricsCertKey  string
	enableHTTP2     bool
	probeAddr       string
	leaderElect     bool
	leaderElectNS   string
	daemonImage     string
	kubeAPIQPS      float64
	kubeAPIBurst    int
	maxReconciles   int
	zap             zap.Options
	// skipNameValidation lets several managers register the same controller in one process, as
	// the tests do (one after another); controller-runtime refuses a second "ftpserver" otherwise.
	// Not a flag: a real process runs one manager.
	skipNameValidation bool
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
	fs.StringVar(&opts.metricsAddr, "metrics-bind-address", ":8443", "address of the Prometheus metrics endpoint (\"0\" disables it)")
	fs.BoolVar(&opts.metricsSecure, "metrics-secure", true, "serve metrics over HTTPS to callers authenticated and authorized by the API server; --metrics-secure=false serves plain HTTP to anyone")
	fs.StringVar(&opts.metricsCertDir, "metrics-cert-path", "", "directory of the metrics serving certificate and key (re-read when they change); a self-signed certificate when empty")
	fs.StringVar(&opts.metricsCertName, "metrics-cert-name", "tls.crt", "file name of the metrics serving certificate in --metrics-cert-path")
	fs.StringVar(&opts.metricsCertKey, "metrics-cert-key", "tls.key", "file name of the metrics serving key in --metrics-cert-path")
	fs.BoolVar(&opts.enableHTTP2, "enable-http2", false, "allow HTTP/2 on the metrics endpoint (off: HTTP/2 Rapid Reset and Stream Cancellation, CVE-2023-44487 and CVE-2023-39325)")
	fs.StringVar(&opts.probeAddr, "health-probe-bind-address", ":8081", "address of the /healthz and /readyz endpoints")
	fs.BoolVar(&opts.leaderElect, "leader-elect", true, "elect a leader so that only one of several manager replicas reconciles")
	fs.StringVar(&opts.leaderElectNS, "leader-election-namespace", "", "namespace of the leader-election Lease (the pod's namespace when empty)")
	fs.StringVar(&opts.daemonImage, "daemon-image", os.Getenv("FTP_OPERATOR_IMAGE"),
		"image of the FTP daemon pods unless an FTPServer sets spec.image (env FTP_OPERATOR_IMAGE); when empty, the manager's own image (read from its pod, POD_NAME and POD_NAMESPACE), else "+defaultDaemonImage)
	fs.Float64Var(&opts.kubeAPIQPS, "kube-api-qps", controllers.DefaultKubeAPIQPS, "requests per second the manager's client may send to the API server")
	fs.IntVar(&opts.kubeAPIBurst, "kube-api-burst", controllers.DefaultKubeAPIBurst, "requests the manager's client may send in a burst above --kube-api-qps")
	fs.IntVar(&opts.maxReconciles, "max-concurrent-reconciles", controllers.DefaultMaxConcurrentReconciles, "FTPServers reconciled at once (one FTPServer is never reconciled twice at once)")
	// The kubeconfig flag is registered by controller-runtime on the global flag set; mirror it.
	if f := flag.CommandLine.Lookup("kubeconfig"); f != nil {
		fs.Var(f.Value, f.Name, f.Usage)
	}
	opts.zap.BindFlags(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, usageError{err}
	}
	if fs.NArg() > 0 {
		return nil, usageError{fmt.Errorf("unexpected arguments: %v", fs.Args())}
	}
	if opts.kubeAPIQPS <= 0 || opts.kubeAPIBurst <= 0 || opts.maxReconciles <= 0 {
		return nil, usageError{fmt.Errorf("--kube-api-qps, --kube-api-burst and --max-concurrent-reconciles must be positive")}
	}
	if opts.daemonImage == "" && isSet(fs, "daemon-image") {
		return nil, usageError{fmt.Errorf("--daemon-image must not be empty")}
	}
	return opts, nil
}

// metricsOptions is the metrics endpoint of the manager, as kubebuilder's go/v4 layout serves
// it: HTTPS with authentication and authorization delegated to the API server, so that the
// scraper needs a token whose identity may GET /metrics (the metrics-reader ClusterRole), and
// plain HTTP only when asked for with --metrics-secure=false.
// isSet tells whether the flag was given on the command line.
func isSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

func metricsOptions(opts *managerOptions) metricsserver.Options {
	o := metricsserver.Options{BindAddress: opts.metricsAddr, SecureServing: opts.metricsSecure}
	if !opts.metricsSecure {
		return o
	}
	o.FilterProvider = filters.WithAuthenticationAndAuthorization
	o.CertDir, o.CertName, o.KeyName = opts.metricsCertDir, opts.metricsCertName, opts.metricsCertKey
	if !opts.enableHTTP2 {
		o.TLSOpts = append(o.TLSOpts, func(c *tls.Config) { c.NextProtos = []string{"http/1.1"} })
	}
	return o
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
	reader, err := client.New(cfg, client.Options{})
	if err != nil {
		return fmt.Errorf("create client: %w", err)
	}
	daemonImage, imageSource, err := resolveDaemonImage(ctx, reader, opts.daemonImage)
	if err != nil {
		return err
	}
	mgr, err := controllers.NewManager(cfg, controllers.ManagerOptions{
		Metrics:                 ptr.To(metricsOptions(opts)),
		HealthProbeBindAddress:  opts.probeAddr,
		LeaderElection:          opts.leaderElect,
		LeaderElectionNamespace: opts.leaderElectNS,
		ReadinessMetrics:        ctrlmetrics.Registry,
		SkipNameValidation:      opts.skipNameValidation,
		DaemonImage:             daemonImage,
		KubeAPIQPS:              float32(opts.kubeAPIQPS),
		KubeAPIBurst:            opts.kubeAPIBurst,
		MaxConcurrentReconciles: opts.maxReconciles,
	})
	if err != nil {
		return err
	}

	setupLog.Info("starting manager", "daemonImage", daemonImage, "daemonImageFrom", imageSource, "leaderElection", opts.leaderElect,
		"metricsAddress", opts.metricsAddr, "metricsSecure", opts.metricsSecure)
	if err := mgr.Start(ctx); err != nil {
		return fmt.Errorf("run manager: %w", err)
	}
	return nil
}
