package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	ftpv1alpha1 "github.com/kubeftp/ftp-operator/api/v1alpha1"
	"github.com/kubeftp/ftp-operator/internal/operatormetrics"
	"github.com/kubeftp/ftp-operator/internal/poll"
	"github.com/kubeftp/ftp-operator/internal/testenv"
)

func TestMetricsFlags(t *testing.T) {
	cases := []struct {
		name       string
		args       []string
		secure     bool
		filter     bool
		certDir    string
		tlsOptions int
	}{
		{name: "defaults: HTTPS, authorized, HTTP/1.1 only", secure: true, filter: true, tlsOptions: 1},
		{name: "plain HTTP opt-in", args: []string{"--metrics-secure=false"}},
		{name: "mounted certificate", args: []string{"--metrics-cert-path", "/certs", "--metrics-cert-name", "c.pem", "--metrics-cert-key", "k.pem"},
			secure: true, filter: true, certDir: "/certs", tlsOptions: 1},
		{name: "HTTP/2 allowed", args: []string{"--enable-http2"}, secure: true, filter: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			opts, err := parseManagerFlags(tc.args)
			if err != nil {
				t.Fatal(err)
			}
			if opts.metricsAddr != ":8443" {
				t.Errorf("metrics address %q, want :8443", opts.metricsAddr)
			}
			o := metricsOptions(opts)
			if o.SecureServing != tc.secure || (o.FilterProvider != nil) != tc.filter || o.CertDir != tc.certDir || len(o.TLSOpts) != tc.tlsOptions {
				t.Errorf("got secure=%v filter=%v certDir=%q tlsOpts=%d, want %v %v %q %d",
					o.SecureServing, o.FilterProvider != nil, o.CertDir, len(o.TLSOpts), tc.secure, tc.filter, tc.certDir, tc.tlsOptions)
			}
			if tc.certDir != "" && (o.CertName != "c.pem" || o.KeyName != "k.pem") {
				t.Errorf("certificate files %q %q", o.CertName, o.KeyName)
			}
		})
	}
}

// TestManagerMetricsNeedAuthorization runs the manager command against the test API server as
// its own ServiceAccount, with exactly the RBAC that config/rbac grants it, and scrapes its
// metrics endpoint the way Prometheus does: anonymous and unauthorized callers are refused and
// a ServiceAccount bound to the metrics-reader ClusterRole gets the metrics, including the
// per-FTPServer readiness.
func TestManagerMetricsNeedAuthorization(t *testing.T) {
	if env == nil {
		t.Skip(skipReason)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const ns = "metrics-auth"
	mustCreate(t, ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
	for _, sa := range []string{"manager", "prometheus", "stranger"} {
		mustCreate(t, ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa, Namespace: ns}})
	}
	// The ClusterRoles as shipped; the bindings as config/rbac and the docs make them.
	for role, sa := range map[string]string{"role.yaml": "manager", "metrics_auth_role.yaml": "manager", "metrics_reader_role.yaml": "prometheus"} {
		var cr rbacv1.ClusterRole
		data, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "config", "rbac", role))
		if err != nil {
			t.Fatal(err)
		}
		if err := yaml.UnmarshalStrict(data, &cr); err != nil {
			t.Fatalf("%s: %v", role, err)
		}
		cr.Name = "metrics-test-" + cr.Name
		mustCreate(t, ctx, &cr)
		mustCreate(t, ctx, &rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: cr.Name},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: cr.Name},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: sa, Namespace: ns}},
		})
	}

	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	writeTokenKubeconfig(t, kubeconfig, token(t, ctx, ns, "manager"))
	addr := freeLoopbackAddr(t)
	opts, err := parseManagerFlags([]string{"--kubeconfig", kubeconfig, "--leader-elect=false",
		"--metrics-bind-address", addr, "--health-probe-bind-address", "0"})
	if err != nil {
		t.Fatal(err)
	}
	run := startManager(ctx, opts)
	defer run.stop(t)

	mustCreate(t, ctx, &ftpv1alpha1.FTPServer{
		ObjectMeta: metav1.ObjectMeta{Name: "scraped", Namespace: ns},
		Spec: ftpv1alpha1.FTPServerSpec{
			Volumes: []ftpv1alpha1.FTPVolume{{Name: "data", ClaimTemplate: &ftpv1alpha1.ClaimTemplate{Size: resource.MustParse("1Gi")}}},
		},
	})

	url := "https://" + addr + "/metrics"
	prometheus, stranger := token(t, ctx, ns, "prometheus"), token(t, ctx, ns, "stranger")
	cases := []struct {
		name   string
		token  string
		status int // 0: any refusal
	}{
		{name: "anonymous", status: http.StatusUnauthorized},
		// The API server's TokenReview answers with an error, which controller-runtime's filter
		// turns into a 500 rather than a 401: refused either way.
		{name: "invalid token", token: "not-a-token"},
		{name: "ServiceAccount without metrics-reader", token: stranger, status: http.StatusForbidden},
		{name: "ServiceAccount bound to metrics-reader", token: prometheus, status: http.StatusOK},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, body := scrapeUntil(t, ctx, run, url, tc.token, func(status int, body string) bool {
				// The readiness series appears once the cache has the FTPServer.
				return status != http.StatusOK || strings.Contains(body, operatormetrics.ReadyMetric+`{ftpserver="scraped",namespace="`+ns+`"}`)
			})
			if (tc.status != 0 && status != tc.status) || (tc.status == 0 && status < 400) {
				t.Fatalf("status %d, want %d (0: a refusal): %s", status, tc.status, body)
			}
			if status == http.StatusOK && !strings.Contains(body, "controller_runtime_reconcile_total") {
				t.Errorf("no controller_runtime_ metrics in the scrape:\n%.2000s", body)
			}
		})
	}
}

