// Command sessions is the sessions-at-scale benchmark client of hack/bench.sh: N concurrent FTP
// sessions against one server, each from its own loopback source address, all logged in at
// once; then, for a few rounds, every session does PASV (even sessions) or EPSV (odd ones) and
// a RETR of a small file at the same moment, and the content is checked (size and SHA-256). It
// speaks FTP itself over raw sockets (net.Dialer bound to the source address), so that nothing
// but the server and the kernel sits between the sessions and the measurement.
//
//	sessions run -server ours -addr 127.0.0.1:2211 -user bench -pass bench-pass \
//	    -file small.bin -size 4096 -sha256 HEX -passive 31000-31009 -n 1000 -out ours-1000.json
//	sessions report -svg docs/img/sessions-at-scale.svg ours-1000.json vsftpd-1000.json ...
//
// It reports, per server and N: sessions logged in; transfers ok and failed with the failure
// reasons counted (e.g. "PASV 425", "data connect: timeout"); p50/p99 of one transfer, from
// sending PASV/EPSV to reading the 226; the peak memory of the server's processes (the sum of
// their RSS, sampled from /proc every 200 ms, over the server's cgroup when -cgroup is given,
// else over the process tree of -pid); and the TIME_WAIT sockets on the server's control and
// passive ports after each round and at the end, on the server's side and on the client's.
//
// One process holds at most (RLIMIT_NOFILE hard limit - 64) / 2 sessions (a control and a
// data connection each); beyond that the run is spread over several worker processes
// (re-executions of this program, steered over pipes), which start each round together. Each
// raises its soft limit to the hard limit and no further. Every phase has a deadline (login,
// each round, quit) and the whole run is bounded by -timeout.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "run":
		err = runMain(os.Args[2:])
	case "worker":
		err = workerMain(os.Args[2:])
	case "report":
		err = reportMain(os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "sessions:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: sessions run [flags] | sessions report [-svg FILE] RESULT.json...")
	os.Exit(2)
}

// config is what the coordinator and its workers share.
type config struct {
	addr           string
	user, pass     string
	file           string
	size           int64
	sha256         string
	src            string // prefix of the source addresses
	loginParallel  int
	loginTimeout   time.Duration
	reloginTimeout time.Duration
	sessionLogin   time.Duration
	roundTimeout   time.Duration
	quitTimeout    time.Duration
	dialTimeout    time.Duration
}

func (c *config) flags(fs *flag.FlagSet) {
	fs.StringVar(&c.addr, "addr", "127.0.0.1:2121", "server control address")
	fs.StringVar(&c.user, "user", "anonymous", "user name")
	fs.StringVar(&c.pass, "pass", "bench@", "password")
	fs.StringVar(&c.file, "file", "small.bin", "file to RETR")
	fs.Int64Var(&c.size, "size", 4096, "its size in bytes")
	fs.StringVar(&c.sha256, "sha256", "", "its SHA-256 (hex)")
	fs.StringVar(&c.src, "src", "127.1.0.0/16", "source addresses: session i connects from the prefix's address number i+1")
	fs.IntVar(&c.loginParallel, "login-parallel", 256, "logins in progress at a time (over all workers)")
	fs.DurationVar(&c.loginTimeout, "login-timeout", 120*time.Second, "deadline of the login phase")
	fs.DurationVar(&c.reloginTimeout, "relogin-timeout", 30*time.Second, "deadline of the re-logins before a round (of sessions that lost their connection)")
	fs.DurationVar(&c.sessionLogin, "session-login-timeout", 30*time.Second, "deadline of one session's login (connect, greeting, USER, PASS, TYPE)")
	fs.DurationVar(&c.roundTimeout, "round-timeout", 60*time.Second, "deadline of each round, from its start")
	fs.DurationVar(&c.quitTimeout, "quit-timeout", 30*time.Second, "deadline of the QUIT phase")
	fs.DurationVar(&c.dialTimeout, "dial-timeout", 30*time.Second, "deadline of one TCP connect")
}

