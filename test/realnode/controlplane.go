package realnode

import (
	"context"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/kubeftp/ftp-operator/internal/testenv"
)

const apiServerPort = 6443

// credentials are the cluster's certificates and the kubeconfig files made from them.
type credentials struct {
	pki           *pki
	saKey, saPub  string
	apiServer     keyPair           // serving
	kubeletClient keyPair           // the API server toward kubelets (logs, exec)
	kubeconfigs   map[string]string // component -> kubeconfig file
	admin         []byte            // the admin kubeconfig's content
}

// makeCredentials issues every certificate. The API server's serving certificate names every
// address clients use: its own address (the node, this process), the kubernetes Service's
// ClusterIP and DNS names (pods), and loopback.
func (c *Cluster) makeCredentials() error {
	p, err := newPKI(filepath.Join(c.dir, "pki"))
	if err != nil {
		return err
	}
	cr := &credentials{pki: p, kubeconfigs: map[string]string{}}
	if cr.saKey, cr.saPub, err = p.serviceAccountKeys(); err != nil {
		return err
	}
	cr.apiServer, err = p.issue("apiserver", "kube-apiserver", nil,
		[]string{"kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local", "localhost"},
		[]net.IP{net.ParseIP(c.net.rootIP), net.ParseIP(kubernetesSvcIP), net.ParseIP("127.0.0.1")},
		x509.ExtKeyUsageServerAuth)
	if err != nil {
		return err
	}
	// system:masters lets the kubelet's webhook authorizer admit the API server's log and exec
	// requests, as kubeadm's apiserver-kubelet-client certificate used to.
	if cr.kubeletClient, err = p.client("apiserver-kubelet-client", "kube-apiserver-kubelet-client", "system:masters"); err != nil {
		return err
	}
	for _, nd := range c.nodes {
		nd.serving, err = p.issue(nd.procName("kubelet-serving"), "system:node:"+nd.name, []string{"system:nodes"},
			[]string{nd.name}, []net.IP{net.ParseIP(nd.ip)}, x509.ExtKeyUsageServerAuth)
		if err != nil {
			return err
		}
	}
	server := fmt.Sprintf("https://%s", net.JoinHostPort(c.net.rootIP, strconv.Itoa(apiServerPort)))
	users := []struct {
		name, user string
		groups     []string
	}{
		{"admin", "realnode-admin", []string{"system:masters"}},
		{"kube-controller-manager", "system:kube-controller-manager", nil},
		{"kube-scheduler", "system:kube-scheduler", nil},
		// Bound to system:node-proxier by the default RBAC policy.
		{"kube-proxy", "system:kube-proxy", nil},
	}
	for _, nd := range c.nodes {
		// The Node authorizer and NodeRestriction know each kubelet by this name and group.
		users = append(users, struct {
			name, user string
			groups     []string
		}{nd.procName("kubelet"), "system:node:" + nd.name, []string{"system:nodes"}})
	}
	for _, u := range users {
		kp, err := p.client(u.name+"-client", u.user, u.groups...)
		if err != nil {
			return err
		}
		data, err := kubeconfig(server, p.caPEM, kp)
		if err != nil {
			return fmt.Errorf("kubeconfig for %s: %w", u.name, err)
		}
		path := filepath.Join(c.dir, "kubeconfig", u.name)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			return fmt.Errorf("write kubeconfig for %s: %w", u.name, err)
		}
		cr.kubeconfigs[u.name] = path
		if u.name == "admin" {
			cr.admin = data
		}
	}
	for _, nd := range c.nodes {
		nd.kubeconfig = cr.kubeconfigs[nd.procName("kubelet")]
	}
	c.creds = cr
	return nil
}

func kubeconfig(server string, ca []byte, kp keyPair) ([]byte, error) {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["realnode"] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: ca}
	cfg.AuthInfos["user"] = &clientcmdapi.AuthInfo{ClientCertificateData: kp.certPEM, ClientKeyData: kp.keyPEM}
	cfg.Contexts["realnode"] = &clientcmdapi.Context{Cluster: "realnode", AuthInfo: "user"}
	cfg.CurrentContext = "realnode"
	return clientcmd.Write(*cfg)
}

