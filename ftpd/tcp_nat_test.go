package ftpd_test

// The TCP life cycle of a session behind NAT (docs/ftpd.md, "The TCP life cycle of a
// session"), in the namespaces of nat_test.go:
//
//   - TestKeepAliveThroughForgetfulNAT: the lb's connection tracking forgets established flows
//     after natForget of silence, as a cloud load balancer or NAT gateway does after its idle
//     timeout (AWS NLB 350 s, Azure 4 min). A slow upload keeps the control connection silent
//     for three times that. With keepalive the daemon's probes keep the flow known and the
//     client gets its 226; with keepalive off the upload lands but the 226 is dropped by the lb
//     and the client reports a failure: the bug keepalive exists for.
//   - TestDeadClientsAreReaped: clients that vanish without a FIN (their link cut) in every
//     state a session can be in (idle, after PASV, in a download, in an upload) have their
//     session slots and passive reservations freed within idle + interval x count; with
//     keepalive off they are still held long after.
//
// Both need root, ip(8), nft(8) and python3, like TestPassiveThroughNAT, and skip without
// them unless CI is set.

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

const (
	// natForget is the lb's conntrack timeout for established flows in these tests.
	natForget = 2 * time.Second
	// natHealth is where the daemon serves its metrics, reached from the lb namespace.
	natHealth = natPodIP + ":8081"
)

func TestKeepAliveThroughForgetfulNAT(t *testing.T) {
	natPreconditions(t)
	bin := natDaemonBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	t.Cleanup(cancel)
	removeStaleNATNamespaces(t)
	n := setupNAT(ctx, t)
	// The lb forgets a flow silent for forget, and does not pick a forgotten flow up again from
	// a packet in its middle (nf_conntrack_tcp_loose=0, as a load balancer would not): the
	// daemon's 226 then finds no flow to be translated back through and is dropped.
	lbForgetsAfter := func(forget time.Duration) {
		natRun(ctx, t, "", "ip", "netns", "exec", n.lb, "sysctl", "-q", "-w",
			"net.netfilter.nf_conntrack_tcp_timeout_established="+strconv.Itoa(int(forget/time.Second)),
			"net.netfilter.nf_conntrack_tcp_loose=0")
	}

	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, natUser), 0o755); err != nil {
		t.Fatal(err)
	}
	// The upload lasts three times natForget, during which the control connection is silent.
	upload := 3 * natForget
	cases := []struct {
		name, keepalive string
		forget          time.Duration
		wantExit        int
	}{
		// The control: an lb that remembers flows for an hour needs no keepalive.
		{"keepalive off, patient lb", "off", time.Hour, 0},
		// Probes every second keep the lb's entry for the control connection alive.
		{"keepalive on", "1s/1s/5", natForget, 0},
		// Nothing crosses the control connection while the upload runs: the lb forgets it.
		{"keepalive off", "off", natForget, 4},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			lbForgetsAfter(tc.forget)
			d := startNATDaemon(ctx, t, n, bin, root, "--public-host", natPublicIP, "--tcp-keepalive", tc.keepalive)
			defer d.stop(t)
			name := strings.NewReplacer(" ", "-", ",", "").Replace(tc.name) + ".bin"
			r := n.runClient(ctx, t, "slow-stor", name, strconv.Itoa(2<<20), fmt.Sprint(upload.Seconds()))
			if r.Exit != tc.wantExit {
				t.Fatalf("client exit %d, want %d: %s", r.Exit, tc.wantExit, r)
			}
			if r.SentSeconds < upload.Seconds()*0.9 {
				t.Fatalf("the upload took %.1f s, not the %s that outlast the lb's memory", r.SentSeconds, upload)
			}
			// Either way the file arrived whole: only the reply is at stake.
			got, err := os.ReadFile(filepath.Join(root, natUser, name))
			if err != nil {
				t.Fatalf("the upload did not land: %v", err)
			}
			if natSHA256(got) != r.UploadSHA {
				t.Fatalf("the upload landed with other bytes than were sent")
			}
			if tc.wantExit == 0 && !strings.HasPrefix(r.Final, "226") {
				t.Fatalf("final reply %q, want 226", r.Final)
			}
			t.Logf("%s: %s", tc.name, r)
		})
	}
}

