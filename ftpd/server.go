package ftpd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	ftpserver "github.com/fclairamb/ftpserverlib"
)

// lateSessionGrace bounds how long a drain waits for the sessions accepted during the shutdown
// delay to start their first transfer (a login and a PASV take a few round trips, and a
// password hash): a late session that sits idle does not hold the pod for the drain timeout,
// nor for more than half of it.
const lateSessionGrace = 10 * time.Second

// drainGrace is how long the server waits after the last transfer finished before it closes the
// remaining control connections, so that the final 226 reply of that transfer reaches its client.
const drainGrace = 200 * time.Millisecond

var errDraining = errors.New("server is shutting down")

// Server is one FTP daemon: a control listener, optional ops endpoints (health, metrics), the
// sessions, and a watcher that reloads the configuration files and the TLS certificate.
type Server struct {
	cfg    Config // as at start; the parts a reload can change live in dyn
	logger *slog.Logger
	ctx    context.Context // for log calls and lookups; never cancelled
	root   string          // Config.Root, absolute and symlink-free

	dyn atomic.Pointer[dynamic]
	// servedConfig is where the config and users files in force came from, with their digests
	// (nil from flags); the ops endpoint reads it from other goroutines, hence atomic.
	servedConfig atomic.Pointer[fileSource]
	limiter      *sessionLimiter
	bans         *banList
	logins       *loginGate
	usage        *usageRegistry
	metrics      *metrics
	passive      *passiveHub
	fdGate       *descriptorGate // passive setups by the file descriptors left (fdgate.go)
	relay        *relayServer    // nil without replicas
	certs        *certHolder     // nil without TLS
	tlsConf      *tls.Config     // template of the TLS configs (tls.go); nil without TLS
	dataTLS      *tls.Config     // for ftpserverlib's data connections (dataTLSConfig); nil without TLS
	lookup       lookupFunc
	source       *fileSource // nil in standalone mode; only the watcher goroutine uses it after start

	ftp      *ftpserver.FtpServer
	ln       net.Listener
	healthLn net.Listener
	health   *http.Server

	ready       atomic.Bool
	watcherDone chan struct{}

	mu       sync.Mutex
	sessions map[uint32]ftpserver.ClientContext
	conns    map[string]*controlConn // open control connections by connKey
	// activeTargets are the checked PORT/EPRT targets of the sessions (at most one each), to
	// find the session of an active data connection (controlOfData).
	activeTargets map[netip.AddrPort][]*controlConn
	active        int           // in-flight file transfers
	draining      bool          // no new transfers, but late sessions' first ones
	idle          chan struct{} // closed when the drain has nothing left to wait for (drainDoneLocked)
	// lateHolds counts the late sessions (accepted after the shutdown request, controlConn.late)
	// that have not started their first transfer yet: the drain waits for them as for
	// transfers, at most lateSessionGrace.
	lateHolds int
	// stopRequested: a shutdown was asked for; sessions accepted from now on are late.
	stopRequested atomic.Bool
}

// NewServer validates cfg, creates missing home directories, prepares the users and loads the
// TLS certificate. It does not open any socket; call Listen and then Serve (or use Run).
func NewServer(cfg Config, logger *slog.Logger) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	root, err := prepareRoot(cfg.Root)
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg:      cfg,
		logger:   logger,
		ctx:      context.Background(),
		root:     root,
		limiter:  newSessionLimiter(),
		bans:     newBanList(),
		logins:   newLoginGate(),
		usage:    newUsageRegistry(cfg.UsageScanInterval),
		lookup:   net.DefaultResolver.LookupNetIP,
		source:   cfg.source,
		sessions: map[uint32]ftpserver.ClientContext{},
		conns:    map[string]*controlConn{},

		activeTargets: map[netip.AddrPort][]*controlConn{},
	}
	// Standalone homes must be usable at start; homes named by a config file are created when
	// possible, and a missing one only fails that user's logins (a reload must not be refused
	// because one directory is missing).
	dyn, err := s.buildDynamic(&cfg, cfg.source == nil)
	if err != nil {
		return nil, err
	}
	s.dyn.Store(dyn)
	if cfg.source != nil {
		s.servedConfig.Store(cfg.source)
	}
	if cfg.TLS.enabled() {
		if s.certs, err = newCertHolder(cfg.TLS.CertFile, cfg.TLS.KeyFile); err != nil {
			return nil, err
		}
		s.tlsConf = newTLSConfig(cfg.TLS, s.certs)
		s.dataTLS = s.dataTLSConfig()
	}
	s.metrics = newMetrics(s.bans.count, s.certs.notAfter, cfg.PassivePorts.Count())
	s.metrics.setUsers(declaredUsers(&cfg))
	s.metrics.reg.MustRegister(quotaCollector{s})
	s.passive = newPassiveHub(s)
	s.fdGate = newDescriptorGate(openFilesLimit(), descriptorReserve+cfg.PassivePorts.Count(), s.limiter.count, logger)
	return s, nil
}

