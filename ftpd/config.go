// Package ftpd is the FTP daemon deployed by the operator (`ftp-operator ftpd`). It is built on
// github.com/fclairamb/ftpserverlib: this package provides the main driver (authentication,
// settings, passive address), a per-user filesystem confined to the user's home, atomic uploads,
// FTPS, limits against abuse, hot reload of its files, metrics, structured logs, health
// endpoints and a graceful drain.
//
// Files are split by responsibility: config.go (the runtime configuration), configfile.go (the
// config file and users file mapped to it), reload.go (what a reload replaces, and the file
// watcher), auth.go (users and passwords), fs.go (the confined filesystem), transfer.go (file
// handles used for RETR/STOR), quota.go (a full volume, per-user quotas and the usage they are
// checked against), passive.go (passive ports and the per-client PASV address), dataconn.go
// (the daemon's own passive listeners), control.go (the control-connection layer: TLS, command
// filter, login timeout), limits.go (session limits and bans), tls.go (certificates and TLS
// session reuse between control and data connections), metrics.go, driver.go (the ftpserverlib
// drivers), server.go (lifecycle and drain), health.go and log.go.
package ftpd

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/kubeftp/ftp-operator/ftpd/fileconfig"
)

// Defaults used when the corresponding Config field is zero (DrainTimeout: the flag's default;
// zero there means no drain). Those the config file shares come from ftpd/fileconfig, the one
// home of the daemon's defaults.
const (
	DefaultListenAddr     = "127.0.0.1:2121"
	DefaultDrainTimeout   = fileconfig.DefaultDrainTimeout
	DefaultShutdownDelay  = fileconfig.DefaultShutdownDelay
	DefaultDataTimeout    = fileconfig.DefaultDataTimeout
	DefaultIdleTimeout    = fileconfig.DefaultIdleTimeout
	DefaultBanner         = "ftp-operator ftpd ready"
	DefaultReloadInterval = 2 * time.Second
	// DefaultUsageScanInterval: walking a large home costs I/O, and changes made over FTP are
	// accounted at once; the walk only catches up with changes made by others on the volume.
	DefaultUsageScanInterval = 5 * time.Minute
)

// Config is everything the daemon needs to run. In standalone mode it is filled from flags; in
// config-file mode LoadConfigFile fills it from ftpd.yaml and the users file (see configfile.go).
//
// Some fields can change while the daemon runs (a config-file reload applies them to new
// sessions): Users, Anonymous, PublicHost, PassiveAddress, Limits and DisableAtomicUploads. The
// others are read once at start; a reload that changes them logs that a restart is needed.
type Config struct {
	// ListenAddr is the control-connection address (host:port). Port 0 picks a free port.
	ListenAddr string
	// Root is the directory holding the users' homes. A user without an explicit Home gets
	// Root/<name>, created when missing.
	Root string
	// Users who may log in. At least one is required unless Anonymous is set.
	Users []User
	// Anonymous, when set, lets "anonymous" and "ftp" log in read-only with any password.
	Anonymous *Anonymous
	// PassivePorts is the range of ports listened on for passive data connections. The zero
	// value lets the kernel pick any free port for each transfer.
	PassivePorts PortRange
	// PassiveExposedPorts are the ports written in PASV/EPSV replies, when something between the
	// clients and the daemon maps ports; same length as PassivePorts. Zero: same as PassivePorts.
	PassiveExposedPorts PortRange
	// DisablePassiveMultiplexing gives each passive transfer its own port instead of sharing a
	// port between client IPs (ftpserverlib's PassiveTransferPortMultiplexing).
	DisablePassiveMultiplexing bool
	// PublicHost is the IPv4 address put in PASV replies. Empty means PassiveAddress.Hostname if
	// set, else the local address of the client's control connection.
	PublicHost string
	// PassiveAddress holds the other ways to choose the PASV address (hostname, per-CIDR rules).
	PassiveAddress PassiveAddressRules
	// AllowDataFromOtherIP accepts passive data connections from an IP other than the control
	// connection's (needs DisablePassiveMultiplexing, whose port sharing is keyed by client IP).
	AllowDataFromOtherIP bool
	// Replicas shares PassivePorts with the other replicas of one server behind one address
	// (replicas.go, relay.go); nil: this daemon owns the whole range. The peers and the slices
	// can change on a reload; whether there are replicas at all, and the relay endpoint, cannot.
	Replicas *Replicas
	// ActiveMode enables PORT/EPRT, only ever to the control client's own IP and port >= 1024.
	ActiveMode bool
	// TLS configures FTPS.
	TLS TLSConfig
	// Limits protect the daemon against too many sessions and password guessing.
	Limits Limits
	// DisableAtomicUploads makes STOR write in place instead of through a temporary file.
	DisableAtomicUploads bool
	// DownloadCopy is how downloads move their bytes on plain-TCP data connections: CopyAuto
	// (empty) and CopySendfile use sendfile(2), CopyBuffered a 1 MiB buffer (copy.go). TLS data
	// connections always use the buffer.
	DownloadCopy CopyPath
	// UploadCopy is the same for uploads: CopyAuto (empty) and CopySplice use splice(2) through
	// a pipe, CopyBuffered the buffer. APPE always uses the buffer.
	UploadCopy CopyPath
	// HealthAddr is the address of the HTTP /healthz, /readyz and /metrics endpoints; empty
	// disables them.
	HealthAddr string
	// DrainTimeout bounds how long in-flight transfers may run after a shutdown is requested;
	// zero closes them at once.
	DrainTimeout time.Duration
	// ShutdownDelay is how long the server keeps accepting new sessions after a shutdown is
	// requested, reporting not ready, before it drains: a pod gets SIGTERM at the same time as
	// the Service's endpoints start dropping it, and kube-proxy on every node keeps sending it
	// new connections until it has synced (up to a second or so). Zero drains at once.
	ShutdownDelay time.Duration
	// IdleTimeout disconnects sessions that send no command for this long (whole seconds;
	// ftpserverlib counts in seconds).
	IdleTimeout time.Duration
	// Banner is the text of the 220 greeting.
	Banner string
	// ReloadInterval is how often the config file, the users file and the TLS certificate are
	// checked for changes.
	ReloadInterval time.Duration
	// UsageScanInterval is how often the homes of users with a quota are walked again, to see
	// changes made to the volume by something else than this daemon (quota.go).
	UsageScanInterval time.Duration

	// source is set by LoadConfigFile: where the config came from, to re-read it on change.
	source *fileSource
	// copySyscalls replace the system calls of the zero-copy paths in tests (copy.go); nil:
	// the real ones.
	copySyscalls *copySyscalls
}

