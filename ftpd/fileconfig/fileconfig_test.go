package fileconfig

import (
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

const validConfig = `
listen: ":2121"
opsListen: ":8080"
dataRoot: /data
usersFile: /etc/ftpd/users/users.yaml
passive:
  listenedPorts: 30000-30019
  address:
    hostname: lb.example.com
    overrides:
      - cidrs: [10.0.0.0/8]
        usePodIP: true
tls:
  mode: required
  certFile: /etc/ftpd/tls/tls.crt
  keyFile: /etc/ftpd/tls/tls.key
`

func TestParseFillsDefaults(t *testing.T) {
	c, err := Parse([]byte(validConfig))
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"exposedPorts follow listenedPorts", c.Passive.ExposedPorts, PortRange{30000, 30019}},
		{"multiplexing on", *c.Passive.Multiplexing, true},
		{"hostname TTL", c.Passive.Address.HostnameTTL.Duration, DefaultHostnameTTL},
		{"atomic uploads", *c.Uploads.Atomic, true},
		{"TLS 1.2", c.TLS.MinVersion, "1.2"},
		{"TLS session reuse not required", c.TLS.RequireSessionReuse, false},
		{"idle timeout", c.Limits.IdleTimeout.Duration, DefaultIdleTimeout},
		{"ban after", c.Limits.BanAfterFailures, DefaultBanAfterFailures},
		{"IPv6 prefix length", c.Limits.IPv6PrefixLength, DefaultIPv6PrefixLength},
		{"data timeout", c.Limits.DataTimeout.Duration, DefaultDataTimeout},
		{"keepalive idle", c.Limits.TCPKeepAlive.Idle.Duration, DefaultTCPKeepAliveIdle},
		{"keepalive interval", c.Limits.TCPKeepAlive.Interval.Duration, DefaultTCPKeepAliveInterval},
		{"keepalive count", c.Limits.TCPKeepAlive.Count, DefaultTCPKeepAliveCount},
		{"keepalive gives up after", c.Limits.TCPKeepAlive.DeadAfter(), 2 * time.Minute},
		{"drain", c.DrainTimeout.Duration, DefaultDrainTimeout},
		{"log format", c.Log.Format, "json"},
	}
	for _, ch := range checks {
		if ch.got != ch.want {
			t.Errorf("%s: got %v, want %v", ch.name, ch.got, ch.want)
		}
	}
}

func TestMarshalRoundTrips(t *testing.T) {
	c, err := Parse([]byte(validConfig))
	if err != nil {
		t.Fatal(err)
	}
	out, err := Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	again, err := Parse(out)
	if err != nil {
		t.Fatalf("re-parse of marshalled config: %v\n%s", err, out)
	}
	out2, _ := Marshal(again)
	if string(out) != string(out2) {
		t.Fatalf("marshal is not stable:\n%s\n---\n%s", out, out2)
	}
	if !strings.Contains(string(out), "listenedPorts: 30000-30019") || !strings.Contains(string(out), "idleTimeout: 5m0s") {
		t.Fatalf("unexpected rendering:\n%s", out)
	}
}