func (c *config) args() []string {
	return []string{
		"-addr", c.addr, "-user", c.user, "-pass", c.pass, "-file", c.file,
		"-size", strconv.FormatInt(c.size, 10), "-sha256", c.sha256, "-src", c.src,
		"-login-parallel", strconv.Itoa(c.loginParallel), "-login-timeout", c.loginTimeout.String(),
		"-relogin-timeout", c.reloginTimeout.String(), "-session-login-timeout", c.sessionLogin.String(),
		"-round-timeout", c.roundTimeout.String(), "-quit-timeout", c.quitTimeout.String(),
		"-dial-timeout", c.dialTimeout.String(),
	}
}

func (c *config) target() (*target, error) {
	ap, err := netip.ParseAddrPort(c.addr)
	if err != nil {
		return nil, fmt.Errorf("-addr: %w", err)
	}
	if len(c.sha256) != 64 {
		return nil, errors.New("-sha256 must be 64 hex digits")
	}
	return &target{addr: ap, user: c.user, pass: c.pass, file: c.file, size: c.size, sha256: strings.ToLower(c.sha256), dialTimeout: c.dialTimeout}, nil
}

// sourceAddr is session i's source address: the prefix's address number i+1.
func sourceAddr(prefix netip.Prefix, i int) (netip.Addr, error) {
	if !prefix.Addr().Is4() {
		return netip.Addr{}, errors.New("source prefix must be IPv4")
	}
	base := prefix.Masked().Addr().As4()
	n := uint32(base[0])<<24 | uint32(base[1])<<16 | uint32(base[2])<<8 | uint32(base[3])
	size := uint64(1) << (32 - prefix.Bits())
	if uint64(i)+1 >= size-1 { // neither the first nor the last address
		return netip.Addr{}, fmt.Errorf("session %d does not fit in %v (%d addresses)", i, prefix, size-2)
	}
	n += uint32(i) + 1
	return netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}), nil
}

// Messages between the coordinator and its workers, one JSON object per line.
type command struct {
	Op    string `json:"op"` // login, round, quit
	Round int    `json:"round,omitempty"`
}

type answer struct {
	Op       string    `json:"op"`
	OK       int       `json:"ok"`
	Failed   counts    `json:"failed,omitempty"`
	Lat      []float64 `json:"lat,omitempty"` // ms, of the transfers that succeeded
	Relogins int       `json:"relogins,omitempty"`
	CPU      float64   `json:"cpu,omitempty"` // the worker's CPU seconds (user + system) in a round
	Nofile   string    `json:"nofile,omitempty"`
	Err      string    `json:"err,omitempty"`
}

// raiseNofile raises the soft RLIMIT_NOFILE to the hard limit (never the hard limit itself) and
// returns "soft/hard".
func raiseNofile() string {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return "?"
	}
	if lim.Cur < lim.Max {
		want := lim
		want.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want); err == nil {
			lim = want
		}
	}
	return fmt.Sprintf("%d/%d", lim.Cur, lim.Max)
}