func prepareRoot(dir string) (string, error) {
	root, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("root directory: %w", err)
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return "", fmt.Errorf("root directory: %w", err)
	}
	real, err := filepath.EvalSymlinks(root)
	if err != nil {
		return "", fmt.Errorf("root directory: %w", err)
	}
	return real, nil
}

// Run is NewServer, Listen and Serve: it runs the daemon until ctx is cancelled, then drains.
func Run(ctx context.Context, cfg Config, logger *slog.Logger) error {
	s, err := NewServer(cfg, logger)
	if err != nil {
		return err
	}
	if err := s.Listen(); err != nil {
		return err
	}
	return s.Serve(ctx)
}

// Listen opens the control listener and, when configured, the health listener.
func (s *Server) Listen() error {
	lc := listenConfig // keepalive is set per connection (tcp.go)
	ln, err := lc.Listen(s.ctx, "tcp", s.cfg.ListenAddr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", s.cfg.ListenAddr, err)
	}
	s.ln = &controlListener{Listener: ln, s: s, rejecting: make(chan struct{}, maxConcurrentRejects)}
	if s.cfg.Replicas != nil {
		host, _, _ := net.SplitHostPort(s.cfg.ListenAddr) // validated
		err := s.passive.openFixed(host)
		if err == nil {
			err = s.listenRelay()
		}
		if err != nil {
			_ = ln.Close()
			s.passive.close()
			return err
		}
	}
	if s.cfg.HealthAddr != "" {
		// The ops endpoints keep Go's own keepalive (15 s): scrapers' idle HTTP connections are
		// not the sessions the FTP keepalive settings are about.
		hl, err := (&net.ListenConfig{}).Listen(s.ctx, "tcp", s.cfg.HealthAddr)
		if err != nil {
			_ = ln.Close()
			return fmt.Errorf("listen on %s (health): %w", s.cfg.HealthAddr, err)
		}
		s.healthLn = hl
		s.health = &http.Server{Handler: s.healthHandler(), ReadHeaderTimeout: 5 * time.Second}
	}
	s.ftp = ftpserver.NewFtpServer(&mainDriver{srv: s})
	// ftpserverlib's own info messages duplicate ours; keep its warnings and errors.
	s.ftp.Logger = slog.New(minLevelHandler{s.logger.Handler(), slog.LevelWarn}).With(slog.String("component", "ftpserverlib"))
	if err := s.ftp.Listen(); err != nil {
		_ = ln.Close()
		if s.healthLn != nil {
			_ = s.healthLn.Close()
		}
		return err
	}
	return nil
}

