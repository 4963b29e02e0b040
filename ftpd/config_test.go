package ftpd

import (
	"errors"
	"strings"
	"testing"
)

func TestParseUserSpec(t *testing.T) {
	tests := []struct {
		spec    string
		want    User
		wantErr string
	}{
		{spec: "alice:secret", want: User{Name: "alice", Password: "secret"}},
		{spec: "guest:guest:ro", want: User{Name: "guest", Password: "guest", ReadOnly: true}},
		{spec: "bob:pa:ss:rw", want: User{Name: "bob", Password: "pa:ss"}},
		{spec: "bob:a:b:c", want: User{Name: "bob", Password: "a:b:c"}},
		{spec: "h:$2a$10$abcdefghijklmnopqrstuuABCDEFGHIJKLMNOPQRSTUVWXYZ012:ro", want: User{Name: "h", Password: "$2a$10$abcdefghijklmnopqrstuuABCDEFGHIJKLMNOPQRSTUVWXYZ012", ReadOnly: true}},
		{spec: "alice", wantErr: "NAME:PASSWORD"},
		{spec: ":secret", wantErr: "empty user name"},
		{spec: "alice:", wantErr: "empty password"},
		{spec: "alice::ro", wantErr: "empty password"},
		{spec: "../x:secret", wantErr: "must not start"},
		{spec: "a/b:secret", wantErr: "contains"},
		{spec: ".hidden:secret", wantErr: "must not start"},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			got, err := ParseUserSpec(tt.spec)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got %+v, %v; want error containing %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}

func TestParsePortRange(t *testing.T) {
	tests := []struct {
		in      string
		want    PortRange
		wantErr bool
	}{
		{in: "", want: PortRange{}},
		{in: "30000-30009", want: PortRange{Start: 30000, End: 30009}},
		{in: "30000", want: PortRange{Start: 30000, End: 30000}},
		{in: " 1-65535 ", want: PortRange{Start: 1, End: 65535}},
		{in: "30009-30000", wantErr: true},
		{in: "0-10", wantErr: true},
		{in: "1-65536", wantErr: true},
		{in: "a-b", wantErr: true},
		{in: "30000-", wantErr: true},
		{in: "-5", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParsePortRange(tt.in)
			if (err != nil) != tt.wantErr || (!tt.wantErr && got != tt.want) {
				t.Fatalf("got %v, %v; want %v (error %v)", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestAuthenticateUnknownUserSameError(t *testing.T) {
	db, err := newUserDB([]*account{{User: User{Name: "a", Password: "pw"}}})
	if err != nil {
		t.Fatal(err)
	}
	_, r1, e1 := db.authenticate("a", "wrong")
	_, r2, e2 := db.authenticate("nobody", "pw")
	// One error for both, so a client cannot tell which user names exist.
	if !errors.Is(e1, errBadCredentials) || !errors.Is(e2, errBadCredentials) || e1.Error() != e2.Error() || r1 == r2 {
		t.Fatalf("errors %v/%v reasons %q/%q", e1, e2, r1, r2)
	}
	if a, _, err := db.authenticate("a", "pw"); err != nil || a.Name != "a" {
		t.Fatalf("good password refused: %v", err)
	}
}
