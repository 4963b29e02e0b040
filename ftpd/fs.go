package ftpd

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	ftpserver "github.com/fclairamb/ftpserverlib"
	"github.com/spf13/afero"
)

// tempPrefix starts the name of the temporary file an upload is written to before it is renamed
// over its target. Such names are reserved: hidden from listings and refused in every path a
// client sends, so that no client can create a file nobody can list, nor read or replace an
// upload in progress.
const tempPrefix = ".ftpd-upload-"

// errReservedName is the error for a path using a reserved name. It wraps ftpserverlib's
// ErrFileNameNotAllowed, which ftpserverlib answers with 553 for STOR, APPE and RNTO.
var errReservedName = fmt.Errorf("%w: names starting with %q are reserved by the server", ftpserver.ErrFileNameNotAllowed, tempPrefix)

// reservedPath reports whether a clean virtual path has a component with a reserved name.
func reservedPath(clean string) bool {
	for _, part := range strings.Split(clean, "/") {
		if strings.HasPrefix(part, tempPrefix) {
			return true
		}
	}
	return false
}

// confinedFs is an afero.Fs whose "/" is a user's home directory. Every path is cleaned as an
// absolute path (so ".." cannot climb above "/") and walked component by component: a symlink met
// on the way is resolved and refused unless it resolves inside the home. Final components are
// followed for operations that act on the target (open, stat, chmod) and not followed for those
// that act on the directory entry itself (remove, rename).
//
// The checks are done before the operation, so a process with direct write access to the volume
// that swaps a directory for a symlink between the check and the use could race them; FTP users
// themselves cannot create symlinks through this daemon.
type confinedFs struct {
	root     string // absolute, symlinks resolved
	readOnly bool
	// usage is told about the files this session removes and renames; nil: nobody is.
	usage *usageRegistry
}

var _ afero.Fs = (*confinedFs)(nil)

func newConfinedFs(root string, readOnly bool) (*confinedFs, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, err
	}
	real, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return nil, err
	}
	return &confinedFs{root: real, readOnly: readOnly}, nil
}

// cleanVirtual turns a client-supplied path into a clean absolute virtual path.
func cleanVirtual(name string) string {
	return path.Clean("/" + filepath.ToSlash(name))
}

func (c *confinedFs) inside(real string) bool {
	return real == c.root || strings.HasPrefix(real, c.root+string(filepath.Separator))
}

// resolve maps a virtual path to the real path to operate on. With follow, a symlink in the last
// component is resolved too; intermediate components are always resolved.
func (c *confinedFs) resolve(op, name string, follow bool) (string, error) {
	clean := cleanVirtual(name)
	if reservedPath(clean) {
		return "", &fs.PathError{Op: op, Path: clean, Err: errReservedName}
	}
	real, err := c.walk(clean, follow)
	if err != nil {
		return "", virtualErr(op, name, err)
	}
	return real, nil
}

func (c *confinedFs) walk(clean string, follow bool) (string, error) {
	if clean == "/" {
		return c.root, nil
	}
	parent, err := c.walk(path.Dir(clean), true)
	if err != nil {
		return "", err
	}
	p := filepath.Join(parent, path.Base(clean))
	if !follow {
		return p, nil
	}
	fi, err := os.Lstat(p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return p, nil // nothing to follow; the operation decides whether missing is fine
		}
		return "", err
	}
	if fi.Mode()&fs.ModeSymlink == 0 {
		return p, nil
	}
	target, err := filepath.EvalSymlinks(p)
	if err != nil {
		// A dangling symlink: following it could create a file anywhere.
		return "", fs.ErrPermission
	}
	if !c.inside(target) {
		return "", fs.ErrPermission
	}
	return target, nil
}

// virtualErr rewrites filesystem errors so that they name the virtual path, never the real one.
func virtualErr(op, name string, err error) error {
	if err == nil {
		return nil
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return &fs.PathError{Op: pe.Op, Path: cleanVirtual(name), Err: pe.Err}
	}
	var le *os.LinkError
	if errors.As(err, &le) {
		return &fs.PathError{Op: le.Op, Path: cleanVirtual(name), Err: le.Err}
	}
	return &fs.PathError{Op: op, Path: cleanVirtual(name), Err: err}
}

