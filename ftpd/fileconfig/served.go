package fileconfig

import (
	"crypto/sha256"
	"encoding/hex"
)

// ServedConfigPath is the daemon's ops endpoint that tells which inputs it serves: its ftpd.yaml,
// its users file and its TLS certificate. The operator asks every ready pod before it reports
// Ready: a mounted ConfigMap or Secret reaches the pod only when the kubelet next refreshes the
// volume, so the pod alone knows when a new PASV address, a new password or a renewed
// certificate is in force.
const ServedConfigPath = "/config"

// ServedConfig is the JSON answer of ServedConfigPath. It carries a digest, never the content:
// the ops port is reachable by scrapers.
type ServedConfig struct {
	// ConfigSHA256 is ContentDigest of the ftpd.yaml in force; empty when the daemon runs from
	// flags.
	ConfigSHA256 string `json:"configSHA256"`
	// UsersSHA256 is ContentDigest of the users file in force; empty when the daemon runs
	// from flags.
	UsersSHA256 string `json:"usersSHA256"`
	// CertificateSHA256 is ContentDigest of the certificate file (PEM) whose certificate the
	// daemon presents; empty without TLS. A file it could not load leaves the previous one's.
	CertificateSHA256 string `json:"certificateSHA256,omitempty"`
}

// ContentDigest is the hex SHA-256 of a config file's bytes: what the operator rendered into
// the ConfigMap and what the daemon read from the mounted file are compared by it.
func ContentDigest(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}
