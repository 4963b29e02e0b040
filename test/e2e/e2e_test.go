// Package e2e drives the whole product through the local harness: manifests applied to the real
// API server, the real operator reconciling them, the real daemon binary running as the pods,
// and FTP clients transferring through the (stood-in) load balancer.
package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jlaffaye/ftp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	ftpv1alpha1 "github.com/kubeftp/ftp-operator/api/v1alpha1"
	"github.com/kubeftp/ftp-operator/internal/testenv"
	"github.com/kubeftp/ftp-operator/test/harness"
)

var (
	h          *harness.Harness
	skipReason string
)

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		skipReason = "KUBEBUILDER_ASSETS is not set: run `make test`"
		if os.Getenv("CI") != "" {
			fmt.Fprintln(os.Stderr, "e2e:", skipReason)
			return 1
		}
		return m.Run()
	}
	work, err := os.MkdirTemp("", "ftp-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(work)
	bin := os.Getenv("FTP_OPERATOR_BIN") // a prebuilt static binary, e.g. for a run as another user
	if bin == "" {
		bin, err = harness.BuildBinary(testenv.RepoRoot(), work)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	var logw *os.File
	if os.Getenv("E2E_VERBOSE") != "" {
		logw = os.Stderr
	}
	opts := harness.Options{Binary: bin, WorkDir: filepath.Join(work, "cluster"), BcryptCost: 4}
	if logw != nil {
		opts.Log = logw
	}
	h, err = harness.Start(opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: start harness:", err)
		return 1
	}
	code := m.Run()
	if err := h.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: stop harness:", err)
	}
	return code
}

func requireHarness(t *testing.T) {
	t.Helper()
	if h == nil {
		t.Skip(skipReason)
	}
}

func newNamespace(t *testing.T, name string) string {
	t.Helper()
	if err := h.Client.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}); err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	return name
}

func apply(t *testing.T, ns, manifest string) {
	t.Helper()
	if err := h.Apply(context.Background(), ns, []byte(manifest)); err != nil {
		t.Fatal(err)
	}
}

func waitReady(t *testing.T, ns, name string) *ftpv1alpha1.FTPServer {
	t.Helper()
	s, err := h.WaitReady(context.Background(), ns, name, 90*time.Second)
	if err != nil {
		t.Fatalf("%v\npod log:\n%s", err, h.PodLog(ns, name))
	}
	return s
}

func eventually(t *testing.T, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s: %v", timeout, what, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// hostPort strips ftp:// from a status endpoint.
func hostPort(t *testing.T, endpoint string) string {
	t.Helper()
	if !strings.HasPrefix(endpoint, "ftp://") {
		t.Fatalf("endpoint %q is not an ftp:// URL", endpoint)
	}
	return strings.TrimPrefix(endpoint, "ftp://")
}

// strictTransfer runs the Python client that trusts PASV replies, from sourceIP.
func strictTransfer(addr, user, pass, sourceIP, mode, op, a, b string) (string, error) {
	host, port, _ := strings.Cut(addr, ":")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	script := filepath.Join(testenv.RepoRoot(), "test", "e2e", "testdata", "strict_client.py")
	out, err := exec.CommandContext(ctx, "python3", script, host, port, user, pass, sourceIP, mode, op, a, b).CombinedOutput()
	return string(out), err
}

func dial(t *testing.T, addr string, opts ...ftp.DialOption) *ftp.ServerConn {
	t.Helper()
	c, err := ftp.Dial(addr, append([]ftp.DialOption{ftp.DialWithTimeout(5 * time.Second)}, opts...)...)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { _ = c.Quit() })
	return c
}

func sha(data []byte) string {
	s := sha256.Sum256(data)
	return hex.EncodeToString(s[:])
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i/251)
	}
	return b
}

const serverManifest = `
apiVersion: v1
kind: Secret
metadata: {name: partner-ftp}
stringData: {password: first-secret}
---
apiVersion: ftp.kubeftp.dev/v1alpha1
kind: FTPServer
metadata: {name: files}
spec:
  volumes:
    - name: data
      claimTemplate: {size: 1Gi}
  users:
    - name: partner
      passwordSecretRef: {name: partner-ftp}
  ports:
    control: 2121
    passive: {start: 30100, end: 30109}
  drainTimeout: 20s
`

