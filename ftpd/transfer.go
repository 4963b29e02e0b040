package ftpd

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	ftpserver "github.com/fclairamb/ftpserverlib"
	"github.com/prometheus/client_golang/prometheus"
)

// copyBufferSize is the buffer of the buffered copy path (copy.go): TLS data connections, APPE,
// and CopyBuffered. fileWriteMin is the least an upload writes into the file at once (but the
// last bytes).
const (
	copyBufferSize = 1 << 20
	fileWriteMin   = 256 << 10
)

var copyBuffers = sync.Pool{New: func() any { b := make([]byte, copyBufferSize); return &b }}

// transferFile is the ftpserverlib FileTransfer handed out for RETR, STOR and APPE. It counts
// bytes, logs the transfer when closed, and for a plain STOR writes to a temporary file that is
// renamed over the target only when the upload completed.
type transferFile struct {
	f      *os.File
	drv    *clientDriver
	vpath  string
	upload bool
	start  time.Time
	bytes  int64
	// appendMode: the file was opened with O_APPEND (APPE), which splice cannot write to.
	appendMode bool
	// path is how the bytes move (copy.go), set when the copy starts; pathBytes its counter.
	path      CopyPath
	pathBytes prometheus.Counter
	xferErr   error
	// timeout ends the copy when the data connection moves no byte for this long
	// (Limits.DataTimeout at the start of the transfer).
	timeout time.Duration

	// For atomic uploads: the temporary file and the path it is renamed to on success.
	tmpPath   string
	finalPath string
	finalMode fs.FileMode

	// Uploads: what they may write and what they reserved (quota.go).
	limits uploadLimits

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
	n, err := t.writeFile(p)
	t.bytes += int64(n)
	return n, err
}

// writeFile writes upload bytes to the file, within the user's limits. Its errors reach the
// client: they name the virtual path, and a full volume or an exceeded limit is a storage error.
func (t *transferFile) writeFile(p []byte) (int, error) {
	if err := t.limits.admit(t, int64(len(p))); err != nil {
		return 0, &fs.PathError{Op: "stor", Path: t.vpath, Err: err}
	}
	n, err := t.f.Write(p)
	return n, noSpace("write", t.vpath, err)
}

// fileWriter is the file side of an upload's copy.
type fileWriter struct{ t *transferFile }

func (w fileWriter) Write(p []byte) (int, error) { return w.t.writeFile(p) }

// Seek applies a REST offset. Its error reaches the client: it must name the virtual path.
func (t *transferFile) Seek(offset int64, whence int) (int64, error) {
	n, err := t.f.Seek(offset, whence)
	if err != nil {
		return n, virtualErr("seek", t.vpath, err)
	}
	return n, nil
}

