package realnode

import (
	"context"
	"fmt"
	"net"

	"github.com/kubeftp/ftp-operator/controllers"
	"github.com/kubeftp/ftp-operator/internal/testenv"
)

// StartOperator runs the operator in this process against the cluster, as `ftp-operator
// manager` wires it (controllers.NewManager) minus metrics and probes, with daemonImage
// (imported with Options.Images) for the daemon pods. In a cluster the operator is a pod and
// reaches the daemons' ops ports on their pod IPs; here it asks them from the pod network, where
// the in-cluster client sits. Stop stops it first.
func (c *Cluster) StartOperator(daemonImage string) error {
	mgr, err := controllers.NewManager(c.Config, controllers.ManagerOptions{
		Scheme: c.Scheme, DaemonImage: daemonImage, BcryptCost: 4,
		ConfigProber: &controllers.HTTPDaemonConfigProber{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return c.DialContext(ctx, InCluster, network, addr)
		}},
		SkipNameValidation: true,
	})
	if err != nil {
		return fmt.Errorf("operator: %w", err)
	}
	stop := testenv.RunManager(mgr, func(err error) { c.logf("operator: %v", err) })
	c.mu.Lock()
	c.stopOperator = func() { _ = stop() } // its error was logged when it returned
	c.mu.Unlock()
	return nil
}
