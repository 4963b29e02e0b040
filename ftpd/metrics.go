package ftpd

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the daemon's Prometheus metrics. Each Server has its own registry (not the
// global one), so several servers can run in one process, as they do in the tests.
type metrics struct {
	reg *prometheus.Registry

	sessions         prometheus.Gauge
	sessionsRejected *prometheus.CounterVec // reason
	logins           *prometheus.CounterVec // result
	transfers        *prometheus.CounterVec // direction, result
	transferBytes    *prometheus.CounterVec // direction
	copyBytes        *prometheus.CounterVec // direction, path
	passivePorts     prometheus.Gauge
	relayed          *prometheus.CounterVec
	bans             prometheus.Counter
	reloads          *prometheus.CounterVec // result
	tlsHandshakes    *prometheus.CounterVec // mode, reason
	dataTLS          *prometheus.CounterVec // resumed

	// Per-user series carry only declared user names (and "anonymous"): the set is bounded by
	// the users file, whereas a name typed by a client is not, so a name that is not declared
	// never becomes a label value.
	userTransfers     *prometheus.CounterVec // user, direction, result
	userTransferBytes *prometheus.CounterVec // user, direction
	userLoginFailures *prometheus.CounterVec // user, reason

	mu    sync.Mutex
	users map[string]bool // the names labelled now
}

// Label values of the metrics, listed so that every series exists (at 0) from the start.
var (
	loginResults = []string{"ok", "unknown_user", "bad_password", "banned", "home_unavailable"}
	// A declared user can fail for every reason but unknown_user.
	userLoginFailureReasons = []string{"bad_password", "banned", "home_unavailable"}
	rejectReasons           = []string{"banned", "max_sessions", "max_sessions_per_ip"}
	directions              = []string{"upload", "download"}
	transferResults         = []string{"ok", "aborted", "error"}
	reloadResults           = []string{"ok", "error"}
	// explicit covers AUTH TLS in the explicit and required modes.
	tlsHandshakeModes = []string{"explicit", "implicit"}
	// closed: the client went away before finishing (port scanners, TCP health checks of load
	// balancers); timeout: it stalled; protocol: the handshake itself failed (no common version
	// or cipher, the client rejected our certificate, not TLS at all): the one worth alerting on.
	tlsHandshakeReasons = []string{"closed", "timeout", "protocol"}
	metricsNamespace    = "ftpd"
)

