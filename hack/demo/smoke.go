package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/jlaffaye/ftp"

	ftpv1alpha1 "github.com/kubeftp/ftp-operator/api/v1alpha1"
)

// smokeTest does what the printed commands do, from this machine, on each server: log in as
// its user (the password is the user name in the demo's Secrets), upload, list, download, by PASV
// replies are trusted as they are (no fallback to the control address), so a wrong advertised
// address fails here as it would for a strict client.
func smokeTest(ctx context.Context, servers []*ftpv1alpha1.FTPServer) error {
	for _, s := range servers {
		if err := smokeOne(ctx, s); err != nil {
			return fmt.Errorf("smoke test of %s: %w", s.Name, err)
		}
		fmt.Printf("demo: smoke test of %s passed (upload, list, download through %s)\n", s.Name, s.Status.Endpoint)
	}
	return nil
}

// smokeKubectl runs the printed kubectl command and checks that it shows each server's daemon
// pod running.
func smokeKubectl(ctx context.Context, kubectl, kubeconfig string, servers []*ftpv1alpha1.FTPServer) error {
	cmd := exec.CommandContext(ctx, kubectl, "get", "pods", "-n", "demo", "--no-headers")
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("kubectl get pods: %w: %s", err, out)
	}
	for _, s := range servers {
		found := false
		for _, line := range strings.Split(string(out), "\n") {
			if f := strings.Fields(line); len(f) >= 3 && strings.HasPrefix(f[0], s.Name+"-") && f[2] == "Running" {
				found = true
			}
		}
		if !found {
			return fmt.Errorf("kubectl get pods shows no running pod of %s:\n%s", s.Name, out)
		}
	}
	fmt.Printf("demo: kubectl get pods -n demo shows the daemon pods:\n%s", out)
	return nil
}

func smokeOne(ctx context.Context, s *ftpv1alpha1.FTPServer) error {
	addr := strings.TrimPrefix(s.Status.Endpoint, "ftp://")
	user := s.Spec.Users[0].Name
	// kube-proxy forwards a new Service a moment after its EndpointSlice lists the pod.
	var conn *ftp.ServerConn
	var err error
	for deadline := time.Now().Add(20 * time.Second); ; {
		if conn, err = ftp.Dial(addr, ftp.DialWithContext(ctx), ftp.DialWithTimeout(5*time.Second), ftp.DialWithDisabledEPSV(true)); err == nil {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("connect %s: %w", addr, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
	defer conn.Quit()
	if err := conn.Login(user, user); err != nil {
		return fmt.Errorf("login as %s: %w", user, err)
	}
	payload := []byte("uploaded by make demo's smoke test\n")
	if err := conn.Stor("smoke.txt", bytes.NewReader(payload)); err != nil {
		return fmt.Errorf("upload: %w", err)
	}
	names, err := conn.NameList(".")
	if err != nil {
		return fmt.Errorf("list: %w", err)
	}
	if !strings.Contains(strings.Join(names, "\n"), "smoke.txt") {
		return fmt.Errorf("list %v does not show the upload", names)
	}
	r, err := conn.Retr("smoke.txt")
	if err != nil {
		return fmt.Errorf("download: %w", err)
	}
	got, err := io.ReadAll(r)
	_ = r.Close()
	if err != nil || !bytes.Equal(got, payload) {
		return fmt.Errorf("download returned %q, %v", got, err)
	}
	return nil
}