// Addr is the control listener's address (useful with port 0).
func (s *Server) Addr() string {
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// HealthAddr is the health listener's address, or "" when disabled.
func (s *Server) HealthAddr() string {
	if s.healthLn == nil {
		return ""
	}
	return s.healthLn.Addr().String()
}

// Ready reports whether the server accepts new sessions.
func (s *Server) Ready() bool { return s.ready.Load() }

// Serve accepts sessions until ctx is cancelled, then drains: it stops accepting, lets in-flight
// transfers finish for up to Config.DrainTimeout, closes the remaining sessions and returns nil.
func (s *Server) Serve(ctx context.Context) error {
	if s.ftp == nil {
		return errors.New("Serve called before Listen")
	}
	if s.health != nil {
		go func() {
			if err := s.health.Serve(s.healthLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
				s.logger.Error("health server stopped", slog.Any("error", err))
			}
		}()
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- s.ftp.Serve() }()
	if s.relay != nil {
		go s.relay.serve()
	}
	// Temporaries of uploads cut by a crash are invisible and unreachable for clients; they are
	// removed in the background so that a large volume does not delay the start. The kernel
	// stamps files from a coarse clock that lags time.Now() by up to a few milliseconds, so an
	// upload this process starts right away could look older than the start: only files older
	// than a second before it count as stale (a crashed pod restarts after a longer back-off).
	go func(before time.Time) {
		if n := removeStaleUploads(s.uploadDirs(), before, s.logger); n > 0 {
			s.logger.Info("stale upload files removed", slog.Int("files", n))
		}
	}(time.Now().Add(-staleUploadMargin))
	watchCtx, stopWatching := context.WithCancel(ctx)
	defer stopWatching()
	s.watcherDone = make(chan struct{})
	go s.watch(watchCtx)
	s.ready.Store(true)
	s.logger.Info("ftpd started",
		slog.String("listen", s.Addr()),
		slog.String("health", s.HealthAddr()),
		slog.String("passive_ports", s.cfg.PassivePorts.String()),
		slog.String("passive_exposed_ports", s.cfg.PassiveExposedPorts.String()),
		slog.String("public_host", s.cfg.PublicHost),
		slog.String("tls", string(s.cfg.TLS.Mode)),
		slog.Bool("active_mode", s.cfg.ActiveMode),
		slog.Int("users", len(s.cfg.Users)),
		slog.Bool("config_file", s.source != nil),
	)

	var err error
	select {
	case <-ctx.Done():
		s.stopRequested.Store(true)
		s.shutdownDelay(serveErr)
	case err = <-serveErr:
		if err == nil {
			err = errors.New("control listener closed unexpectedly")
		}
		s.logger.Error("accept loop stopped", slog.Any("error", err))
	}
	stopWatching()
	<-s.watcherDone
	s.drain()
	return err
}

// shutdownDelay keeps accepting sessions for Config.ShutdownDelay after a shutdown request,
// reporting not ready: connections that kube-proxy still sends to a terminating pod are served
// instead of refused. It ends early if the accept loop stops.
func (s *Server) shutdownDelay(serveErr <-chan error) {
	if s.cfg.ShutdownDelay <= 0 {
		return
	}
	s.ready.Store(false)
	s.logger.Info("shutdown requested: still accepting sessions while the endpoints drop this server",
		slog.Float64("shutdown_delay_s", s.cfg.ShutdownDelay.Seconds()))
	timer := time.NewTimer(s.cfg.ShutdownDelay)
	defer timer.Stop()
	select {
	case <-timer.C:
	case err := <-serveErr:
		s.logger.Error("accept loop stopped during the shutdown delay", slog.Any("error", err))
	}
}

// staleUploadMargin: upload temporaries modified within this long before the start are not
// treated as left over by a crash.
const staleUploadMargin = time.Second

func (s *Server) drain() {
	s.stopRequested.Store(true)
	start := time.Now()
	// The listener closes before readiness turns false: with no shutdown delay, "not ready"
	// then means new sessions are refused, never accepted and cut a moment later.
	if err := s.ftp.Stop(); err != nil && !errors.Is(err, ftpserver.ErrNotListening) {
		s.logger.Warn("closing control listener", slog.Any("error", err))
	}
	s.ready.Store(false)
	s.mu.Lock()
	s.draining = true
	active, late := s.active, s.lateHolds
	var idle chan struct{}
	if active > 0 || late > 0 {
		idle = make(chan struct{})
		s.idle = idle
	}
	s.mu.Unlock()
	s.logger.Info("draining", slog.Int("transfers", active), slog.Int("late_sessions", late), slog.Float64("timeout_s", s.cfg.DrainTimeout.Seconds()))

	if idle != nil {
		timer := time.NewTimer(s.cfg.DrainTimeout)
		defer timer.Stop()
		// Half the drain timeout at most: an idle late session is given up before the
		// transfers are cut.
		grace := time.NewTimer(min(lateSessionGrace, s.cfg.DrainTimeout/2))
		defer grace.Stop()
	wait:
		for {
			select {
			case <-idle:
				time.Sleep(drainGrace)
				break wait
			case <-grace.C:
				s.dropLateHolds()
			case <-timer.C:
				s.mu.Lock()
				left := s.active
				s.mu.Unlock()
				s.logger.Warn("drain timeout reached, closing transfers", slog.Int("transfers", left))
				break wait
			}
		}
	}

	// Close the remaining control connections. ftpserverlib's ClientContext.Close is not safe to
	// call concurrently with the session's own goroutine, so the sockets are closed directly and
	// each session ends when its next read fails.
	s.mu.Lock()
	conns := make([]*controlConn, 0, len(s.conns))
	for _, c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.closeSocket()
	}
	s.passive.close()
	if s.relay != nil {
		s.relay.close()
	}
	// Give the session goroutines a moment to log their close.
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		s.mu.Lock()
		n := len(s.sessions)
		s.mu.Unlock()
		if n == 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if s.health != nil {
		ctx, cancel := context.WithTimeout(s.ctx, 2*time.Second)
		_ = s.health.Shutdown(ctx)
		cancel()
	}
	s.logger.Info("ftpd stopped", slog.Float64("drain_s", time.Since(start).Seconds()))
}

