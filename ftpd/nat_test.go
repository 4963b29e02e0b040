package ftpd_test

// TestPassiveThroughNAT runs the daemon behind a real NAT "load balancer" built from network
// namespaces, veth pairs and nftables, and drives it with a strict client (Python's ftplib with
// trust_server_pasv_ipv4_address = True, which connects exactly where a 227 reply says).
//
//	client ns                 lb ns (router + DNAT)                        pod ns
//	198.51.100.2/24 ---- 198.51.100.1/24, 203.0.113.10       192.0.2.1/24 ---- 192.0.2.2/24
//	                     203.0.113.10:21          -> 192.0.2.2:2121
//	                     203.0.113.10:30000-30009 -> 192.0.2.2:30000-30009
//
// The lb forwards only DNATed connections (and their replies), so the pod address 192.0.2.2 is
// unreachable from the client, as a pod IP is from outside a cluster. There is no SNAT: the pod
// routes back through the lb, so the daemon sees the real client IP (externalTrafficPolicy:
// Local). No conntrack FTP helper is attached, so nothing rewrites the 227 replies in transit.
//
// It proves that PASV works through the NAT only because the daemon advertises --public-host
// (without it the strict client is sent to 192.0.2.2 and fails), while EPSV works either way.
//
// Needs root (network namespaces, nftables), ip(8), nft(8) and python3. It is skipped
// otherwise, unless the CI environment variable is set: then missing preconditions fail it.
// Only documentation addresses (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24) are used, and
// only inside the namespaces the test creates; they are deleted when it ends, also on failure.
// The test uses nothing but the `ftp-operator ftpd` command line, built from ./cmd (or taken
// from $FTP_OPERATOR_BIN when set).

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	natClientIP = "198.51.100.2"
	natLBClient = "198.51.100.1"
	natPublicIP = "203.0.113.10"
	natLBPod    = "192.0.2.1"
	natPodIP    = "192.0.2.2"
	natPodPort  = "2121"
	natPassive  = "30000-30009"
	natUser     = "natuser"
	natPass     = "nat-secret"

	// natBudget bounds everything after the daemon binary is built.
	natBudget = 60 * time.Second
	// natCmdTimeout bounds each ip/nft invocation.
	natCmdTimeout = 10 * time.Second
	// natClientTimeout bounds one run of the Python client (its own socket timeout is 4 s; a
	// slow upload runs for seconds).
	natClientTimeout = 30 * time.Second
)

// natNamePrefix starts the names of the namespaces this test creates: ftpnat-<pid>-<rand>-<role>.
const natNamePrefix = "ftpnat-"

func TestPassiveThroughNAT(t *testing.T) {
	natPreconditions(t)

	bin := natDaemonBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), natBudget)
	t.Cleanup(cancel)

	removeStaleNATNamespaces(t)
	n := setupNAT(ctx, t)

	root := t.TempDir()
	// The daemon creates ROOT/NAME when missing; create it now to put the download in place.
	home := filepath.Join(root, natUser)
	if err := os.MkdirAll(home, 0o755); err != nil {
		t.Fatal(err)
	}
	download := make([]byte, 4<<20+123) // crosses several TCP windows through the NAT
	if _, err := rand.Read(download); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(home, "download.bin"), download, 0o644); err != nil {
		t.Fatal(err)
	}
	downloadSum := natSHA256(download)

	// 1. With --public-host the daemon advertises the load balancer's address.
	t.Run("with public host", func(t *testing.T) {
		d := startNATDaemon(ctx, t, n, bin, root, "--public-host", natPublicIP)
		defer d.stop(t)

		r := n.runClient(ctx, t, "pasv", "download.bin", "upload-pasv.bin")
		if r.Exit != 0 {
			t.Fatalf("strict PASV client failed: %s", r)
		}
		if !strings.Contains(r.PasvReply, "203,0,113,10,") {
			t.Errorf("227 reply does not carry the public address 203.0.113.10: %q", r.PasvReply)
		}
		checkNATTransfers(t, r, downloadSum, home, "upload-pasv.bin")

		r = n.runClient(ctx, t, "epsv", "download.bin", "upload-epsv.bin")
		if r.Exit != 0 {
			t.Fatalf("EPSV client failed: %s", r)
		}
		checkNATTransfers(t, r, downloadSum, home, "upload-epsv.bin")
		d.checkClientIP(t)
	})
	if t.Failed() {
		return
	}

	// 2. Without --public-host the daemon advertises its own (pod) address, which the client
	// cannot reach: the strict PASV client must fail, EPSV must still work.
	t.Run("without public host", func(t *testing.T) {
		d := startNATDaemon(ctx, t, n, bin, root)
		defer d.stop(t)

		r := n.runClient(ctx, t, "pasv-must-fail", "download.bin", "upload-nopub.bin")
		switch r.Exit {
		case 3: // the data connection to the advertised address failed, as it must
		case 0:
			t.Fatalf("strict PASV client succeeded without --public-host; the NAT does not isolate the pod address: %s", r)
		default:
			t.Fatalf("strict PASV client failed for another reason than the data connection: %s", r)
		}
		if !strings.Contains(r.PasvReply, "192,0,2,2,") {
			t.Errorf("227 reply without --public-host should carry the pod address 192.0.2.2: %q", r.PasvReply)
		}
		t.Logf("strict PASV client failed as expected: %s", r.Error)

		r = n.runClient(ctx, t, "epsv", "download.bin", "upload-epsv2.bin")
		if r.Exit != 0 {
			t.Fatalf("EPSV client failed without --public-host: %s", r)
		}
		checkNATTransfers(t, r, downloadSum, home, "upload-epsv2.bin")
	})
}

