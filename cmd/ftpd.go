package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/kubeftp/ftp-operator/ftpd"
)

// ftpdOptions is the parsed command line of `ftp-operator ftpd`.
type ftpdOptions struct {
	cfg        ftpd.Config
	configPath string // --config: cfg and the log settings come from the file
	usersFile  string // --users-file (standalone)
	logFormat  string
	logLevel   string
}

// userFlag collects repeated --user values.
type userFlag struct{ users *[]ftpd.User }

func (u userFlag) String() string { return "" }

func (u userFlag) Set(v string) error {
	user, err := ftpd.ParseUserSpec(v)
	if err != nil {
		return err
	}
	*u.users = append(*u.users, user)
	return nil
}

// portRangeFlag parses --passive-ports.
type portRangeFlag struct{ r *ftpd.PortRange }

func (p portRangeFlag) String() string {
	if p.r == nil {
		return ""
	}
	return p.r.String()
}

func (p portRangeFlag) Set(v string) error {
	r, err := ftpd.ParsePortRange(v)
	if err != nil {
		return err
	}
	*p.r = r
	return nil
}

// keepAliveFlag reads --tcp-keepalive: "off", or IDLE/INTERVAL/COUNT such as 60s/15s/4.
type keepAliveFlag struct{ k *ftpd.TCPKeepAlive }

func (f keepAliveFlag) String() string {
	switch {
	case f.k == nil:
		return ""
	case f.k.Off:
		return "off"
	case f.k.Idle == 0:
		return ""
	}
	return fmt.Sprintf("%s/%s/%d", f.k.Idle, f.k.Interval, f.k.Count)
}

func (f keepAliveFlag) Set(v string) error {
	if v == "off" {
		*f.k = ftpd.TCPKeepAlive{Off: true}
		return nil
	}
	parts := strings.Split(v, "/")
	if len(parts) != 3 {
		return fmt.Errorf("want off or IDLE/INTERVAL/COUNT such as 60s/15s/4, got %q", v)
	}
	idle, err1 := time.ParseDuration(parts[0])
	interval, err2 := time.ParseDuration(parts[1])
	count, err3 := strconv.Atoi(parts[2])
	if err := errors.Join(err1, err2, err3); err != nil {
		return fmt.Errorf("want off or IDLE/INTERVAL/COUNT such as 60s/15s/4, got %q: %w", v, err)
	}
	*f.k = ftpd.TCPKeepAlive{Idle: idle, Interval: interval, Count: count}
	return nil
}

const ftpdUsageHeader = `Usage: ftp-operator ftpd --config FILE
       ftp-operator ftpd [standalone flags]

Runs the FTP daemon, either from the config file the operator renders (ftpd.yaml, which names
the users file; both are re-read when they change, see docs/ftpd.md) or standalone, configured
from flags. The two are exclusive: with --config, no other flag is accepted.

Standalone, each user's home is ROOT/NAME (created when missing) and the user cannot leave it.
The daemon stops accepting sessions on SIGTERM or SIGINT, lets in-flight transfers finish (up to
the drain timeout) and exits with status 0.

Examples:
  ftp-operator ftpd --config /etc/ftpd/ftpd.yaml
  ftp-operator ftpd --listen 127.0.0.1:2121 --root /tmp/ftp --users-file users.yaml \
      --passive-ports 30000-30009 --public-host 127.0.0.1
  ftp-operator ftpd --root /tmp/ftp --user alice:secret   # quick tests only: ps shows the password

Flags:
`

