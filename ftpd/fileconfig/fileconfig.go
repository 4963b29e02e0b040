// Package fileconfig is the on-disk format of the daemon's configuration: the file the operator
// renders into a ConfigMap (ftpd.yaml) and the users file it renders into a Secret (users.yaml).
//
// Both sides use these types, so the operator cannot render a file the daemon does not
// understand: the controller builds a Config and calls Marshal; the daemon calls Parse, which
// rejects unknown fields and invalid values with errors that name the field.
package fileconfig

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"sigs.k8s.io/yaml"
)

// File names inside the mounted ConfigMap and Secret.
const (
	ConfigFileName = "ftpd.yaml"
	UsersFileName  = "users.yaml"
)

// Config is ftpd.yaml.
type Config struct {
	// Listen is the control connection's address, e.g. ":2121".
	Listen string `json:"listen"`
	// OpsListen serves /healthz, /readyz and /metrics over HTTP, e.g. ":8080".
	OpsListen string `json:"opsListen,omitempty"`
	// DataRoot is where the volumes are mounted; homes in the users file are relative to it.
	DataRoot string `json:"dataRoot"`

	Passive Passive `json:"passive"`
	Active  Active  `json:"active,omitzero"`
	// UsersFile is the path of users.yaml (a mounted Secret), re-read when it changes.
	UsersFile string  `json:"usersFile"`
	TLS       TLS     `json:"tls,omitzero"`
	Limits    Limits  `json:"limits,omitzero"`
	Uploads   Uploads `json:"uploads,omitzero"`
	// DrainTimeout bounds how long in-flight transfers may run after SIGTERM; 0s closes them at
	// once. Absent: DefaultDrainTimeout (a pointer, so that an explicit 0s survives a render).
	DrainTimeout *Duration `json:"drainTimeout,omitempty"`
	// ShutdownDelay is how long the daemon keeps accepting new sessions after SIGTERM, reporting
	// not ready, before it drains (the time the Service's endpoints take to drop the pod on
	// every node). Absent: DefaultShutdownDelay; 0s drains at once.
	ShutdownDelay *Duration `json:"shutdownDelay,omitempty"`
	Log           Log       `json:"log,omitzero"`
}

// Passive configures passive-mode data connections.
type Passive struct {
	// ListenedPorts are the ports the daemon listens on, "START-END".
	ListenedPorts PortRange `json:"listenedPorts"`
	// ExposedPorts are the ports written in PASV/EPSV replies; the same length as ListenedPorts.
	// They differ when something between the client and the pod maps ports. Defaults to
	// ListenedPorts.
	ExposedPorts PortRange `json:"exposedPorts,omitzero"`
	// Multiplexing lets clients with different IPs share a port (default true).
	Multiplexing *bool `json:"multiplexing,omitempty"`
	// Address chooses the address written in PASV replies, per client.
	Address PassiveAddress `json:"address,omitzero"`
	// AllowDataFromOtherIP accepts data connections from an IP other than the control client's.
	AllowDataFromOtherIP bool `json:"allowDataFromOtherIP,omitempty"`
	// Replicas shares the range between the replicas of one server behind one address; absent,
	// this daemon owns the whole range.
	Replicas *Replicas `json:"replicas,omitempty"`
}

// DefaultRelayListen is where a replica's relay endpoint listens unless set.
const DefaultRelayListen = ":2122"

// Replicas: each replica owns a slice of ListenedPorts and answers PASV/EPSV from it; every
// replica listens on the whole range and relays a data connection for another replica's port
// to that replica's relay endpoint (docs/design/multi-replica.md).
type Replicas struct {
	// Self is this daemon's name among Peers; empty: the environment variable POD_NAME.
	Self string `json:"self,omitempty"`
	// PortsPerReplica is each slice's size: Peers[i] owns ListenedPorts' ports
	// i*PortsPerReplica up to the next slice.
	PortsPerReplica int `json:"portsPerReplica"`
	// Peers are the replicas in slice order, this daemon included.
	Peers []Peer `json:"peers"`
	// RelayListen is this daemon's relay endpoint (host:port). Default DefaultRelayListen.
	RelayListen string `json:"relayListen,omitempty"`
	// KeyFile holds the key (at least 32 bytes) that signs relay headers; every replica mounts
	// the same.
	KeyFile string `json:"keyFile"`
}