// natPreconditions skips the test (or fails it when $CI is set) when it cannot run here.
func natPreconditions(t *testing.T) {
	t.Helper()
	unmet := func(format string, args ...any) {
		t.Helper()
		msg := fmt.Sprintf(format, args...)
		if os.Getenv("CI") != "" {
			t.Fatalf("NAT test cannot run and CI is set: %s", msg)
		}
		t.Skipf("skipping NAT test: %s (set CI=1 to make this a failure)", msg)
	}
	if testing.Short() && os.Getenv("CI") == "" {
		t.Skip("skipping NAT test in -short mode")
	}
	if os.Geteuid() != 0 {
		unmet("needs root for network namespaces and nftables (run `sudo go test -run TestPassiveThroughNAT ./ftpd`)")
	}
	for _, tool := range []string{"ip", "nft", "python3"} {
		if _, err := exec.LookPath(tool); err != nil {
			unmet("%s not found on PATH (hack/install-test-deps.sh installs iproute2 and nftables)", tool)
		}
	}
	// Root in a container may still lack CAP_SYS_ADMIN / CAP_NET_ADMIN.
	probe := natNamePrefix + strconv.Itoa(os.Getpid()) + "-probe-" + natRandHex(3)
	ctx, cancel := context.WithTimeout(context.Background(), natCmdTimeout)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "ip", "netns", "add", probe).CombinedOutput(); err != nil {
		unmet("cannot create a network namespace: %v: %s", err, bytes.TrimSpace(out))
	}
	defer func() { _ = exec.CommandContext(ctx, "ip", "netns", "del", probe).Run() }()
	if out, err := exec.CommandContext(ctx, "ip", "netns", "exec", probe, "nft", "list", "ruleset").CombinedOutput(); err != nil {
		unmet("nftables does not work in a network namespace: %v: %s", err, bytes.TrimSpace(out))
	}
}

// natDaemonBinary returns $FTP_OPERATOR_BIN or builds ./cmd into a temporary directory.
func natDaemonBinary(t *testing.T) string {
	t.Helper()
	if bin := os.Getenv("FTP_OPERATOR_BIN"); bin != "" {
		return bin
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("go not on PATH to build the daemon (or set FTP_OPERATOR_BIN): %v", err)
	}
	bin := filepath.Join(t.TempDir(), "ftp-operator")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goTool, "build", "-o", bin, "github.com/kubeftp/ftp-operator/cmd")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the daemon (run the test inside the module, or set FTP_OPERATOR_BIN to a built ftp-operator): %v\n%s", err, out)
	}
	return bin
}

// natNet is the set of namespaces of one test run.
type natNet struct {
	client, lb, pod string
	// clientIf is the client's end of its link to the lb (cut it to make the client vanish).
	clientIf string
}

