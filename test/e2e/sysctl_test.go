package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"

	ftpv1alpha1 "github.com/kubeftp/ftp-operator/api/v1alpha1"
	"github.com/kubeftp/ftp-operator/test/harness"
)

// tunedManifest is an FTPServer with TCP settings of its own: pod sysctls (YAML list items at
// the sysctls' indentation) and a keepalive idle time.
func tunedManifest(c *cluster, name, sysctls string) string {
	return fmt.Sprintf(`
apiVersion: ftp.kubeftp.dev/v1alpha1
kind: FTPServer
metadata: {name: %s}
spec:
  volumes:
    - name: data
      claimTemplate: {size: 1Gi, reclaimPolicy: Delete}
  users:
    - name: ops
      passwordSecretRef: {name: ops-ftp}
  ports: {control: %d, passive: {start: 30500, end: 30504}}
  limits:
    tcpKeepAlive: {idle: 25s}
  pod:
    sysctls:
%s`, name, c.control, sysctls)
}

// TestTCPSettingsReachThePod: what spec.pod.sysctls and spec.limits.tcpKeepAlive say is what
// the daemon pod runs with on a real kubelet. Two safe sysctls are set in the pod's network
// namespace (read there through the container's PID); the daemon's listen backlog is that
// namespace's net.core.somaxconn; its control connections carry the keepalive asked for
// (25 s: neither Go's 15 s nor the 60 s default); and an unsafe sysctl the kubelet was not
// told to allow makes the pod fail, which the status reports as SysctlForbidden.
//
// Only the real node applies a pod's security context: the harness's stand-in kubelet runs
// pods as processes in namespaces it makes itself (docs/testing.md), so the other modes skip.
func TestTCPSettingsReachThePod(t *testing.T) { eachMode(t, testTCPSettings) }

func testTCPSettings(t *testing.T, c *cluster) {
	if c != realNode {
		t.Skip("only a real kubelet applies pod sysctls; the harness's stand-in node does not model the pod security context")
	}
	if _, err := exec.LookPath("nsenter"); err != nil {
		t.Skip("nsenter (util-linux) is needed to look into the pod's network namespace")
	}
	ns := c.newNamespace(t, "tuned")
	c.apply(t, ns, "apiVersion: v1\nkind: Secret\nmetadata: {name: ops-ftp}\nstringData: {password: ops}\n")

	// Both safe (Kubernetes' pkg/kubelet/sysctl/safe_sysctls.go): any kubelet admits them.
	// Values a pod's namespace would not have by default (1 and 1024).
	c.apply(t, ns, tunedManifest(c, "tuned", `      - {name: net.ipv4.tcp_syncookies, value: "2"}
      - {name: net.ipv4.ip_unprivileged_port_start, value: "21"}
`))
	s := c.waitReady(t, ns, "tuned")
	pid := c.h.PodPID(ns, "tuned")
	if pid == 0 {
		t.Fatal("no PID for the daemon's container")
	}
	inPod := func(argv ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, "nsenter", append([]string{"-t", strconv.Itoa(pid), "-n"}, argv...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("in the pod's network namespace: %s: %v\n%s", strings.Join(argv, " "), err, out)
		}
		return strings.TrimSpace(string(out))
	}
	for name, want := range map[string]string{"tcp_syncookies": "2", "ip_unprivileged_port_start": "21"} {
		if got := inPod("cat", "/proc/sys/net/ipv4/"+name); got != want {
			t.Errorf("net.ipv4.%s in the pod is %q, want %q", name, got, want)
		}
	}

	// The backlog: ss shows a listening socket's as Send-Q.
	somaxconn := inPod("cat", "/proc/sys/net/core/somaxconn")
	listening := inPod("ss", "-ltnH", "sport = :2121")
	if f := strings.Fields(listening); len(f) < 3 || f[2] != somaxconn {
		t.Errorf("the daemon's control listener %q does not have the namespace's somaxconn %s as its backlog", listening, somaxconn)
	}

	// A control connection from outside, through kube-proxy: the daemon's side of it carries
	// the keepalive of spec.limits.tcpKeepAlive.
	conn := c.dial(t, harness.Outside, hostPort(t, s.Status.Endpoint))
	if err := conn.Login("ops", "ops"); err != nil {
		t.Fatal(err)
	}
	// Right after a reply the socket shows its retransmission timer until the client's ACK
	// arrives; the keepalive timer runs once nothing is in flight.
	var established string
	var m []string
	for deadline := time.Now().Add(5 * time.Second); m == nil; time.Sleep(100 * time.Millisecond) {
		established = inPod("ss", "-tnoH", "state", "established", "( sport = :2121 )")
		m = regexp.MustCompile(`timer:\(keepalive,(\d+)(?:\.\d+)?sec`).FindStringSubmatch(established)
		if m == nil && time.Now().After(deadline) {
			t.Fatalf("the daemon's control connection has no keepalive timer after 5 s:\n%s", established)
		}
	}
	left, _ := strconv.Atoi(m[1])
	if left <= 15 || left > 25 {
		t.Errorf("keepalive timer %d s on the daemon's control connection, want at most the 25 s idle asked for (and more than Go's 15 s)", left)
	}
	t.Logf("in the pod: tcp_syncookies 2, ip_unprivileged_port_start 21, control listener backlog %s (somaxconn), control connection keepalive timer %d s", somaxconn, left)
	c.deleteAndWait(t, ns, "tuned")

	// net.core.somaxconn is namespaced but not safe: this kubelet runs without
	// --allowed-unsafe-sysctls, so it refuses the pod.
	c.apply(t, ns, tunedManifest(c, "unsafe", `      - {name: net.core.somaxconn, value: "8192"}
`))
	got, err := c.h.WaitReason(context.Background(), ns, "unsafe", ftpv1alpha1.ReasonSysctlForbidden, 90*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	ready := meta.FindStatusCondition(got.Status.Conditions, ftpv1alpha1.ConditionReady)
	for _, want := range []string{"net.core.somaxconn", "--allowed-unsafe-sysctls"} {
		if !strings.Contains(ready.Message, want) {
			t.Errorf("message %q does not say %q", ready.Message, want)
		}
	}
	t.Logf("unsafe sysctl: %s: %s", ready.Reason, ready.Message)
	if meta.FindStatusCondition(got.Status.Conditions, ftpv1alpha1.ConditionStalled) == nil {
		t.Errorf("SysctlForbidden without Stalled: %+v", got.Status.Conditions)
	}
}
