package ftpd

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestConfinedFsResolve(t *testing.T) {
	base := t.TempDir()
	home := filepath.Join(base, "home")
	outside := filepath.Join(base, "outside")
	writeFile(t, filepath.Join(home, "dir", "f.txt"), []byte("f"))
	writeFile(t, filepath.Join(outside, "o.txt"), []byte("o"))
	must(t, os.Symlink(outside, filepath.Join(home, "out")))
	must(t, os.Symlink("dir", filepath.Join(home, "in")))
	must(t, os.Symlink("../..", filepath.Join(home, "dir", "up")))
	c, err := newConfinedFs(home, false)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		follow bool
		want   string // relative to home; "!" means refused
	}{
		{"/", true, "."},
		{"", true, "."},
		{"..", true, "."},
		{"../../..", true, "."},
		{"/dir/../../x", true, "x"},
		{"dir/f.txt", true, "dir/f.txt"},
		{"in/f.txt", true, "dir/f.txt"},
		{"in", true, "dir"},
		{"in", false, "in"},
		{"missing/new", true, "missing/new"},
		{"out", true, "!"},
		{"out", false, "out"}, // the link itself (DELE/RNFR) is inside
		{"out/o.txt", true, "!"},
		{"out/o.txt", false, "!"},
		{"dir/up", true, "!"},
		{"dir/up/outside/o.txt", true, "!"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := c.resolve("test", tt.name, tt.follow)
			if tt.want == "!" {
				if !errors.Is(err, fs.ErrPermission) {
					t.Fatalf("got %q, %v; want permission denied", got, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if want := filepath.Join(c.root, tt.want); got != want {
				t.Fatalf("got %q, want %q", got, want)
			}
		})
	}
}

func TestConfinedFsErrorsHideRealPaths(t *testing.T) {
	home := t.TempDir()
	c, err := newConfinedFs(home, false)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Stat("/nope/missing")
	if err == nil {
		t.Fatal("no error")
	}
	if got := err.Error(); filepath.IsAbs(home) && strings.Contains(got, home) {
		t.Fatalf("error %q reveals the real path", got)
	}
}