func TestDeadClientsAreReaped(t *testing.T) {
	natPreconditions(t)
	bin := natDaemonBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	t.Cleanup(cancel)
	removeStaleNATNamespaces(t)

	const (
		keepalive = "1s/1s/2"
		bound     = 3 * time.Second // idle + interval x count
		// slack covers the metrics polling, a python start and a keepalive timer tick.
		slack = 3 * time.Second
	)
	cases := []struct {
		name, keepalive string
		reaped          bool
	}{
		{"keepalive on", keepalive, true},
		{"keepalive off", "off", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// A network of its own: the cut link stays cut.
			n := setupNAT(ctx, t)
			root := t.TempDir()
			home := filepath.Join(root, natUser)
			if err := os.MkdirAll(home, 0o755); err != nil {
				t.Fatal(err)
			}
			big := make([]byte, 64<<20) // far more than the socket buffers hold
			if err := os.WriteFile(filepath.Join(home, "big.bin"), big, 0o644); err != nil {
				t.Fatal(err)
			}
			d := startNATDaemon(ctx, t, n, bin, root, "--public-host", natPublicIP, "--tcp-keepalive", tc.keepalive,
				"--health-addr", natHealth)
			defer d.stop(t)

			// One client in each state a session can be in when its client vanishes.
			held := []struct{ mode, file string }{
				{"hold-idle", ""},        // between commands
				{"hold-pasv", ""},        // a passive port reserved, no transfer yet
				{"hold-retr", "big.bin"}, // in a download it stopped reading
				{"hold-stor", "up.bin"},  // in an upload it stopped sending
			}
			for _, h := range held {
				startHeldClient(ctx, t, n, h.mode, h.file)
			}
			m := natMetrics(ctx, t, n)
			if m.sessions != len(held) || m.passive != 3 {
				t.Fatalf("before the cut: %d sessions and %d passive reservations, want %d and 3", m.sessions, m.passive, len(held))
			}

			// The clients vanish: no FIN, no reset, nothing ever again.
			natRun(ctx, t, "", "ip", "-n", n.client, "link", "set", n.clientIf, "down")
			cut := time.Now()
			if tc.reaped {
				for {
					m = natMetrics(ctx, t, n)
					if m.sessions == 0 && m.passive == 0 && time.Since(cut) <= bound+slack {
						break
					}
					if time.Since(cut) > bound+slack {
						t.Fatalf("%s after the cut: still %d sessions and %d passive reservations (bound %s)\ndaemon log:\n%s",
							time.Since(cut).Round(time.Millisecond), m.sessions, m.passive, bound, d.logs.String())
					}
					time.Sleep(200 * time.Millisecond)
				}
				t.Logf("every session slot and passive reservation freed %s after the cut (bound: idle + interval x count = %s)",
					time.Since(cut).Round(100*time.Millisecond), bound)
				return
			}
			time.Sleep(2 * (bound + slack))
			m = natMetrics(ctx, t, n)
			if m.sessions != len(held) || m.passive != 3 {
				t.Fatalf("keepalive off: %s after the cut, %d sessions and %d passive reservations, want all still held (%d and 3): is something else reaping them?",
					time.Since(cut).Round(time.Millisecond), m.sessions, m.passive, len(held))
			}
			t.Logf("keepalive off: %s after the cut the daemon still holds %d sessions and %d passive reservations for vanished clients",
				time.Since(cut).Round(100*time.Millisecond), m.sessions, m.passive)
		})
	}
}

