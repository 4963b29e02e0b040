package realnode

import (
	"context"
	"fmt"
	"net"

	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/kubeftp/ftp-operator/controllers"
)

// StartOperator runs the operator in this process against the cluster, as `ftp-operator
// manager` wires it minus metrics and probes, with daemonImage (imported with Options.Images)
// for the daemon pods. In a cluster the operator is a pod and reaches the daemons' ops ports on
// their pod IPs; here it asks them from the pod network, where the in-cluster client sits.
// Stop stops it first.
func (c *Cluster) StartOperator(daemonImage string) error {
	mgr, err := ctrl.NewManager(c.Config, ctrl.Options{
		Scheme:                 c.Scheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Controller:             config.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		return fmt.Errorf("operator: create manager: %w", err)
	}
	r := &controllers.FTPServerReconciler{
		Client: mgr.GetClient(), DaemonImage: daemonImage,
		Recorder: mgr.GetEventRecorder("ftp-operator"), BcryptCost: 4,
		ConfigProber: &controllers.HTTPDaemonConfigProber{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return c.DialContext(ctx, InCluster, network, addr)
		}},
	}
	if err := r.SetupWithManager(mgr); err != nil {
		return fmt.Errorf("operator: register controller: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := mgr.Start(ctx); err != nil {
			c.logf("operator: %v", err)
		}
	}()
	c.mu.Lock()
	c.stopOperator = func() { cancel(); <-done }
	c.mu.Unlock()
	return nil
}
