package harness

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
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
	_ = os.Remove(tmpLink)
	if err := os.Symlink(stamp, tmpLink); err != nil {
		return false, err
	}
	old, _ := os.Readlink(filepath.Join(dir, "..data"))
	if err := os.Rename(tmpLink, filepath.Join(dir, "..data")); err != nil {
		return false, err
	}
	for name := range files {
		top := firstElem(name)
		link := filepath.Join(dir, top)
		if _, err := os.Lstat(link); os.IsNotExist(err) {
			if err := os.Symlink(filepath.Join("..data", top), link); err != nil {
				return false, err
			}
		}
	}
	removeStaleLinks(dir, files)
	if old != "" && old != stamp {
		_ = os.RemoveAll(filepath.Join(dir, old))
	}
	return true, nil
}

func currentContentEquals(dir string, files map[string][]byte) (bool, error) {
	target, err := os.Readlink(filepath.Join(dir, "..data"))
	if err != nil {
		return false, nil
	}
	var have []string
	err = filepath.Walk(filepath.Join(dir, target), func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			rel, _ := filepath.Rel(filepath.Join(dir, target), p)
			have = append(have, rel)
		}
		return err
	})
	if err != nil || len(have) != len(files) {
		return false, nil
	}
	for _, rel := range have {
		data, err := os.ReadFile(filepath.Join(dir, target, rel))
		want, ok := files[rel]
		if err != nil || !ok || string(data) != string(want) {
			return false, nil
		}
	}
	return true, nil
}

func removeStaleLinks(dir string, files map[string][]byte) {
	keep := map[string]bool{}
	for name := range files {
		keep[firstElem(name)] = true
	}
	entries, _ := os.ReadDir(dir)
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	for _, n := range names {
		if len(n) >= 2 && n[:2] == ".." {
			continue
		}
		if !keep[n] {
			_ = os.Remove(filepath.Join(dir, n))
		}
	}
}

func firstElem(name string) string {
	for i := 0; i < len(name); i++ {
		if name[i] == '/' {
			return name[:i]
		}
	}
	return name
}
