package ftpd

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	ftpserver "github.com/fclairamb/ftpserverlib"
)

// copyBufferSize is the buffer both directions copy through. A read/write loop with a large
// buffer measured faster than the zero-copy paths on this workload: than splice(2) for uploads,
// and than sendfile(2) for downloads, where sendfile moved the copying cost onto the client's
// side of the socket and lost to vsftpd (docs/benchmarks.md has the side-by-side figures).
const copyBufferSize = 1 << 20

var copyBuffers = sync.Pool{New: func() any { b := make([]byte, copyBufferSize); return &b }}

// transferFile is the ftpserverlib FileTransfer handed out for RETR, STOR and APPE. It counts
// bytes, logs the transfer when closed, and for a plain STOR writes to a temporary file that is
// renamed over the target only when the upload completed.
type transferFile struct {
	f       *os.File
	drv     *clientDriver
	vpath   string
	upload  bool
	start   time.Time
	bytes   int64
	xferErr error
	// timeout ends the copy when the data connection moves no byte for this long
	// (Limits.DataTimeout at the start of the transfer).
	timeout time.Duration

	// For atomic uploads: the temporary file and the path it is renamed to on success.
	tmpPath   string
	finalPath string
	finalMode fs.FileMode

	closeOnce sync.Once
	closeErr  error
}

var (
	_ ftpserver.FileTransfer      = (*transferFile)(nil)
	_ ftpserver.FileTransferError = (*transferFile)(nil)
	_ io.ReaderFrom               = (*transferFile)(nil)
	_ io.WriterTo                 = (*transferFile)(nil)
)

func (t *transferFile) Read(p []byte) (int, error) {
	n, err := t.f.Read(p)
	t.bytes += int64(n)
	return n, err
}

func (t *transferFile) Write(p []byte) (int, error) {
	n, err := t.f.Write(p)
	t.bytes += int64(n)
	return n, err
}

// Seek applies a REST offset. Its error reaches the client: it must name the virtual path.
func (t *transferFile) Seek(offset int64, whence int) (int64, error) {
	n, err := t.f.Seek(offset, whence)
	if err != nil {
		return n, virtualErr("seek", t.vpath, err)
	}
	return n, nil
}

// WriteTo sends a download to the data connection through the large buffer.
func (t *transferFile) WriteTo(w io.Writer) (int64, error) {
	return t.copy(w, t.f)
}

// ReadFrom copies an upload into the file through the large buffer.
func (t *transferFile) ReadFrom(r io.Reader) (int64, error) {
	return t.copy(t.f, r)
}

// copy moves bytes from r to w through a pooled buffer, counting them for the transfer log. It
// deliberately does not call io.Copy, which would take the ReaderFrom/WriterTo (splice,
// sendfile) shortcuts of *os.File and *net.TCPConn.
func (t *transferFile) copy(w io.Writer, r io.Reader) (int64, error) {
	bp := copyBuffers.Get().(*[]byte)
	defer copyBuffers.Put(bp)
	buf := *bp
	var total int64
	rd, _ := r.(readDeadliner)
	wd, _ := w.(writeDeadliner)
	if _, file := r.(*os.File); file {
		rd = nil // files have no deadlines; only the data connection can stall
	}
	if _, file := w.(*os.File); file {
		wd = nil
	}
	for {
		if rd != nil && t.timeout > 0 {
			_ = rd.SetReadDeadline(time.Now().Add(t.timeout))
		}
		nr, rerr := r.Read(buf)
		if nr > 0 {
			if wd != nil && t.timeout > 0 {
				_ = wd.SetWriteDeadline(time.Now().Add(t.timeout))
			}
			nw, werr := w.Write(buf[:nr])
			if isTimeout(werr) && wd != nil {
				werr = t.stalled()
			}
			total += int64(nw)
			t.bytes += int64(nw)
			if werr != nil {
				return total, werr
			}
			if nw < nr {
				return total, io.ErrShortWrite
			}
		}
		if errors.Is(rerr, io.EOF) {
			return total, nil
		}
		if isTimeout(rerr) && rd != nil {
			rerr = t.stalled()
		}
		if rerr != nil {
			return total, rerr
		}
	}
}

