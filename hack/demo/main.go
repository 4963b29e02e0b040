// Command demo is `make demo`: the whole product on this machine, with FTPServers a platform team
// would apply, and how to connect. As root it runs a real node (test/realnode: kubelet,
// containerd, kube-proxy, the operator installed from its chart as a pod), where several
// FTPServers are Ready at once, each at its own load-balancer address, which this machine can
// reach. As a normal user it runs the local harness (test/harness: the real API server,
// controller-manager, scheduler and operator, with a stand-in kubelet that runs the daemon
// pods as processes of this machine). Ctrl-C drains the daemons and stops everything.
package main

import (
	"context"
	_ "embed"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	ftpv1alpha1 "github.com/kubeftp/ftp-operator/api/v1alpha1"
	"github.com/kubeftp/ftp-operator/internal/testenv"
	"github.com/kubeftp/ftp-operator/test/harness"
	"github.com/kubeftp/ftp-operator/test/realnode"
)

//go:embed demo.yaml
var demoManifest []byte

// reportsManifest is the second FTPServer, applied where it can run beside the first (the real
// node gives it its own load-balancer address).
//
//go:embed reports.yaml
var reportsManifest []byte

// demoImage is the image the real node runs the operator and daemons from: ours, built and
// imported as `make image` writes it; never pulled.
const demoImage = "localhost/ftp-operator/ftp-operator:demo"

// cluster is what the demo needs of either cluster.
type cluster interface {
	Apply(ctx context.Context, namespace string, manifest []byte) error
	WaitReady(ctx context.Context, namespace, name string, timeout time.Duration) (*ftpv1alpha1.FTPServer, error)
	KubeConfig() []byte
	ClaimPath(namespace, claim string) string
	Stop() error
}

func main() {
	workDir := flag.String("work-dir", "demo-data", "where the kubeconfig, the stand-in's pods and volumes live")
	binary := flag.String("binary", "bin/ftp-operator", "statically linked ftp-operator (make build) to run as the daemon on the stand-in kubelet")
	mode := flag.String("mode", "auto", "auto (the real node as root when it can run, else local), realnode or local")
	smoke := flag.Bool("smoke", false, "check that the printed commands work (list, upload, download on each server), then stop: for tests")
	verbose := flag.Bool("v", false, "show the clusters' progress logs")
	flag.Parse()
	ctrllog.SetLogger(logr.Discard()) // the clusters' own logs go to -v
	if err := run(*workDir, *binary, *mode, *smoke, *verbose); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run(workDir, binary, mode string, smoke, verbose bool) error {
	abs, err := filepath.Abs(workDir)
	if err != nil {
		return err
	}
	logw := io.Discard
	if verbose {
		logw = os.Stderr
	}
	mode, why := chooseMode(mode)
	if why != "" {
		fmt.Println("demo:", why)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	var c cluster
	var kube client.Client
	servers := []string{"demo"}
	switch mode {
	case "realnode":
		rn, err := startRealNode(ctx, abs, logw)
		if err != nil {
			return err
		}
		c, kube = rn, rn.Client
		servers = append(servers, "reports")
	case "local":
		bin, err := filepath.Abs(binary)
		if err != nil {
			return err
		}
		fmt.Println("demo: starting kube-apiserver, etcd, kube-controller-manager, kube-scheduler, the operator and the stand-in kubelet ...")
		h, err := harness.Start(harness.Options{Binary: bin, WorkDir: abs, Log: logw})
		if err != nil {
			return err
		}
		c, kube = h, h.Client
	default:
		return fmt.Errorf("unknown -mode %q: auto, realnode or local", mode)
	}
	defer func() {
		fmt.Println("\ndemo: stopping (the daemons drain first) ...")
		if err := c.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "demo: stop:", err)
		}
	}()

	if err := kube.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "demo"}}); err != nil {
		return err
	}
	manifests := map[string][]byte{"demo": demoManifest, "reports": reportsManifest}
	for _, name := range servers {
		if err := c.Apply(ctx, "demo", manifests[name]); err != nil {
			return fmt.Errorf("apply FTPServer demo/%s: %w", name, err)
		}
	}
	fmt.Printf("demo: applied FTPServer %s in namespace demo; waiting for Ready ...\n", strings.Join(servers, " and "))
	ready := make([]*ftpv1alpha1.FTPServer, 0, len(servers))
	for _, name := range servers {
		s, err := c.WaitReady(ctx, "demo", name, 3*time.Minute)
		if err != nil {
			return err
		}
		ready = append(ready, s)
	}
	kubeconfig := filepath.Join(abs, "kubeconfig")
	if err := os.WriteFile(kubeconfig, c.KubeConfig(), 0o600); err != nil {
		return err
	}
	kubectl := kubectlPath()
	printHowToConnect(mode, ready, c, kubeconfig, kubectl)
	if smoke {
		if err := smokeKubectl(ctx, kubectl, kubeconfig, ready); err != nil {
			return err
		}
		return smokeTest(ctx, ready)
	}
	fmt.Println("Press Ctrl-C to stop.")
	<-ctx.Done()
	return nil
}

