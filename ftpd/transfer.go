package ftpd

import (
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
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

func (t *transferFile) Seek(offset int64, whence int) (int64, error) {
	return t.f.Seek(offset, whence)
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
	for {
		nr, rerr := r.Read(buf)
		if nr > 0 {
			nw, werr := w.Write(buf[:nr])
			total += int64(nw)
			t.bytes += int64(nw)
			if werr != nil {
				return total, werr
			}
			if nw < nr {
				return total, io.ErrShortWrite
			}
		}
		if rerr == io.EOF {
			return total, nil
		}
		if rerr != nil {
			return total, rerr
		}
	}
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
	if err := d.srv.transferStart(); err != nil {
		return nil, err
	}
	t := &transferFile{drv: d, vpath: cleanVirtual(name), upload: upload, start: time.Now()}
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
	case flags&os.O_APPEND != 0 || offset > 0 || flags&os.O_TRUNC == 0:
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