func TestParseRejectsBadConfigs(t *testing.T) {
	cases := []struct {
		name, edit, want string
	}{
		{"unknown field", "bogus: 1", `unknown field "bogus"`},
		{"reversed range", "passive: {listenedPorts: 30019-30000}", "start is greater than end"},
		{"range lengths differ", "passive: {listenedPorts: 30000-30019, exposedPorts: 31000-31004}", "passive.exposedPorts: has 5 ports but listenedPorts has 20"},
		{"IPv6 static", "passive: {listenedPorts: 30000-30001, address: {static: '2001:db8::1'}}", "must be an IPv4 address"},
		{"static and hostname", "passive: {listenedPorts: 30000-30001, address: {static: 192.0.2.1, hostname: x.example}}", "set static or hostname, not both"},
		{"bad CIDR", "passive: {listenedPorts: 30000-30001, address: {overrides: [{cidrs: [nope], usePodIP: true}]}}", `"nope" is not a CIDR`},
		{"override with both", "passive: {listenedPorts: 30000-30001, address: {overrides: [{cidrs: [10.0.0.0/8], usePodIP: true, address: 192.0.2.1}]}}", "set exactly one of address or usePodIP"},
		{"TLS without files", "tls: {mode: explicit}", "tls: mode explicit needs certFile and keyFile"},
		{"unknown TLS mode", "tls: {mode: sometimes}", `tls.mode: want disabled, explicit, required or implicit, got "sometimes"`},
		{"negative duration", "drainTimeout: -1s", "must not be negative"},
		{"bad duration", "drainTimeout: soon", `duration "soon"`},
		{"per-IP above global", "limits: {maxSessions: 5, maxSessionsPerIP: 6}", "need 1 <= maxSessionsPerIP (6) <= maxSessions (5)"},
		{"relative data root", "dataRoot: data", "dataRoot: must be an absolute path"},
		{"negative data timeout", "limits: {dataTimeout: -1s}", "must not be negative"},
		{"IPv6 prefix too coarse", "limits: {ipv6PrefixLength: 16}", "limits.ipv6PrefixLength: must be between 32 and 128, got 16"},
		{"IPv6 prefix too long", "limits: {ipv6PrefixLength: 129}", "limits.ipv6PrefixLength: must be between 32 and 128, got 129"},
		{"bad listen", "listen: 2121", `listen: want host:port, got "2121"`},
		{"keepalive idle below a second", "limits: {tcpKeepAlive: {idle: 500ms}}", "limits.tcpKeepAlive.idle: must be between 1s and 32767s, got 500ms"},
		{"keepalive interval above the kernel's limit", "limits: {tcpKeepAlive: {interval: 10h}}", "limits.tcpKeepAlive.interval: must be between 1s and 32767s, got 10h0m0s"},
		{"keepalive count above the kernel's limit", "limits: {tcpKeepAlive: {count: 128}}", "limits.tcpKeepAlive.count: must be between 1 and 127, got 128"},
		{"negative keepalive count", "limits: {tcpKeepAlive: {count: -1}}", "limits.tcpKeepAlive.count: must be between 1 and 127, got -1"},
		{"unknown keepalive field", "limits: {tcpKeepAlive: {probes: 3}}", `unknown field "probes"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// Later keys win in YAML maps only when unique, so replace whole top-level keys.
			doc := replaceTopLevel(validConfig, tc.edit)
			_, err := Parse([]byte(doc))
			if err == nil {
				t.Fatalf("accepted:\n%s", doc)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not contain %q", err, tc.want)
			}
		})
	}
}

// replaceTopLevel swaps the top-level key of edit into doc (or appends it).
func replaceTopLevel(doc, edit string) string {
	key, _, _ := strings.Cut(edit, ":")
	var out []string
	skipping := false
	for _, line := range strings.Split(doc, "\n") {
		if strings.HasPrefix(line, key+":") {
			skipping = true
			continue
		}
		if skipping && (strings.HasPrefix(line, " ") || line == "") {
			continue
		}
		skipping = false
		out = append(out, line)
	}
	return strings.Join(out, "\n") + "\n" + edit + "\n"
}

func TestParseUsers(t *testing.T) {
	hash := "$2a$10$" + strings.Repeat("a", 53)
	good := "users:\n- {name: alice, passwordHash: '" + hash + "', home: data/alice, quota: {maxBytes: 1000, maxFiles: 10, maxFileSize: 100}}\nanonymous: {enabled: true, home: data/pub}\n"
	uf, err := ParseUsers([]byte(good))
	if err != nil {
		t.Fatalf("valid users file rejected: %v", err)
	}
	if q := uf.Users[0].Quota; q == nil || *q != (Quota{MaxBytes: 1000, MaxFiles: 10, MaxFileSize: 100}) {
		t.Fatalf("quota = %+v", q)
	}
	cases := []struct{ name, doc, want string }{
		{"plain password", "users:\n- {name: a, passwordHash: secret, home: a}\n", "must be a bcrypt hash"},
		{"duplicate", "users:\n- {name: a, passwordHash: '" + hash + "', home: a}\n- {name: a, passwordHash: '" + hash + "', home: b}\n", `"a" appears more than once`},
		{"escaping home", "users:\n- {name: a, passwordHash: '" + hash + "', home: ../etc}\n", "must not contain '..'"},
		{"absolute home", "users:\n- {name: a, passwordHash: '" + hash + "', home: /etc}\n", "must be relative to dataRoot"},
		{"unknown field", "users:\n- {name: a, password: x, passwordHash: '" + hash + "', home: a}\n", `unknown field "password"`},
		{"negative quota", "users:\n- {name: a, passwordHash: '" + hash + "', home: a, quota: {maxFiles: -1}}\n", "users[0].quota.maxFiles: must not be negative"},
		{"quota with a unit", "users:\n- {name: a, passwordHash: '" + hash + "', home: a, quota: {maxBytes: 10Gi}}\n", "maxBytes"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseUsers([]byte(tc.doc))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestDurationRendering(t *testing.T) {
	out, err := Marshal(struct {
		D Duration `json:"d"`
	}{Duration{90 * time.Second}})
	if err != nil || strings.TrimSpace(string(out)) != "d: 1m30s" {
		t.Fatalf("got %q, %v", out, err)
	}
}

func TestIsBcryptHash(t *testing.T) {
	good, err := bcrypt.GenerateFromPassword([]byte("pw"), 4)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		hash string
		want bool
	}{
		{"a real hash", string(good), true},
		{"$2y$ prefix", "$2y$" + string(good)[4:], true},
		{"cost out of range", "$2a$03$" + string(good)[7:], false},
		{"cost not a number", "$2a$xx$" + string(good)[7:], false},
		{"no $ after the cost", "$2a$04x" + string(good)[7:], false},
		{"a character bcrypt's base64 lacks", string(good)[:59] + "!", false},
		{"too short", string(good)[:59], false},
		{"another algorithm", "$1$" + string(good)[3:], false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := IsBcryptHash(tt.hash); got != tt.want {
				t.Fatalf("IsBcryptHash(%q) = %v, want %v", tt.hash, got, tt.want)
			}
		})
	}
}