// The data connection's side of a copy: deadlines exist only on the network side.
type (
	readDeadliner  interface{ SetReadDeadline(time.Time) error }
	writeDeadliner interface{ SetWriteDeadline(time.Time) error }
)

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// stalled is the error of a transfer ended by the data timeout; it reaches the client (in
// ftpserverlib's transfer error reply).
func (t *transferFile) stalled() error {
	return fmt.Errorf("no data moved on the data connection for %s: %w", t.timeout, os.ErrDeadlineExceeded)
}

// TransferError is called by ftpserverlib before Close when the transfer was interrupted (ABOR,
// a dropped data connection, an I/O error).
func (t *transferFile) TransferError(err error) {
	if err == nil {
		err = errors.New("transfer interrupted")
	}
	t.xferErr = err
}

func (t *transferFile) Close() error {
	t.closeOnce.Do(func() { t.closeErr = t.finish() })
	return t.closeErr
}

func (t *transferFile) finish() error {
	err := t.f.Close()
	result := "ok"
	if t.tmpPath != "" {
		switch {
		case t.xferErr != nil || err != nil:
			// Interrupted: the previous file (if any) stays untouched.
			_ = os.Remove(t.tmpPath)
		default:
			if cerr := os.Chmod(t.tmpPath, t.finalMode); cerr != nil {
				err = cerr
			} else if rerr := os.Rename(t.tmpPath, t.finalPath); rerr != nil {
				err = rerr
			}
			if err != nil {
				_ = os.Remove(t.tmpPath)
			}
		}
	}
	if t.xferErr != nil {
		result = "aborted"
	} else if err != nil {
		result = "error"
	}
	direction := "download"
	if t.upload {
		direction = "upload"
	}
	attrs := []any{
		slog.String("direction", direction),
		slog.String("path", t.vpath),
		slog.Int64("bytes", t.bytes),
		slog.Float64("duration_s", time.Since(t.start).Seconds()),
		slog.String("result", result),
	}
	if t.xferErr != nil {
		attrs = append(attrs, slog.String("error", t.xferErr.Error()))
	} else if err != nil {
		attrs = append(attrs, slog.String("error", err.Error()))
	}
	level := slog.LevelInfo
	if result != "ok" {
		level = slog.LevelWarn
	}
	t.drv.srv.metrics.transferDone(t.drv.sess.getUser(), direction, result, t.bytes)
	t.drv.sess.log().Log(t.drv.srv.ctx, level, "transfer", attrs...)
	t.drv.srv.transferDone()
	return virtualErr("close", t.vpath, err)
}

// GetHandle implements ftpserverlib's ClientDriverExtentionFileTransfer: it opens the file for
// RETR (os.O_RDONLY), STOR (O_WRONLY|O_CREATE, plus O_TRUNC unless resuming) or APPE
// (O_WRONLY|O_CREATE|O_APPEND). offset is a preceding REST, applied by ftpserverlib with Seek.
func (d *clientDriver) GetHandle(name string, flags int, offset int64) (ftpserver.FileTransfer, error) {
	upload := flags&(os.O_WRONLY|os.O_RDWR) != 0
	if upload {
		if err := d.fs.denyWrite("stor", name); err != nil {
			return nil, err
		}
	}
	if offset < 0 {
		return nil, &fs.PathError{Op: "rest", Path: cleanVirtual(name), Err: errors.New("negative restart offset")}
	}
	if err := d.srv.transferStart(); err != nil {
		return nil, err
	}
	t := &transferFile{drv: d, vpath: cleanVirtual(name), upload: upload, start: time.Now(), timeout: d.srv.dyn.Load().limits.DataTimeout}
	var err error
	switch {
	case !upload:
		t.f, err = d.fs.openFile(name, os.O_RDONLY, 0)
		if err == nil {
			var fi os.FileInfo
			if fi, err = t.f.Stat(); err == nil && fi.IsDir() {
				_ = t.f.Close()
				err = &fs.PathError{Op: "open", Path: t.vpath, Err: errors.New("is a directory")}
			}
		}
	case offset > 0 && flags&os.O_APPEND == 0:
		t.f, err = t.openResume(name, offset)
	case flags&os.O_APPEND != 0 || flags&os.O_TRUNC == 0:
		// APPE and resumed STOR write in place: the data before the offset must be kept.
		t.f, err = d.fs.openFile(name, os.O_WRONLY|os.O_CREATE|(flags&os.O_APPEND), 0o644)
	case !d.srv.dyn.Load().atomicUploads:
		t.f, err = d.fs.openFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	default:
		err = t.openTemp(name)
	}
	if err != nil {
		d.srv.transferDone()
		return nil, err
	}
	return t, nil
}

