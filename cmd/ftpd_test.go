package main

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kubeftp/ftp-operator/ftpd"
)

func TestParseFTPDFlags(t *testing.T) {
	root := t.TempDir()
	tests := []struct {
		name    string
		args    []string
		check   func(t *testing.T, o ftpdOptions)
		wantErr string // "" = success; "help" = flag.ErrHelp
	}{
		{
			name: "full standalone command line",
			args: []string{"--listen", "127.0.0.1:2121", "--root", root, "--user", "alice:secret", "--user", "guest:guest:ro",
				"--passive-ports", "30000-30009", "--public-host", "127.0.0.1", "--health-addr", "127.0.0.1:8081",
				"--drain-timeout", "5s", "--log-format", "text"},
			check: func(t *testing.T, o ftpdOptions) {
				c := o.cfg
				want := []ftpd.User{{Name: "alice", Password: "secret"}, {Name: "guest", Password: "guest", ReadOnly: true}}
				if len(c.Users) != 2 || c.Users[0] != want[0] || c.Users[1] != want[1] {
					t.Errorf("users = %+v", c.Users)
				}
				if c.PassivePorts != (ftpd.PortRange{Start: 30000, End: 30009}) {
					t.Errorf("passive ports = %v", c.PassivePorts)
				}
				if c.ListenAddr != "127.0.0.1:2121" || c.PublicHost != "127.0.0.1" || c.HealthAddr != "127.0.0.1:8081" || c.Root != root {
					t.Errorf("config = %+v", c)
				}
				if c.DrainTimeout != 5*time.Second || o.logFormat != "text" {
					t.Errorf("drain %v format %q", c.DrainTimeout, o.logFormat)
				}
			},
		},
		{
			name: "defaults",
			args: []string{"--root", root, "--user", "a:b"},
			check: func(t *testing.T, o ftpdOptions) {
				if o.cfg.ListenAddr != ftpd.DefaultListenAddr || o.cfg.DrainTimeout != ftpd.DefaultDrainTimeout || o.logFormat != "json" || !o.cfg.PassivePorts.IsZero() {
					t.Errorf("defaults = %+v, %q", o.cfg, o.logFormat)
				}
			},
		},
		{name: "bcrypt user", args: []string{"--root", root, "--user", "h:$2y$10$abcdefghijklmnopqrstuuABCDEFGHIJKLMNOPQRSTUVWXYZ012:ro"}, check: func(t *testing.T, o ftpdOptions) {
			if u := o.cfg.Users[0]; !u.ReadOnly || !strings.HasPrefix(u.Password, "$2y$10$") {
				t.Errorf("user = %+v", u)
			}
		}},
		{name: "FTPS and limits", args: []string{"--root", root, "--user", "a:b", "--tls-mode", "implicit", "--tls-cert", "/c.pem", "--tls-key", "/k.pem",
			"--tls-require-session-reuse", "--active-mode", "--max-sessions", "10", "--max-sessions-per-ip", "2"}, check: func(t *testing.T, o ftpdOptions) {
			c := o.cfg
			if c.TLS.Mode != ftpd.TLSImplicit || c.TLS.CertFile != "/c.pem" || c.TLS.KeyFile != "/k.pem" || !c.TLS.RequireSessionReuse || !c.ActiveMode ||
				c.Limits.MaxSessions != 10 || c.Limits.MaxSessionsPerIP != 2 {
				t.Errorf("config = %+v", c)
			}
		}},
		{name: "FTPS without a certificate", args: []string{"--root", root, "--user", "a:b", "--tls-mode", "explicit"}, wantErr: "certificate"},
		{name: "unknown FTPS mode", args: []string{"--root", root, "--user", "a:b", "--tls-mode", "sometimes"}, wantErr: "TLS mode"},
		{name: "per-IP limit above the global one", args: []string{"--root", root, "--user", "a:b", "--max-sessions", "2", "--max-sessions-per-ip", "3"}, wantErr: "per IP"},
		{name: "IPv6 prefix length", args: []string{"--root", root, "--user", "a:b", "--ipv6-prefix-length", "56"}, check: func(t *testing.T, o ftpdOptions) {
			if o.cfg.Limits.IPv6PrefixLength != 56 {
				t.Fatalf("prefix length %d", o.cfg.Limits.IPv6PrefixLength)
			}
		}},
		{name: "IPv6 prefix length too coarse", args: []string{"--root", root, "--user", "a:b", "--ipv6-prefix-length", "8"}, wantErr: "IPv6 prefix length 8"},
		{name: "keepalive", args: []string{"--root", root, "--user", "a:b", "--tcp-keepalive", "30s/5s/3"}, check: func(t *testing.T, o ftpdOptions) {
			if k := o.cfg.Limits.TCPKeepAlive; k != (ftpd.TCPKeepAlive{Idle: 30 * time.Second, Interval: 5 * time.Second, Count: 3}) {
				t.Fatalf("keepalive %+v", k)
			}
		}},
		{name: "keepalive default", args: []string{"--root", root, "--user", "a:b"}, check: func(t *testing.T, o ftpdOptions) {
			if k := o.cfg.Limits.TCPKeepAlive; k != (ftpd.TCPKeepAlive{Idle: time.Minute, Interval: 15 * time.Second, Count: 4}) {
				t.Fatalf("keepalive %+v", k)
			}
		}},
		{name: "keepalive off", args: []string{"--root", root, "--user", "a:b", "--tcp-keepalive", "off"}, check: func(t *testing.T, o ftpdOptions) {
			if k := o.cfg.Limits.TCPKeepAlive; !k.Off {
				t.Fatalf("keepalive %+v", k)
			}
		}},
		{name: "keepalive without a count", args: []string{"--root", root, "--user", "a:b", "--tcp-keepalive", "30s/5s"}, wantErr: "IDLE/INTERVAL/COUNT"},
		{name: "keepalive count above the kernel's limit", args: []string{"--root", root, "--user", "a:b", "--tcp-keepalive", "30s/5s/200"}, wantErr: "count: must be between 1 and 127"},
		{name: "keepalive idle below a second", args: []string{"--root", root, "--user", "a:b", "--tcp-keepalive", "100ms/5s/3"}, wantErr: "idle: must be between 1s"},
		{name: "copy paths", args: []string{"--root", root, "--user", "a:b", "--download-copy", "buffered", "--upload-copy", "splice"}, check: func(t *testing.T, o ftpdOptions) {
			if o.cfg.DownloadCopy != ftpd.CopyBuffered || o.cfg.UploadCopy != ftpd.CopySplice {
				t.Fatalf("copy paths %q, %q", o.cfg.DownloadCopy, o.cfg.UploadCopy)
			}
		}},
		{name: "copy paths default", args: []string{"--root", root, "--user", "a:b"}, check: func(t *testing.T, o ftpdOptions) {
			if o.cfg.DownloadCopy != ftpd.CopyAuto || o.cfg.UploadCopy != ftpd.CopyAuto {
				t.Fatalf("copy paths %q, %q", o.cfg.DownloadCopy, o.cfg.UploadCopy)
			}
		}},
		{name: "splice for downloads", args: []string{"--root", root, "--user", "a:b", "--download-copy", "splice"}, wantErr: `invalid download copy path "splice"`},
		{name: "sendfile for uploads", args: []string{"--root", root, "--user", "a:b", "--upload-copy", "sendfile"}, wantErr: `invalid upload copy path "sendfile"`},
		{name: "help", args: []string{"--help"}, wantErr: "help"},
		{name: "no user", args: []string{"--root", root}, wantErr: "no users"},
		{name: "no root", args: []string{"--user", "a:b"}, wantErr: "root"},
		{name: "user without password", args: []string{"--root", root, "--user", "alice"}, wantErr: "NAME:PASSWORD"},
		{name: "user with empty password", args: []string{"--root", root, "--user", "alice:"}, wantErr: "empty password"},
		{name: "user with slash", args: []string{"--root", root, "--user", "../etc:x"}, wantErr: "user name"},
		{name: "duplicate user", args: []string{"--root", root, "--user", "a:b", "--user", "a:c"}, wantErr: "twice"},
		{name: "reversed passive ports", args: []string{"--root", root, "--user", "a:b", "--passive-ports", "30009-30000"}, wantErr: "passive-ports"},
		{name: "passive port out of range", args: []string{"--root", root, "--user", "a:b", "--passive-ports", "65000-70000"}, wantErr: "out of range"},
		{name: "passive ports not numbers", args: []string{"--root", root, "--user", "a:b", "--passive-ports", "lots"}, wantErr: "passive-ports"},
		{name: "hostname public host", args: []string{"--root", root, "--user", "a:b", "--public-host", "ftp.example.com"}, wantErr: "public host"},
		{name: "bad log format", args: []string{"--root", root, "--user", "a:b", "--log-format", "xml"}, wantErr: "log format"},
		{name: "unknown flag", args: []string{"--root", root, "--user", "a:b", "--bogus"}, wantErr: "bogus"},
		{name: "stray argument", args: []string{"--root", root, "--user", "a:b", "extra"}, wantErr: "unexpected"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			o, err := parseFTPDFlags(tt.args, &out)
			switch tt.wantErr {
			case "":
				if err != nil {
					t.Fatal(err)
				}
				tt.check(t, o)
			case "help":
				if !errors.Is(err, flag.ErrHelp) {
					t.Fatalf("got %v, want flag.ErrHelp", err)
				}
				for _, f := range []string{"--config", "--listen", "--root", "--user", "--passive-ports", "--public-host", "--health-addr", "--drain-timeout", "--log-format"} {
					if !strings.Contains(out.String(), f) {
						t.Errorf("--help does not document %s", f)
					}
				}
			default:
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got %v, want an error containing %q", err, tt.wantErr)
				}
				if !errors.As(err, new(usageError)) {
					t.Fatalf("error %v is not a usageError", err)
				}
			}
		})
	}
}