// setupNAT creates the three namespaces, their links and the lb's rules. They are removed by a
// cleanup registered before the first one is created, so a failure half way leaks nothing.
func setupNAT(ctx context.Context, t *testing.T) *natNet {
	t.Helper()
	id := strconv.Itoa(os.Getpid()) + "-" + natRandHex(3)
	n := &natNet{
		client: natNamePrefix + id + "-c",
		lb:     natNamePrefix + id + "-l",
		pod:    natNamePrefix + id + "-p",
	}
	t.Cleanup(func() { n.teardown(t) })

	// Interface names are created directly inside the namespaces; still make them unique.
	suffix := natRandHex(3)
	cVeth, lbcVeth := "nc"+suffix, "nlc"+suffix // client <-> lb
	n.clientIf = cVeth
	pVeth, lbpVeth := "np"+suffix, "nlp"+suffix // pod <-> lb

	run := func(args ...string) {
		t.Helper()
		natRun(ctx, t, "", args...)
	}
	for _, ns := range []string{n.client, n.lb, n.pod} {
		run("ip", "netns", "add", ns)
		run("ip", "-n", ns, "link", "set", "lo", "up")
	}
	run("ip", "link", "add", cVeth, "netns", n.client, "type", "veth", "peer", "name", lbcVeth, "netns", n.lb)
	run("ip", "link", "add", pVeth, "netns", n.pod, "type", "veth", "peer", "name", lbpVeth, "netns", n.lb)

	// client: 198.51.100.2/24, everything through the lb.
	run("ip", "-n", n.client, "addr", "add", natClientIP+"/24", "dev", cVeth)
	run("ip", "-n", n.client, "link", "set", cVeth, "up")
	run("ip", "-n", n.client, "route", "add", "default", "via", natLBClient)

	// lb: 198.51.100.1/24 and the public 203.0.113.10 toward the client, 192.0.2.1/24 toward the pod.
	run("ip", "-n", n.lb, "addr", "add", natLBClient+"/24", "dev", lbcVeth)
	run("ip", "-n", n.lb, "addr", "add", natPublicIP+"/32", "dev", lbcVeth)
	run("ip", "-n", n.lb, "link", "set", lbcVeth, "up")
	run("ip", "-n", n.lb, "addr", "add", natLBPod+"/24", "dev", lbpVeth)
	run("ip", "-n", n.lb, "link", "set", lbpVeth, "up")
	run("ip", "netns", "exec", n.lb, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")

	// pod: 192.0.2.2/24, default route via the lb so replies go back through its conntrack.
	run("ip", "-n", n.pod, "addr", "add", natPodIP+"/24", "dev", pVeth)
	run("ip", "-n", n.pod, "link", "set", pVeth, "up")
	run("ip", "-n", n.pod, "route", "add", "default", "via", natLBPod)

	rules := fmt.Sprintf(`table ip ftplb {
	chain prerouting {
		type nat hook prerouting priority dstnat; policy accept;
		ip daddr %[1]s tcp dport 21 dnat to %[2]s:%[3]s
		ip daddr %[1]s tcp dport %[4]s dnat to %[2]s
	}
	chain forward {
		type filter hook forward priority filter; policy drop;
		ct state established,related accept
		iifname "%[5]s" oifname "%[6]s" ct status dnat accept
	}
}
`, natPublicIP, natPodIP, natPodPort, natPassive, lbcVeth, lbpVeth)
	rulesFile := filepath.Join(t.TempDir(), "lb.nft")
	if err := os.WriteFile(rulesFile, []byte(rules), 0o644); err != nil {
		t.Fatal(err)
	}
	run("ip", "netns", "exec", n.lb, "nft", "-f", rulesFile)
	return n
}

// teardown kills whatever still runs in the namespaces and deletes them (their veths go too).
func (n *natNet) teardown(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*natCmdTimeout)
	defer cancel()
	for _, ns := range []string{n.client, n.lb, n.pod} {
		deleteNATNamespace(ctx, t, ns)
	}
}