// startHeldClient runs the client script in one of its hold modes and waits until it says it is
// in that state. It is killed (by PID) when the test ends.
func startHeldClient(ctx context.Context, t *testing.T, n *natNet, mode string, args ...string) {
	t.Helper()
	python, _ := exec.LookPath("python3")
	argv := append([]string{"netns", "exec", n.client, python, natClientScript, natPublicIP, "21", natUser, natPass, mode}, args...)
	cmd := exec.CommandContext(ctx, "ip", argv...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr natLogBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s client: %v", mode, err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	ready := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		ready <- strings.TrimSpace(line)
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case line := <-ready:
		if line != "ready" {
			t.Fatalf("%s client: %q instead of ready; stderr: %s", mode, line, stderr.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("%s client not ready after 20 s; stderr: %s", mode, stderr.String())
	}
}

type daemonMetrics struct{ sessions, passive int }

var metricLine = regexp.MustCompile(`(?m)^(ftpd_sessions|ftpd_passive_ports_in_use) (\S+)$`)

// natMetrics reads the daemon's gauges from the lb namespace, which reaches the pod network.
func natMetrics(ctx context.Context, t *testing.T, n *natNet) daemonMetrics {
	t.Helper()
	cctx, cancel := context.WithTimeout(ctx, natCmdTimeout)
	defer cancel()
	out, err := exec.CommandContext(cctx, "ip", "netns", "exec", n.lb, "python3", "-c",
		"import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=3).read().decode())",
		"http://"+natHealth+"/metrics").Output()
	if err != nil {
		t.Fatalf("reading the daemon's metrics: %v", err)
	}
	var m daemonMetrics
	found := 0
	for _, match := range metricLine.FindAllStringSubmatch(string(out), -1) {
		v, err := strconv.ParseFloat(match[2], 64)
		if err != nil {
			t.Fatalf("metric %s: %v", match[0], err)
		}
		if match[1] == "ftpd_sessions" {
			m.sessions = int(v)
		} else {
			m.passive = int(v)
		}
		found++
	}
	if found != 2 {
		t.Fatalf("metrics lack ftpd_sessions or ftpd_passive_ports_in_use:\n%s", out)
	}
	return m
}

// TestListenBacklogIsSomaxconn: the daemon's listeners (control and passive) ask the kernel
// for a backlog of net.core.somaxconn as set in the pod's network namespace: a platform that
// wants a longer accept queue sets that sysctl on the pod (spec.pod.sysctls; an unsafe sysctl
// for the kubelet). The value is above the kernel's default of 4096, so that a daemon asking
// for any fixed backlog would show it.
func TestListenBacklogIsSomaxconn(t *testing.T) {
	natPreconditions(t)
	bin := natDaemonBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	removeStaleNATNamespaces(t)
	n := setupNAT(ctx, t)
	const somaxconn = 10007
	natRun(ctx, t, "", "ip", "netns", "exec", n.pod, "sysctl", "-q", "-w", "net.core.somaxconn="+strconv.Itoa(somaxconn))
	root := t.TempDir()
	d := startNATDaemon(ctx, t, n, bin, root, "--public-host", natPublicIP)
	defer d.stop(t)
	startHeldClient(ctx, t, n, "hold-pasv") // a passive port listening

	// For a listening socket ss shows the backlog as Send-Q.
	out := func() string {
		cctx, cancel := context.WithTimeout(ctx, natCmdTimeout)
		defer cancel()
		b, err := exec.CommandContext(cctx, "ip", "netns", "exec", n.pod, "ss", "-ltnH").Output()
		if err != nil {
			t.Fatalf("ss in the pod namespace: %v", err)
		}
		return string(b)
	}()
	backlogs := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 4 {
			continue
		}
		backlog, _ := strconv.Atoi(f[2])
		local := f[3]
		switch {
		case strings.HasSuffix(local, ":"+natPodPort):
			backlogs["control"] = backlog
		case regexp.MustCompile(`:3000\d$`).MatchString(local):
			backlogs["passive"] = backlog
		}
	}
	for _, l := range []string{"control", "passive"} {
		if backlogs[l] != somaxconn {
			t.Errorf("%s listener backlog %d, want the namespace's somaxconn %d\nss -ltn:\n%s", l, backlogs[l], somaxconn, out)
		}
	}
}