// Peer is one replica as the others reach it.
type Peer struct {
	Name string `json:"name"`
	// RelayAddress reaches the peer's relay endpoint (host:port).
	RelayAddress string `json:"relayAddress"`
}

// PassiveAddress says which IPv4 address a client is told to connect to. The first override
// whose CIDRs contain the client's IP wins; otherwise Static, else Hostname (resolved and
// cached for HostnameTTL), else the control connection's local address.
type PassiveAddress struct {
	Static      string     `json:"static,omitempty"`
	Hostname    string     `json:"hostname,omitempty"`
	HostnameTTL Duration   `json:"hostnameTTL,omitzero"`
	Overrides   []Override `json:"overrides,omitempty"`
}

// Override gives clients from some networks another passive address.
type Override struct {
	CIDRs []string `json:"cidrs"`
	// Exactly one of Address (an IP or hostname) or UsePodIP (the pod IP from $POD_IP).
	Address  string `json:"address,omitempty"`
	UsePodIP bool   `json:"usePodIP,omitempty"`
}

// Active configures active mode (PORT/EPRT).
type Active struct {
	// Enabled allows active mode, only ever to the control client's own IP and never to ports
	// below 1024.
	Enabled bool `json:"enabled,omitempty"`
}

// TLSMode selects how FTPS is offered.
type TLSMode string

// TLS modes.
const (
	TLSDisabled TLSMode = "disabled"
	TLSExplicit TLSMode = "explicit" // AUTH TLS offered
	TLSRequired TLSMode = "required" // AUTH TLS required before login
	TLSImplicit TLSMode = "implicit" // TLS from the first byte on the control listener
)

// TLS configures FTPS; the certificate files are reloaded when they change.
type TLS struct {
	Mode       TLSMode `json:"mode,omitempty"`
	CertFile   string  `json:"certFile,omitempty"`
	KeyFile    string  `json:"keyFile,omitempty"`
	MinVersion string  `json:"minVersion,omitempty"` // "1.2" (default) or "1.3"
	// RequireSessionReuse refuses a protected data connection whose TLS session does not resume
	// its control connection's (vsftpd's require_ssl_reuse). Off by default: several common
	// clients never resume (docs/ftpd.md has the table).
	RequireSessionReuse bool `json:"requireSessionReuse,omitempty"`
}

// Limits protect the daemon.
type Limits struct {
	MaxSessions      int      `json:"maxSessions,omitempty"`
	MaxSessionsPerIP int      `json:"maxSessionsPerIP,omitempty"`
	IdleTimeout      Duration `json:"idleTimeout,omitzero"`
	LoginTimeout     Duration `json:"loginTimeout,omitzero"`
	FailedLoginDelay Duration `json:"failedLoginDelay,omitzero"`
	BanAfterFailures int      `json:"banAfterFailures,omitempty"`
	BanDuration      Duration `json:"banDuration,omitzero"`
	MaxCommandLength int      `json:"maxCommandLength,omitempty"`
	// IPv6PrefixLength is how many leading bits of an IPv6 client address make one client for
	// maxSessionsPerIP and bans: a host usually owns a whole /64, so counting each address
	// alone would let it open sessions and guess passwords from as many addresses as it likes.
	IPv6PrefixLength int `json:"ipv6PrefixLength,omitempty"`
	// DataTimeout ends a transfer whose data connection moves no byte for this long (vsftpd's
	// data_connection_timeout). The idle timeout does not apply while a transfer runs, so
	// without it a stalled data connection would hold its session, and delay a drain, forever.
	DataTimeout Duration `json:"dataTimeout,omitzero"`
	// TCPKeepAlive probes quiet control and passive data connections, so that a NAT gateway
	// or load balancer in front of the pod does not forget a control connection that waits
	// through a long transfer, and a client that vanished without a FIN is noticed.
	TCPKeepAlive TCPKeepAlive `json:"tcpKeepAlive,omitzero"`
}