func deleteNATNamespace(ctx context.Context, t *testing.T, ns string) {
	t.Helper()
	if _, err := os.Stat(filepath.Join("/run/netns", ns)); errors.Is(err, os.ErrNotExist) {
		return
	}
	if out, err := exec.CommandContext(ctx, "ip", "netns", "pids", ns).Output(); err == nil {
		for _, f := range strings.Fields(string(out)) {
			if pid, err := strconv.Atoi(f); err == nil && pid > 1 && pid != os.Getpid() {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	if out, err := exec.CommandContext(ctx, "ip", "netns", "del", ns).CombinedOutput(); err != nil {
		t.Errorf("deleting network namespace %s: %v: %s", ns, err, bytes.TrimSpace(out))
	}
}

// removeStaleNATNamespaces deletes namespaces left by earlier runs of this test whose process is
// gone (a run killed before its cleanups could run).
func removeStaleNATNamespaces(t *testing.T) {
	t.Helper()
	entries, err := os.ReadDir("/run/netns")
	if err != nil {
		return
	}
	re := regexp.MustCompile(`^` + regexp.QuoteMeta(natNamePrefix) + `(\d+)-`)
	ctx, cancel := context.WithTimeout(context.Background(), 2*natCmdTimeout)
	defer cancel()
	for _, e := range entries {
		m := re.FindStringSubmatch(e.Name())
		if m == nil {
			continue
		}
		if _, err := os.Stat("/proc/" + m[1]); err == nil {
			continue // its test is still running
		}
		t.Logf("removing stale namespace %s", e.Name())
		deleteNATNamespace(ctx, t, e.Name())
	}
}

// natRun runs one command with a timeout and fails the test on error.
func natRun(ctx context.Context, t *testing.T, stdin string, args ...string) {
	t.Helper()
	cctx, cancel := context.WithTimeout(ctx, natCmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(cctx, args[0], args[1:]...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
}

// natDaemon is `ftp-operator ftpd` running in the pod namespace.
type natDaemon struct {
	cmd  *exec.Cmd
	logs *natLogBuffer
	done chan struct{}
	once sync.Once
}

func startNATDaemon(ctx context.Context, t *testing.T, n *natNet, bin, root string, extra ...string) *natDaemon {
	t.Helper()
	args := []string{"netns", "exec", n.pod, bin, "ftpd",
		"--listen", natPodIP + ":" + natPodPort,
		"--root", root,
		"--user", natUser + ":" + natPass,
		"--passive-ports", natPassive,
		"--drain-timeout", "1s",
	}
	args = append(args, extra...)
	// `ip netns exec` execs the command in place, so the process is the daemon itself.
	cmd := exec.CommandContext(ctx, "ip", args...)
	d := &natDaemon{cmd: cmd, logs: &natLogBuffer{}, done: make(chan struct{})}
	cmd.Stdout = d.logs
	cmd.Stderr = d.logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 2 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting the daemon: %v", err)
	}
	go func() { _ = cmd.Wait(); close(d.done) }()
	// Registered as well as deferred by the caller: whatever happens, the daemon is gone.
	t.Cleanup(func() { d.stop(t) })
	t.Logf("daemon: ip %s", strings.Join(args, " "))
	return d
}

// stop sends SIGTERM, waits briefly for the drain, then kills the process group.
func (d *natDaemon) stop(t *testing.T) {
	d.once.Do(func() {
		pid := d.cmd.Process.Pid
		_ = syscall.Kill(pid, syscall.SIGTERM)
		select {
		case <-d.done:
		case <-time.After(3 * time.Second):
			_ = syscall.Kill(-pid, syscall.SIGKILL)
			<-d.done
		}
		_ = syscall.Kill(-pid, syscall.SIGKILL) // anything left in its group
		if t.Failed() {
			t.Logf("daemon logs:\n%s", d.logs.String())
		}
	})
}

// checkClientIP checks that the daemon saw the client's real address (no SNAT on the lb).
func (d *natDaemon) checkClientIP(t *testing.T) {
	t.Helper()
	if logs := d.logs.String(); !strings.Contains(logs, natClientIP) {
		t.Errorf("daemon logs never mention the client IP %s (is the lb masquerading?):\n%s", natClientIP, logs)
	}
}

type natLogBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *natLogBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *natLogBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// natClientScript is the strict Python client of the NAT tests; its modes are in its docstring.
var natClientScript = filepath.Join("testdata", "nat_client.py")

// natResult is what the Python client prints (one JSON object) plus its exit code.
type natResult struct {
	Exit        int     `json:"-"`
	Output      string  `json:"-"`
	PasvReply   string  `json:"pasv_reply"`
	EpsvReply   string  `json:"epsv_reply"`
	DownloadSHA string  `json:"download_sha256"`
	UploadSHA   string  `json:"upload_sha256"`
	SentSeconds float64 `json:"sent_s"` // slow-stor
	Final       string  `json:"final"`  // slow-stor: the reply after the upload
	Error       string  `json:"error"`
}

func (r natResult) String() string {
	return fmt.Sprintf("exit %d: %s", r.Exit, strings.TrimSpace(r.Output))
}

// runClient runs the Python client in the client namespace against the public address, in
// mode with its arguments, and returns what it printed.
func (n *natNet) runClient(ctx context.Context, t *testing.T, mode string, args ...string) natResult {
	t.Helper()
	cctx, cancel := context.WithTimeout(ctx, natClientTimeout)
	defer cancel()
	python, _ := exec.LookPath("python3")
	argv := append([]string{"netns", "exec", n.client, python, natClientScript, natPublicIP, "21", natUser, natPass, mode}, args...)
	cmd := exec.CommandContext(cctx, "ip", argv...)
	cmd.WaitDelay = 2 * time.Second
	out, err := cmd.CombinedOutput()
	r := natResult{Output: string(out)}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee) && cctx.Err() == nil:
		r.Exit = ee.ExitCode()
	default:
		t.Fatalf("python client (%s): %v\n%s", mode, err, out)
	}
	// The JSON result is the last line; anything before it is a traceback or noise.
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &r); err != nil {
		t.Fatalf("python client (%s) printed no result: %s", mode, r)
	}
	return r
}

func checkNATTransfers(t *testing.T, r natResult, downloadSum, home, uploadName string) {
	t.Helper()
	if r.DownloadSHA != downloadSum {
		t.Errorf("download checksum %s, want %s", r.DownloadSHA, downloadSum)
	}
	got, err := os.ReadFile(filepath.Join(home, uploadName))
	if err != nil {
		t.Fatalf("uploaded file: %v", err)
	}
	if sum := natSHA256(got); sum != r.UploadSHA {
		t.Errorf("uploaded file checksum %s, client sent %s", sum, r.UploadSHA)
	}
}

func natSHA256(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func natRandHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}
