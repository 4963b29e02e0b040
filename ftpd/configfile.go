package ftpd

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"net/netip"
	"os"

	"github.com/kubeftp/ftp-operator/ftpd/fileconfig"
)

// PodIPEnv is the environment variable holding the pod IP for passive-address overrides with
// usePodIP (the operator sets it from the downward API).
const PodIPEnv = "POD_IP"

// fileSource remembers where a config came from, so that the watcher can tell when it changed.
type fileSource struct {
	configPath string
	usersPath  string
	// sum is the SHA-256 of the config file's content followed by the users file's: a change
	// of either (including Kubernetes' swap of the ..data symlink) changes it.
	sum [sha256.Size]byte
	// configDigest and usersDigest are fileconfig.ContentDigest of each file, reported on the
	// ops endpoint so that the operator can tell which version a pod serves.
	configDigest, usersDigest string
	// file is the parsed config (defaults filled), to tell which changes need a restart.
	file *fileconfig.Config
}

// loadedFiles is one consistent read of the config and users files.
type loadedFiles struct {
	file   *fileconfig.Config
	config Config
	source *fileSource
}

// LoadConfigFile reads ftpd.yaml and the users file it names, and maps them to a Config whose
// source is remembered: a Server started from it re-reads both files when they change. The
// returned fileconfig.Config gives the settings the daemon does not use itself (logging).
func LoadConfigFile(path string) (Config, *fileconfig.Config, error) {
	lf, err := loadFiles(path)
	if err != nil {
		return Config{}, nil, err
	}
	return lf.config, lf.file, nil
}

// loadFiles reads and validates both files. Errors name the file.
func loadFiles(path string) (*loadedFiles, error) {
	configData, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config file: %w", err)
	}
	fc, err := fileconfig.Parse(configData)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	usersData, err := os.ReadFile(fc.UsersFile)
	if err != nil {
		return nil, fmt.Errorf("read users file: %w", err)
	}
	users, err := fileconfig.ParseUsers(usersData)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", fc.UsersFile, err)
	}
	src := &fileSource{
		configPath: path, usersPath: fc.UsersFile,
		sum:          contentSum(configData, usersData),
		configDigest: fileconfig.ContentDigest(configData), usersDigest: fileconfig.ContentDigest(usersData),
		file: fc,
	}
	cfg, err := fromFileConfig(fc, users, os.Getenv(PodIPEnv))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if cfg.Replicas, err = replicasFromFile(fc.Passive.Replicas, os.Getenv(PodNameEnv)); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	cfg.source = src
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &loadedFiles{file: fc, config: cfg, source: src}, nil
}

func contentSum(parts ...[]byte) [sha256.Size]byte {
	h := sha256.New()
	for _, p := range parts {
		// The length prefix keeps "ab"+"c" and "a"+"bc" apart.
		fmt.Fprintf(h, "%d:", len(p))
		h.Write(p)
	}
	var out [sha256.Size]byte
	copy(out[:], h.Sum(nil))
	return out
}