// TCPKeepAlive is the kernel's keepalive of one connection (SO_KEEPALIVE with TCP_KEEPIDLE,
// TCP_KEEPINTVL and TCP_KEEPCNT). A connection quiet for Idle gets a probe, then one every
// Interval; Count unanswered probes in a row end it. The kernel counts whole seconds.
type TCPKeepAlive struct {
	Idle     Duration `json:"idle,omitzero"`
	Interval Duration `json:"interval,omitzero"`
	Count    int      `json:"count,omitempty"`
}

// DeadAfter is how long after the last sign of life a vanished peer's connection ends:
// Idle + Interval x Count.
func (k TCPKeepAlive) DeadAfter() time.Duration {
	return k.Idle.Duration + time.Duration(k.Count)*k.Interval.Duration
}

// Uploads configures how uploads are written.
type Uploads struct {
	// Atomic writes STOR to a temporary name and renames it on success (default true).
	Atomic *bool `json:"atomic,omitempty"`
}

// Log configures the daemon's logs.
type Log struct {
	Format string `json:"format,omitempty"` // json (default) or text
	Level  string `json:"level,omitempty"`  // debug, info (default), warn, error
}

// UsersFile is users.yaml.
type UsersFile struct {
	Users     []User     `json:"users,omitempty"`
	Anonymous *Anonymous `json:"anonymous,omitempty"`
}

// User is an account. Only bcrypt hashes are accepted here: the operator hashes plain passwords,
// so a plain password never reaches the daemon's files.
type User struct {
	Name         string `json:"name"`
	PasswordHash string `json:"passwordHash"`
	// Home is relative to the config's DataRoot.
	Home     string `json:"home"`
	ReadOnly bool   `json:"readOnly,omitempty"`
	// Quota limits what the user may store; absent: no limit.
	Quota *Quota `json:"quota,omitempty"`
}

// Quota limits a user's storage. Each limit is optional (0 or absent: none). Usage is that of
// the user's home tree, whoever wrote it (docs/ftpd.md, Quotas).
type Quota struct {
	// MaxBytes is the total size of the files in the home.
	MaxBytes int64 `json:"maxBytes,omitempty"`
	// MaxFiles is the number of files in the home.
	MaxFiles int64 `json:"maxFiles,omitempty"`
	// MaxFileSize is the largest file an upload (STOR, APPE, resumed STOR) may leave.
	MaxFileSize int64 `json:"maxFileSize,omitempty"`
}

// Tracked reports whether the quota needs the home's usage (a bytes or files limit).
func (q Quota) Tracked() bool { return q.MaxBytes > 0 || q.MaxFiles > 0 }

// Anonymous is read-only anonymous access.
type Anonymous struct {
	Enabled bool   `json:"enabled"`
	Home    string `json:"home"` // relative to DataRoot
}

// Defaults used when a field is omitted.
const (
	DefaultIdleTimeout      = 5 * time.Minute
	DefaultLoginTimeout     = 30 * time.Second
	DefaultFailedLoginDelay = time.Second
	DefaultBanAfterFailures = 5
	DefaultBanDuration      = 15 * time.Minute
	DefaultMaxSessions      = 200
	DefaultMaxSessionsPerIP = 20
	DefaultMaxCommandLength = 4096
	// DefaultDrainTimeout leaves a transfer of a few hundred MB over a slow line time to finish;
	// the FTPServer's drainTimeout default is the same.
	DefaultDrainTimeout = 2 * time.Minute
	// DefaultShutdownDelay covers the EndpointSlice controller's update and kube-proxy's next
	// sync (at most once a second) after a pod starts terminating; the operator adds it to the
	// pods' termination grace period.
	DefaultShutdownDelay = 2 * time.Second
	DefaultHostnameTTL   = time.Minute
	// DefaultIPv6PrefixLength counts an IPv6 /64 (one subnet, what a single site or host is
	// given) as one client.
	DefaultIPv6PrefixLength = 64
	// MinIPv6PrefixLength is the coarsest grouping accepted: a /32 is a whole provider.
	MinIPv6PrefixLength = 32
	// DefaultDataTimeout is vsftpd's data_connection_timeout (300 s): long enough for a client
	// or network that pauses (a slow disk on the client, TCP retransmission backoff), short
	// enough that a stalled transfer frees its session within minutes.
	DefaultDataTimeout = 5 * time.Minute
	// DefaultTCPKeepAliveIdle: the first probe of a quiet connection comes after a minute, well
	// before the idle timeouts of the NAT gateways and load balancers in front of pods (AWS NLB
	// and NAT gateway 350 s, Azure load balancer and NAT gateway 4 min, GCP Cloud NAT 20 min):
	// each probe and its answer count as traffic and restart their timers. Go's own default
	// (15 s) would do too, at four times the probes.
	DefaultTCPKeepAliveIdle = time.Minute
	// DefaultTCPKeepAliveInterval and DefaultTCPKeepAliveCount: a peer that stopped answering
	// is given up after 4 probes 15 s apart, so a vanished client's connection ends 2 minutes
	// after its last packet (idle + interval x count).
	DefaultTCPKeepAliveInterval = 15 * time.Second
	DefaultTCPKeepAliveCount    = 4
	// MaxTCPKeepAliveSeconds and MaxTCPKeepAliveCount are the kernel's limits
	// (MAX_TCP_KEEPIDLE, MAX_TCP_KEEPINTVL, MAX_TCP_KEEPCNT).
	MaxTCPKeepAliveSeconds = 32767
	MaxTCPKeepAliveCount   = 127
)

