package ftpd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	ftpserver "github.com/fclairamb/ftpserverlib"
)

// drainGrace is how long the server waits after the last transfer finished before it closes the
// remaining control connections, so that the final 226 reply of that transfer reaches its client.
const drainGrace = 200 * time.Millisecond

var errDraining = errors.New("server is shutting down")

// Server is one FTP daemon: a control listener, optional health endpoints, and the sessions.
type Server struct {
	cfg    Config
	logger *slog.Logger
	users  *userDB
	ctx    context.Context // for log calls; never cancelled

	ftp      *ftpserver.FtpServer
	ln       net.Listener
	healthLn net.Listener
	health   *http.Server

	ready atomic.Bool

	mu       sync.Mutex
	sessions map[uint32]ftpserver.ClientContext
	conns    map[*trackedConn]struct{} // open control connections
	active   int                       // in-flight file transfers
	draining bool                      // no new transfers
	idle     chan struct{}             // closed when active drops to 0 while draining
}

// NewServer validates cfg, creates missing home directories and prepares the users. It does not
// open any socket; call Listen and then Serve (or use Run).
func NewServer(cfg Config, logger *slog.Logger) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	root, err := filepath.Abs(cfg.Root)
	if err != nil {
		return nil, fmt.Errorf("root directory: %w", err)
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, fmt.Errorf("root directory: %w", err)
	}
	cfg.Root = root
	accounts := make([]*account, 0, len(cfg.Users))
	for _, u := range cfg.Users {
		home := u.Home
		if home == "" {
			home = filepath.Join(root, u.Name)
		}
		if err := os.MkdirAll(home, 0o755); err != nil {
			return nil, fmt.Errorf("home of user %q: %w", u.Name, err)
		}
		real, err := filepath.EvalSymlinks(home)
		if err != nil {
			return nil, fmt.Errorf("home of user %q: %w", u.Name, err)
		}
		if fi, err := os.Stat(real); err != nil || !fi.IsDir() {
			return nil, fmt.Errorf("home of user %q: %s is not a directory", u.Name, home)
		}
		accounts = append(accounts, &account{User: u, home: real})
	}
	users, err := newUserDB(accounts)
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg:      cfg,
		logger:   logger,
		users:    users,
		ctx:      context.Background(),
		sessions: map[uint32]ftpserver.ClientContext{},
		conns:    map[*trackedConn]struct{}{},
	}
	return s, nil
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
	lc := net.ListenConfig{}
	ln, err := lc.Listen(s.ctx, "tcp", s.cfg.ListenAddr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", s.cfg.ListenAddr, err)
	}
	s.ln = &trackingListener{Listener: ln, s: s}
	if s.cfg.HealthAddr != "" {
		hl, err := lc.Listen(s.ctx, "tcp", s.cfg.HealthAddr)
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
	s.ready.Store(true)
	s.logger.Info("ftpd started",
		slog.String("listen", s.Addr()),
		slog.String("health", s.HealthAddr()),
		slog.String("passive_ports", s.cfg.PassivePorts.String()),
		slog.String("public_host", s.cfg.PublicHost),
		slog.Int("users", len(s.cfg.Users)),
	)

	var err error
	select {
	case <-ctx.Done():
	case err = <-serveErr:
		if err == nil {
			err = errors.New("control listener closed unexpectedly")
		}
		s.logger.Error("accept loop stopped", slog.Any("error", err))
	}
	s.drain()
	return err
}

func (s *Server) drain() {
	s.ready.Store(false)
	start := time.Now()
	s.mu.Lock()
	s.draining = true
	active := s.active
	var idle chan struct{}
	if active > 0 {
		idle = make(chan struct{})
		s.idle = idle
	}
	s.mu.Unlock()
	s.logger.Info("draining", slog.Int("transfers", active), slog.Float64("timeout_s", s.cfg.DrainTimeout.Seconds()))

	if err := s.ftp.Stop(); err != nil && !errors.Is(err, ftpserver.ErrNotListening) {
		s.logger.Warn("closing control listener", slog.Any("error", err))
	}
	if idle != nil {
		timer := time.NewTimer(s.cfg.DrainTimeout)
		select {
		case <-idle:
			timer.Stop()
			time.Sleep(drainGrace)
		case <-timer.C:
			s.mu.Lock()
			left := s.active
			s.mu.Unlock()
			s.logger.Warn("drain timeout reached, closing transfers", slog.Int("transfers", left))
		}
	}

	// Close the remaining control connections. ftpserverlib's ClientContext.Close is not safe to
	// call concurrently with the session's own goroutine, so the sockets are closed directly and
	// each session ends when its next read fails.
	s.mu.Lock()
	conns := make([]*trackedConn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		_ = c.Close()
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
	return &ftpserver.Settings{
		Listener:                        s.ln,
		Banner:                          s.cfg.Banner,
		PassiveTransferPortRange:        passivePorts(s.cfg.PassivePorts),
		PassiveTransferPortMultiplexing: !s.cfg.PassivePorts.IsZero(),
		PublicIPResolver:                s.publicIP,
		IdleTimeout:                     int(s.cfg.IdleTimeout / time.Second),
		ConnectionTimeout:               30,
		DisableActiveMode:               true,
		ActiveConnectionsCheck:          ftpserver.IPMatchRequired,
		PasvConnectionsCheck:            ftpserver.IPMatchRequired,
		// Binary unless the client asks otherwise, and no line-ending rewriting even in TYPE A
		// (like vsftpd's defaults): files are stored and served byte for byte.
		DefaultTransferType:    ftpserver.TransferTypeBinary,
		DisableASCIIConversion: true,
	}
}

func (s *Server) addSession(cc ftpserver.ClientContext) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sessions[cc.ID()] = cc
}

func (s *Server) removeSession(cc ftpserver.ClientContext) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.sessions, cc.ID())
}

// transferStart registers an in-flight transfer; it fails while draining.
func (s *Server) transferStart() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.draining {
		return errDraining
	}
	s.active++
	return nil
}

func (s *Server) transferDone() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.active--
	if s.active == 0 && s.idle != nil {
		close(s.idle)
		s.idle = nil
	}
}

// trackingListener records the accepted control connections so that a drain can close them.
type trackingListener struct {
	net.Listener
	s *Server
}

func (l *trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	tc := &trackedConn{Conn: c, s: l.s}
	l.s.mu.Lock()
	l.s.conns[tc] = struct{}{}
	l.s.mu.Unlock()
	return tc, nil
}

// trackedConn is a control connection whose Close is idempotent.
type trackedConn struct {
	net.Conn
	s    *Server
	once sync.Once
}

func (c *trackedConn) Close() error {
	var err error
	c.once.Do(func() {
		err = c.Conn.Close()
		c.s.mu.Lock()
		delete(c.s.conns, c)
		c.s.mu.Unlock()
	})
	return err
}
