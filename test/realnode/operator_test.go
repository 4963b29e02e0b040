package realnode_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jlaffaye/ftp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubeftp/ftp-operator/internal/testenv"
	"github.com/kubeftp/ftp-operator/test/realnode"
)

// daemonImage is our image as `make image` writes it, under a tag of its own.
const daemonImage = "localhost/ftp-operator/ftp-operator:realnode"

const operatorNamespace = "realnode-ftp"

// ftpServerManifest is the e2e tests' FTPServer "files" (testenv.FilesServerManifest) on port 21.
func ftpServerManifest(t *testing.T) []byte {
	t.Helper()
	m, err := testenv.FilesServerManifest(21, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestOperatorOnRealNode runs the operator (in this process, as in the harness) against the real
// cluster, with the daemon as a real pod of our image: the FTPServer becomes Ready at its load
// balancer address, a client outside the cluster that trusts the PASV reply uploads through it,
// an EPSV client downloads, the file is on the claim's volume and the daemon logged the
// client's own address.
func TestOperatorOnRealNode(t *testing.T) {
	requireRealNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	work := t.TempDir()
	t0 := time.Now()
	archive, err := realnode.BuildOperatorImage(ctx, work, daemonImage)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("ftp-operator binary and image built in %s", time.Since(t0).Round(time.Millisecond))

	c := startCluster(ctx, t, realnode.Options{Images: []string{archive}})

	if err := c.StartOperator(daemonImage); err != nil {
		t.Fatal(err)
	}

	if err := c.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: operatorNamespace}}); err != nil {
		t.Fatal(err)
	}
	t1 := time.Now()
	if err := c.Apply(ctx, operatorNamespace, ftpServerManifest(t)); err != nil {
		t.Fatal(err)
	}
	ready, err := c.WaitReady(ctx, operatorNamespace, "files", 3*time.Minute)
	if err != nil {
		t.Fatalf("%v; pods: %s", err, podSummaryIn(ctx, c, operatorNamespace))
	}
	server := *ready
	pid := c.PodPID(operatorNamespace, "files")
	if pid == 0 || c.PodIP(operatorNamespace, "files") == "" {
		t.Errorf("the daemon's pod has PID %d and IP %q", pid, c.PodIP(operatorNamespace, "files"))
	}
	t.Logf("FTPServer Ready in %s: endpoint %s, PASV address %s", time.Since(t1).Round(time.Millisecond), server.Status.Endpoint, server.Status.PassiveAddress)
	addr := strings.TrimPrefix(server.Status.Endpoint, "ftp://")
	lbIP, port, _ := strings.Cut(addr, ":")
	if server.Status.PassiveAddress != lbIP || port != "21" || !strings.HasPrefix(lbIP, "203.0.113.") {
		t.Fatalf("endpoint %s, PASV address %s: want the load balancer's address on port 21", server.Status.Endpoint, server.Status.PassiveAddress)
	}

	// A client that connects exactly where the 227 reply says, from outside the cluster: it
	// works only because the daemon advertises the load balancer's address.
	payload := bytes.Repeat([]byte("real node\n"), 100_000)
	local := filepath.Join(work, "payload.bin")
	if err := os.WriteFile(local, payload, 0o644); err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(testenv.RepoRoot(), "test", "e2e", "testdata", "strict_client.py")
	var out []byte
	waitFor(t, 30*time.Second, "a strict PASV upload from outside", func() (bool, string) {
		sctx, scancel := context.WithTimeout(ctx, 30*time.Second)
		defer scancel()
		out, err = c.ClientExec(sctx, realnode.Outside, "python3", script, lbIP, "21", "partner", "first-secret",
			c.ClientIP(realnode.Outside), "pasv", "upload", local, "via-pasv.bin")
		return err == nil, fmt.Sprintf("%v: %s", err, out)
	})
	if !strings.Contains(string(out), "227") || !strings.Contains(string(out), strings.ReplaceAll(lbIP, ".", ",")) {
		t.Errorf("the strict client's session shows no 227 reply with the load balancer address:\n%s", out)
	}

	// An EPSV download with the Go client, dialling from the client namespace.
	conn, err := ftp.Dial(addr, ftp.DialWithTimeout(10*time.Second), ftp.DialWithDialFunc(c.Dialer(realnode.Outside, 10*time.Second)))
	if err != nil {
		t.Fatal(err)
	}
	if err := conn.Login("partner", "first-secret"); err != nil {
		t.Fatal(err)
	}
	resp, err := conn.Retr("via-pasv.bin")
	if err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	if _, err := got.ReadFrom(resp); err != nil {
		t.Fatal(err)
	}
	resp.Close()
	_ = conn.Quit()
	if sha256.Sum256(got.Bytes()) != sha256.Sum256(payload) {
		t.Fatalf("downloaded %d bytes that differ from the %d uploaded", got.Len(), len(payload))
	}

	// The file is on the claim's volume, written by the daemon's user.
	onVolume := filepath.Join(c.ClaimPath(operatorNamespace, "files-data"), "partner", "via-pasv.bin")
	if data, err := os.ReadFile(onVolume); err != nil || sha256.Sum256(data) != sha256.Sum256(payload) {
		t.Errorf("the upload is not whole on the claim's volume (%s): %v", onVolume, err)
	}
	logs := c.PodLog(operatorNamespace, "files")
	if want := fmt.Sprintf(`"client_ip":%q`, c.ClientIP(realnode.Outside)); !strings.Contains(logs, want) {
		t.Errorf("the daemon's log never shows %s: the client's address was not preserved\n%s", want, logs)
	}

	if now := c.PodPID(operatorNamespace, "files"); now != pid {
		t.Errorf("the daemon's process changed (%d -> %d) without a reason to restart", pid, now)
	}

	// Deleting the FTPServer: the garbage collector removes what it owns, the kubelet stops the
	// daemon (which drains); the claim is retained, as the operator's default says.
	if err := c.Client.Delete(ctx, &server); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Minute, "the daemon's pod gone", func() (bool, string) {
		var pods corev1.PodList
		if err := c.Client.List(ctx, &pods, client.InNamespace(operatorNamespace)); err != nil {
			return false, err.Error()
		}
		return len(pods.Items) == 0, podSummaryIn(ctx, c, operatorNamespace)
	})
	if _, err := os.Stat(onVolume); err != nil {
		t.Errorf("the retained claim lost its data: %v", err)
	}
	// The kubelet stopped the daemon with SIGTERM and it drained and exited 0.
	exit, ok := c.LastExit(operatorNamespace, "files")
	if !ok || exit.Status != "exit status 0" {
		t.Errorf("the daemon did not stop cleanly: %+v (recorded: %v)", exit, ok)
	} else if log, err := os.ReadFile(exit.LogPath); err != nil || !bytes.Contains(log, []byte(`"msg":"draining"`)) || !bytes.Contains(log, []byte(`"msg":"ftpd stopped"`)) {
		t.Errorf("the daemon's last log shows no drain (%v):\n%s", err, log)
	}

	if err := c.Stop(); err != nil {
		t.Errorf("stop: %v", err)
	}
	if left := c.Leftovers(); len(left) > 0 {
		t.Errorf("left behind after Stop: %s", strings.Join(left, "; "))
	}
}
