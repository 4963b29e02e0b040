package realnode_test

import (
	"context"
	"net"
	"os/exec"
	"time"

	ftpv1alpha1 "github.com/kubeftp/ftp-operator/api/v1alpha1"
	"github.com/kubeftp/ftp-operator/test/harness"
	"github.com/kubeftp/ftp-operator/test/realnode"
)

// testCluster is what test/e2e asks of its cluster besides the Client field. Both the harness
// and the real node provide it, so the e2e scenarios can run on either (the compiler checks).
type testCluster interface {
	KubeConfig() []byte
	Apply(ctx context.Context, namespace string, manifest []byte) error
	WaitReady(ctx context.Context, namespace, name string, timeout time.Duration) (*ftpv1alpha1.FTPServer, error)
	ClaimPath(namespace, claim string) string
	SetLoadBalancerAddress(namespace, service, ip string)
	NodeAddress() string
	Network() string
	PodNetworkCIDR() string
	ClientIP(role harness.ClientRole) string
	DialContext(ctx context.Context, role harness.ClientRole, network, addr string) (net.Conn, error)
	Dialer(role harness.ClientRole, timeout time.Duration) func(network, addr string) (net.Conn, error)
	ClientCommand(ctx context.Context, role harness.ClientRole, argv ...string) (*exec.Cmd, error)
	ClientExec(ctx context.Context, role harness.ClientRole, argv ...string) ([]byte, error)
	PodIP(namespace, server string) string
	PodLog(namespace, server string) string
	PodPID(namespace, server string) int
	LastExit(namespace, server string) (harness.PodExit, bool)
	Stop() error
}

var (
	_ testCluster = (*harness.Harness)(nil)
	_ testCluster = (*realnode.Cluster)(nil)
)