func (s *Server) settings() *ftpserver.Settings {
	c := &s.cfg
	// The control connection's TLS is done by controlConn; ftpserverlib only needs to know about
	// implicit TLS, under which it protects every data connection.
	tlsMode := ftpserver.ClearOrEncrypted
	if c.TLS.Mode == TLSImplicit {
		tlsMode = ftpserver.ImplicitEncryption
	}
	pasvCheck := ftpserver.IPMatchRequired
	if c.AllowDataFromOtherIP {
		pasvCheck = ftpserver.IPMatchDisabled
	}
	return &ftpserver.Settings{
		Listener: s.ln,
		Banner:   c.Banner,
		// No port range and no multiplexing: ftpserverlib only opens a throwaway listener per
		// PASV, which passiveHub (dataconn.go) replaces by a port of the configured range that
		// accepts only the session's client.
		PublicIPResolver:  s.publicIP,
		IdleTimeout:       int(max(time.Second, c.IdleTimeout+time.Second-1) / time.Second),
		ConnectionTimeout: int(dataConnectTimeout / time.Second),
		DisableActiveMode: !c.ActiveMode,
		// Active connections never come from port 20: that would need a capability.
		ActiveTransferPortNon20: true,
		ActiveConnectionsCheck:  ftpserver.IPMatchRequired,
		PasvConnectionsCheck:    pasvCheck,
		TLSRequired:             tlsMode,
		// Binary unless the client asks otherwise, and no line-ending rewriting even in TYPE A
		// (like vsftpd's defaults): files are stored and served byte for byte.
		DefaultTransferType:    ftpserver.TransferTypeBinary,
		DisableASCIIConversion: true,
	}
}

// addSession registers a session and links it to its controlConn (found by its addresses:
// ftpserverlib does not hand the connection to the driver).
func (s *Server) addSession(cc ftpserver.ClientContext, sess *session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sessions[cc.ID()] = cc
	sess.conn = s.conns[connKey(cc.LocalAddr(), cc.RemoteAddr())]
}

func (s *Server) removeSession(cc ftpserver.ClientContext) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.sessions, cc.ID())
}

// transferStart registers an in-flight transfer of the session on c (nil for none). While
// draining it fails, except for a late session's first transfer: the client was accepted during
// the shutdown delay, and its login, PASV and RETR are one piece of work it began before it
// could learn that the server stops.
func (s *Server) transferStart(c *controlConn) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	held := c != nil && c.lateHold
	if s.draining && !held {
		return errDraining
	}
	if held {
		// The hold becomes a transfer in one step: the drain never sees nothing to wait for.
		c.lateHold = false
		s.lateHolds--
	}
	s.active++
	return nil
}

// relayStart registers a data connection relayed to another replica: a drain waits for it as
// for a transfer (that replica's session is not stopping), but it is not refused while draining.
func (s *Server) relayStart() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.active++
}

func (s *Server) transferDone() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.active--
	s.drainDoneLocked()
}

// holdLateLocked marks c late when a shutdown was requested before it was accepted (and the
// drain has not begun: a connection that slips in then is closed with the others).
func (s *Server) holdLateLocked(c *controlConn) {
	if s.stopRequested.Load() && !s.draining {
		c.lateHold = true
		s.lateHolds++
	}
}

// releaseLateLocked gives up c's hold (its session ended before a transfer).
func (s *Server) releaseLateLocked(c *controlConn) {
	if c.lateHold {
		c.lateHold = false
		s.lateHolds--
		s.drainDoneLocked()
	}
}

// dropLateHolds gives up the holds of the late sessions that have not started a transfer within
// lateSessionGrace; their transfers are refused from now on.
func (s *Server) dropLateHolds() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lateHolds == 0 {
		return
	}
	s.logger.Info("late sessions did not start a transfer in time", slog.Int("late_sessions", s.lateHolds))
	for _, c := range s.conns {
		c.lateHold = false
	}
	s.lateHolds = 0
	s.drainDoneLocked()
}

// drainDoneLocked tells a waiting drain that no transfer runs and no late session is pending.
func (s *Server) drainDoneLocked() {
	if s.active == 0 && s.lateHolds == 0 && s.idle != nil {
		close(s.idle)
		s.idle = nil
	}
}

// uploadDirs are the directories uploads can be written to: the root, and homes configured
// outside it (absolute homes of the Go API).
func (s *Server) uploadDirs() []string {
	dirs := []string{s.root}
	homes := make([]string, 0, len(s.cfg.Users)+1)
	for _, u := range s.cfg.Users {
		homes = append(homes, u.Home)
	}
	if s.cfg.Anonymous != nil {
		homes = append(homes, s.cfg.Anonymous.Home)
	}
	for _, h := range homes {
		if filepath.IsAbs(h) && h != s.root && !strings.HasPrefix(h, s.root+string(filepath.Separator)) {
			dirs = append(dirs, h)
		}
	}
	return dirs
}
