package ftpd

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzConfinedResolve: whatever path a client sends, resolution either fails or names a real
// path inside the home (for entry operations, whose last component is not followed, the
// parent is inside). The home holds symlinks pointing in, out, relatively out, nowhere and in a
// loop. Seeds: testdata/fuzz/FuzzConfinedResolve.
func FuzzConfinedResolve(f *testing.F) {
	base := f.TempDir()
	home := filepath.Join(base, "home")
	outside := filepath.Join(base, "outside")
	for _, d := range []string{filepath.Join(home, "sub", "deeper"), outside} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			f.Fatal(err)
		}
	}
	links := map[string]string{
		"link-in":      "sub",
		"link-out":     outside,
		"link-rel-out": "../outside",
		"sub/up":       "..",
		"sub/up-out":   "../..",
		"dangling":     filepath.Join(outside, "missing"),
		"loop-a":       "loop-b",
		"loop-b":       "loop-a",
	}
	for name, target := range links {
		if err := os.Symlink(target, filepath.Join(home, name)); err != nil {
			f.Fatal(err)
		}
	}
	cfs, err := newConfinedFs(home, false)
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{"", "/", "..", "../outside", "sub/../../outside", "link-out/x", "link-in/deeper", "sub/up-out/outside"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		v := cleanVirtual(name)
		if !strings.HasPrefix(v, "/") || strings.Contains(v+"/", "/../") || cleanVirtual(v) != v {
			t.Fatalf("cleanVirtual(%q) = %q", name, v)
		}
		for _, follow := range []bool{true, false} {
			real, err := cfs.resolve("fuzz", name, follow)
			if err != nil {
				var pe *fs.PathError
				if !errors.As(err, &pe) || strings.Contains(err.Error(), base) {
					t.Fatalf("resolve(%q) error %v is not a virtual path error", name, err)
				}
				continue
			}
			check := real
			if !follow && real != cfs.root {
				check = filepath.Dir(real)
			}
			if !cfs.inside(check) {
				t.Fatalf("resolve(%q, follow=%v) = %s, outside %s", name, follow, real, cfs.root)
			}
			if follow {
				if target, err := filepath.EvalSymlinks(real); err == nil && !cfs.inside(target) {
					t.Fatalf("resolve(%q) = %s leads to %s", name, real, target)
				}
			}
		}
	})
}
