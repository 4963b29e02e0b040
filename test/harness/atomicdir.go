package harness

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// writeAtomicDir publishes files into dir the way the kubelet updates ConfigMap and Secret
// volumes: the files go into a fresh timestamped directory, a "..data" symlink is swapped to it
// with a rename (atomic), and each visible name is a symlink through "..data". Readers never
// see a half-written set, and the daemon's reload must cope with exactly this swap.
func writeAtomicDir(dir string, files map[string][]byte) (changed bool, err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return false, err
	}
	if same, err := currentContentEquals(dir, files); err != nil || same {
		return false, err
	}
	stamp := fmt.Sprintf("..%s", time.Now().UTC().Format("2006_01_02_15_04_05.000000000"))
	staged := filepath.Join(dir, stamp)
	if err := os.Mkdir(staged, 0o755); err != nil {
		return false, err
	}
	for name, data := range files {
		p := filepath.Join(staged, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return false, err
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			return false, err
		}
	}
	tmpLink := filepath.Join(dir, "..data_tmp")
	if err := os.Remove(tmpLink); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, fmt.Errorf("remove a left-over %s: %w", tmpLink, err)
	}
	if err := os.Symlink(stamp, tmpLink); err != nil {
		return false, err
	}
	old, err := os.Readlink(filepath.Join(dir, "..data"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, fmt.Errorf("read the current ..data of %s: %w", dir, err)
	}
	if err := os.Rename(tmpLink, filepath.Join(dir, "..data")); err != nil {
		return false, err
	}
	for name := range files {
		top := firstElem(name)
		link := filepath.Join(dir, top)
		if _, err := os.Lstat(link); errors.Is(err, fs.ErrNotExist) {
			if err := os.Symlink(filepath.Join("..data", top), link); err != nil {
				return false, err
			}
		}
	}
	if err := removeStaleLinks(dir, files); err != nil {
		return true, err
	}
	if old != "" && old != stamp {
		if err := os.RemoveAll(filepath.Join(dir, old)); err != nil {
			return true, fmt.Errorf("remove the previous content %s: %w", old, err)
		}
	}
	return true, nil
}

// currentContentEquals tells whether dir already publishes exactly files. A dir that has never
// been written (no ..data) does not; any other failure to read it is an error.
func currentContentEquals(dir string, files map[string][]byte) (bool, error) {
	target, err := os.Readlink(filepath.Join(dir, "..data"))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read ..data of %s: %w", dir, err)
	}
	root := filepath.Join(dir, target)
	var have []string
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(root, p)
		have = append(have, rel)
		return err
	})
	if err != nil {
		return false, fmt.Errorf("list %s: %w", root, err)
	}
	if len(have) != len(files) {
		return false, nil
	}
	for _, rel := range have {
		want, ok := files[rel]
		if !ok {
			return false, nil
		}
		data, err := os.ReadFile(filepath.Join(root, rel))
		if err != nil {
			return false, fmt.Errorf("read %s: %w", rel, err)
		}
		if string(data) != string(want) {
			return false, nil
		}
	}
	return true, nil
}

// removeStaleLinks removes the visible names of dir that files no longer has.
func removeStaleLinks(dir string, files map[string][]byte) error {
	keep := map[string]bool{}
	for name := range files {
		keep[firstElem(name)] = true
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("list %s: %w", dir, err)
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	for _, n := range names {
		if strings.HasPrefix(n, "..") || keep[n] {
			continue
		}
		if err := os.Remove(filepath.Join(dir, n)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove stale %s: %w", n, err)
		}
	}
	return nil
}

func firstElem(name string) string {
	first, _, _ := strings.Cut(name, "/")
	return first
}