// Parse reads ftpd.yaml strictly (unknown fields are errors), fills defaults and validates.
func Parse(data []byte) (*Config, error) {
	var c Config
	if err := yaml.UnmarshalStrict(data, &c); err != nil {
		return nil, fmt.Errorf("parse %s: %w", ConfigFileName, err)
	}
	c.SetDefaults()
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("invalid %s: %w", ConfigFileName, err)
	}
	return &c, nil
}

// Marshal renders a Config as YAML with a stable field order, so unchanged input gives
// byte-identical output (the controller compares ConfigMaps by content).
func Marshal(v any) ([]byte, error) { return yaml.Marshal(v) }

// SetDefaults fills omitted fields.
func (c *Config) SetDefaults() {
	if c.Passive.ExposedPorts.IsZero() {
		c.Passive.ExposedPorts = c.Passive.ListenedPorts
	}
	if c.Passive.Multiplexing == nil {
		c.Passive.Multiplexing = ptr(true)
	}
	if r := c.Passive.Replicas; r != nil && r.RelayListen == "" {
		r.RelayListen = DefaultRelayListen
	}
	if c.Passive.Address.Hostname != "" && c.Passive.Address.HostnameTTL.Duration == 0 {
		c.Passive.Address.HostnameTTL.Duration = DefaultHostnameTTL
	}
	if c.TLS.Mode == "" {
		c.TLS.Mode = TLSDisabled
	}
	if c.TLS.MinVersion == "" {
		c.TLS.MinVersion = "1.2"
	}
	l := &c.Limits
	setInt(&l.MaxSessions, DefaultMaxSessions)
	setInt(&l.MaxSessionsPerIP, DefaultMaxSessionsPerIP)
	setInt(&l.BanAfterFailures, DefaultBanAfterFailures)
	setInt(&l.MaxCommandLength, DefaultMaxCommandLength)
	setInt(&l.IPv6PrefixLength, DefaultIPv6PrefixLength)
	setDuration(&l.IdleTimeout, DefaultIdleTimeout)
	setDuration(&l.LoginTimeout, DefaultLoginTimeout)
	setDuration(&l.FailedLoginDelay, DefaultFailedLoginDelay)
	setDuration(&l.BanDuration, DefaultBanDuration)
	setDuration(&l.DataTimeout, DefaultDataTimeout)
	setDuration(&l.TCPKeepAlive.Idle, DefaultTCPKeepAliveIdle)
	setDuration(&l.TCPKeepAlive.Interval, DefaultTCPKeepAliveInterval)
	setInt(&l.TCPKeepAlive.Count, DefaultTCPKeepAliveCount)
	if c.Uploads.Atomic == nil {
		c.Uploads.Atomic = ptr(true)
	}
	if c.DrainTimeout == nil {
		c.DrainTimeout = &Duration{Duration: DefaultDrainTimeout}
	}
	if c.ShutdownDelay == nil {
		c.ShutdownDelay = &Duration{Duration: DefaultShutdownDelay}
	}
	if c.Log.Format == "" {
		c.Log.Format = "json"
	}
	if c.Log.Level == "" {
		c.Log.Level = "info"
	}
}