// workerMain serves the coordinator's commands for sessions [from, to).
func workerMain(args []string) error {
	var cfg config
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	cfg.flags(fs)
	from := fs.Int("from", 0, "first session")
	to := fs.Int("to", 0, "end of the sessions (exclusive)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	nofile := raiseNofile()
	t, err := cfg.target()
	if err != nil {
		return err
	}
	prefix, err := netip.ParsePrefix(cfg.src)
	if err != nil {
		return fmt.Errorf("-src: %w", err)
	}
	sessions := make([]*session, 0, *to-*from)
	for i := *from; i < *to; i++ {
		src, err := sourceAddr(prefix, i)
		if err != nil {
			return err
		}
		sessions = append(sessions, &session{idx: i, src: src, epsv: i%2 == 1})
	}
	ctx := context.Background()
	in := json.NewDecoder(os.Stdin)
	out := json.NewEncoder(os.Stdout)
	// A dead coordinator must not leave sessions open: stdin's EOF ends the worker.
	for {
		var c command
		if err := in.Decode(&c); err != nil {
			for _, s := range sessions {
				s.drop()
			}
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("read command: %w", err)
		}
		var a answer
		switch c.Op {
		case "login":
			deadline := time.Now().Add(cfg.loginTimeout)
			a.OK, a.Failed = forAll(sessions, cfg.loginParallel, func(s *session) failure {
				return s.login(ctx, t, earliest(deadline, time.Now().Add(cfg.sessionLogin)))
			})
			a.Nofile = nofile
		case "round":
			a = round(ctx, sessions, t, &cfg)
		case "quit":
			deadline := time.Now().Add(cfg.quitTimeout)
			a.OK, a.Failed = forAll(sessions, 0, func(s *session) failure { return s.quit(deadline) })
		default:
			a.Err = "unknown command " + c.Op
		}
		a.Op = c.Op
		if err := out.Encode(&a); err != nil {
			return fmt.Errorf("answer: %w", err)
		}
		if c.Op == "quit" {
			return nil
		}
	}
}

// round logs in again the sessions that lost their connection, then starts every session's
// transfer at the same moment.
func round(ctx context.Context, sessions []*session, t *target, cfg *config) answer {
	var a answer
	cpu0 := ownCPU()
	lost := map[*session]failure{}
	var relog []*session
	for _, s := range sessions {
		if s.conn == nil {
			relog = append(relog, s)
		}
	}
	if len(relog) > 0 {
		deadline := time.Now().Add(cfg.reloginTimeout)
		var mu sync.Mutex
		a.Relogins, _ = forAll(relog, cfg.loginParallel, func(s *session) failure {
			fl := s.login(ctx, t, earliest(deadline, time.Now().Add(cfg.sessionLogin)))
			if fl != "" {
				mu.Lock()
				lost[s] = "no session: " + fl
				mu.Unlock()
			}
			return fl
		})
	}
	start := make(chan struct{})
	var (
		mu sync.Mutex
		wg sync.WaitGroup
	)
	a.Failed = counts{}
	for _, s := range sessions {
		wg.Go(func() {
			<-start
			var (
				d  time.Duration
				fl = lost[s]
			)
			if fl == "" {
				d, fl = s.transfer(ctx, t, time.Now().Add(cfg.roundTimeout))
			}
			mu.Lock()
			defer mu.Unlock()
			if fl != "" {
				a.Failed[string(fl)]++
				return
			}
			a.OK++
			a.Lat = append(a.Lat, float64(d.Microseconds())/1000)
		})
	}
	close(start)
	wg.Wait()
	a.CPU = ownCPU() - cpu0
	return a
}

// ownCPU is this process's CPU time so far (user + system), in seconds.
func ownCPU() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return float64(ru.Utime.Sec+ru.Stime.Sec) + float64(ru.Utime.Usec+ru.Stime.Usec)/1e6
}

// worker is one worker process as the coordinator sees it.
type worker struct {
	cmd *exec.Cmd
	in  *json.Encoder
	out *json.Decoder
}

func (w *worker) ask(c command) (answer, error) {
	if err := w.in.Encode(c); err != nil {
		return answer{}, fmt.Errorf("worker %d: send %s: %w", w.cmd.Process.Pid, c.Op, err)
	}
	var a answer
	if err := w.out.Decode(&a); err != nil {
		return answer{}, fmt.Errorf("worker %d: answer to %s: %w", w.cmd.Process.Pid, c.Op, err)
	}
	if a.Err != "" {
		return a, fmt.Errorf("worker %d: %s", w.cmd.Process.Pid, a.Err)
	}
	return a, nil
}

// askAll sends c to every worker at once and gathers the answers.
func askAll(workers []*worker, c command) ([]answer, error) {
	answers := make([]answer, len(workers))
	errs := make([]error, len(workers))
	var wg sync.WaitGroup
	for i, w := range workers {
		wg.Go(func() { answers[i], errs[i] = w.ask(c) })
	}
	wg.Wait()
	return answers, errors.Join(errs...)
}