func TestParseFTPDConfigFile(t *testing.T) {
	dir := t.TempDir()
	users := filepath.Join(dir, "users.yaml")
	config := filepath.Join(dir, "ftpd.yaml")
	hash := "$2y$10$" + strings.Repeat("a", 53)
	writeTestFile(t, users, "users:\n  - name: alice\n    passwordHash: '"+hash+"'\n    home: alice\n")
	writeTestFile(t, config, `listen: "127.0.0.1:2121"
opsListen: "127.0.0.1:8081"
dataRoot: `+filepath.Join(dir, "data")+`
usersFile: `+users+`
passive:
  listenedPorts: 30000-30009
  exposedPorts: 31000-31009
limits:
  maxSessionsPerIP: 3
log:
  format: text
  level: debug
`)
	o, err := parseFTPDFlags([]string{"--config", config}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	c := o.cfg
	if c.ListenAddr != "127.0.0.1:2121" || c.HealthAddr != "127.0.0.1:8081" || c.Limits.MaxSessionsPerIP != 3 ||
		c.PassiveExposedPorts != (ftpd.PortRange{Start: 31000, End: 31009}) || len(c.Users) != 1 || c.Users[0].Name != "alice" {
		t.Errorf("config = %+v", c)
	}
	if o.logFormat != "text" || o.logLevel != "debug" {
		t.Errorf("log settings %q %q", o.logFormat, o.logLevel)
	}

	_, err = parseFTPDFlags([]string{"--config", config, "--root", dir, "--user", "a:b"}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "--config cannot be combined with --root, --user") || !errors.As(err, new(usageError)) {
		t.Fatalf("mixing --config and standalone flags: %v", err)
	}
	_, err = parseFTPDFlags([]string{"--config", filepath.Join(dir, "missing.yaml")}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "missing.yaml") {
		t.Fatalf("missing config file: %v", err)
	}
	writeTestFile(t, config, "listen: nowhere\n")
	if _, err = parseFTPDFlags([]string{"--config", config}, &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "listen") {
		t.Fatalf("invalid config file: %v", err)
	}
}

func writeTestFile(t *testing.T, p, content string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestParseFTPDUsersFile: --users-file reads the config-file users format (bcrypt only, homes
// relative to --root) and can be combined with --user.
func TestParseFTPDUsersFile(t *testing.T) {
	dir := t.TempDir()
	hash := "$2y$10$abcdefghijklmnopqrstuuABCDEFGHIJKLMNOPQRSTUVWXYZ01234"
	good := filepath.Join(dir, "users.yaml")
	writeTestFile(t, good, "users:\n  - name: carol\n    passwordHash: \""+hash+"\"\n    home: shared/carol\n    readOnly: true\nanonymous:\n  enabled: true\n  home: pub\n")
	plain := filepath.Join(dir, "plain.yaml")
	writeTestFile(t, plain, "users:\n  - name: carol\n    passwordHash: secret\n    home: carol\n")
	tests := []struct {
		name    string
		args    []string
		wantErr string
		users   int
	}{
		{"users file", []string{"--root", dir, "--users-file", good}, "", 1},
		{"users file and --user", []string{"--root", dir, "--users-file", good, "--user", "a:b"}, "", 2},
		{"plain password in the file", []string{"--root", dir, "--users-file", plain}, "bcrypt", 0},
		{"missing file", []string{"--root", dir, "--users-file", filepath.Join(dir, "none.yaml")}, "users file", 0},
		{"same user twice", []string{"--root", dir, "--users-file", good, "--user", "carol:x"}, "twice", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := parseFTPDFlags(tt.args, &bytes.Buffer{})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.As(err, new(usageError)) {
					t.Fatalf("got %v, want a usage error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(o.cfg.Users) != tt.users || o.cfg.Users[0].Name != "carol" || !o.cfg.Users[0].ReadOnly || o.cfg.Users[0].Home != "shared/carol" || o.cfg.Users[0].Password != hash {
				t.Fatalf("users = %+v", o.cfg.Users)
			}
			if o.cfg.Anonymous == nil || o.cfg.Anonymous.Home != "pub" {
				t.Fatalf("anonymous = %+v", o.cfg.Anonymous)
			}
		})
	}
	var out bytes.Buffer
	_, _ = parseFTPDFlags([]string{"--help"}, &out)
	if !strings.Contains(out.String(), "--users-file") || !strings.Contains(out.String(), "visible to every local user") {
		t.Errorf("--help does not document --users-file and the --user exposure:\n%s", out.String())
	}
}
