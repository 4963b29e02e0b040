package fileconfig

import (
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// FuzzParse: Parse never panics, and whatever it accepts renders (Marshal) to a document that
// parses back to the same Config: what the controller writes, the daemon reads unchanged.
// Seeds: testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	f.Add([]byte(validConfig))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data)
		if err != nil {
			return
		}
		out, err := Marshal(c)
		if err != nil {
			t.Fatalf("accepted config does not render: %v", err)
		}
		again, err := Parse(out)
		if err != nil {
			t.Fatalf("rendered config rejected: %v\n%s", err, out)
		}
		if !reflect.DeepEqual(c, again) {
			t.Fatalf("round trip changed the config:\n%+v\n%+v", c, again)
		}
	})
}

// FuzzParseUsers: ParseUsers never panics; an accepted file round-trips through Marshal, and
// every home it accepts, placed under a data root the way the daemon places it
// (filepath.Join(root, home), ftpd's prepareAccount), lands inside that root. That is the
// property the daemon relies on, checked on the result rather than through the validation's own
// rules. Seeds: testdata/fuzz/FuzzParseUsers.
func FuzzParseUsers(f *testing.F) {
	f.Add([]byte("users:\n- {name: alice, passwordHash: '$2a$10$aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', home: alice}\n"))
	const root = "/srv/ftp-data"
	f.Fuzz(func(t *testing.T, data []byte) {
		u, err := ParseUsers(data)
		if err != nil {
			return
		}
		for _, user := range u.Users {
			if placed := filepath.Join(root, user.Home); placed != root && !strings.HasPrefix(placed, root+"/") {
				t.Fatalf("accepted home %q lands at %s, outside %s", user.Home, placed, root)
			}
		}
		out, err := Marshal(u)
		if err != nil {
			t.Fatalf("accepted users file does not render: %v", err)
		}
		again, err := ParseUsers(out)
		if err != nil {
			t.Fatalf("rendered users file rejected: %v\n%s", err, out)
		}
		if !reflect.DeepEqual(u, again) {
			t.Fatalf("round trip changed the users:\n%+v\n%+v", u, again)
		}
	})
}