// newMetrics creates the registry. passivePortCount is the size of the listened passive range
// (0 when any port is used), exported so that alerts can relate the ports in use to it.
func newMetrics(bannedIPs func() float64, certNotAfter func() float64, passivePortCount int) *metrics {
	m := &metrics{reg: prometheus.NewRegistry(), users: map[string]bool{}}
	opts := func(name, help string) prometheus.Opts {
		return prometheus.Opts{Namespace: metricsNamespace, Name: name, Help: help}
	}
	m.sessions = prometheus.NewGauge(prometheus.GaugeOpts(opts("sessions", "Control connections currently open.")))
	m.sessionsRejected = prometheus.NewCounterVec(prometheus.CounterOpts(opts("sessions_rejected_total",
		"Connections refused with 421 at connect, by reason.")), []string{"reason"})
	m.logins = prometheus.NewCounterVec(prometheus.CounterOpts(opts("logins_total",
		"Login attempts by result.")), []string{"result"})
	m.transfers = prometheus.NewCounterVec(prometheus.CounterOpts(opts("transfers_total",
		"File transfers (RETR, STOR, APPE) by direction and result.")), []string{"direction", "result"})
	m.transferBytes = prometheus.NewCounterVec(prometheus.CounterOpts(opts("transfer_bytes_total",
		"File bytes transferred by direction, counted when each transfer ends.")), []string{"direction"})
	m.copyBytes = prometheus.NewCounterVec(prometheus.CounterOpts(opts("transfer_copy_bytes_total",
		"File bytes moved by direction and copy path (sendfile, splice: zero-copy on plain TCP; buffered: TLS, APPE or configured), counted as they move.")),
		[]string{"direction", "path"})
	m.passivePorts = prometheus.NewGauge(prometheus.GaugeOpts(opts("passive_ports_in_use",
		"Passive listeners currently reserved for a client.")))
	m.relayed = prometheus.NewCounterVec(prometheus.CounterOpts(opts("relayed_data_connections_total",
		"Data connections carried between replicas: sent (reached this replica for another's port; relayed or failed) and received (for this replica's port; accepted or refused).")),
		[]string{"direction", "result"})
	m.bans = prometheus.NewCounter(prometheus.CounterOpts(opts("bans_total",
		"Client IPs banned after too many failed logins.")))
	m.reloads = prometheus.NewCounterVec(prometheus.CounterOpts(opts("config_reloads_total",
		"Reloads of the config, users file or TLS certificate, by result.")), []string{"result"})
	m.tlsHandshakes = prometheus.NewCounterVec(prometheus.CounterOpts(opts("tls_handshake_failures_total",
		"Failed TLS handshakes of control connections, by mode (explicit: AUTH TLS; implicit) and reason (closed, timeout, protocol).")),
		[]string{"mode", "reason"})
	m.dataTLS = prometheus.NewCounterVec(prometheus.CounterOpts(opts("tls_data_handshakes_total",
		"TLS handshakes of data connections, by whether they resumed the control connection's session; with tls.requireSessionReuse, resumed=\"false\" are refused.")),
		[]string{"resumed"})
	m.userTransfers = prometheus.NewCounterVec(prometheus.CounterOpts(opts("user_transfers_total",
		"File transfers by declared user, direction and result.")), []string{"user", "direction", "result"})
	m.userTransferBytes = prometheus.NewCounterVec(prometheus.CounterOpts(opts("user_transfer_bytes_total",
		"File bytes transferred by declared user and direction, counted when each transfer ends.")), []string{"user", "direction"})
	m.userLoginFailures = prometheus.NewCounterVec(prometheus.CounterOpts(opts("user_login_failures_total",
		"Failed logins to a declared user name, by reason; failures for undeclared names are only in ftpd_logins_total.")),
		[]string{"user", "reason"})
	passiveConfigured := prometheus.NewGauge(prometheus.GaugeOpts(opts("passive_ports_configured",
		"Ports of the passive range (0: any free port).")))
	passiveConfigured.Set(float64(passivePortCount))
	banned := prometheus.NewGaugeFunc(prometheus.GaugeOpts(opts("banned_ips", "Client IPs currently banned.")), bannedIPs)
	notAfter := prometheus.NewGaugeFunc(prometheus.GaugeOpts(opts("tls_certificate_not_after_seconds",
		"Expiry (Unix time) of the TLS certificate in use; 0 without TLS.")), certNotAfter)

	m.reg.MustRegister(m.sessions, m.sessionsRejected, m.logins, m.transfers, m.transferBytes, m.copyBytes,
		m.passivePorts, m.bans, m.reloads, m.tlsHandshakes, m.dataTLS, m.userTransfers, m.userTransferBytes,
		m.userLoginFailures, m.relayed, passiveConfigured, banned, notAfter,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for _, r := range loginResults {
		m.logins.WithLabelValues(r)
	}
	for _, dr := range [][2]string{{"sent", "relayed"}, {"sent", "failed"}, {"received", "accepted"}, {"received", "refused"}} {
		m.relayed.WithLabelValues(dr[0], dr[1])
	}
	for _, r := range rejectReasons {
		m.sessionsRejected.WithLabelValues(r)
	}
	for _, d := range directions {
		m.transferBytes.WithLabelValues(d)
		m.copyBytes.WithLabelValues(d, string(CopyBuffered))
		if d == "download" {
			m.copyBytes.WithLabelValues(d, string(CopySendfile))
		} else {
			m.copyBytes.WithLabelValues(d, string(CopySplice))
		}
		for _, r := range transferResults {
			m.transfers.WithLabelValues(d, r)
		}
	}
	for _, r := range reloadResults {
		m.reloads.WithLabelValues(r)
	}
	for _, resumed := range []bool{true, false} {
		m.dataTLS.WithLabelValues(strconv.FormatBool(resumed))
	}
	for _, mode := range tlsHandshakeModes {
		for _, r := range tlsHandshakeReasons {
			m.tlsHandshakes.WithLabelValues(mode, r)
		}
	}
	return m
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// declaredUsers are the label values of the per-user metrics for cfg: its users, and
// "anonymous" when anonymous access is on (every anonymous login is that one account).
func declaredUsers(cfg *Config) []string {
	names := make([]string, 0, len(cfg.Users)+1)
	for _, u := range cfg.Users {
		names = append(names, u.Name)
	}
	if cfg.Anonymous != nil {
		names = append(names, "anonymous")
	}
	return names
}

// setUsers makes the per-user series follow the declared users: a new user's series exist at 0
// from now on, and a removed user's are deleted, so the label set never outgrows the users file.
func (m *metrics) setUsers(names []string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	next := make(map[string]bool, len(names))
	for _, n := range names {
		next[n] = true
		if m.users[n] {
			continue
		}
		for _, d := range directions {
			m.userTransferBytes.WithLabelValues(n, d)
			for _, r := range transferResults {
				m.userTransfers.WithLabelValues(n, d, r)
			}
		}
		for _, r := range userLoginFailureReasons {
			m.userLoginFailures.WithLabelValues(n, r)
		}
	}
	for n := range m.users {
		if !next[n] {
			m.userTransfers.DeletePartialMatch(prometheus.Labels{"user": n})
			m.userTransferBytes.DeletePartialMatch(prometheus.Labels{"user": n})
			m.userLoginFailures.DeletePartialMatch(prometheus.Labels{"user": n})
		}
	}
	m.users = next
}

// userLabel is the label value for a name a client logged in (or tried to) with, and false for
// a name that is not declared now.
func (m *metrics) userLabel(name string) (string, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.users[name] {
		return name, true
	}
	if anonymousNames[strings.ToLower(name)] && m.users["anonymous"] {
		return "anonymous", true
	}
	return "", false
}

// loginFailed counts a failed login by reason, and for the user when the name is declared.
func (m *metrics) loginFailed(user, reason string) {
	m.logins.WithLabelValues(reason).Inc()
	if label, ok := m.userLabel(user); ok && reason != "unknown_user" {
		m.userLoginFailures.WithLabelValues(label, reason).Inc()
	}
}

// transferDone counts a finished transfer, for the server and for its user. A session whose
// user was removed by a reload keeps working but no longer adds to per-user series, which
// would otherwise come back after setUsers deleted them.
func (m *metrics) transferDone(user, direction, result string, bytes int64) {
	m.transfers.WithLabelValues(direction, result).Inc()
	m.transferBytes.WithLabelValues(direction).Add(float64(bytes))
	if label, ok := m.userLabel(user); ok {
		m.userTransfers.WithLabelValues(label, direction, result).Inc()
		m.userTransferBytes.WithLabelValues(label, direction).Add(float64(bytes))
	}
}

// quotaCollector exports the usage of the homes of users with a bytes or files quota, read at
// scrape time from the users in force: its label set is the declared users that have a quota.
// A user's series appear once the first walk of its home is done.
type quotaCollector struct{ s *Server }

var (
	quotaUsedBytes = prometheus.NewDesc(metricsNamespace+"_user_quota_used_bytes",
		"Size of the files in the home of a user with a quota (quota.go: the home's tree, whoever wrote it).", []string{"user"}, nil)
	quotaUsedFiles = prometheus.NewDesc(metricsNamespace+"_user_quota_used_files",
		"Number of files in the home of a user with a quota.", []string{"user"}, nil)
	quotaLimitBytes = prometheus.NewDesc(metricsNamespace+"_user_quota_limit_bytes",
		"The user's quota.maxBytes (only users that have one).", []string{"user"}, nil)
	quotaLimitFiles = prometheus.NewDesc(metricsNamespace+"_user_quota_limit_files",
		"The user's quota.maxFiles (only users that have one).", []string{"user"}, nil)
)

func (quotaCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- quotaUsedBytes
	ch <- quotaUsedFiles
	ch <- quotaLimitBytes
	ch <- quotaLimitFiles
}

func (c quotaCollector) Collect(ch chan<- prometheus.Metric) {
	for _, a := range c.s.dyn.Load().users.byName {
		if a.usage == nil {
			continue
		}
		bytes, files, known := a.usage.usage()
		if !known {
			continue
		}
		ch <- prometheus.MustNewConstMetric(quotaUsedBytes, prometheus.GaugeValue, float64(bytes), a.Name)
		ch <- prometheus.MustNewConstMetric(quotaUsedFiles, prometheus.GaugeValue, float64(files), a.Name)
		if a.Quota.MaxBytes > 0 {
			ch <- prometheus.MustNewConstMetric(quotaLimitBytes, prometheus.GaugeValue, float64(a.Quota.MaxBytes), a.Name)
		}
		if a.Quota.MaxFiles > 0 {
			ch <- prometheus.MustNewConstMetric(quotaLimitFiles, prometheus.GaugeValue, float64(a.Quota.MaxFiles), a.Name)
		}
	}
}

// dataTLSHandshake counts a data connection's TLS handshake that got as far as its verification.
func (m *metrics) dataTLSHandshake(resumed bool) {
	m.dataTLS.WithLabelValues(strconv.FormatBool(resumed)).Inc()
}

// tlsHandshakeFailed counts a failed handshake of a control connection.
func (m *metrics) tlsHandshakeFailed(mode string, err error) {
	m.tlsHandshakes.WithLabelValues(mode, handshakeFailureReason(err)).Inc()
}

func handshakeFailureReason(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed),
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return "closed"
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	default:
		return "protocol"
	}
}

// noteWriteError counts the failed handshake of an implicit-TLS control connection: Go's TLS
// server handshakes on the first write (the banner), so the handshake error is that write's
// error. Counted once per connection.
func (c *controlConn) noteWriteError(err error) {
	tc := c.tlsConn.Load()
	if err == nil || tc == nil || c.s.cfg.TLS.Mode != TLSImplicit || tc.ConnectionState().HandshakeComplete {
		return
	}
	if c.handshakeFailed.CompareAndSwap(false, true) {
		c.s.metrics.tlsHandshakeFailed("implicit", err)
		c.s.logger.Warn("TLS handshake failed", slog.String("client_ip", c.ip.String()), slog.String("mode", "implicit"), slog.Any("error", err))
	}
}