// result is one run (server, N), as written to -out and read by report.
type result struct {
	Server       string `json:"server"`
	Config       string `json:"config"` // how the server was configured (its limits), from -config
	N            int    `json:"n"`
	Rounds       int    `json:"rounds"`
	Mode         string `json:"mode"`
	Src          string `json:"src"`
	FileSize     int64  `json:"fileSize"`
	Workers      int    `json:"workers"`
	ClientNofile string `json:"clientNofile"` // soft/hard in each worker
	ServerNofile string `json:"serverNofile"` // soft/hard of the server's main process
	LoadStart    string `json:"loadStart"`

	LoggedIn      int     `json:"loggedIn"`
	LoginFailures counts  `json:"loginFailures"`
	LoginSeconds  float64 `json:"loginSeconds"`

	Transfers    int       `json:"transfers"` // attempted: N x rounds
	OK           int       `json:"ok"`
	Failures     counts    `json:"failures"`
	Relogins     int       `json:"relogins"`
	RoundOK      []int     `json:"roundOK"`
	RoundSeconds []float64 `json:"roundSeconds"`
	// CPU seconds spent in the rounds: by the server (its cgroup, or its process with reaped
	// children) and by the client's workers.
	ServerCPU float64 `json:"serverCPU"`
	ClientCPU float64 `json:"clientCPU"`
	P50ms     float64 `json:"p50ms"`
	P99ms     float64 `json:"p99ms"`
	Maxms     float64 `json:"maxms"`

	TimeWaitServer    []int `json:"timeWaitServer"` // after each round, server side
	TimeWaitClient    []int `json:"timeWaitClient"`
	TimeWaitServerEnd int   `json:"timeWaitServerEnd"` // after QUIT
	TimeWaitClientEnd int   `json:"timeWaitClientEnd"`

	PeakRSS     int64      `json:"peakRSS"`
	PeakAnon    int64      `json:"peakAnon"`
	PeakProcs   int        `json:"peakProcs"`
	PeakFDs     int        `json:"peakFDs"` // of the main process
	MemSamples  int        `json:"memSamples"`
	MemInterval float64    `json:"memIntervalMaxSeconds"`
	MemErr      string     `json:"memErr,omitempty"`
	Caps        capFigures `json:"caps"`
	CapsErr     string     `json:"capsErr,omitempty"`

	QuitOK       int     `json:"quitOK"`
	QuitFailures counts  `json:"quitFailures"`
	WallSeconds  float64 `json:"wallSeconds"`
	Aborted      string  `json:"aborted,omitempty"`
}