// TestManagerMetricsPlainHTTPOptIn: --metrics-secure=false serves plain HTTP, to anyone.
func TestManagerMetricsPlainHTTPOptIn(t *testing.T) {
	if env == nil {
		t.Skip(skipReason)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, env.KubeConfig, 0o600); err != nil {
		t.Fatal(err)
	}
	addr := freeLoopbackAddr(t)
	opts, err := parseManagerFlags([]string{"--kubeconfig", kubeconfig, "--leader-elect=false", "--metrics-secure=false",
		"--metrics-bind-address", addr, "--health-probe-bind-address", "0"})
	if err != nil {
		t.Fatal(err)
	}
	run := startManager(ctx, opts)
	defer run.stop(t)
	status, body := scrapeUntil(t, ctx, run, "http://"+addr+"/metrics", "", func(int, string) bool { return true })
	if status != http.StatusOK || !strings.Contains(body, "controller_runtime_") {
		t.Errorf("status %d: %.500s", status, body)
	}
}

// managerRun is a manager command running in the test process.
type managerRun struct {
	cancel context.CancelFunc
	exited chan struct{} // closed when runManagerUntil returned
	err    error
}

func startManager(ctx context.Context, opts *managerOptions) *managerRun {
	// Tests start several managers in this process, each registering the same controller.
	opts.skipNameValidation = true
	ctx, cancel := context.WithCancel(ctx)
	r := &managerRun{cancel: cancel, exited: make(chan struct{})}
	go func() {
		defer close(r.exited)
		r.err = runManagerUntil(ctx, opts)
	}()
	return r
}

// alive is nil while the manager runs, and a final error (poll.Stop) once it has exited.
func (r *managerRun) alive() error {
	select {
	case <-r.exited:
		return poll.Stop(fmt.Errorf("the manager exited: %v", r.err))
	default:
		return nil
	}
}

func (r *managerRun) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	select {
	case <-r.exited:
		if r.err != nil {
			t.Errorf("manager: %v", r.err)
		}
	case <-time.After(30 * time.Second):
		t.Error("the manager did not stop within 30s")
	}
}

func mustCreate(t *testing.T, ctx context.Context, obj client.Object) {
	t.Helper()
	if err := env.Client.Create(ctx, obj); err != nil {
		t.Fatalf("create %T %s: %v", obj, obj.GetName(), err)
	}
}

// token is a TokenRequest for the ServiceAccount, as the kubelet mounts into a pod.
func token(t *testing.T, ctx context.Context, ns, name string) string {
	t.Helper()
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}}
	tr := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](3600)}}
	if err := env.Client.SubResource("token").Create(ctx, sa, tr); err != nil {
		t.Fatalf("token for %s/%s: %v", ns, name, err)
	}
	return tr.Status.Token
}

// writeTokenKubeconfig writes a kubeconfig for the test API server that authenticates with a
// bearer token, as a pod's in-cluster configuration does.
func writeTokenKubeconfig(t *testing.T, path, token string) {
	t.Helper()
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["envtest"] = &clientcmdapi.Cluster{Server: env.Config.Host, CertificateAuthorityData: env.Config.CAData}
	cfg.AuthInfos["sa"] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts["sa"] = &clientcmdapi.Context{Cluster: "envtest", AuthInfo: "sa"}
	cfg.CurrentContext = "sa"
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
}

func freeLoopbackAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// scrapeUntil GETs url until the server answers and done(status, body) holds, then returns the
// answer. The manager's certificate is self-signed (no --metrics-cert-path), as Prometheus sees
// it with insecureSkipVerify.
func scrapeUntil(t *testing.T, ctx context.Context, run *managerRun, url, token string, done func(int, string) bool) (int, string) {
	t.Helper()
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	var status int
	var body string
	err := poll.Until(ctx, time.Minute, 200*time.Millisecond, "an answer from "+url, func(ctx context.Context) (bool, error) {
		if err := run.alive(); err != nil {
			return false, err
		}
		var err error
		status, body, err = get(ctx, hc, url, token)
		if err != nil {
			return false, err
		}
		return done(status, body), fmt.Errorf("status %d", status)
	})
	if err != nil {
		t.Fatal(err)
	}
	return status, body
}

func get(ctx context.Context, hc *http.Client, url, token string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, "", fmt.Errorf("read %s: %w", url, err)
	}
	return resp.StatusCode, string(body), nil
}
