package ftpd

import (
	"encoding/json"
	"net/http"

	"github.com/kubeftp/ftp-operator/ftpd/fileconfig"
)

// healthHandler serves /healthz (the process is alive), /readyz (accepting sessions: false
// before the listener is up and while draining), /metrics (Prometheus) and /config (the digest
// of the config file in force, for the operator's readiness handshake).
func (s *Server) healthHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", s.metrics.handler())
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if !s.Ready() {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("not ready\n"))
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc(fileconfig.ServedConfigPath, func(w http.ResponseWriter, _ *http.Request) {
		served := fileconfig.ServedConfig{CertificateSHA256: s.certs.servedDigest()}
		if src := s.servedConfig.Load(); src != nil {
			served.ConfigSHA256, served.UsersSHA256 = src.configDigest, src.usersDigest
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(served)
	})
	return mux
}