// Anonymous is the optional read-only anonymous account.
type Anonymous struct {
	// Home is the anonymous users' directory: relative to Root, or absolute.
	Home string
}

// PassiveAddressRules choose the IPv4 address written in PASV replies, per client. The first
// override whose prefixes contain the client's IP wins; then Config.PublicHost; then Hostname,
// resolved and cached for HostnameTTL; then the control connection's local address.
type PassiveAddressRules struct {
	Hostname    string
	HostnameTTL time.Duration
	Overrides   []PassiveOverride
}

// PassiveOverride gives clients from some networks another passive address.
type PassiveOverride struct {
	Prefixes []netip.Prefix
	// Address is an IPv4 address or a hostname (resolved like PassiveAddress.Hostname).
	Address string
}

// TLSMode selects how FTPS is offered.
type TLSMode string

// TLS modes; the values are those of the config file.
const (
	TLSDisabled TLSMode = "disabled"
	TLSExplicit TLSMode = "explicit" // AUTH TLS offered
	TLSRequired TLSMode = "required" // AUTH TLS and PROT P required
	TLSImplicit TLSMode = "implicit" // TLS from the first byte of the control connection
)

// TLSConfig configures FTPS. The certificate and key files are re-read when they change.
type TLSConfig struct {
	Mode     TLSMode
	CertFile string
	KeyFile  string
	// MinVersion is tls.VersionTLS12 (the default when zero) or tls.VersionTLS13.
	MinVersion uint16
	// RequireSessionReuse refuses a protected data connection whose TLS handshake does not
	// resume the session of its own control connection (vsftpd's require_ssl_reuse).
	RequireSessionReuse bool
}

func (t TLSConfig) enabled() bool { return t.Mode != "" && t.Mode != TLSDisabled }