// openResume opens the target of a resumed STOR (REST offset, then STOR). The offset must not
// be beyond the end of the existing file: seeking past the end would make a sparse file of any
// size, and a missing file would be created empty before the seek failed. The size is taken
// from the opened handle, so the file checked is the file written.
func (t *transferFile) openResume(name string, offset int64) (*os.File, error) {
	f, err := t.drv.fs.openFile(name, os.O_WRONLY, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, &fs.PathError{Op: "rest", Path: t.vpath, Err: fmt.Errorf("restart offset %d is beyond the end of the file (it does not exist)", offset)}
	}
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	switch {
	case err != nil:
		err = virtualErr("stat", t.vpath, err)
	case fi.IsDir():
		err = &fs.PathError{Op: "stor", Path: t.vpath, Err: errors.New("is a directory")}
	case offset > fi.Size():
		err = &fs.PathError{Op: "rest", Path: t.vpath, Err: fmt.Errorf("restart offset %d is beyond the end of the file (%d bytes)", offset, fi.Size())}
	}
	if err != nil {
		_ = f.Close()
		return nil, err
	}
	return f, nil
}

// openTemp prepares an atomic upload: a temporary file next to the target.
func (t *transferFile) openTemp(name string) error {
	fsys := t.drv.fs
	final, err := fsys.resolve("stor", name, true)
	if err != nil {
		return err
	}
	if final == fsys.root {
		return &fs.PathError{Op: "stor", Path: t.vpath, Err: errors.New("is a directory")}
	}
	t.finalMode = 0o644
	if fi, err := os.Stat(final); err == nil {
		if fi.IsDir() {
			return &fs.PathError{Op: "stor", Path: t.vpath, Err: errors.New("is a directory")}
		}
		t.finalMode = fi.Mode().Perm()
	} else if !errors.Is(err, fs.ErrNotExist) {
		return virtualErr("stor", name, err)
	}
	f, err := os.CreateTemp(filepath.Dir(final), tempPrefix+"*")
	if err != nil {
		return virtualErr("stor", name, err)
	}
	t.f, t.tmpPath, t.finalPath = f, f.Name(), final
	return nil
}

// removeStaleUploads deletes upload temporaries left under dirs by a daemon that stopped in the
// middle of an upload (crash, SIGKILL). Only files last modified before the given time are
// removed, so that uploads started by this process while the walk runs are left alone. Symlinks
// are not followed. It returns how many files were removed.
func removeStaleUploads(dirs []string, before time.Time, logger *slog.Logger) int {
	removed := 0
	for _, dir := range dirs {
		_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil || !d.Type().IsRegular() || !strings.HasPrefix(d.Name(), tempPrefix) {
				return nil // unreadable parts are skipped, not fatal
			}
			fi, err := d.Info()
			if err != nil || !fi.ModTime().Before(before) {
				return nil
			}
			if err := os.Remove(p); err != nil {
				logger.Warn("cannot remove a stale upload file", slog.String("path", p), slog.Any("error", err))
				return nil
			}
			removed++
			return nil
		})
	}
	return removed
}