// Validate reports every problem of the config at once, each naming its field.
func (c *Config) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		bad("listen", "want host:port, got %q", c.Listen)
	}
	if c.OpsListen != "" {
		if _, _, err := net.SplitHostPort(c.OpsListen); err != nil {
			bad("opsListen", "want host:port, got %q", c.OpsListen)
		}
	}
	if !strings.HasPrefix(c.DataRoot, "/") {
		bad("dataRoot", "must be an absolute path, got %q", c.DataRoot)
	}
	if c.UsersFile == "" {
		bad("usersFile", "is required")
	}
	p := c.Passive
	if p.ListenedPorts.IsZero() {
		bad("passive.listenedPorts", "is required")
	} else if p.ListenedPorts.Count() != p.ExposedPorts.Count() {
		bad("passive.exposedPorts", "has %d ports but listenedPorts has %d; they must be the same length", p.ExposedPorts.Count(), p.ListenedPorts.Count())
	}
	a := p.Address
	if a.Static != "" && a.Hostname != "" {
		bad("passive.address", "set static or hostname, not both")
	}
	if a.Static != "" {
		if ip, err := netip.ParseAddr(a.Static); err != nil || !ip.Is4() {
			bad("passive.address.static", "must be an IPv4 address (PASV replies carry IPv4 only), got %q", a.Static)
		}
	}
	for i, o := range a.Overrides {
		field := fmt.Sprintf("passive.address.overrides[%d]", i)
		if len(o.CIDRs) == 0 {
			bad(field+".cidrs", "needs at least one CIDR")
		}
		for _, cidr := range o.CIDRs {
			if _, err := netip.ParsePrefix(cidr); err != nil {
				bad(field+".cidrs", "%q is not a CIDR", cidr)
			}
		}
		if (o.Address != "") == o.UsePodIP {
			bad(field, "set exactly one of address or usePodIP")
		}
	}
	if r := p.Replicas; r != nil {
		if r.PortsPerReplica < 1 {
			bad("passive.replicas.portsPerReplica", "must be at least 1, got %d", r.PortsPerReplica)
		} else if need := r.PortsPerReplica * len(r.Peers); !p.ListenedPorts.IsZero() && need > p.ListenedPorts.Count() {
			bad("passive.replicas", "%d peers of %d ports need %d passive ports, listenedPorts has %d", len(r.Peers), r.PortsPerReplica, need, p.ListenedPorts.Count())
		}
		if len(r.Peers) == 0 {
			bad("passive.replicas.peers", "needs at least one peer")
		}
		for i, peer := range r.Peers {
			if peer.Name == "" {
				bad(fmt.Sprintf("passive.replicas.peers[%d].name", i), "is required")
			}
			if _, _, err := net.SplitHostPort(peer.RelayAddress); err != nil {
				bad(fmt.Sprintf("passive.replicas.peers[%d].relayAddress", i), "want host:port, got %q", peer.RelayAddress)
			}
		}
		if _, _, err := net.SplitHostPort(r.RelayListen); err != nil {
			bad("passive.replicas.relayListen", "want host:port, got %q", r.RelayListen)
		}
		if !strings.HasPrefix(r.KeyFile, "/") {
			bad("passive.replicas.keyFile", "must be an absolute path, got %q", r.KeyFile)
		}
	}
	switch c.TLS.Mode {
	case TLSDisabled:
	case TLSExplicit, TLSRequired, TLSImplicit:
		if c.TLS.CertFile == "" || c.TLS.KeyFile == "" {
			bad("tls", "mode %s needs certFile and keyFile", c.TLS.Mode)
		}
	default:
		bad("tls.mode", "want disabled, explicit, required or implicit, got %q", c.TLS.Mode)
	}
	if c.TLS.MinVersion != "1.2" && c.TLS.MinVersion != "1.3" {
		bad("tls.minVersion", "want \"1.2\" or \"1.3\", got %q", c.TLS.MinVersion)
	}
	l := c.Limits
	if l.MaxSessions < 1 || l.MaxSessionsPerIP < 1 || l.MaxSessionsPerIP > l.MaxSessions {
		bad("limits", "need 1 <= maxSessionsPerIP (%d) <= maxSessions (%d)", l.MaxSessionsPerIP, l.MaxSessions)
	}
	if l.MaxCommandLength < 64 {
		bad("limits.maxCommandLength", "must be at least 64, got %d", l.MaxCommandLength)
	}
	if l.IPv6PrefixLength < MinIPv6PrefixLength || l.IPv6PrefixLength > 128 {
		bad("limits.ipv6PrefixLength", "must be between %d and 128, got %d", MinIPv6PrefixLength, l.IPv6PrefixLength)
	}
	if l.BanAfterFailures < 1 {
		bad("limits.banAfterFailures", "must be at least 1, got %d", l.BanAfterFailures)
	}
	ka := l.TCPKeepAlive
	for _, p := range TCPKeepAliveProblems(ka.Idle.Duration, ka.Interval.Duration, ka.Count) {
		name, msg, _ := strings.Cut(p, ": ")
		bad("limits.tcpKeepAlive."+name, "%s", msg)
	}
	if c.Log.Format != "json" && c.Log.Format != "text" {
		bad("log.format", "want json or text, got %q", c.Log.Format)
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		bad("log.level", "want debug, info, warn or error, got %q", c.Log.Level)
	}
	return errors.Join(errs...)
}

