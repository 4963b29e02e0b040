package ftpd

import (
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"sync"
	"time"

	ftpserver "github.com/fclairamb/ftpserverlib"
)

// mainDriver implements ftpserverlib's MainDriver for a Server.
type mainDriver struct {
	srv *Server
}

var (
	_ ftpserver.MainDriver                         = (*mainDriver)(nil)
	_ ftpserver.MainDriverExtensionPostAuthMessage = (*mainDriver)(nil)
)

// session is the per-connection state stored with ClientContext.SetExtra.
type session struct {
	id       uint32
	clientIP string
	start    time.Time

	mu     sync.Mutex
	user   string
	logger *slog.Logger
}

func (s *session) setUser(name string, logger *slog.Logger) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.user, s.logger = name, logger
}

func (s *session) log() *slog.Logger {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.logger
}

func (s *session) getUser() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.user
}

func remoteIP(addr net.Addr) string {
	if tcp, ok := addr.(*net.TCPAddr); ok {
		return tcp.IP.String()
	}
	host, _, err := net.SplitHostPort(addr.String())
	if err != nil {
		return addr.String()
	}
	return host
}

func sessionOf(cc ftpserver.ClientContext) *session {
	s, _ := cc.Extra().(*session)
	return s
}

// GetSettings implements MainDriver.
func (d *mainDriver) GetSettings() (*ftpserver.Settings, error) {
	return d.srv.settings(), nil
}

// ClientConnected implements MainDriver: it registers the session and returns the banner.
func (d *mainDriver) ClientConnected(cc ftpserver.ClientContext) (string, error) {
	s := &session{id: cc.ID(), clientIP: remoteIP(cc.RemoteAddr()), start: time.Now()}
	s.logger = d.srv.logger.With(slog.Uint64("session", uint64(s.id)), slog.String("client_ip", s.clientIP))
	cc.SetExtra(s)
	d.srv.addSession(cc)
	s.log().Info("session open", slog.String("local_addr", cc.LocalAddr().String()))
	return d.srv.cfg.Banner, nil
}

// ClientDisconnected implements MainDriver.
func (d *mainDriver) ClientDisconnected(cc ftpserver.ClientContext) {
	d.srv.removeSession(cc)
	if s := sessionOf(cc); s != nil {
		s.log().Info("session close", slog.Float64("duration_s", time.Since(s.start).Seconds()))
	}
}

// AuthUser implements MainDriver.
func (d *mainDriver) AuthUser(cc ftpserver.ClientContext, user, pass string) (ftpserver.ClientDriver, error) {
	s := sessionOf(cc)
	if s == nil {
		return nil, errors.New("no session")
	}
	acct, reason, err := d.srv.users.authenticate(user, pass)
	if err != nil {
		s.log().Warn("login failed", slog.String("user", user), slog.String("reason", reason))
		return nil, err
	}
	fsys, err := newConfinedFs(acct.home, acct.ReadOnly)
	if err != nil {
		s.log().Error("login failed", slog.String("user", user), slog.String("reason", "home_unavailable"), slog.Any("error", err))
		return nil, errBadCredentials
	}
	s.setUser(acct.Name, s.log().With(slog.String("user", acct.Name)))
	s.log().Info("login ok", slog.Bool("read_only", acct.ReadOnly))
	return &clientDriver{confinedFs: fsys, fs: fsys, srv: d.srv, sess: s}, nil
}

// PostAuthMessage implements MainDriverExtensionPostAuthMessage: one message for every failure.
func (d *mainDriver) PostAuthMessage(_ ftpserver.ClientContext, _ string, authErr error) string {
	if authErr != nil {
		return "Login incorrect."
	}
	return "Login successful."
}

// GetTLSConfig implements MainDriver. FTPS is not available yet.
func (d *mainDriver) GetTLSConfig() (*tls.Config, error) {
	return nil, errors.New("TLS is not configured on this server")
}

// clientDriver is the ClientDriver of one logged-in session: the confined filesystem plus the
// file-transfer extension (transfer.go).
type clientDriver struct {
	*confinedFs
	fs   *confinedFs
	srv  *Server
	sess *session
}

var (
	_ ftpserver.ClientDriver                      = (*clientDriver)(nil)
	_ ftpserver.ClientDriverExtentionFileTransfer = (*clientDriver)(nil)
	_ ftpserver.ClientDriverExtensionRemoveDir    = (*clientDriver)(nil)
	_ ftpserver.ClientDriverExtensionFileList     = (*clientDriver)(nil)
)