// fromFileConfig maps the on-disk format to the runtime Config. Homes stay relative to Root.
func fromFileConfig(fc *fileconfig.Config, uf *fileconfig.UsersFile, podIP string) (Config, error) {
	cfg := Config{
		ListenAddr:                 fc.Listen,
		HealthAddr:                 fc.OpsListen,
		Root:                       fc.DataRoot,
		PassivePorts:               fc.Passive.ListenedPorts,
		PassiveExposedPorts:        fc.Passive.ExposedPorts,
		DisablePassiveMultiplexing: fc.Passive.Multiplexing != nil && !*fc.Passive.Multiplexing,
		AllowDataFromOtherIP:       fc.Passive.AllowDataFromOtherIP,
		PublicHost:                 fc.Passive.Address.Static,
		ActiveMode:                 fc.Active.Enabled,
		TLS: TLSConfig{
			Mode:     TLSMode(fc.TLS.Mode),
			CertFile: fc.TLS.CertFile,
			KeyFile:  fc.TLS.KeyFile,

			RequireSessionReuse: fc.TLS.RequireSessionReuse,
		},
		Limits: Limits{
			MaxSessions:      fc.Limits.MaxSessions,
			MaxSessionsPerIP: fc.Limits.MaxSessionsPerIP,
			LoginTimeout:     fc.Limits.LoginTimeout.Duration,
			FailedLoginDelay: fc.Limits.FailedLoginDelay.Duration,
			BanAfterFailures: fc.Limits.BanAfterFailures,
			BanDuration:      fc.Limits.BanDuration.Duration,
			MaxCommandLength: fc.Limits.MaxCommandLength,
			IPv6PrefixLength: fc.Limits.IPv6PrefixLength,
			DataTimeout:      fc.Limits.DataTimeout.Duration,
			TCPKeepAlive: TCPKeepAlive{
				Idle:     fc.Limits.TCPKeepAlive.Idle.Duration,
				Interval: fc.Limits.TCPKeepAlive.Interval.Duration,
				Count:    fc.Limits.TCPKeepAlive.Count,
			},
		},
		DisableAtomicUploads: fc.Uploads.Atomic != nil && !*fc.Uploads.Atomic,
		IdleTimeout:          fc.Limits.IdleTimeout.Duration,
		DrainTimeout:         fc.DrainTimeout.Duration, // set by Parse's defaults
		ShutdownDelay:        fc.ShutdownDelay.Duration,
	}
	if fc.TLS.MinVersion == "1.3" {
		cfg.TLS.MinVersion = tls.VersionTLS13
	}
	// Multiplexing hands shared ports out by client IP, so it cannot serve a data connection
	// from another IP: allowing those turns it off.
	if cfg.AllowDataFromOtherIP {
		cfg.DisablePassiveMultiplexing = true
	}
	addr := fc.Passive.Address
	cfg.PassiveAddress = PassiveAddressRules{Hostname: addr.Hostname, HostnameTTL: addr.HostnameTTL.Duration}
	for i, o := range addr.Overrides {
		po, err := overrideFromFile(o, podIP)
		if err != nil {
			return Config{}, fmt.Errorf("passive.address.overrides[%d]: %w", i, err)
		}
		cfg.PassiveAddress.Overrides = append(cfg.PassiveAddress.Overrides, po)
	}
	cfg.Users, cfg.Anonymous = usersFromFile(uf)
	return cfg, nil
}

// PodNameEnv names the variable holding the pod's name (the downward API): a replica finds
// itself among passive.replicas.peers by it unless passive.replicas.self is set.
const PodNameEnv = "POD_NAME"

// replicasFromFile reads the relay key and names this daemon.
func replicasFromFile(r *fileconfig.Replicas, podName string) (*Replicas, error) {
	if r == nil {
		return nil, nil
	}
	key, err := os.ReadFile(r.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("passive.replicas.keyFile: %w", err)
	}
	out := &Replicas{Self: r.Self, PortsPerReplica: r.PortsPerReplica, RelayListen: r.RelayListen, Key: bytes.TrimSpace(key)}
	if out.Self == "" {
		if podName == "" {
			return nil, fmt.Errorf("passive.replicas.self is empty and $%s is not set: the daemon cannot tell which peer it is", PodNameEnv)
		}
		out.Self = podName
	}
	for _, p := range r.Peers {
		out.Peers = append(out.Peers, Peer{Name: p.Name, RelayAddress: p.RelayAddress})
	}
	return out, nil
}

func usersFromFile(uf *fileconfig.UsersFile) ([]User, *Anonymous) {
	var users []User
	for _, u := range uf.Users {
		user := User{Name: u.Name, Password: u.PasswordHash, ReadOnly: u.ReadOnly, Home: u.Home}
		if u.Quota != nil {
			user.Quota = *u.Quota
		}
		users = append(users, user)
	}
	if a := uf.Anonymous; a != nil && a.Enabled {
		return users, &Anonymous{Home: a.Home}
	}
	return users, nil
}

// LoadUsersFile reads a users file in the config-file format (fileconfig.UsersFile: bcrypt
// hashes only, homes relative to the root) for standalone mode, where passwords given with
// --user would be visible to every local user in the process list. It is read once, at start.
func LoadUsersFile(path string) ([]User, *Anonymous, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("read users file: %w", err)
	}
	uf, err := fileconfig.ParseUsers(data)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	users, anon := usersFromFile(uf)
	return users, anon, nil
}

func overrideFromFile(o fileconfig.Override, podIP string) (PassiveOverride, error) {
	var po PassiveOverride
	for _, c := range o.CIDRs {
		p, err := netip.ParsePrefix(c)
		if err != nil {
			return po, fmt.Errorf("cidrs: %w", err)
		}
		po.Prefixes = append(po.Prefixes, p.Masked())
	}
	po.Address = o.Address
	if o.UsePodIP {
		ip, err := netip.ParseAddr(podIP)
		if err != nil || !ip.Is4() {
			return po, errors.New("usePodIP needs $" + PodIPEnv + " set to the pod's IPv4 address, got " + fmt.Sprintf("%q", podIP))
		}
		po.Address = ip.String()
	}
	return po, nil
}