// chooseMode resolves auto: the real node when it can run here (root, the components built,
// helm), else the local harness, with the reason.
func chooseMode(mode string) (string, string) {
	if mode != "auto" {
		return mode, ""
	}
	err := realNodeAvailable()
	if err == nil {
		return "realnode", ""
	}
	return "local", fmt.Sprintf("the real node cannot run here (%v); using the stand-in kubelet, where one FTPServer runs at a time", err)
}

// realNodeOptions: the CRD comes with the chart, and NetworkPolicies are enforced, so that each
// server's policy does what it says, as on a cluster whose CNI enforces them.
var realNodeOptions = realnode.Options{CRDsFromChart: true, NetworkPolicies: true}

func realNodeAvailable() error {
	if err := realnode.Available(realNodeOptions); err != nil {
		return err
	}
	if os.Getenv("HELM") == "" {
		return errors.New("HELM is not set: `make demo` builds and passes the pinned helm")
	}
	return nil
}

// startRealNode boots the real node with our image, installs the operator from its chart and
// routes the load-balancer addresses from this machine to the node.
func startRealNode(ctx context.Context, workDir string, logw io.Writer) (*realnode.Cluster, error) {
	imageDir := filepath.Join(workDir, "image")
	if err := os.MkdirAll(imageDir, 0o755); err != nil {
		return nil, err
	}
	fmt.Println("demo: building the image (the operator and the daemon) ...")
	image, err := realnode.BuildOperatorImage(ctx, imageDir, demoImage)
	if err != nil {
		return nil, err
	}
	fmt.Println("demo: starting a real node: kube-apiserver, etcd, kube-controller-manager, kube-scheduler, containerd, kubelet, kube-proxy, kube-router (NetworkPolicies) ...")
	opts := realNodeOptions
	opts.Log, opts.Images = logw, []string{image}
	rn, err := realnode.Start(ctx, opts)
	if err != nil {
		return nil, err
	}
	fmt.Println("demo: helm install charts/ftp-operator ...")
	if _, err := rn.InstallOperatorChart(ctx, os.Getenv("HELM"), filepath.Join(testenv.RepoRoot(), "charts", "ftp-operator"), demoImage, 3*time.Minute); err != nil {
		_ = rn.Stop()
		return nil, err
	}
	if err := rn.RouteLoadBalancersFromHost(); err != nil {
		_ = rn.Stop()
		return nil, err
	}
	return rn, nil
}

// volumesNote says how long the volumes live: the real node's local volumes are in its run
// directory, removed at stop; the harness's under the work directory.
var volumesNote = map[string]string{"realnode": " (the real node's local volume, removed when the demo stops)", "local": ""}

// kubectlPath is the kubectl built with the control plane (the same version), else PATH's.
func kubectlPath() string {
	if dir := os.Getenv("KUBEBUILDER_ASSETS"); dir != "" {
		return filepath.Join(dir, "kubectl")
	}
	return "kubectl"
}

func printHowToConnect(mode string, servers []*ftpv1alpha1.FTPServer, c cluster, kubeconfig, kubectl string) {
	fmt.Println()
	for _, s := range servers {
		host := strings.TrimPrefix(s.Status.Endpoint, "ftp://")
		fmt.Printf("FTPServer demo/%s is Ready: %s (PASV address %s, passive ports %s)\n",
			s.Name, s.Status.Endpoint, s.Status.PassiveAddress, s.Status.PassivePorts)
		user := s.Spec.Users[0].Name
		fmt.Printf("  lftp -u %[2]s,%[2]s ftp://%[1]s                  # interactive client\n", host, user)
		fmt.Printf("  curl ftp://%[2]s:%[2]s@%[1]s/                    # list your home\n", host, user)
		fmt.Printf("  curl -T README.md ftp://%[2]s:%[2]s@%[1]s/       # upload\n", host, user)
		if s.Spec.Anonymous != nil && s.Spec.Anonymous.Enabled {
			fmt.Printf("  curl ftp://anonymous:x@%s/                  # anonymous, read-only\n", host)
		}
		fmt.Printf("  Uploads land in %s%s\n\n", filepath.Join(c.ClaimPath("demo", s.Name+"-data"), user), volumesNote[mode])
	}
	fmt.Printf("The cluster is yours too:\n  KUBECONFIG=%s %s get ftpservers,pods,pvc -A\n", kubeconfig, kubectl)
	if mode == "local" {
		fmt.Println("\nThe pods run on a stand-in kubelet, as processes of this machine: a second FTPServer on the\n" +
			"same ports would not start, and its status says so (address already in use). As root, the\n" +
			"demo runs a real node instead, where each FTPServer gets its own load-balancer address.")
	}
	fmt.Println()
}
