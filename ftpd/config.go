// Package ftpd is the FTP daemon deployed by the operator (`ftp-operator ftpd`). It is built on
// github.com/fclairamb/ftpserverlib: this package provides the main driver (authentication,
// settings, passive address), a per-user filesystem confined to the user's home, atomic uploads,
// structured logs, health endpoints and a graceful drain.
//
// Files are split by responsibility: config.go (what the daemon is told), auth.go (users and
// passwords), fs.go (the confined filesystem), transfer.go (file handles used for RETR/STOR),
// passive.go (passive ports and the PASV address), driver.go (the ftpserverlib drivers),
// server.go (lifecycle and drain), health.go and log.go.
package ftpd

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// Defaults used when the corresponding Config field is zero.
const (
	DefaultListenAddr   = "127.0.0.1:2121"
	DefaultDrainTimeout = 30 * time.Second
	DefaultIdleTimeout  = 15 * time.Minute
	DefaultBanner       = "ftp-operator ftpd ready"
)

// Config is everything the daemon needs to run. In standalone mode it is filled from flags.
type Config struct {
	// ListenAddr is the control-connection address (host:port). Port 0 picks a free port.
	ListenAddr string
	// Root is the directory holding the users' homes. A user without an explicit Home gets
	// Root/<name>, created when missing.
	Root string
	// Users who may log in. At least one is required.
	Users []User
	// PassivePorts is the range of ports used for passive data connections. The zero value lets
	// the kernel pick any free port for each transfer.
	PassivePorts PortRange
	// PublicHost is the IPv4 address put in PASV replies. Empty means the local address of the
	// client's control connection.
	PublicHost string
	// HealthAddr is the address of the HTTP /healthz and /readyz endpoints; empty disables them.
	HealthAddr string
	// DrainTimeout bounds how long in-flight transfers may run after a shutdown is requested.
	DrainTimeout time.Duration
	// IdleTimeout disconnects sessions that send no command for this long.
	IdleTimeout time.Duration
	// Banner is the text of the 220 greeting.
	Banner string
}

// User is one account of the daemon.
type User struct {
	Name string
	// Password is either a bcrypt hash ($2a$, $2b$ or $2y$ prefix) or a plain-text password.
	Password string
	// ReadOnly users cannot upload, delete, rename, create directories or change attributes.
	ReadOnly bool
	// Home is the user's directory; empty means Config.Root/Name.
	Home string
}

// PortRange is an inclusive range of TCP ports. The zero value means "no range".
type PortRange struct {
	Start, End int
}

// IsZero reports whether no range is set.
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

// ParsePortRange parses "START-END" (or a single port "PORT"). An empty string is the zero range.
func ParsePortRange(s string) (PortRange, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return PortRange{}, nil
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
	if len(c.Users) == 0 {
		return errors.New("no users configured: add at least one --user NAME:PASSWORD[:ro]; refusing to start a server nobody can log in to")
	}
	seen := map[string]bool{}
	for _, u := range c.Users {
		if err := validateUserName(u.Name); err != nil {
			return err
		}
		if u.Password == "" {
			return fmt.Errorf("user %q has an empty password", u.Name)
		}
		if seen[u.Name] {
			return fmt.Errorf("user %q is configured twice", u.Name)
		}
		seen[u.Name] = true
	}
	if !c.PassivePorts.IsZero() {
		r := c.PassivePorts
		if r.Start < 1 || r.End > 65535 || r.Start > r.End {
			return fmt.Errorf("invalid passive port range %d-%d", r.Start, r.End)
		}
	}
	if c.PublicHost != "" {
		ip := net.ParseIP(c.PublicHost)
		if ip == nil || ip.To4() == nil {
			return fmt.Errorf("invalid public host %q: PASV needs an IPv4 address (hostnames are not supported yet)", c.PublicHost)
		}
		c.PublicHost = ip.To4().String()
	}
	if c.DrainTimeout < 0 {
		return errors.New("drain timeout must not be negative")
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = DefaultDrainTimeout
	}
	if c.IdleTimeout < 0 {
		return errors.New("idle timeout must not be negative")
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.Banner == "" {
		c.Banner = DefaultBanner
	}
	return nil
}