// TCPKeepAliveProblems checks keepalive settings against the kernel's limits; each problem
// starts with the name of its setting ("idle: ..."). The daemon's flags use it too.
func TCPKeepAliveProblems(idle, interval time.Duration, count int) []string {
	var out []string
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"idle", idle}, {"interval", interval}} {
		if d.v < time.Second || d.v > MaxTCPKeepAliveSeconds*time.Second {
			out = append(out, fmt.Sprintf("%s: must be between 1s and %ds, got %s", d.name, MaxTCPKeepAliveSeconds, d.v))
		}
	}
	if count < 1 || count > MaxTCPKeepAliveCount {
		out = append(out, fmt.Sprintf("count: must be between 1 and %d, got %d", MaxTCPKeepAliveCount, count))
	}
	return out
}

// ParseUsers reads users.yaml strictly and validates it.
func ParseUsers(data []byte) (*UsersFile, error) {
	var u UsersFile
	if err := yaml.UnmarshalStrict(data, &u); err != nil {
		return nil, fmt.Errorf("parse %s: %w", UsersFileName, err)
	}
	if err := u.Validate(); err != nil {
		return nil, fmt.Errorf("invalid %s: %w", UsersFileName, err)
	}
	return &u, nil
}

// Validate checks names, hashes and homes.
func (u *UsersFile) Validate() error {
	var errs []error
	seen := map[string]bool{}
	for i, user := range u.Users {
		field := fmt.Sprintf("users[%d]", i)
		if user.Name == "" {
			errs = append(errs, fmt.Errorf("%s.name: is required", field))
		}
		if seen[user.Name] {
			errs = append(errs, fmt.Errorf("%s.name: %q appears more than once", field, user.Name))
		}
		seen[user.Name] = true
		if !IsBcryptHash(user.PasswordHash) {
			errs = append(errs, fmt.Errorf("%s.passwordHash: must be a bcrypt hash ($2a$, $2b$ or $2y$)", field))
		}
		if err := checkRelative(user.Home); err != nil {
			errs = append(errs, fmt.Errorf("%s.home: %w", field, err))
		}
		if q := user.Quota; q != nil {
			for _, l := range []struct {
				name  string
				value int64
			}{{"maxBytes", q.MaxBytes}, {"maxFiles", q.MaxFiles}, {"maxFileSize", q.MaxFileSize}} {
				if l.value < 0 {
					errs = append(errs, fmt.Errorf("%s.quota.%s: must not be negative, got %d", field, l.name, l.value))
				}
			}
		}
	}
	if u.Anonymous != nil && u.Anonymous.Enabled {
		if err := checkRelative(u.Anonymous.Home); err != nil {
			errs = append(errs, fmt.Errorf("anonymous.home: %w", err))
		}
	}
	return errors.Join(errs...)
}

