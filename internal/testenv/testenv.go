// Package testenv starts a real kube-apiserver and etcd (built from source by
// hack/control-plane.sh) with the project's CRDs installed, for tests that need an API server.
package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	ftpv1alpha1 "github.com/kubeftp/ftp-operator/api/v1alpha1"
)

// RepoRoot is the repository's top directory, found from this file's location so that tests
// work from any package directory.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// Env is a running control plane.
type Env struct {
	Config *rest.Config
	// KubeConfig is a kubeconfig file's content for the same API server, for processes and
	// commands that take --kubeconfig.
	KubeConfig []byte
	Client     client.Client
	Scheme     *k8sruntime.Scheme
	env        *envtest.Environment

	controllers *kubeControllers // when StartKubeControllers ran
}

// Stop shuts the control plane down, the kube controllers first.
func (e *Env) Stop() error {
	if e.controllers != nil {
		e.controllers.stop()
		e.controllers = nil
	}
	return e.env.Stop()
}

// Start boots kube-apiserver and etcd from $KUBEBUILDER_ASSETS (set by `make test`) and installs
// the CRDs of config/crd/bases. It returns (nil, reason) when the binaries are not available
// and the caller may skip: outside CI a plain `go test ./...` should explain, not fail. In CI
// (env CI set) a missing control plane is an error.
func Start() (*Env, string, error) {
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		reason := "KUBEBUILDER_ASSETS is not set: run `make test`, which builds kube-apiserver and etcd (hack/control-plane.sh) and points the tests at them"
		if os.Getenv("CI") != "" {
			return nil, "", fmt.Errorf("%s", reason)
		}
		return nil, reason, nil
	}
	if err := SweepOrphans(assets, func(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) }); err != nil {
		return nil, "", err
	}
	scheme := k8sruntime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return nil, "", err
	}
	if err := ftpv1alpha1.AddToScheme(scheme); err != nil {
		return nil, "", err
	}
	env := &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join(RepoRoot(), "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
		BinaryAssetsDirectory: assets,
		Scheme:                scheme,
	}
	// envtest's default Service range (a /24) runs out after ~250 Services; benchmarks create
	// hundreds of FTPServers, each with its Service.
	env.ControlPlane.GetAPIServer().Configure().Set("service-cluster-ip-range", "10.96.0.0/16")
	cfg, err := env.Start()
	if err != nil {
		// envtest leaves the control plane running when a later step (installing the CRDs)
		// fails: stop it, or it outlives the test binary.
		_ = env.Stop()
		return nil, "", fmt.Errorf("start kube-apiserver and etcd from %s: %w", assets, err)
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		_ = env.Stop()
		return nil, "", fmt.Errorf("create client: %w", err)
	}
	return &Env{Config: cfg, KubeConfig: env.KubeConfig, Client: c, Scheme: scheme, env: env}, "", nil
}

// Main is a TestMain body: it starts the control plane, runs the tests, and stops it. Tests read
// the environment through the returned pointer, which is nil when they should skip.
func Main(m *testing.M, into **Env, skipReason *string) {
	env, reason, err := Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, "testenv:", err)
		os.Exit(1)
	}
	*into, *skipReason = env, reason
	code := m.Run()
	if env != nil {
		if err := env.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "testenv: stop:", err)
		}
	}
	os.Exit(code)
}