func (c *confinedFs) denyWrite(op, name string) error {
	if c.readOnly {
		return &fs.PathError{Op: op, Path: cleanVirtual(name), Err: fs.ErrPermission}
	}
	return nil
}

// Name implements afero.Fs.
func (c *confinedFs) Name() string { return "confinedFs" }

// Create implements afero.Fs.
func (c *confinedFs) Create(name string) (afero.File, error) {
	return c.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o666)
}

// Open implements afero.Fs.
func (c *confinedFs) Open(name string) (afero.File, error) {
	return c.OpenFile(name, os.O_RDONLY, 0)
}

// OpenFile implements afero.Fs.
func (c *confinedFs) OpenFile(name string, flag int, perm os.FileMode) (afero.File, error) {
	f, err := c.openFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return f, nil
}

func (c *confinedFs) openFile(name string, flag int, perm os.FileMode) (*os.File, error) {
	if flag&(os.O_WRONLY|os.O_RDWR|os.O_CREATE|os.O_TRUNC|os.O_APPEND) != 0 {
		if err := c.denyWrite("open", name); err != nil {
			return nil, err
		}
	}
	real, err := c.resolve("open", name, true)
	if err != nil {
		return nil, err
	}
	f, err := os.OpenFile(real, flag, perm.Perm())
	return f, virtualErr("open", name, err)
}

// Mkdir implements afero.Fs.
func (c *confinedFs) Mkdir(name string, perm os.FileMode) error {
	if err := c.denyWrite("mkdir", name); err != nil {
		return err
	}
	real, err := c.resolve("mkdir", name, false)
	if err != nil {
		return err
	}
	return virtualErr("mkdir", name, os.Mkdir(real, perm.Perm()))
}

// MkdirAll implements afero.Fs.
func (c *confinedFs) MkdirAll(name string, perm os.FileMode) error {
	if err := c.denyWrite("mkdir", name); err != nil {
		return err
	}
	// Create one level at a time so that every level is checked by resolve.
	clean := cleanVirtual(name)
	if clean == "/" {
		return nil
	}
	if err := c.MkdirAll(path.Dir(clean), perm); err != nil {
		return err
	}
	real, err := c.resolve("mkdir", clean, true)
	if err != nil {
		return err
	}
	if fi, err := os.Stat(real); err == nil {
		if fi.IsDir() {
			return nil
		}
		return &fs.PathError{Op: "mkdir", Path: clean, Err: fs.ErrExist}
	}
	err = os.Mkdir(real, perm.Perm())
	if errors.Is(err, fs.ErrExist) {
		return nil
	}
	return virtualErr("mkdir", clean, err)
}

// Remove implements afero.Fs. It removes files only (DELE); directories go through RemoveDir.
func (c *confinedFs) Remove(name string) error {
	if err := c.denyWrite("remove", name); err != nil {
		return err
	}
	real, err := c.resolve("remove", name, false)
	if err != nil {
		return err
	}
	if real == c.root {
		return &fs.PathError{Op: "remove", Path: "/", Err: fs.ErrPermission}
	}
	fi, err := os.Lstat(real)
	if err != nil {
		return virtualErr("remove", name, err)
	}
	if fi.IsDir() {
		return &fs.PathError{Op: "remove", Path: cleanVirtual(name), Err: errors.New("is a directory")}
	}
	if err := os.Remove(real); err != nil {
		return virtualErr("remove", name, err)
	}
	if fi.Mode().IsRegular() {
		c.usage.changed(real, -fi.Size(), -1)
	}
	return nil
}

// RemoveDir removes an empty directory (RMD); it implements ftpserverlib's
// ClientDriverExtensionRemoveDir.
func (c *confinedFs) RemoveDir(name string) error {
	if err := c.denyWrite("rmdir", name); err != nil {
		return err
	}
	real, err := c.resolve("rmdir", name, false)
	if err != nil {
		return err
	}
	if real == c.root {
		return &fs.PathError{Op: "rmdir", Path: "/", Err: fs.ErrPermission}
	}
	fi, err := os.Lstat(real)
	if err != nil {
		return virtualErr("rmdir", name, err)
	}
	if !fi.IsDir() {
		return &fs.PathError{Op: "rmdir", Path: cleanVirtual(name), Err: errors.New("not a directory")}
	}
	return virtualErr("rmdir", name, os.Remove(real))
}

