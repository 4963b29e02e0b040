package harness

import (
	"os"
	"path/filepath"
	"testing"
)

// TestWriteAtomicDir: the kubelet-style swap publishes the files through ..data, leaves an
// unchanged set alone, and on a change removes the names and the content it no longer has.
func TestWriteAtomicDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "vol")
	read := func(name string) string {
		t.Helper()
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return string(data)
	}
	first := map[string][]byte{"ftpd.yaml": []byte("a"), "extra/file": []byte("b")}
	if changed, err := writeAtomicDir(dir, first); err != nil || !changed {
		t.Fatalf("first write: changed=%v err=%v", changed, err)
	}
	if read("ftpd.yaml") != "a" || read("extra/file") != "b" {
		t.Fatal("first write not visible")
	}
	oldTarget, err := os.Readlink(filepath.Join(dir, "..data"))
	if err != nil {
		t.Fatal(err)
	}
	if changed, err := writeAtomicDir(dir, first); err != nil || changed {
		t.Fatalf("same content again: changed=%v err=%v, want no change", changed, err)
	}
	if changed, err := writeAtomicDir(dir, map[string][]byte{"ftpd.yaml": []byte("c")}); err != nil || !changed {
		t.Fatalf("new content: changed=%v err=%v", changed, err)
	}
	if read("ftpd.yaml") != "c" {
		t.Fatal("new content not visible")
	}
	for _, gone := range []string{"extra", oldTarget} {
		if _, err := os.Lstat(filepath.Join(dir, gone)); !os.IsNotExist(err) {
			t.Errorf("%s left behind (err %v)", gone, err)
		}
	}
}

// TestAtomicDirReportsWhatItCannotDo: a failure to list or read the directory is an error, not
// "nothing to do" (the pod would otherwise keep stale config without a word in the log).
func TestAtomicDirReportsWhatItCannotDo(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing")
	if err := removeStaleLinks(missing, nil); err == nil {
		t.Error("removeStaleLinks on a missing directory: no error")
	}
	// ..data that is not a symlink cannot be read as one.
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "..data"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := currentContentEquals(dir, map[string][]byte{"f": nil}); err == nil {
		t.Error("currentContentEquals with an unreadable ..data: no error")
	}
}
