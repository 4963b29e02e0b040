package ftpd

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/kubeftp/ftp-operator/ftpd/fileconfig"
)

// dynamic is the part of the configuration a reload can replace. Sessions read it through an
// atomic pointer when they need it (a login, a PASV, a new upload), so a new version applies to
// what happens next and never disturbs what is running: an open session keeps the account,
// home and permissions it logged in with.
type dynamic struct {
	users         *userDB
	passive       *passiveAddr
	limits        Limits
	atomicUploads bool
	quotaDirs     map[string]bool // the homes whose usage is tracked (usageRegistry.retain)
	replicas      *replicaSet     // nil: this daemon owns the whole passive range
}

// buildDynamic prepares users (homes, hashes) and the passive-address policy of cfg. With
// strict, a home that cannot be created or resolved is an error; otherwise it is logged and
// only that user's logins fail until the directory appears.
func (s *Server) buildDynamic(cfg *Config, strict bool) (*dynamic, error) {
	accounts := make([]*account, 0, len(cfg.Users))
	quotaDirs := map[string]bool{}
	for _, u := range cfg.Users {
		a, err := s.prepareAccount(u, u.Name, strict)
		if err != nil {
			return nil, err
		}
		if u.Quota.Tracked() {
			if home, err := a.realHome(s.root); err == nil {
				a.usage = s.usage.tracker(home)
				quotaDirs[home] = true
			}
		}
		accounts = append(accounts, a)
	}
	users, err := newUserDB(accounts)
	if err != nil {
		return nil, err
	}
	if cfg.Anonymous != nil {
		anon, err := s.prepareAccount(User{Name: "anonymous", ReadOnly: true, Home: cfg.Anonymous.Home}, "", strict)
		if err != nil {
			return nil, err
		}
		anon.anonymous = true
		users.anon = anon
	}
	var replicas *replicaSet
	if cfg.Replicas != nil {
		if replicas, err = newReplicaSet(cfg.Replicas, cfg.PassivePorts); err != nil {
			return nil, err
		}
	}
	if (replicas == nil) != (s.cfg.Replicas == nil) {
		// The relay endpoint and the listeners on the whole range exist only when the daemon
		// started with replicas: such a change waits for a restart.
		replicas = s.dyn.Load().replicas
	}
	return &dynamic{
		replicas:      replicas,
		users:         users,
		passive:       newPassiveAddr(cfg, s.lookup),
		limits:        cfg.Limits,
		atomicUploads: !cfg.DisableAtomicUploads,
		quotaDirs:     quotaDirs,
	}, nil
}

// prepareAccount places u's home (empty: Root/defaultName; relative: under Root; absolute: as
// is) and creates it when missing.
func (s *Server) prepareAccount(u User, defaultName string, strict bool) (*account, error) {
	a := &account{User: u, confined: !filepath.IsAbs(u.Home)}
	switch {
	case u.Home == "":
		a.homePath = filepath.Join(s.root, defaultName)
	case a.confined:
		a.homePath = filepath.Join(s.root, u.Home)
	default:
		a.homePath = u.Home
	}
	err := os.MkdirAll(a.homePath, 0o755)
	if err == nil {
		_, err = a.realHome(s.root)
	}
	if err != nil {
		if strict {
			return nil, fmt.Errorf("home of user %q: %w", u.Name, err)
		}
		s.logger.Warn("home directory unavailable; the user cannot log in until it exists",
			slog.String("user", u.Name), slog.String("home", a.homePath), slog.Any("error", err))
	}
	return a, nil
}

// watch re-reads the config files and the TLS certificate every ReloadInterval until ctx ends.
// Polling the content (not inotify events) follows Kubernetes' atomic swap of the ..data
// symlink of a mounted ConfigMap or Secret without special cases, and the content hash keeps
// unchanged files from being re-applied.
func (s *Server) watch(ctx context.Context) {
	defer close(s.watcherDone)
	ticker := time.NewTicker(s.cfg.ReloadInterval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		if s.source != nil {
			s.reloadFiles()
		}
		if s.certs != nil {
			s.reloadCert()
		}
		s.bans.prune(time.Now(), s.dyn.Load().limits.BanDuration)
		s.usage.rescanDue(time.Now())
	}
}

// reloadFiles applies a changed config or users file. An invalid new version is logged and
// counted, and the previous one stays in force; it is not reported again until it changes.
func (s *Server) reloadFiles() {
	configData, err1 := os.ReadFile(s.source.configPath)
	usersData, err2 := os.ReadFile(s.source.usersPath)
	if err1 == nil && err2 == nil && contentSum(configData, usersData) == s.source.sum {
		return
	}
	lf, err := loadFiles(s.source.configPath)
	if err == nil {
		err = s.apply(lf)
	}
	if err != nil {
		// Remember what was read so a broken file is reported once, not every interval.
		s.source.sum = contentSum(configData, usersData)
		s.metrics.reloads.WithLabelValues("error").Inc()
		s.logger.Error("config reload rejected; the previous configuration stays in force", slog.Any("error", err))
		return
	}
	s.metrics.reloads.WithLabelValues("ok").Inc()
}

// apply installs the reloadable part of a newly loaded config.
func (s *Server) apply(lf *loadedFiles) error {
	cfg := lf.config
	dyn, err := s.buildDynamic(&cfg, false)
	if err != nil {
		return err
	}
	// Compared with the config the daemon started from: what it cannot apply stays reported
	// until a restart, however many reloads come in between.
	changed, err := fileconfig.RestartChanges(s.cfg.source.file, lf.file)
	if err != nil {
		return err
	}
	if len(changed) > 0 {
		s.logger.Warn("config changes that need a restart are not applied", slog.Any("fields", changed))
	}
	s.dyn.Store(dyn)
	s.usage.retain(dyn.quotaDirs)
	s.metrics.setUsers(declaredUsers(&cfg))
	s.source = lf.source
	s.servedConfig.Store(lf.source)
	s.logger.Info("config reloaded", slog.Int("users", len(cfg.Users)), slog.Bool("anonymous", cfg.Anonymous != nil))
	return nil
}

// reloadCert swaps in a changed certificate; a broken one is logged and the old one kept.
func (s *Server) reloadCert() {
	changed, err := s.certs.reload()
	switch {
	case err != nil:
		s.metrics.reloads.WithLabelValues("error").Inc()
		s.logger.Error("TLS certificate reload rejected; the previous certificate stays in use", slog.Any("error", err))
	case changed:
		s.metrics.reloads.WithLabelValues("ok").Inc()
		s.logger.Info("TLS certificate reloaded", slog.Time("not_after", time.Unix(int64(s.certs.notAfter()), 0)))
	}
}