// freePort asks the kernel for an unused loopback port. Another process may take it before
// etcd binds it; etcd then fails to start and the error says so.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (c *Cluster) startEtcd() (string, error) {
	clientPort, err := freePort()
	if err != nil {
		return "", err
	}
	peerPort, err := freePort()
	if err != nil {
		return "", err
	}
	clientURL := fmt.Sprintf("http://127.0.0.1:%d", clientPort)
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", peerPort)
	_, err = c.startProc("etcd", []string{
		c.bin("etcd"),
		"--name=realnode",
		"--data-dir=" + filepath.Join(c.dir, "etcd"),
		"--listen-client-urls=" + clientURL, "--advertise-client-urls=" + clientURL,
		"--listen-peer-urls=" + peerURL, "--initial-advertise-peer-urls=" + peerURL,
		"--initial-cluster=realnode=" + peerURL,
		// A throwaway cluster: durability costs seconds on a shared disk and buys nothing.
		"--unsafe-no-fsync=true",
		"--log-level=warn",
	}, nil)
	return clientURL, err
}

func (c *Cluster) startAPIServer(etcdURL string) error {
	cr := c.creds
	_, err := c.startProc("kube-apiserver", []string{
		c.bin("kube-apiserver"),
		"--etcd-servers=" + etcdURL,
		"--bind-address=" + c.net.rootIP,
		"--advertise-address=" + c.net.rootIP,
		"--secure-port=" + strconv.Itoa(apiServerPort),
		"--cert-dir=" + filepath.Join(c.dir, "apiserver"),
		"--tls-cert-file=" + cr.apiServer.certFile,
		"--tls-private-key-file=" + cr.apiServer.keyFile,
		"--client-ca-file=" + cr.pki.caFile,
		"--service-cluster-ip-range=" + serviceCIDR,
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + cr.saPub,
		"--service-account-signing-key-file=" + cr.saKey,
		"--authorization-mode=Node,RBAC",
		"--enable-admission-plugins=NodeRestriction",
		"--kubelet-client-certificate=" + cr.kubeletClient.certFile,
		"--kubelet-client-key=" + cr.kubeletClient.keyFile,
		"--kubelet-certificate-authority=" + cr.pki.caFile,
		"--kubelet-preferred-address-types=InternalIP",
		"--allow-privileged=true",
		"--profiling=false",
		"--v=1",
	}, nil)
	return err
}

// waitAPIServer polls /readyz until the API server reports ready (its post-start hooks, among
// them the bootstrap RBAC policy the components rely on, have run).
func (c *Cluster) waitAPIServer(ctx context.Context, cfg *rest.Config, timeout time.Duration) error {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("API server client: %w", err)
	}
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		if p := c.proc("kube-apiserver"); p != nil && p.exited() {
			return fmt.Errorf("kube-apiserver exited: %v\n%s", p.err, p.tail(30))
		}
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		body, err := cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(rctx)
		cancel()
		if err == nil && string(body) == "ok" {
			return nil
		}
		last = fmt.Errorf("%v %s", err, body)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
	return fmt.Errorf("kube-apiserver not ready after %s: %v\n%s", timeout, last, tailFile(filepath.Join(c.dir, "logs", "kube-apiserver.log"), 30))
}

func (c *Cluster) installCRDs(cfg *rest.Config) error {
	_, err := envtest.InstallCRDs(cfg, envtest.CRDInstallOptions{
		Scheme:             c.Scheme,
		Paths:              []string{filepath.Join(testenv.RepoRoot(), "config", "crd", "bases")},
		ErrorIfPathMissing: true,
		MaxTime:            time.Minute,
	})
	if err != nil {
		return fmt.Errorf("install CRDs: %w", err)
	}
	return nil
}

func (c *Cluster) startControllerManager() error {
	cr := c.creds
	_, err := c.startProc("kube-controller-manager", []string{
		c.bin("kube-controller-manager"),
		"--kubeconfig=" + cr.kubeconfigs["kube-controller-manager"],
		"--secure-port=0", // no metrics or health endpoint: nothing here scrapes them
		"--leader-elect=false",
		// Each controller runs as its own service account with the bootstrap policy's role, as
		// kubeadm runs them.
		"--use-service-account-credentials=true",
		"--service-account-private-key-file=" + cr.saKey,
		"--root-ca-file=" + cr.pki.caFile,
		"--cluster-signing-cert-file=" + cr.pki.caFile,
		"--cluster-signing-key-file=" + filepath.Join(cr.pki.dir, "ca.key"),
		"--service-cluster-ip-range=" + serviceCIDR,
		"--controllers=*",
		"--v=1",
	}, nil)
	return err
}

func (c *Cluster) startScheduler() error {
	cfg := fmt.Sprintf(`apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
clientConnection:
  kubeconfig: %s
leaderElection:
  leaderElect: false
`, c.creds.kubeconfigs["kube-scheduler"])
	path := filepath.Join(c.dir, "config", "kube-scheduler.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		return fmt.Errorf("write scheduler config: %w", err)
	}
	_, err := c.startProc("kube-scheduler", []string{
		c.bin("kube-scheduler"), "--config=" + path, "--secure-port=0", "--v=1",
	}, nil)
	return err
}
