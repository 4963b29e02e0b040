package testenv

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// kubeControllers are the Kubernetes components that turn Deployments into ReplicaSets and Pods,
// place the Pods on a node, collect garbage, bind claims and publish EndpointSlices: the real
// kube-controller-manager and kube-scheduler, so that none of that is ours in any test cluster.
type kubeControllers struct {
	procs []*exec.Cmd
	done  []chan struct{}
}

// kubeControllerManagerControllers are the controllers a cluster without a cloud runs. The ones
// turned off need what envtest does not set up: signing keys (csrsigning, serviceaccount-token)
// and node CIDR allocation (nodeipam; the node brings its own pod range).
const kubeControllerManagerControllers = "*,-csrsigning,-serviceaccount-token,-nodeipam"

// StartKubeControllers starts kube-controller-manager and kube-scheduler from $KUBEBUILDER_ASSETS
// (hack/control-plane.sh builds them beside kube-apiserver) against this API server, as an
// administrator, without leader election or serving ports. Their output goes to log; Stop
// stops them first. dir holds their kubeconfig; logFor gives the writer for a component's
// output (nil: discarded).
func (e *Env) StartKubeControllers(dir string, logFor func(component string) io.Writer) error {
	if e.controllers != nil {
		return errors.New("kube controllers already started")
	}
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	kubeconfig := filepath.Join(dir, "admin.kubeconfig")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("kube controllers: %w", err)
	}
	if err := os.WriteFile(kubeconfig, e.KubeConfig, 0o600); err != nil {
		return fmt.Errorf("kube controllers: write kubeconfig: %w", err)
	}
	kc := &kubeControllers{}
	commands := [][]string{
		{filepath.Join(assets, "kube-controller-manager"),
			"--kubeconfig=" + kubeconfig, "--authentication-kubeconfig=" + kubeconfig, "--authorization-kubeconfig=" + kubeconfig,
			"--leader-elect=false", "--secure-port=0", "--use-service-account-credentials=false",
			"--controllers=" + kubeControllerManagerControllers,
			// Test clusters come and go in seconds; the defaults (e.g. a 5 s minimum between
			// resyncs) only slow them down.
			"--concurrent-gc-syncs=5", "--v=1"},
		{filepath.Join(assets, "kube-scheduler"),
			"--kubeconfig=" + kubeconfig, "--authentication-kubeconfig=" + kubeconfig, "--authorization-kubeconfig=" + kubeconfig,
			"--leader-elect=false", "--secure-port=0", "--v=1"},
	}
	for _, argv := range commands {
		if _, err := os.Stat(argv[0]); err != nil {
			kc.stop()
			return fmt.Errorf("kube controllers: %s is missing; hack/control-plane.sh builds it: %w", filepath.Base(argv[0]), err)
		}
		cmd := exec.Command(argv[0], argv[1:]...)
		if logFor != nil {
			cmd.Stdout = logFor(filepath.Base(argv[0]))
			cmd.Stderr = cmd.Stdout
		}
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			kc.stop()
			return fmt.Errorf("kube controllers: start %s: %w", filepath.Base(argv[0]), err)
		}
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		kc.procs, kc.done = append(kc.procs, cmd), append(kc.done, done)
	}
	e.controllers = kc
	return nil
}

// stop sends SIGTERM to each component and SIGKILL to one that has not exited in 10 s.
func (kc *kubeControllers) stop() {
	for _, cmd := range kc.procs {
		_ = cmd.Process.Signal(syscall.SIGTERM)
	}
	for i, cmd := range kc.procs {
		select {
		case <-kc.done[i]:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-kc.done[i]
		}
	}
	kc.procs, kc.done = nil, nil
}