// bcryptAlphabet is bcrypt's base64 alphabet.
const bcryptAlphabet = "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

// IsBcryptHash tells whether s is a bcrypt hash a login can be checked against: the $2a$, $2b$
// or $2y$ prefix, a two-digit cost bcrypt accepts (4 to 31), and 53 characters of bcrypt's
// base64 alphabet (22 of salt, 31 of hash). A string that only looks like one would be accepted
// and then fail every login of its user.
func IsBcryptHash(s string) bool {
	if len(s) != 60 {
		return false
	}
	if prefix := s[:4]; prefix != "$2a$" && prefix != "$2b$" && prefix != "$2y$" {
		return false
	}
	cost, err := strconv.Atoi(s[4:6])
	if err != nil || s[6] != '$' || cost < 4 || cost > 31 {
		return false
	}
	for _, r := range s[7:] {
		if !strings.ContainsRune(bcryptAlphabet, r) {
			return false
		}
	}
	return true
}

func checkRelative(p string) error {
	if p == "" {
		return errors.New("is required")
	}
	if strings.HasPrefix(p, "/") {
		return fmt.Errorf("must be relative to dataRoot, got %q", p)
	}
	for _, part := range strings.Split(p, "/") {
		if part == ".." {
			return fmt.Errorf("must not contain '..', got %q", p)
		}
	}
	return nil
}

// PortRange is an inclusive port range written "START-END" (or "PORT").
type PortRange struct {
	Start, End int
}

// IsZero reports an unset range.
func (r PortRange) IsZero() bool { return r.Start == 0 && r.End == 0 }

// Count is the number of ports in the range.
func (r PortRange) Count() int {
	if r.IsZero() {
		return 0
	}
	return r.End - r.Start + 1
}

func (r PortRange) String() string {
	if r.IsZero() {
		return ""
	}
	return fmt.Sprintf("%d-%d", r.Start, r.End)
}

// ParsePortRange parses "START-END" or a single port "PORT".
func ParsePortRange(s string) (PortRange, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return PortRange{}, errors.New("empty port range: want START-END")
	}
	lo, hi, found := strings.Cut(s, "-")
	if !found {
		hi = lo
	}
	start, err := parsePort(lo)
	if err != nil {
		return PortRange{}, fmt.Errorf("invalid port range %q: %w", s, err)
	}
	end, err := parsePort(hi)
	if err != nil {
		return PortRange{}, fmt.Errorf("invalid port range %q: %w", s, err)
	}
	if start > end {
		return PortRange{}, fmt.Errorf("invalid port range %q: start is greater than end", s)
	}
	return PortRange{Start: start, End: end}, nil
}

func parsePort(s string) (int, error) {
	p, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil {
		return 0, fmt.Errorf("%q is not a port number", s)
	}
	if p < 1 || p > 65535 {
		return 0, fmt.Errorf("port %d is out of range 1-65535", p)
	}
	return p, nil
}

// MarshalJSON writes "START-END".
func (r PortRange) MarshalJSON() ([]byte, error) { return json.Marshal(r.String()) }

// UnmarshalJSON reads "START-END".
func (r *PortRange) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("port range: want a string \"START-END\": %w", err)
	}
	parsed, err := ParsePortRange(s)
	if err != nil {
		return err
	}
	*r = parsed
	return nil
}

// Duration is a time.Duration written as a Go duration string ("30s", "5m").
type Duration struct{ time.Duration }

// IsZero lets omitzero drop unset durations.
func (d Duration) IsZero() bool { return d.Duration == 0 }

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// UnmarshalJSON reads a Go duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration: want a string such as \"30s\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("duration %q: %w", s, err)
	}
	if v < 0 {
		return fmt.Errorf("duration %q: must not be negative", s)
	}
	d.Duration = v
	return nil
}

func setInt(p *int, def int) {
	if *p == 0 {
		*p = def
	}
}

func setDuration(p *Duration, def time.Duration) {
	if p.Duration == 0 {
		p.Duration = def
	}
}

func ptr[T any](v T) *T { return &v }
