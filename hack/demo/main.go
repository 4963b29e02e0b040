// Command demo is `make demo`: the whole product on this machine without a cluster. It starts the
// local harness (source-built kube-apiserver and etcd, the operator, and stand-ins for kubelet,
// load balancer and garbage collector), applies an embedded FTPServer with a demo user, waits
// for it to be Ready and prints how to connect. Ctrl-C drains the daemon and stops everything.
package main

import (
	"context"
	_ "embed"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubeftp/ftp-operator/test/harness"
)

//go:embed demo.yaml
var demoManifest []byte

func main() {
	workDir := flag.String("work-dir", "demo-data", "where pods, volumes and the demo's files live")
	binary := flag.String("binary", "bin/ftp-operator", "statically linked ftp-operator (make build) to run as the daemon")
	verbose := flag.Bool("v", false, "show the harness's and the daemon's logs")
	flag.Parse()
	if err := run(*workDir, *binary, *verbose); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run(workDir, binary string, verbose bool) error {
	abs, err := filepath.Abs(workDir)
	if err != nil {
		return err
	}
	bin, err := filepath.Abs(binary)
	if err != nil {
		return err
	}
	logw := io.Discard
	if verbose {
		logw = os.Stderr
	}
	fmt.Println("demo: starting kube-apiserver, etcd, the operator and the local node ...")
	h, err := harness.Start(harness.Options{Binary: bin, WorkDir: abs, Log: logw})
	if err != nil {
		return err
	}
	defer func() {
		fmt.Println("\ndemo: stopping (the daemon drains first) ...")
		if err := h.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "demo: stop:", err)
		}
	}()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := h.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "demo"}}); err != nil {
		return err
	}
	if err := h.Apply(ctx, "demo", demoManifest); err != nil {
		return err
	}
	fmt.Println("demo: applied FTPServer demo/demo; waiting for it to be Ready ...")
	server, err := h.WaitReady(ctx, "demo", "demo", 2*time.Minute)
	if err != nil {
		return err
	}
	u, err := url.Parse(server.Status.Endpoint)
	if err != nil {
		return err
	}
	host := u.Host
	kubeconfig := filepath.Join(abs, "kubeconfig")
	if err := os.WriteFile(kubeconfig, h.KubeConfig(), 0o600); err != nil {
		return err
	}
	fmt.Printf(`
FTPServer demo/demo is Ready: %s (PASV address %s, passive ports %s)

  lftp -u demo,demo ftp://%s                    # interactive client
  curl ftp://demo:demo@%s/                      # list your home
  curl -T README.md ftp://demo:demo@%s/         # upload
  curl ftp://anonymous:x@%s/                    # anonymous, read-only

Uploaded files land in %s
The API server is yours too: KUBECONFIG=%s kubectl get ftpsrv -A
Press Ctrl-C to stop.
`, server.Status.Endpoint, server.Status.PassiveAddress, server.Status.PassivePorts,
		host, host, host, host, filepath.Join(h.ClaimPath("demo", "demo-data"), "demo"), kubeconfig)
	<-ctx.Done()
	return nil
}
