package ftpd

import (
	"crypto/tls"
	"errors"
	"log/slog"
	"net/netip"
	"strings"
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
	_ ftpserver.MainDriverExtensionPassiveWrapper  = (*mainDriver)(nil)
)

// session is the per-connection state stored with ClientContext.SetExtra.
type session struct {
	id       uint32
	clientIP string
	ip       netip.Addr
	start    time.Time
	conn     *controlConn // nil only if the connection was not accepted by our listener

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
	ip, _ := addrIP(cc.RemoteAddr())
	s := &session{id: cc.ID(), clientIP: ip.String(), ip: ip, start: time.Now()}
	s.logger = d.srv.logger.With(slog.Uint64("session", uint64(s.id)), slog.String("client_ip", s.clientIP))
	cc.SetExtra(s)
	d.srv.addSession(cc, s)
	d.srv.metrics.sessions.Inc()
	s.log().Info("session open", slog.String("local_addr", cc.LocalAddr().String()))
	return d.srv.cfg.Banner, nil
}

// ClientDisconnected implements MainDriver.
func (d *mainDriver) ClientDisconnected(cc ftpserver.ClientContext) {
	d.srv.removeSession(cc)
	d.srv.metrics.sessions.Dec()
	if s := sessionOf(cc); s != nil {
		s.log().Info("session close", slog.Float64("duration_s", time.Since(s.start).Seconds()))
	}
}

// AuthUser implements MainDriver. Failures are delayed (failedLoginDelay) and counted towards
// a ban of the client IP; the client cannot tell an unknown user from a wrong password.
func (d *mainDriver) AuthUser(cc ftpserver.ClientContext, user, pass string) (ftpserver.ClientDriver, error) {
	s := sessionOf(cc)
	if s == nil {
		return nil, errors.New("no session")
	}
	srv := d.srv
	dyn := srv.dyn.Load()
	// One password check at a time per client (group), so each sees the failures before it.
	group := s.ip
	if s.conn != nil {
		group = s.conn.group
	}
	leave := srv.logins.enter(group)
	if srv.bans.isBanned(group, time.Now()) {
		leave()
		// Banned while this session was open (guessing over parallel sessions).
		srv.metrics.loginFailed(user, "banned")
		s.log().Warn("login failed", slog.String("user", user), slog.String("reason", "banned"))
		return nil, errBadCredentials
	}
	acct, reason, err := dyn.users.authenticate(user, pass)
	if err != nil {
		srv.loginFailed(s, group, user, reason, dyn.limits)
		leave()
		// The delay is served outside the gate: it slows the guesser, not the IP's other logins.
		time.Sleep(dyn.limits.FailedLoginDelay)
		return nil, err
	}
	leave()
	home, err := acct.realHome(srv.root)
	var fsys *confinedFs
	if err == nil {
		fsys, err = newConfinedFs(home, acct.ReadOnly)
	}
	if err != nil {
		srv.metrics.loginFailed(user, "home_unavailable")
		s.log().Error("login failed", slog.String("user", user), slog.String("reason", "home_unavailable"), slog.Any("error", err))
		return nil, errBadCredentials
	}
	if s.conn != nil {
		s.conn.markLoggedIn()
	}
	name := acct.Name
	if acct.anonymous {
		name = "anonymous"
	}
	s.setUser(name, s.log().With(slog.String("user", name)))
	srv.metrics.logins.WithLabelValues("ok").Inc()
	s.log().Info("login ok", slog.Bool("read_only", acct.ReadOnly), slog.Bool("anonymous", acct.anonymous))
	fsys.usage = srv.usage
	drv := &clientDriver{confinedFs: fsys, fs: fsys, srv: srv, sess: s, quota: acct.Quota}
	if acct.Quota.Tracked() {
		drv.usage = srv.usage.tracker(home)
	}
	return drv, nil
}

// loginFailed logs and counts a failure and bans the IP when it reached the limit. The caller
// then waits the failed-login delay (which slows down guessing: ftpserverlib closes the
// connection after the reply, so each guess costs a new connection plus the delay).
func (srv *Server) loginFailed(s *session, group netip.Addr, user, reason string, lim Limits) {
	srv.metrics.loginFailed(user, reason)
	s.log().Warn("login failed", slog.String("user", user), slog.String("reason", reason))
	if srv.bans.recordFailure(group, time.Now(), lim) {
		srv.metrics.bans.Inc()
		s.log().Warn("client banned", slog.Int("failures", lim.BanAfterFailures), slog.Float64("ban_s", lim.BanDuration.Seconds()))
	}
}

// PostAuthMessage implements MainDriverExtensionPostAuthMessage: one message for every failure.
func (d *mainDriver) PostAuthMessage(_ ftpserver.ClientContext, _ string, authErr error) string {
	if authErr != nil {
		return "Login incorrect."
	}
	return "Login successful."
}

// GetTLSConfig implements MainDriver. ftpserverlib uses it for data connections only (PROT P
// and implicit TLS); it picks each session's config, which shares the control connection's
// ticket key (tls.go). The control connection's TLS is done by controlConn.
func (d *mainDriver) GetTLSConfig() (*tls.Config, error) {
	if d.srv.dataTLS == nil {
		return nil, errors.New("TLS is not configured on this server")
	}
	return d.srv.dataTLS, nil
}

// clientDriver is the ClientDriver of one logged-in session: the confined filesystem plus the
// file-transfer extension (transfer.go).
type clientDriver struct {
	*confinedFs
	fs   *confinedFs
	srv  *Server
	sess *session
	// quota is the account's as it logged in; usage is its home's tracker, nil without a
	// bytes or files limit.
	quota Quota
	usage *usageTracker
}

var (
	_ ftpserver.ClientDriver                      = (*clientDriver)(nil)
	_ ftpserver.ClientDriverExtentionFileTransfer = (*clientDriver)(nil)
	_ ftpserver.ClientDriverExtensionRemoveDir    = (*clientDriver)(nil)
	_ ftpserver.ClientDriverExtensionFileList     = (*clientDriver)(nil)
	_ ftpserver.ClientDriverExtensionSite         = (*clientDriver)(nil)
)

// Site implements ClientDriverExtensionSite to check the arguments of the SITE subcommands that
// take a path before ftpserverlib handles them: it indexes a missing path (SITE CHMOD 755
// panics, recovered as a 500) and reads an empty one as the current directory (SITE CHMOD 755
// followed by a space changes the directory's mode). A nil answer lets ftpserverlib proceed.
func (d *clientDriver) Site(param string) *ftpserver.AnswerCommand {
	sub, args, _ := strings.Cut(param, " ")
	switch strings.ToUpper(sub) {
	case "CHMOD":
		mode, target, _ := strings.Cut(args, " ")
		if mode == "" || strings.TrimSpace(target) == "" {
			return &ftpserver.AnswerCommand{Code: ftpserver.StatusSyntaxErrorParameters, Message: "SITE CHMOD needs a mode and a path: SITE CHMOD 644 file"}
		}
	case "MKDIR", "RMDIR":
		if strings.TrimSpace(args) == "" {
			return &ftpserver.AnswerCommand{Code: ftpserver.StatusSyntaxErrorParameters, Message: "SITE " + strings.ToUpper(sub) + " needs a path"}
		}
	}
	return nil
}
