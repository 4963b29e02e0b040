package fileconfig

import (
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// settingPaths lists the JSON path of every setting of t, walking nested structs; types that
// marshal as one value (Duration, PortRange) and lists are settings themselves.
func settingPaths(t reflect.Type, prefix string) []string {
	var out []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "" || name == "-" {
			continue
		}
		ft := f.Type
		if ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if ft.Kind() == reflect.Struct && ft != reflect.TypeOf(Duration{}) && ft != reflect.TypeOf(PortRange{}) {
			out = append(out, settingPaths(ft, prefix+name+".")...)
			continue
		}
		out = append(out, prefix+name)
	}
	return out
}

// TestEverySettingIsClassified fails when a setting of ftpd.yaml says neither whether the daemon
// reloads it nor whether it needs a restart, and when the table names a setting that is gone.
func TestEverySettingIsClassified(t *testing.T) {
	paths := settingPaths(reflect.TypeOf(Config{}), "")
	for _, p := range paths {
		if ReloadOf(p) == 0 {
			t.Errorf("setting %q is not classified in settingReload (HotReload or NeedsRestart)", p)
		}
	}
	for entry := range settingReload {
		if !slices.ContainsFunc(paths, func(p string) bool { return p == entry || strings.HasPrefix(p, entry+".") }) {
			t.Errorf("settingReload names %q, which is no setting of Config", entry)
		}
	}
}

func TestRestartChangesAndDigest(t *testing.T) {
	base := func() *Config {
		c := &Config{Listen: ":2121", DataRoot: "/data", UsersFile: "/u/users.yaml",
			Passive: Passive{ListenedPorts: PortRange{Start: 30000, End: 30009}}}
		c.SetDefaults()
		return c
	}
	tests := []struct {
		name   string
		change func(*Config)
		want   []string
	}{
		{"nothing", func(*Config) {}, nil},
		{"PASV address", func(c *Config) { c.Passive.Address.Static = "203.0.113.9" }, nil},
		{"per-CIDR overrides", func(c *Config) {
			c.Passive.Address.Overrides = []Override{{CIDRs: []string{"10.0.0.0/8"}, UsePodIP: true}}
		}, nil},
		{"session limits", func(c *Config) { c.Limits.MaxSessions, c.Limits.MaxSessionsPerIP = 7, 2 }, nil},
		{"data timeout", func(c *Config) { c.Limits.DataTimeout = Duration{time.Minute} }, nil},
		{"keepalive", func(c *Config) {
			c.Limits.TCPKeepAlive.Idle, c.Limits.TCPKeepAlive.Count = Duration{30 * time.Second}, 3
		}, nil},
		{"idle timeout", func(c *Config) { c.Limits.IdleTimeout = Duration{time.Minute} }, []string{"limits.idleTimeout"}},
		{"passive ports", func(c *Config) { c.Passive.ListenedPorts.End = 30019 }, []string{"passive.listenedPorts"}},
		{"TLS mode", func(c *Config) { c.TLS.Mode = TLSExplicit }, []string{"tls.mode"}},
		{"drain timeout", func(c *Config) { c.DrainTimeout = &Duration{time.Minute} }, []string{"drainTimeout"}},
		{"listen and log", func(c *Config) { c.Listen, c.Log.Level = ":21", "debug" }, []string{"listen", "log.level"}},
	}
	baseDigest, err := RestartDigest(base())
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			next := base()
			tt.change(next)
			got, err := RestartChanges(base(), next)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("RestartChanges = %v, want %v", got, tt.want)
			}
			digest, err := RestartDigest(next)
			if err != nil {
				t.Fatal(err)
			}
			if same := digest == baseDigest; same != (len(tt.want) == 0) {
				t.Fatalf("restart digest unchanged = %v, but restart changes are %v", same, tt.want)
			}
		})
	}
}
