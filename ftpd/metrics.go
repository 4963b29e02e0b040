package ftpd

import (
	"net/http"

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
	passivePorts     prometheus.Gauge
	bans             prometheus.Counter
	reloads          *prometheus.CounterVec // result
}

// Label values of the metrics, listed so that every series exists (at 0) from the start.
var (
	loginResults     = []string{"ok", "unknown_user", "bad_password", "banned", "home_unavailable"}
	rejectReasons    = []string{"banned", "max_sessions", "max_sessions_per_ip"}
	directions       = []string{"upload", "download"}
	transferResults  = []string{"ok", "aborted", "error"}
	reloadResults    = []string{"ok", "error"}
	metricsNamespace = "ftpd"
)

func newMetrics(bannedIPs func() float64, certNotAfter func() float64) *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
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
	m.passivePorts = prometheus.NewGauge(prometheus.GaugeOpts(opts("passive_ports_in_use",
		"Passive listeners currently reserved for a client.")))
	m.bans = prometheus.NewCounter(prometheus.CounterOpts(opts("bans_total",
		"Client IPs banned after too many failed logins.")))
	m.reloads = prometheus.NewCounterVec(prometheus.CounterOpts(opts("config_reloads_total",
		"Reloads of the config, users file or TLS certificate, by result.")), []string{"result"})
	banned := prometheus.NewGaugeFunc(prometheus.GaugeOpts(opts("banned_ips", "Client IPs currently banned.")), bannedIPs)
	notAfter := prometheus.NewGaugeFunc(prometheus.GaugeOpts(opts("tls_certificate_not_after_seconds",
		"Expiry (Unix time) of the TLS certificate in use; 0 without TLS.")), certNotAfter)

	m.reg.MustRegister(m.sessions, m.sessionsRejected, m.logins, m.transfers, m.transferBytes,
		m.passivePorts, m.bans, m.reloads, banned, notAfter,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for _, r := range loginResults {
		m.logins.WithLabelValues(r)
	}
	for _, r := range rejectReasons {
		m.sessionsRejected.WithLabelValues(r)
	}
	for _, d := range directions {
		m.transferBytes.WithLabelValues(d)
		for _, r := range transferResults {
			m.transfers.WithLabelValues(d, r)
		}
	}
	for _, r := range reloadResults {
		m.reloads.WithLabelValues(r)
	}
	return m
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}