// RemoveAll implements afero.Fs. os.RemoveAll does not follow symlinks below the path.
func (c *confinedFs) RemoveAll(name string) error {
	if err := c.denyWrite("removeall", name); err != nil {
		return err
	}
	real, err := c.resolve("removeall", name, false)
	if err != nil {
		return err
	}
	if real == c.root {
		return &fs.PathError{Op: "removeall", Path: "/", Err: fs.ErrPermission}
	}
	bytes, files := int64(0), int64(0)
	if len(c.usage.containing(real)) > 0 {
		bytes, files = treeUsage(real)
	}
	err = os.RemoveAll(real)
	c.usage.rescanInside(real) // homes inside it went with it
	if err != nil {
		c.usage.rescanSoon(real) // removed in part
		return virtualErr("removeall", name, err)
	}
	c.usage.changed(real, -bytes, -files)
	return nil
}

// Rename implements afero.Fs. Both names are directory entries: symlinks are moved, not followed.
func (c *confinedFs) Rename(oldname, newname string) error {
	if err := c.denyWrite("rename", oldname); err != nil {
		return err
	}
	oldReal, err := c.resolve("rename", oldname, false)
	if err != nil {
		return err
	}
	newReal, err := c.resolve("rename", newname, false)
	if err != nil {
		return err
	}
	if oldReal == c.root || newReal == c.root {
		return &fs.PathError{Op: "rename", Path: "/", Err: fs.ErrPermission}
	}
	fi, err := os.Lstat(oldReal)
	if err != nil {
		return virtualErr("rename", oldname, err)
	}
	target, _ := os.Lstat(newReal) // nil when there is none
	if err := os.Rename(oldReal, newReal); err != nil {
		return virtualErr("rename", oldname, err)
	}
	c.usage.renamed(oldReal, newReal, fi, target)
	return nil
}

// Stat implements afero.Fs (follows a final symlink if it stays inside the home).
func (c *confinedFs) Stat(name string) (os.FileInfo, error) {
	real, err := c.resolve("stat", name, true)
	if err != nil {
		return nil, err
	}
	fi, err := os.Stat(real)
	return fi, virtualErr("stat", name, err)
}

// ReadDir lists a directory; it implements ftpserverlib's ClientDriverExtensionFileList. Entries
// are not followed (a symlink is listed as a symlink) and in-progress uploads are hidden.
func (c *confinedFs) ReadDir(name string) ([]os.FileInfo, error) {
	real, err := c.resolve("readdir", name, true)
	if err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(real)
	if err != nil {
		return nil, virtualErr("readdir", name, err)
	}
	infos := make([]os.FileInfo, 0, len(entries))
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), tempPrefix) {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue // removed meanwhile
		}
		infos = append(infos, fi)
	}
	return infos, nil
}

// Chmod implements afero.Fs. Only permission bits can be changed.
func (c *confinedFs) Chmod(name string, mode os.FileMode) error {
	if err := c.denyWrite("chmod", name); err != nil {
		return err
	}
	real, err := c.resolve("chmod", name, true)
	if err != nil {
		return err
	}
	return virtualErr("chmod", name, os.Chmod(real, mode.Perm()))
}

// Chown implements afero.Fs; ownership is never changed by FTP users.
func (c *confinedFs) Chown(name string, _, _ int) error {
	return &fs.PathError{Op: "chown", Path: cleanVirtual(name), Err: fs.ErrPermission}
}

// Chtimes implements afero.Fs (MFMT).
func (c *confinedFs) Chtimes(name string, atime, mtime time.Time) error {
	if err := c.denyWrite("chtimes", name); err != nil {
		return err
	}
	real, err := c.resolve("chtimes", name, true)
	if err != nil {
		return err
	}
	return virtualErr("chtimes", name, os.Chtimes(real, atime, mtime))
}