func runMain(args []string) error {
	var cfg config
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	cfg.flags(fs)
	server := fs.String("server", "server", "name of the server in the report")
	serverConfig := fs.String("config", "", "how the server is configured (shown in the report)")
	n := fs.Int("n", 100, "concurrent sessions")
	rounds := fs.Int("rounds", 3, "rounds of PASV/EPSV + RETR")
	passive := fs.String("passive", "", "the server's passive range START-END (for the TIME_WAIT counts)")
	cgroup := fs.String("cgroup", "", "cgroup v2 directory of the server (its processes, for the memory figures)")
	memcg := fs.String("memcg", "", "the memory cgroup capping the server (v1 or v2), for its limit, peak and OOM kills")
	pidscg := fs.String("pidscg", "", "the pids cgroup capping the server, for its limit, peak and refused forks")
	pid := fs.Int("pid", 0, "the server's PID (its process tree, without -cgroup; and its open-files limit)")
	perProc := fs.Int("per-proc", 0, "sessions per worker process (0: as many as the open-files limit allows)")
	interval := fs.Duration("sample", 200*time.Millisecond, "memory sampling interval")
	timeout := fs.Duration("timeout", 0, "bound of the whole run (0: login + rounds x (relogin + round) + quit timeouts + 1 min)")
	outFile := fs.String("out", "", "write the result (JSON) here")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if _, err := cfg.target(); err != nil {
		return err
	}
	prefix, err := netip.ParsePrefix(cfg.src)
	if err != nil {
		return fmt.Errorf("-src: %w", err)
	}
	if *n < 1 || *rounds < 1 {
		return errors.New("-n and -rounds must be positive")
	}
	if _, err := sourceAddr(prefix, *n-1); err != nil {
		return err
	}
	ctrl, err := netip.ParseAddrPort(cfg.addr)
	if err != nil {
		return err
	}
	ports := portSet{control: ctrl.Port()}
	if *passive != "" {
		a, b, ok := strings.Cut(*passive, "-")
		first, err1 := strconv.ParseUint(a, 10, 16)
		end, err2 := strconv.ParseUint(b, 10, 16)
		if !ok || err1 != nil || err2 != nil || first > end {
			return fmt.Errorf("-passive %q: want START-END", *passive)
		}
		ports.first, ports.end = uint16(first), uint16(end)
	}
	if *timeout == 0 {
		*timeout = cfg.loginTimeout + time.Duration(*rounds)*(cfg.roundTimeout+cfg.reloginTimeout) + cfg.quitTimeout + time.Minute
	}

	res := &result{
		Server: *server, Config: *serverConfig, N: *n, Rounds: *rounds, Src: cfg.src, FileSize: cfg.size,
		Mode: "PASV for even sessions, EPSV for odd ones", Transfers: *n * *rounds,
		LoginFailures: counts{}, Failures: counts{}, QuitFailures: counts{},
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		res.LoadStart = strings.Join(strings.Fields(string(b))[:3], " ")
	}
	if *pid > 0 {
		res.ServerNofile = openFilesLimit(*pid)
	}
	logf := func(format string, a ...any) {
		fmt.Fprintf(os.Stderr, "sessions: %s N=%d: %s\n", *server, *n, fmt.Sprintf(format, a...))
	}
	waitForTimeWaitRoom(*n*(*rounds+1), logf)

	// Workers.
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("getrlimit: %w", err)
	}
	fit := int(min(lim.Max, math.MaxInt32)-64) / 2
	if fit < 1 {
		return fmt.Errorf("open-files hard limit %d is too low", lim.Max)
	}
	per := fit
	if *perProc > 0 {
		per = min(per, *perProc)
	}
	nw := (*n + per - 1) / per
	res.Workers = nw
	self, err := os.Executable()
	if err != nil {
		return err
	}
	var workers []*worker
	killAll := func() {
		for _, w := range workers {
			_ = w.cmd.Process.Kill()
		}
		for _, w := range workers {
			_ = w.cmd.Wait()
		}
		workers = nil
	}
	defer killAll()
	sub := cfg
	sub.loginParallel = max(1, (cfg.loginParallel+nw-1)/nw)
	for i := range nw {
		from, to := i**n/nw, (i+1)**n/nw
		cmd := exec.Command(self, append(append([]string{"worker"}, sub.args()...), "-from", strconv.Itoa(from), "-to", strconv.Itoa(to))...)
		cmd.Stderr = os.Stderr
		stdin, err := cmd.StdinPipe()
		if err != nil {
			return err
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			return err
		}
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("start worker: %w", err)
		}
		workers = append(workers, &worker{cmd: cmd, in: json.NewEncoder(stdin), out: json.NewDecoder(bufio.NewReader(stdout))})
	}
	logf("%d worker process(es) of up to %d sessions (open-files hard limit %d)", nw, per, lim.Max)

	// TIME_WAIT sockets from before (the server's readiness check, an earlier run on the same
	// ports) are not this run's: they are left out by their addresses.
	before := map[string]bool{}
	if _, _, err := countTimeWaits(ports, nil, before); err != nil {
		return err
	}
	timeWaits := func() (int, int, error) { return countTimeWaits(ports, before, nil) }
	started := time.Now()
	mem := startMemSampler(*cgroup, *pid, *interval)
	// The whole run's bound: past it the workers are killed, which ends every pending phase.
	procs := make([]*os.Process, len(workers))
	for i, w := range workers {
		procs[i] = w.cmd.Process
	}
	watchdog := time.AfterFunc(*timeout, func() {
		logf("run exceeded -timeout %v (or was interrupted): killing the workers", *timeout)
		for _, p := range procs {
			_ = p.Kill()
		}
	})
	defer watchdog.Stop()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		if _, ok := <-sigs; ok {
			watchdog.Reset(0)
		}
	}()
	defer signal.Stop(sigs)

	runErr := func() error {
		t0 := time.Now()
		answers, err := askAll(workers, command{Op: "login"})
		res.LoginSeconds = time.Since(t0).Seconds()
		if err != nil {
			return err
		}
		var nofiles []string
		for _, a := range answers {
			res.LoggedIn += a.OK
			res.LoginFailures.add(a.Failed)
			nofiles = append(nofiles, a.Nofile)
		}
		res.ClientNofile = strings.Join(uniq(nofiles), ", ")
		logf("logged in %d of %d in %.1f s %v", res.LoggedIn, *n, res.LoginSeconds, res.LoginFailures)
		var lat []float64
		for r := 1; r <= *rounds; r++ {
			t0 := time.Now()
			cpu0 := serverCPU(*cgroup, *pid)
			answers, err := askAll(workers, command{Op: "round", Round: r})
			secs := time.Since(t0).Seconds()
			res.ServerCPU += serverCPU(*cgroup, *pid) - cpu0
			mem.sample() // also between the periodic samples: a short round may fall between two
			if err != nil {
				return err
			}
			ok := 0
			for _, a := range answers {
				ok += a.OK
				res.Failures.add(a.Failed)
				res.Relogins += a.Relogins
				res.ClientCPU += a.CPU
				lat = append(lat, a.Lat...)
			}
			res.OK += ok
			res.RoundOK = append(res.RoundOK, ok)
			res.RoundSeconds = append(res.RoundSeconds, secs)
			tws, twc, err := timeWaits()
			if err != nil {
				return err
			}
			res.TimeWaitServer = append(res.TimeWaitServer, tws)
			res.TimeWaitClient = append(res.TimeWaitClient, twc)
			logf("round %d: %d of %d ok in %.1f s; TIME_WAIT server side %d, client side %d", r, ok, *n, secs, tws, twc)
		}
		sorted := sortedCopy(lat)
		res.P50ms, res.P99ms = percentile(sorted, 50), percentile(sorted, 99)
		res.Maxms = percentile(sorted, 100)
		answers, err = askAll(workers, command{Op: "quit"})
		if err != nil {
			return err
		}
		for _, a := range answers {
			res.QuitOK += a.OK
			res.QuitFailures.add(a.Failed)
		}
		return nil
	}()
	killAll()
	if runErr != nil {
		res.Aborted = runErr.Error()
		logf("aborted: %v", runErr)
	}
	peak, samples, maxInterval, memErr := mem.finish()
	res.PeakRSS, res.PeakAnon, res.PeakProcs, res.PeakFDs = peak.rss, peak.anon, peak.procs, peak.fds
	res.MemSamples, res.MemInterval, res.MemErr = samples, maxInterval.Seconds(), memErr
	if res.Caps, err = readCaps(*memcg, *pidscg); err != nil {
		res.CapsErr = err.Error()
	}
	if tws, twc, err := timeWaits(); err == nil {
		res.TimeWaitServerEnd, res.TimeWaitClientEnd = tws, twc
	}
	res.WallSeconds = time.Since(started).Seconds()
	if math.IsNaN(res.P50ms) {
		res.P50ms, res.P99ms, res.Maxms = -1, -1, -1 // JSON has no NaN
	}
	logf("%d of %d transfers ok, p50 %.1f ms, p99 %.1f ms, peak RSS %.1f MiB (%d processes), TIME_WAIT at the end: server %d, client %d",
		res.OK, res.Transfers, res.P50ms, res.P99ms, float64(res.PeakRSS)/(1<<20), res.PeakProcs, res.TimeWaitServerEnd, res.TimeWaitClientEnd)
	if *outFile != "" {
		b, err := json.MarshalIndent(res, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(*outFile, append(b, '\n'), 0o644); err != nil {
			return err
		}
	}
	if runErr != nil {
		return runErr
	}
	return nil
}

// waitForTimeWaitRoom waits (at most 70 s: a TIME_WAIT lasts 60 s) until the namespace's
// TIME_WAIT table can take want more sockets, so that the counts are not cut by
// net.ipv4.tcp_max_tw_buckets (beyond it the kernel closes new ones at once) because of an
// earlier run.
func waitForTimeWaitRoom(want int, logf func(string, ...any)) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/tcp_max_tw_buckets")
	if err != nil {
		return
	}
	limit, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return
	}
	for deadline := time.Now().Add(70 * time.Second); ; {
		now, err := allTimeWaits()
		if err != nil || now+want <= limit*9/10 {
			return
		}
		if time.Now().After(deadline) {
			logf("warning: %d sockets in TIME_WAIT, %d more expected, tcp_max_tw_buckets %d: counts may be cut", now, want, limit)
			return
		}
		logf("waiting for earlier TIME_WAIT sockets to expire (%d now, %d expected, limit %d)", now, want, limit)
		time.Sleep(5 * time.Second)
	}
}

func earliest(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func uniq(s []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, v := range s {
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	return out
}