// parseFTPDFlags parses the arguments of `ftp-operator ftpd`. On --help it prints the usage to
// stdout and returns flag.ErrHelp; bad input is returned as a usageError.
func parseFTPDFlags(args []string, stdout io.Writer) (ftpdOptions, error) {
	var o ftpdOptions
	fs := flag.NewFlagSet("ftpd", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&o.configPath, "config", "", "config `file` rendered by the operator (ftpd.yaml); excludes every other flag")
	fs.StringVar(&o.cfg.ListenAddr, "listen", ftpd.DefaultListenAddr, "`address` (host:port) of the FTP control connection")
	fs.StringVar(&o.cfg.Root, "root", "", "`directory` holding the users' homes (required)")
	fs.Var(userFlag{&o.cfg.Users}, "user", "a user as `NAME:PASSWORD[:ro]` (repeatable); PASSWORD may be a bcrypt hash ($2a$/$2b$/$2y$); :ro makes the user read-only. The value is visible to every local user in the process list (ps, /proc): prefer --users-file")
	fs.StringVar(&o.usersFile, "users-file", "", "users `file` in the config-file format (users.yaml: bcrypt hashes, homes relative to --root), read at start; keeps passwords out of the process list")
	fs.Var(portRangeFlag{&o.cfg.PassivePorts}, "passive-ports", "`START-END` port range for passive data connections (default: any free port)")
	fs.StringVar(&o.cfg.PublicHost, "public-host", "", "IPv4 `address` advertised in PASV replies (default: the local address of the client's control connection)")
	fs.StringVar(&o.cfg.HealthAddr, "health-addr", "", "`address` (host:port) serving HTTP /healthz, /readyz and /metrics (default: disabled)")
	fs.StringVar((*string)(&o.cfg.TLS.Mode), "tls-mode", string(ftpd.TLSDisabled), "FTPS `mode`: disabled, explicit (AUTH TLS offered), required (AUTH TLS and PROT P required) or implicit")
	fs.StringVar(&o.cfg.TLS.CertFile, "tls-cert", "", "PEM certificate `file` for FTPS (re-read when it changes)")
	fs.StringVar(&o.cfg.TLS.KeyFile, "tls-key", "", "PEM private key `file` for FTPS (re-read when it changes)")
	fs.BoolVar(&o.cfg.TLS.RequireSessionReuse, "tls-require-session-reuse", false, "refuse protected data connections that do not resume their control connection's TLS session (some clients never do: see docs/ftpd.md)")
	fs.BoolVar(&o.cfg.ActiveMode, "active-mode", false, "allow PORT/EPRT (only to the client's own address, ports >= 1024)")
	fs.IntVar(&o.cfg.Limits.MaxSessions, "max-sessions", 0, "maximum concurrent sessions (default 200)")
	fs.IntVar(&o.cfg.Limits.MaxSessionsPerIP, "max-sessions-per-ip", 0, "maximum concurrent sessions per client IP (default 20)")
	fs.IntVar(&o.cfg.Limits.IPv6PrefixLength, "ipv6-prefix-length", 0, "IPv6 clients sharing a prefix of this many `bits` count as one client for --max-sessions-per-ip and bans (default 64)")
	fs.DurationVar(&o.cfg.DrainTimeout, "drain-timeout", ftpd.DefaultDrainTimeout, "on SIGTERM/SIGINT, how long in-flight transfers may continue")
	fs.DurationVar(&o.cfg.ShutdownDelay, "shutdown-delay", ftpd.DefaultShutdownDelay, "on SIGTERM/SIGINT, how long new sessions are still accepted (reporting not ready) before the drain starts")
	fs.DurationVar(&o.cfg.IdleTimeout, "idle-timeout", ftpd.DefaultIdleTimeout, "disconnect sessions idle for this long")
	fs.DurationVar(&o.cfg.Limits.DataTimeout, "data-timeout", ftpd.DefaultDataTimeout, "end a transfer whose data connection moves no byte for this `duration`")
	fs.StringVar((*string)(&o.cfg.DownloadCopy), "download-copy", string(ftpd.CopyAuto), "how downloads move bytes on plain-TCP data connections: auto or sendfile (sendfile(2)), buffered (a 1 MiB buffer); TLS always buffers")
	fs.StringVar((*string)(&o.cfg.UploadCopy), "upload-copy", string(ftpd.CopyAuto), "how uploads move bytes on plain-TCP data connections: auto or splice (splice(2) through a pipe), buffered (a 1 MiB buffer); TLS and APPE always buffer")
	fs.Var(keepAliveFlag{&o.cfg.Limits.TCPKeepAlive}, "tcp-keepalive", "TCP keepalive of control and passive data connections as `IDLE/INTERVAL/COUNT`: the first probe after IDLE without traffic, then one every INTERVAL, COUNT unanswered probes end the connection; or off (default 60s/15s/4)")
	fs.StringVar(&o.logFormat, "log-format", "json", "log `format`: json or text")
	fs.StringVar(&o.logLevel, "log-level", "info", "log `level`: debug, info, warn or error")

	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printFlags(stdout, fs)
			return o, flag.ErrHelp
		}
		return o, usageError{err}
	}
	if fs.NArg() > 0 {
		return o, usageError{fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))}
	}
	if o.configPath != "" {
		return loadConfigFile(fs, o.configPath)
	}
	if o.usersFile != "" {
		users, anon, err := ftpd.LoadUsersFile(o.usersFile)
		if err != nil {
			return o, usageError{fmt.Errorf("--users-file: %w", err)}
		}
		o.cfg.Users = append(users, o.cfg.Users...)
		o.cfg.Anonymous = anon
	}
	if _, err := ftpd.NewLogger(io.Discard, o.logFormat, o.logLevel); err != nil {
		return o, usageError{err}
	}
	if err := o.cfg.Validate(); err != nil {
		return o, usageError{err}
	}
	return o, nil
}

// loadConfigFile fills the options from the config file, refusing standalone flags next to it:
// silently preferring one source over the other would hide a mistake.
func loadConfigFile(fs *flag.FlagSet, path string) (ftpdOptions, error) {
	var extra []string
	fs.Visit(func(f *flag.Flag) {
		if f.Name != "config" {
			extra = append(extra, "--"+f.Name)
		}
	})
	if len(extra) > 0 {
		return ftpdOptions{}, usageError{fmt.Errorf("--config cannot be combined with %s: the config file sets everything (standalone flags are for running without one)", strings.Join(extra, ", "))}
	}
	cfg, file, err := ftpd.LoadConfigFile(path)
	if err != nil {
		return ftpdOptions{}, fmt.Errorf("load config: %w", err)
	}
	return ftpdOptions{cfg: cfg, configPath: path, logFormat: file.Log.Format, logLevel: file.Log.Level}, nil
}

// printFlags prints the usage with GNU-style double-dash flag names.
func printFlags(w io.Writer, fs *flag.FlagSet) {
	fmt.Fprint(w, ftpdUsageHeader)
	fs.VisitAll(func(f *flag.Flag) {
		typ, usage := flag.UnquoteUsage(f)
		fmt.Fprintf(w, "  --%s %s\n      %s", f.Name, typ, usage)
		if f.DefValue != "" && f.DefValue != "0" && f.DefValue != "false" {
			fmt.Fprintf(w, " (default %s)", f.DefValue)
		}
		fmt.Fprintln(w)
	})
}

func runFTPD(args []string) error {
	o, err := parseFTPDFlags(args, os.Stdout)
	if err != nil {
		return err
	}
	logger, err := ftpd.NewLogger(os.Stderr, o.logFormat, o.logLevel)
	if err != nil {
		return usageError{err}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	return ftpd.Run(ctx, o.cfg, logger)
}