// TestLoadBalancedServerLifecycle walks one FTPServer through its life: created and Ready at the
// load balancer's address, transfers by strict PASV and EPSV clients, a password change and a
// load balancer address change picked up by the running daemon, FTPS with a certificate
// rotation, and deletion that drains the daemon and keeps the data.
func TestLoadBalancedServerLifecycle(t *testing.T) {
	requireHarness(t)
	ctx := context.Background()
	ns := newNamespace(t, "lifecycle")
	apply(t, ns, serverManifest)
	s := waitReady(t, ns, "files")
	addr := hostPort(t, s.Status.Endpoint)
	lbIP, _, _ := strings.Cut(addr, ":")
	if !strings.HasPrefix(lbIP, "127.0.20.") || s.Status.PassiveAddress != lbIP {
		t.Fatalf("endpoint %s / PASV address %s: want the load balancer's address", s.Status.Endpoint, s.Status.PassiveAddress)
	}
	pid := h.PodPID(ns, "files")

	// Strict PASV and EPSV clients, from a client address of their own.
	payload := randomBytes(3 << 20)
	local := filepath.Join(t.TempDir(), "payload.bin")
	if err := os.WriteFile(local, payload, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := strictTransfer(addr, "partner", "first-secret", "127.0.40.1", "pasv", "upload", local, "via-pasv.bin")
	if err != nil || !strings.Contains(out, "227") || !strings.Contains(out, strings.ReplaceAll(lbIP, ".", ",")) {
		t.Fatalf("strict PASV upload: %v\n%s", err, out)
	}
	back := filepath.Join(t.TempDir(), "back.bin")
	out, err = strictTransfer(addr, "partner", "first-secret", "127.0.40.1", "epsv", "download", "via-pasv.bin", back)
	if err != nil || !strings.Contains(out, "229") {
		t.Fatalf("EPSV download: %v\n%s", err, out)
	}
	if got, _ := os.ReadFile(back); sha(got) != sha(payload) {
		t.Fatal("downloaded bytes differ from the uploaded ones")
	}
	onVolume := filepath.Join(h.ClaimPath(ns, "files-data"), "partner", "via-pasv.bin")
	if got, err := os.ReadFile(onVolume); err != nil || sha(got) != sha(payload) {
		t.Fatalf("the upload did not land whole on the claim's volume (%s): %v", onVolume, err)
	}

	t.Run("password change reaches the running daemon", func(t *testing.T) {
		var secret corev1.Secret
		if err := h.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "partner-ftp"}, &secret); err != nil {
			t.Fatal(err)
		}
		secret.Data["password"] = []byte("second-secret")
		if err := h.Client.Update(ctx, &secret); err != nil {
			t.Fatal(err)
		}
		eventually(t, 30*time.Second, "the new password to work", func() error {
			c, err := ftp.Dial(addr, ftp.DialWithTimeout(5*time.Second))
			if err != nil {
				return err
			}
			defer c.Quit()
			return c.Login("partner", "second-secret")
		})
		c := dial(t, addr)
		if err := c.Login("partner", "first-secret"); err == nil {
			t.Fatal("the old password still works")
		}
		if now := h.PodPID(ns, "files"); now != pid {
			t.Fatalf("the daemon was restarted (pid %d -> %d); users must be reloaded in place", pid, now)
		}
	})

	t.Run("load balancer address change reaches the running daemon", func(t *testing.T) {
		h.SetLoadBalancerAddress(ns, "files", "127.0.20.77")
		newAddr := "127.0.20.77:2121"
		eventually(t, 30*time.Second, "PASV replies with the new address", func() error {
			out, err := strictTransfer(newAddr, "partner", "second-secret", "127.0.40.2", "pasv", "download", "via-pasv.bin", back)
			if err != nil {
				return fmt.Errorf("%v: %s", err, out)
			}
			if !strings.Contains(out, "127,0,20,77") {
				return fmt.Errorf("PASV reply %q", out)
			}
			return nil
		})
		var got ftpv1alpha1.FTPServer
		if err := h.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "files"}, &got); err != nil {
			t.Fatal(err)
		}
		if got.Status.Endpoint != "ftp://"+newAddr || got.Status.PassiveAddress != "127.0.20.77" {
			t.Fatalf("status not updated: %+v", got.Status)
		}
		if now := h.PodPID(ns, "files"); now != pid {
			t.Fatalf("the daemon was restarted for an address change (pid %d -> %d)", pid, now)
		}
		addr = newAddr
	})

	t.Run("explicit FTPS with certificate rotation", func(t *testing.T) {
		certA := newCert(t, "first")
		apply(t, ns, tlsSecretManifest("files-tls", certA))
		var srv ftpv1alpha1.FTPServer
		if err := h.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "files"}, &srv); err != nil {
			t.Fatal(err)
		}
		before := srv.DeepCopy()
		srv.Spec.TLS = ftpv1alpha1.TLSSpec{Mode: ftpv1alpha1.TLSExplicit, SecretName: "files-tls", MinVersion: "1.2"}
		if err := h.Client.Patch(ctx, &srv, client.MergeFrom(before)); err != nil {
			t.Fatal(err)
		}
		s := waitReady(t, ns, "files") // turning TLS on rolls the pod
		addr = hostPort(t, s.Status.Endpoint)
		tlsPID := h.PodPID(ns, "files")
		eventually(t, 30*time.Second, "FTPS with the first certificate", func() error { return ftpsLogin(addr, certA.serial) })

		certB := newCert(t, "second")
		apply(t, ns, tlsSecretManifest("files-tls", certB))
		eventually(t, 40*time.Second, "FTPS with the rotated certificate", func() error { return ftpsLogin(addr, certB.serial) })
		if now := h.PodPID(ns, "files"); now != tlsPID {
			t.Fatalf("the daemon was restarted for a certificate renewal (pid %d -> %d)", tlsPID, now)
		}
	})

	t.Run("deletion drains the daemon and keeps the data", func(t *testing.T) {
		if err := h.Client.Delete(ctx, &ftpv1alpha1.FTPServer{ObjectMeta: metav1.ObjectMeta{Name: "files", Namespace: ns}}); err != nil {
			t.Fatal(err)
		}
		eventually(t, 60*time.Second, "the daemon to stop", func() error {
			if pid := h.PodPID(ns, "files"); pid != 0 {
				return fmt.Errorf("pod still running (pid %d)", pid)
			}
			return nil
		})
		exit, ok := h.LastExit(ns, "files")
		if !ok || exit.Status != "exit status 0" {
			t.Fatalf("the daemon did not stop cleanly after SIGTERM: %+v", exit)
		}
		if log, _ := os.ReadFile(exit.LogPath); !bytes.Contains(log, []byte(`"msg":"draining"`)) || !bytes.Contains(log, []byte(`"msg":"ftpd stopped"`)) {
			t.Fatalf("the daemon's log shows no drain:\n%s", log)
		}
		if got, err := os.ReadFile(onVolume); err != nil || sha(got) != sha(payload) {
			t.Fatalf("data on the retained claim is gone or changed after deletion: %v", err)
		}
		var claim corev1.PersistentVolumeClaim
		if err := h.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "files-data"}, &claim); err != nil {
			t.Fatalf("the retained claim was deleted: %v", err)
		}
	})
}

// ftpsLogin logs in over explicit FTPS, checks the certificate's serial and transfers a file
// with PROT P.
func ftpsLogin(addr, wantSerial string) error {
	var seen string
	cfg := &tls.Config{
		InsecureSkipVerify: true, // self-signed test certificate; the serial is checked instead
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) > 0 {
				seen = cs.PeerCertificates[0].SerialNumber.String()
			}
			return nil
		},
	}
	c, err := ftp.Dial(addr, ftp.DialWithTimeout(5*time.Second), ftp.DialWithExplicitTLS(cfg))
	if err != nil {
		return err
	}
	defer c.Quit()
	if err := c.Login("partner", "second-secret"); err != nil {
		return err
	}
	// The handshake happens with the first command after AUTH TLS.
	if seen != wantSerial {
		return fmt.Errorf("served certificate serial %s, want %s", seen, wantSerial)
	}
	data := []byte("over TLS")
	if err := c.Stor("tls.txt", bytes.NewReader(data)); err != nil {
		return fmt.Errorf("STOR over TLS: %w", err)
	}
	return nil
}