// Limits protect the daemon. Zero fields take the defaults of the config-file format.
type Limits struct {
	MaxSessions      int
	MaxSessionsPerIP int
	// LoginTimeout is how long a client has from connecting to logging in.
	LoginTimeout time.Duration
	// FailedLoginDelay is waited before answering a failed PASS.
	FailedLoginDelay time.Duration
	// BanAfterFailures failed logins from one IP within BanDuration ban it for BanDuration.
	BanAfterFailures int
	BanDuration      time.Duration
	// MaxCommandLength bounds a command line, CR LF included. Values above 4096 are capped at
	// 4096: ftpserverlib's own read buffer.
	MaxCommandLength int
	// IPv6PrefixLength: IPv6 clients in the same prefix of this length count as one client for
	// MaxSessionsPerIP, bans and the per-IP login gate (IPv4 addresses count alone).
	IPv6PrefixLength int
	// DataTimeout ends a transfer whose data connection moves no byte for this long.
	DataTimeout time.Duration
	// TCPKeepAlive probes quiet control and passive data connections (tcp.go).
	TCPKeepAlive TCPKeepAlive
}

// TCPKeepAlive is the kernel keepalive of control and passive data connections: a connection
// quiet for Idle gets a probe, then one every Interval, and Count unanswered probes end it.
// Zero fields take the config-file defaults (ftpd/fileconfig); the kernel counts whole seconds
// (Go rounds up).
type TCPKeepAlive struct {
	// Off sends no probes at all (Go's own 15 s default is turned off too). Behind NAT a
	// control connection that waits through a long transfer may then be forgotten.
	Off      bool
	Idle     time.Duration
	Interval time.Duration
	Count    int
}

// deadAfter is how long after its last packet a vanished peer's connection is given up:
// Idle + Interval x Count (0 when Off: never, by keepalive).
func (k TCPKeepAlive) deadAfter() time.Duration {
	if k.Off {
		return 0
	}
	return k.Idle + time.Duration(k.Count)*k.Interval
}

// clientGroup is the key under which ip is counted: the address itself for IPv4, its prefix
// of the configured length for IPv6.
func (l Limits) clientGroup(ip netip.Addr) netip.Addr {
	ip = ip.Unmap()
	if !ip.Is6() || l.IPv6PrefixLength <= 0 || l.IPv6PrefixLength >= 128 {
		return ip.WithZone("")
	}
	return netip.PrefixFrom(ip.WithZone(""), l.IPv6PrefixLength).Masked().Addr()
}

// maxLibraryLine is ftpserverlib's command read buffer: a longer line ends the session there.
const maxLibraryLine = 4096

// User is one account of the daemon.
type User struct {
	Name string
	// Password is either a bcrypt hash ($2a$, $2b$ or $2y$ prefix) or a plain-text password.
	Password string
	// ReadOnly users cannot upload, delete, rename, create directories or change attributes.
	ReadOnly bool
	// Home is the user's directory: empty means Config.Root/Name, a relative path is relative to
	// Config.Root, an absolute path is used as is.
	Home string
	// Quota limits what the user may store (quota.go).
	Quota Quota
}

// PortRange is an inclusive range of TCP ports, the same type as in the config file. The zero
// value means "no range".
type PortRange = fileconfig.PortRange

// ParsePortRange parses "START-END" (or a single port "PORT"). An empty string is the zero range.
func ParsePortRange(s string) (PortRange, error) {
	if strings.TrimSpace(s) == "" {
		return PortRange{}, nil
	}
	return fileconfig.ParsePortRange(s)
}

// ParseUserSpec parses the standalone --user value NAME:PASSWORD[:ro]. The name ends at the first
// colon; a trailing ":ro" makes the user read-only (":rw" is accepted and means the default), so a
// plain password may itself contain colons but may not end in ":ro" or ":rw". PASSWORD may be a
// bcrypt hash.
func ParseUserSpec(spec string) (User, error) {
	name, rest, found := strings.Cut(spec, ":")
	if !found {
		return User{}, errors.New("invalid --user value: want NAME:PASSWORD[:ro]")
	}
	u := User{Name: name, Password: rest}
	switch {
	case strings.HasSuffix(rest, ":ro"):
		u.Password, u.ReadOnly = strings.TrimSuffix(rest, ":ro"), true
	case strings.HasSuffix(rest, ":rw"):
		u.Password = strings.TrimSuffix(rest, ":rw")
	}
	if err := validateUserName(u.Name); err != nil {
		return User{}, fmt.Errorf("invalid --user value: %w", err)
	}
	if u.Password == "" {
		return User{}, fmt.Errorf("invalid --user value for %q: empty password", u.Name)
	}
	return u, nil
}