// copy moves bytes from r to w through a pooled buffer (the buffered path, copy.go), counting
// them for the transfer log and the metrics. It deliberately does not call io.Copy, which would
// take the ReaderFrom/WriterTo shortcuts of *os.File and *net.TCPConn, without the data timeout.
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
	// Uploads collect at least fileWriteMin bytes per write(2) into the file: a TLS connection
	// returns one record (16 KiB) per Read, and each write into the page cache has a fixed cost.
	batch := 0
	if _, file := w.(fileWriter); file {
		wd = nil
		batch = fileWriteMin
	}
	for {
		nr := 0
		var rerr error
		for {
			if rd != nil && t.timeout > 0 {
				_ = rd.SetReadDeadline(time.Now().Add(t.timeout))
			}
			var n int
			n, rerr = r.Read(buf[nr:])
			nr += n
			if rerr != nil || n == 0 || nr >= batch || nr == len(buf) {
				break
			}
		}
		if nr > 0 {
			if wd != nil && t.timeout > 0 {
				_ = wd.SetWriteDeadline(time.Now().Add(t.timeout))
			}
			nw, werr := w.Write(buf[:nr])
			if isTimeout(werr) && wd != nil {
				werr = t.stalled()
			}
			total += int64(nw)
			t.progress(int64(nw))
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

// isTimeout tells a deadline that expired (the data timeout's) from other errors. Not
// net.Error's Timeout(): it is also true for ETIMEDOUT, a connection the kernel gave up on
// (its keepalive probes or retransmissions went unanswered), which is no stall.
func isTimeout(err error) bool {
	return errors.Is(err, os.ErrDeadlineExceeded)
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
	t.drv.noteStorageError(err)
}

func (t *transferFile) Close() error {
	t.closeOnce.Do(func() { t.closeErr = t.finish() })
	return t.closeErr
}

func (t *transferFile) finish() error {
	var size int64 = -1 // what the file holds, for the usage of in-place and atomic uploads
	if t.upload {
		if fi, serr := t.f.Stat(); serr == nil {
			size = fi.Size()
		}
	}
	err := noSpace("close", t.vpath, t.f.Close())
	result := "ok"
	if t.tmpPath != "" {
		switch {
		case t.xferErr != nil || err != nil:
			// Interrupted: the previous file (if any) stays untouched.
			_ = os.Remove(t.tmpPath)
			t.limits.done(t, false, nil, 0)
		default:
			err = t.commit(size)
		}
	} else if t.upload {
		t.limits.done(t, true, nil, size)
	}
	if t.upload && err != nil {
		t.drv.noteStorageError(err)
	}
	if t.xferErr != nil {
		result = "aborted"
	} else if err != nil {
		result = "error"
	}
	direction := t.direction()
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

func (t *transferFile) direction() string {
	if t.upload {
		return "upload"
	}
	return "download"
}

// commit renames a completed atomic upload over its target and accounts for it: it adds the
// new file and removes the one it replaced, as it was at the rename (commitMu).
func (t *transferFile) commit(size int64) error {
	usage := t.drv.srv.usage
	usage.commitMu.Lock()
	defer usage.commitMu.Unlock()
	replaced, _ := os.Lstat(t.finalPath) // nil when there is none
	if err := os.Chmod(t.tmpPath, t.finalMode); err != nil {
		_ = os.Remove(t.tmpPath)
		t.limits.done(t, false, nil, 0)
		return virtualErr("chmod", t.vpath, err)
	}
	if err := os.Rename(t.tmpPath, t.finalPath); err != nil {
		_ = os.Remove(t.tmpPath)
		t.limits.done(t, false, nil, 0)
		return noSpace("rename", t.vpath, err)
	}
	t.limits.done(t, true, replaced, size)
	return nil
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
	if d.sess.conn != nil {
		d.sess.conn.fullVolumeReply.Store(false) // left by a transfer that got no reply (ABOR)
	}
	if err := d.srv.transferStart(d.sess.conn); err != nil {
		if d.sess.conn != nil {
			d.sess.conn.drainingReply.Store(true)
		}
		return nil, err
	}
	t := &transferFile{drv: d, vpath: cleanVirtual(name), upload: upload, start: time.Now(), timeout: d.srv.dyn.Load().limits.DataTimeout}
	t.limits = uploadLimits{quota: d.quota, user: d.sess.getUser(), usage: d.usage}
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
		err = t.openResume(name, offset)
	case flags&os.O_APPEND != 0 || flags&os.O_TRUNC == 0:
		// APPE and resumed STOR write in place: the data before the offset must be kept.
		err = t.openInPlace(name, os.O_WRONLY|os.O_CREATE|(flags&os.O_APPEND))
	case !d.srv.dyn.Load().atomicUploads:
		err = t.openInPlace(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC)
	default:
		err = t.openTemp(name)
	}
	if err != nil {
		d.noteStorageError(err)
		d.srv.transferDone()
		return nil, err
	}
	return t, nil
}

// noteStorageError makes the reply to a transfer that failed on a full volume a 452 (quota.go).
func (d *clientDriver) noteStorageError(err error) {
	var se *storageError
	if d.sess.conn != nil && errors.As(err, &se) && se.fullVolume {
		d.sess.conn.fullVolumeReply.Store(true)
	}
}

// openResume opens the target of a resumed STOR (REST offset, then STOR). The offset must not
// be beyond the end of the existing file: seeking past the end would make a sparse file of any
// size, and a missing file would be created empty before the seek failed. The size is taken
// from the opened handle, so the file checked is the file written.
func (t *transferFile) openResume(name string, offset int64) error {
	f, err := t.drv.fs.openFile(name, os.O_WRONLY, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return &fs.PathError{Op: "rest", Path: t.vpath, Err: fmt.Errorf("restart offset %d is beyond the end of the file (it does not exist)", offset)}
	}
	if err != nil {
		return err
	}
	fi, err := f.Stat()
	switch {
	case err != nil:
		err = virtualErr("stat", t.vpath, err)
	case fi.IsDir():
		err = &fs.PathError{Op: "stor", Path: t.vpath, Err: errors.New("is a directory")}
	case offset > fi.Size():
		err = &fs.PathError{Op: "rest", Path: t.vpath, Err: fmt.Errorf("restart offset %d is beyond the end of the file (%d bytes)", offset, fi.Size())}
	default:
		t.limits.base, t.limits.size0 = offset, fi.Size()
		err = t.limits.open(t, f.Name(), false)
	}
	if err != nil {
		_ = f.Close()
		return err
	}
	t.f = f
	return nil
}

// openInPlace opens the target of APPE or of a STOR without atomic uploads (flag has O_TRUNC):
// the file is written under its own name.
func (t *transferFile) openInPlace(name string, flag int) error {
	fsys := t.drv.fs
	real, err := fsys.resolve("stor", name, true)
	if err != nil {
		return err
	}
	var before int64
	fi, err := os.Stat(real)
	created := errors.Is(err, fs.ErrNotExist)
	if err == nil && fi.Mode().IsRegular() {
		before = fi.Size()
	}
	l := &t.limits
	if flag&os.O_APPEND != 0 {
		l.base, l.size0 = before, before
	}
	if err := l.open(t, real, created); err != nil {
		return err
	}
	f, err := fsys.openFile(name, flag, 0o644)
	if err != nil {
		l.release()
		return noSpace("stor", t.vpath, err)
	}
	t.f, t.appendMode = f, flag&os.O_APPEND != 0
	usage := t.drv.srv.usage
	if created {
		usage.changed(real, 0, 1)
	} else if flag&os.O_TRUNC != 0 {
		usage.changed(real, -before, 0)
	}
	l.release() // the new file, if any, is on the volume now
	return nil
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
	fi, err := os.Stat(final)
	switch {
	case err == nil && fi.IsDir():
		return &fs.PathError{Op: "stor", Path: t.vpath, Err: errors.New("is a directory")}
	case err == nil:
		t.finalMode = fi.Mode().Perm()
	case !errors.Is(err, fs.ErrNotExist):
		return virtualErr("stor", name, err)
	}
	t.limits.atomic = true
	if err := t.limits.open(t, final, err != nil); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(final), tempPrefix+"*")
	if err != nil {
		t.limits.release()
		return noSpace("stor", name, err)
	}
	t.f, t.tmpPath, t.finalPath = f, f.Name(), final
	return nil
}

// uploadLimits are the limits of one upload, and what it holds against its user's quota.
type uploadLimits struct {
	quota Quota
	user  string
	usage *usageTracker // the uploader's home; nil without a bytes or files quota

	atomic bool   // written to a temporary, renamed over real when complete
	real   string // the file the upload leaves
	// base is the file's size before the first byte written (the APPE size, the REST offset;
	// 0 for STOR); size0 its size when opened: an in-place upload grows the file beyond it.
	base, size0 int64
	written     int64 // bytes admitted so far

	reservedBytes, reservedFiles int64 // held on usage
	grown                        int64 // in place: growth accounted so far
}

// open checks what can be checked before the first byte (the file count, a file already at the
// maximum size) and reserves the file an upload creates.
func (l *uploadLimits) open(t *transferFile, real string, creates bool) error {
	l.real = real
	if max := l.quota.MaxFileSize; max > 0 && l.base >= max {
		return &fs.PathError{Op: "stor", Path: t.vpath, Err: quotaError("files may not be larger than %d bytes, and this one already has %d", max, l.base)}
	}
	if creates && l.usage != nil {
		if err := l.usage.reserve(l.user, l.quota, 0, 1); err != nil {
			return &fs.PathError{Op: "stor", Path: t.vpath, Err: err}
		}
		l.reservedFiles = 1
	}
	return nil
}

// growth is by how much the file exceeds its size at open once w bytes are written.
func (l *uploadLimits) growth(w int64) int64 { return max(0, l.base+w-l.size0) }

// admit lets n more bytes be written, or says which limit they would exceed. Bytes of an atomic
// upload are reserved until it completes; bytes written in place are on the volume at once.
func (l *uploadLimits) admit(t *transferFile, n int64) error {
	next := l.written + n
	if max := l.quota.MaxFileSize; max > 0 && l.base+next > max {
		return quotaError("files may not be larger than %d bytes", max)
	}
	if grow := l.growth(next) - l.growth(l.written); grow > 0 {
		if l.usage != nil {
			if err := l.usage.reserve(l.user, l.quota, grow, 0); err != nil {
				return err
			}
			l.reservedBytes += grow
		}
		if !l.atomic {
			t.drv.srv.usage.changed(l.real, grow, 0)
			l.grown += grow
			l.release()
		}
	}
	l.written = next
	return nil
}

// release gives back what the upload holds on its user's usage.
func (l *uploadLimits) release() {
	if l.usage != nil && (l.reservedBytes != 0 || l.reservedFiles != 0) {
		l.usage.release(l.reservedBytes, l.reservedFiles)
	}
	l.reservedBytes, l.reservedFiles = 0, 0
}

// done accounts for the end of an upload. size is what the file holds (-1: unknown). An atomic
// upload that was renamed (committed) replaced the file replaced (nil: none); one that was not
// only gives its reservation back. An in-place upload corrects its growth to what the file
// really gained.
func (l *uploadLimits) done(t *transferFile, committed bool, replaced fs.FileInfo, size int64) {
	usage := t.drv.srv.usage
	switch {
	case l.atomic && committed && size >= 0:
		bytes, files := size, int64(1)
		if replaced != nil && replaced.Mode().IsRegular() {
			bytes, files = size-replaced.Size(), 0
		}
		usage.changed(l.real, bytes, files)
	case l.atomic && committed:
		usage.rescanSoon(l.real)
	case !l.atomic && size >= 0:
		usage.changed(l.real, max(0, size-l.size0)-l.grown, 0)
	}
	l.release()
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