// validateUserName accepts names usable as a directory name: letters, digits, '.', '_', '-' and
// '@', not starting with '.', at most 64 bytes.
func validateUserName(name string) error {
	if name == "" {
		return errors.New("empty user name")
	}
	if len(name) > 64 {
		return fmt.Errorf("user name %q is longer than 64 bytes", name)
	}
	if name[0] == '.' || name[0] == '-' {
		return fmt.Errorf("user name %q must not start with %q", name, name[0])
	}
	for _, r := range name {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		case r == '.' || r == '_' || r == '-' || r == '@':
		default:
			return fmt.Errorf("user name %q contains %q (allowed: letters, digits, . _ - @)", name, r)
		}
	}
	return nil
}

// Validate checks the configuration and fills defaults. It does not touch the filesystem.
func (c *Config) Validate() error {
	if c.ListenAddr == "" {
		c.ListenAddr = DefaultListenAddr
	}
	if _, _, err := net.SplitHostPort(c.ListenAddr); err != nil {
		return fmt.Errorf("invalid listen address %q: %w", c.ListenAddr, err)
	}
	if c.HealthAddr != "" {
		if _, _, err := net.SplitHostPort(c.HealthAddr); err != nil {
			return fmt.Errorf("invalid health address %q: %w", c.HealthAddr, err)
		}
	}
	if c.Root == "" {
		return errors.New("no root directory: set --root DIR")
	}
	if err := c.validateUsers(); err != nil {
		return err
	}
	if err := c.validatePassive(); err != nil {
		return err
	}
	if err := c.validateReplicas(); err != nil {
		return err
	}
	if err := c.TLS.validate(); err != nil {
		return err
	}
	if err := validateCopyPath(&c.DownloadCopy, "download", CopySendfile); err != nil {
		return err
	}
	if err := validateCopyPath(&c.UploadCopy, "upload", CopySplice); err != nil {
		return err
	}
	if c.DrainTimeout < 0 || c.ShutdownDelay < 0 || c.IdleTimeout < 0 || c.ReloadInterval < 0 || c.UsageScanInterval < 0 {
		return errors.New("drain, idle, reload and usage scan durations must not be negative")
	}
	setDefault(&c.IdleTimeout, DefaultIdleTimeout)
	setDefault(&c.ReloadInterval, DefaultReloadInterval)
	setDefault(&c.UsageScanInterval, DefaultUsageScanInterval)
	if c.Banner == "" {
		c.Banner = DefaultBanner
	}
	return c.Limits.validate()
}

func (c *Config) validateUsers() error {
	// A config file may list no users yet (the operator renders an empty users file until users
	// are added); standalone, nobody could ever log in, so that is refused.
	if len(c.Users) == 0 && c.Anonymous == nil && c.source == nil {
		return errors.New("no users configured: add --users-file FILE or --user NAME:PASSWORD[:ro]; refusing to start a server nobody can log in to")
	}
	seen := map[string]bool{}
	for _, u := range c.Users {
		// The name becomes a directory name only when the home is derived from it.
		if u.Home == "" {
			if err := validateUserName(u.Name); err != nil {
				return err
			}
		} else if u.Name == "" {
			return errors.New("empty user name")
		}
		if u.Password == "" {
			return fmt.Errorf("user %q has an empty password", u.Name)
		}
		if seen[u.Name] {
			return fmt.Errorf("user %q is configured twice", u.Name)
		}
		if u.Quota.MaxBytes < 0 || u.Quota.MaxFiles < 0 || u.Quota.MaxFileSize < 0 {
			return fmt.Errorf("user %q has a negative quota", u.Name)
		}
		seen[u.Name] = true
	}
	if c.Anonymous != nil && c.Anonymous.Home == "" {
		return errors.New("anonymous access needs a home directory")
	}
	return nil
}

func (c *Config) validatePassive() error {
	for _, r := range []PortRange{c.PassivePorts, c.PassiveExposedPorts} {
		if !r.IsZero() && (r.Start < 1 || r.End > 65535 || r.Start > r.End) {
			return fmt.Errorf("invalid passive port range %d-%d", r.Start, r.End)
		}
	}
	if !c.PassiveExposedPorts.IsZero() && c.PassiveExposedPorts.Count() != c.PassivePorts.Count() {
		return fmt.Errorf("passive exposed ports %v and listened ports %v differ in length", c.PassiveExposedPorts, c.PassivePorts)
	}
	if c.PublicHost != "" {
		ip := net.ParseIP(c.PublicHost)
		if ip == nil || ip.To4() == nil {
			return fmt.Errorf("invalid public host %q: PASV needs an IPv4 address (use a passive hostname for names)", c.PublicHost)
		}
		c.PublicHost = ip.To4().String()
	}
	if c.AllowDataFromOtherIP && !c.PassivePorts.IsZero() && !c.DisablePassiveMultiplexing {
		return errors.New("allowing data connections from another IP needs passive multiplexing off: shared ports are handed out by client IP")
	}
	if c.PassiveAddress.HostnameTTL < 0 {
		return errors.New("passive hostname TTL must not be negative")
	}
	for i, o := range c.PassiveAddress.Overrides {
		if len(o.Prefixes) == 0 || o.Address == "" {
			return fmt.Errorf("passive address override %d needs prefixes and an address", i)
		}
		if ip, err := netip.ParseAddr(o.Address); err == nil && !ip.Is4() {
			return fmt.Errorf("passive address override %d: %s is not IPv4 (PASV carries IPv4 only)", i, o.Address)
		}
	}
	return nil
}

func (t *TLSConfig) validate() error {
	switch t.Mode {
	case "", TLSDisabled:
		t.Mode = TLSDisabled
		return nil
	case TLSExplicit, TLSRequired, TLSImplicit:
	default:
		return fmt.Errorf("invalid TLS mode %q: want disabled, explicit, required or implicit", t.Mode)
	}
	if t.CertFile == "" || t.KeyFile == "" {
		return fmt.Errorf("TLS mode %s needs a certificate file and a key file", t.Mode)
	}
	switch t.MinVersion {
	case 0:
		t.MinVersion = tls.VersionTLS12
	case tls.VersionTLS12, tls.VersionTLS13:
	default:
		return fmt.Errorf("invalid TLS minimum version %#x: want TLS 1.2 or 1.3", t.MinVersion)
	}
	return nil
}

func (l *Limits) validate() error {
	if l.MaxSessions < 0 || l.MaxSessionsPerIP < 0 || l.BanAfterFailures < 0 || l.MaxCommandLength < 0 ||
		l.LoginTimeout < 0 || l.FailedLoginDelay < 0 || l.BanDuration < 0 || l.DataTimeout < 0 {
		return errors.New("limits must not be negative")
	}
	setDefault(&l.MaxSessions, fileconfig.DefaultMaxSessions)
	setDefault(&l.MaxSessionsPerIP, min(fileconfig.DefaultMaxSessionsPerIP, l.MaxSessions))
	setDefault(&l.BanAfterFailures, fileconfig.DefaultBanAfterFailures)
	setDefault(&l.MaxCommandLength, fileconfig.DefaultMaxCommandLength)
	setDefault(&l.LoginTimeout, fileconfig.DefaultLoginTimeout)
	setDefault(&l.FailedLoginDelay, fileconfig.DefaultFailedLoginDelay)
	setDefault(&l.BanDuration, fileconfig.DefaultBanDuration)
	setDefault(&l.IPv6PrefixLength, fileconfig.DefaultIPv6PrefixLength)
	setDefault(&l.DataTimeout, fileconfig.DefaultDataTimeout)
	if ka := &l.TCPKeepAlive; !ka.Off {
		setDefault(&ka.Idle, fileconfig.DefaultTCPKeepAliveIdle)
		setDefault(&ka.Interval, fileconfig.DefaultTCPKeepAliveInterval)
		setDefault(&ka.Count, fileconfig.DefaultTCPKeepAliveCount)
		if problems := fileconfig.TCPKeepAliveProblems(ka.Idle, ka.Interval, ka.Count); len(problems) > 0 {
			return fmt.Errorf("TCP keepalive %s", strings.Join(problems, "; "))
		}
	}
	if l.IPv6PrefixLength < fileconfig.MinIPv6PrefixLength || l.IPv6PrefixLength > 128 {
		return fmt.Errorf("IPv6 prefix length %d is not between %d and 128", l.IPv6PrefixLength, fileconfig.MinIPv6PrefixLength)
	}
	if l.MaxSessionsPerIP > l.MaxSessions {
		return fmt.Errorf("max sessions per IP (%d) exceeds max sessions (%d)", l.MaxSessionsPerIP, l.MaxSessions)
	}
	if l.MaxCommandLength < 64 {
		return fmt.Errorf("max command length %d is below 64", l.MaxCommandLength)
	}
	l.MaxCommandLength = min(l.MaxCommandLength, maxLibraryLine)
	return nil
}

func setDefault[T int | time.Duration](p *T, def T) {
	if *p == 0 {
		*p = def
	}
}
