package ftpd

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// How the bytes of a transfer move between the file and a plain-TCP data connection
// (docs/benchmarks.md has the measurements behind the defaults, docs/ftpd.md the settings).
//
// ftpserverlib copies with io.Copy(conn, file) and io.Copy(file, conn); the file side is our
// transferFile, so io.Copy always lands in transferFile.WriteTo or ReadFrom, and those choose:
//
//   - sendfile(2) for downloads: the kernel hands page-cache pages to the socket, no byte
//     passes through user space. Go's own fast path (net.TCPConn.ReadFrom(*os.File)) cannot be
//     reached here: the connection ftpserverlib holds is our *dataConn wrapper (it carries the
//     session, for TLS session reuse) and the file is behind transferFile (byte counting,
//     quotas, the atomic rename), and neither is what the net and os packages recognise. It
//     would also bound the whole transfer by one deadline where the data timeout is an
//     inactivity timeout. So the daemon calls sendfile itself, on the raw descriptors.
//   - splice(2) for uploads: socket -> pipe -> file, which saves the copy into a user-space
//     buffer (the pipe holds references to the socket's pages; the file system copies once,
//     into the page cache).
//   - a read/write loop through a 1 MiB buffer otherwise: TLS data connections (the bytes
//     must be encrypted in user space; the kernel's TLS offload is not in Go's standard
//     library), APPE (splice cannot write to an O_APPEND file), or when configured.
//
// Every path refreshes the data connection's deadline whenever bytes moved, so that the data
// timeout ends a transfer only after that long without progress, counts the bytes for the
// transfer log and the metrics as it goes, and applies the upload limits before writing.

// CopyPath names how a transfer's bytes are moved (Config.DownloadCopy, Config.UploadCopy).
type CopyPath string

// Copy paths. CopyAuto picks the zero-copy path of the direction when the data connection is
// plain TCP (sendfile for downloads, splice for uploads), else CopyBuffered.
const (
	CopyAuto     CopyPath = "auto"
	CopySendfile CopyPath = "sendfile" // downloads only
	CopySplice   CopyPath = "splice"   // uploads only
	CopyBuffered CopyPath = "buffered"
)

func validateCopyPath(p *CopyPath, what string, zeroCopy CopyPath) error {
	switch *p {
	case "":
		*p = CopyAuto
	case CopyAuto, CopyBuffered, zeroCopy:
	default:
		return fmt.Errorf("invalid %s copy path %q (want %s, %s or %s)", what, *p, CopyAuto, zeroCopy, CopyBuffered)
	}
	return nil
}

const (
	// sendfileChunk is the most one sendfile call is asked to move. The call returns as soon as
	// the socket's send buffer is full, so this only bounds how long one call may run while the
	// client keeps up (and so how stale the byte count may be).
	sendfileChunk = 16 << 20
	// splicePipeSize is the pipe an upload splices through; the default pipe-max-size.
	// Unprivileged processes may get less, which only costs more calls.
	splicePipeSize = 1 << 20
)

// rawTCP is a plain TCP data connection whose descriptor the copy paths can use.
type rawTCP interface {
	net.Conn
	syscall.Conn
}

// tcpOf returns the plain TCP connection under a data connection as the transfer sees it: our
// passive *dataConn, the *net.TCPConn of an active connection, or that connection as io.Copy
// passes it to ReadFrom for an active upload (net wraps it to hide its own WriteTo). A TLS
// connection (or anything else) gives nil.
func tcpOf(conn any) rawTCP {
	if dc, ok := conn.(*dataConn); ok {
		conn = dc.Conn
	}
	rc, ok := conn.(rawTCP)
	if !ok {
		return nil
	}
	if _, tcp := rc.LocalAddr().(*net.TCPAddr); !tcp {
		return nil
	}
	return rc
}

// downloadPath is the path a download to conn takes.
func (t *transferFile) downloadPath(conn io.Writer) (CopyPath, rawTCP) {
	if p := t.drv.srv.cfg.DownloadCopy; p != CopyBuffered {
		if tc := tcpOf(conn); tc != nil {
			return CopySendfile, tc
		}
	}
	return CopyBuffered, nil
}

// uploadPath is the path an upload from conn takes.
func (t *transferFile) uploadPath(conn io.Reader) (CopyPath, rawTCP) {
	if p := t.drv.srv.cfg.UploadCopy; p != CopyBuffered && !t.appendMode {
		if tc := tcpOf(conn); tc != nil {
			return CopySplice, tc
		}
	}
	return CopyBuffered, nil
}

// WriteTo sends a download to the data connection; it returns once the client has it.
func (t *transferFile) WriteTo(w io.Writer) (int64, error) {
	path, tc := t.downloadPath(w)
	t.setPath(path)
	var n int64
	var err error
	if path == CopySendfile {
		n, err = t.sendfile(tc)
	} else {
		n, err = t.copy(w, t.f)
	}
	if err == nil {
		err = t.awaitDelivery(w)
	}
	return n, err
}

// awaitDelivery looks at the send queue after 1 ms, then twice as long each time up to
// deliveryPoll: on a fast path (loopback, a LAN) the last ACK comes within microseconds, and a
// small file must not wait a whole poll period.
const deliveryPoll = 20 * time.Millisecond

// awaitDelivery waits until the client has acknowledged every byte of the download. The kernel
// takes a write as soon as the bytes fit in the socket's send buffer, megabytes before a slow
// client has them; a transfer must not count as done before (its 226, and a drain's count of
// transfers in flight), or a daemon that drains and exits takes the tail of the file with the
// pod's network namespace and the client waits for it forever. A queue that does not shrink
// for the data timeout ends the transfer as stalled, like the copy.
func (t *transferFile) awaitDelivery(w io.Writer) error {
	sc := socketOf(w)
	if sc == nil {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	last, since, pause := -1, time.Now(), time.Millisecond
	for {
		n, err := unsentBytes(rc)
		if err != nil || n == 0 {
			return nil // delivered (or the kernel cannot tell)
		}
		if n != last {
			last, since = n, time.Now()
		} else if t.timeout > 0 && time.Since(since) > t.timeout {
			return t.stalled()
		}
		time.Sleep(pause)
		pause = min(2*pause, deliveryPoll)
	}
}

// socketOf is the TCP socket under a data connection: plain, under TLS, or to the relaying
// replica; nil when there is none.
func socketOf(w io.Writer) syscall.Conn {
	conn := any(w)
	for range 3 { // TLS over our dataConn over the socket, at most
		switch c := conn.(type) {
		case *dataConn:
			conn = c.Conn
		case *tls.Conn:
			conn = c.NetConn()
		}
	}
	sc, _ := conn.(syscall.Conn)
	return sc
}

// ReadFrom copies an upload into the file.
func (t *transferFile) ReadFrom(r io.Reader) (int64, error) {
	path, tc := t.uploadPath(r)
	t.setPath(path)
	if path == CopySplice {
		return t.splice(tc)
	}
	return t.copy(fileWriter{t}, r)
}

// setPath records the path the transfer's bytes take from now on.
func (t *transferFile) setPath(p CopyPath) {
	t.path = p
	t.pathBytes = t.drv.srv.metrics.copyBytes.WithLabelValues(t.direction(), string(p))
}

// progress counts n bytes moved by the current path.
func (t *transferFile) progress(n int64) {
	t.bytes += n
	t.pathBytes.Add(float64(n))
}

// sendfile sends the rest of the file (from its current offset, a REST position) to tc.
func (t *transferFile) sendfile(tc rawTCP) (int64, error) {
	src, err := t.f.SyscallConn()
	if err != nil {
		return 0, virtualErr("read", t.vpath, err)
	}
	dst, err := tc.SyscallConn()
	if err != nil {
		return 0, err
	}
	t.refresh(tc.SetWriteDeadline)
	var total int64
	var serr error
	var fallback bool // the file system cannot be read by sendfile: copy through the buffer
	ferr := src.Control(func(in uintptr) {
		werr := dst.Write(func(out uintptr) bool {
			moved := false
			for {
				n, err := t.sys().sendfile(int(out), int(in), nil, sendfileChunk)
				if n > 0 {
					total += int64(n)
					t.progress(int64(n))
					moved = true
				}
				switch {
				case errors.Is(err, unix.EINTR):
				case errors.Is(err, unix.EAGAIN):
					// The socket's buffer is full: wait until it drains, at most the data
					// timeout from the last byte that moved.
					if moved {
						t.refresh(tc.SetWriteDeadline)
					}
					return false
				case total == 0 && (errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EOPNOTSUPP)):
					fallback = true
					return true
				case err != nil:
					serr = os.NewSyscallError("sendfile", err)
					return true
				case n == 0:
					return true // end of file
				}
			}
		})
		if serr == nil && werr != nil {
			serr = werr
		}
	})
	if serr == nil && ferr != nil {
		serr = virtualErr("read", t.vpath, ferr)
	}
	if isTimeout(serr) {
		serr = t.stalled()
	}
	if fallback && serr == nil {
		t.setPath(CopyBuffered)
		return t.copy(tc, t.f)
	}
	return total, serr
}

// splice moves an upload from tc into the file through a pipe. The socket's pages go into the
// pipe by reference; from there the file system copies them into the page cache.
func (t *transferFile) splice(tc rawTCP) (int64, error) {
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		t.setPath(CopyBuffered) // out of descriptors for a pipe: the buffer needs none
		return t.copy(fileWriter{t}, tc)
	}
	pr, pw := p[0], p[1]
	defer func() { _ = unix.Close(pr); _ = unix.Close(pw) }()
	size := splicePipeSize
	if got, err := unix.FcntlInt(uintptr(pw), unix.F_SETPIPE_SZ, splicePipeSize); err != nil {
		if got, err = unix.FcntlInt(uintptr(pw), unix.F_GETPIPE_SZ, 0); err == nil {
			size = got
		} else {
			size = 64 << 10
		}
	} else {
		size = got
	}
	src, err := tc.SyscallConn()
	if err != nil {
		return 0, err
	}
	dst, err := t.f.SyscallConn()
	if err != nil {
		return 0, virtualErr("write", t.vpath, err)
	}
	t.refresh(tc.SetReadDeadline)
	var total int64
	var serr error
	var fallback bool // the file system cannot take a splice: the rest goes through the buffer
	ferr := dst.Control(func(out uintptr) {
		rerr := src.Read(func(in uintptr) bool {
			moved := false
			for {
				n, err := t.sys().splice(int(in), nil, pw, nil, size, unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
				switch {
				case errors.Is(err, unix.EINTR):
					continue
				case errors.Is(err, unix.EAGAIN):
					if moved {
						t.refresh(tc.SetReadDeadline)
					}
					return false // wait for the client's next bytes
				case err != nil:
					serr = os.NewSyscallError("splice", err)
					return true
				case n == 0:
					return true // the client closed: the upload is complete
				}
				moved = true
				if err := t.limits.admit(t, n); err != nil {
					serr = &os.PathError{Op: "stor", Path: t.vpath, Err: err}
					return true
				}
				w, err := t.drainPipe(pr, int(out), int(n))
				total += w
				t.progress(w)
				switch {
				case err == nil:
				case w == 0 && total == 0 && (errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS)):
					// This file system takes no splice: write what is in the pipe, and copy
					// the rest through the buffer.
					fallback = true
					w, err = t.unpipe(pr, int(n))
					total += w
					serr = err
				default:
					serr = noSpace("write", t.vpath, os.NewSyscallError("splice", err))
				}
				if err != nil || fallback {
					return true
				}
			}
		})
		if serr == nil && rerr != nil {
			serr = rerr
		}
	})
	if serr == nil && ferr != nil {
		serr = virtualErr("write", t.vpath, ferr)
	}
	if isTimeout(serr) {
		serr = t.stalled()
	}
	if fallback && serr == nil {
		n, err := t.copy(fileWriter{t}, tc)
		return total + n, err
	}
	return total, serr
}

// drainPipe splices n bytes from the pipe into the file (a regular file: splice blocks until
// written, no EAGAIN).
func (t *transferFile) drainPipe(pr, out, n int) (int64, error) {
	var w int64
	for int(w) < n {
		m, err := t.sys().splice(pr, nil, out, nil, n-int(w), unix.SPLICE_F_MOVE)
		if m > 0 {
			w += m
		}
		switch {
		case errors.Is(err, unix.EINTR):
		case err != nil:
			return w, err
		case m == 0:
			return w, io.ErrShortWrite
		}
	}
	return w, nil
}

// unpipe writes the n bytes left in the pipe with write(2), when the file system refused the
// first splice into the file (they were already admitted by the upload limits), and switches
// the transfer to the buffered path.
func (t *transferFile) unpipe(pr, n int) (int64, error) {
	buf := make([]byte, n)
	for got := 0; got < n; {
		m, err := unix.Read(pr, buf[got:])
		if m > 0 {
			got += m
		}
		if err != nil && !errors.Is(err, unix.EINTR) {
			return 0, os.NewSyscallError("read pipe", err)
		}
	}
	t.setPath(CopyBuffered)
	w, err := t.f.Write(buf)
	t.progress(int64(w))
	return int64(w), noSpace("write", t.vpath, err)
}

// copySyscalls are the system calls of the zero-copy paths; tests replace them to play a file
// system that refuses them.
type copySyscalls struct {
	sendfile func(out, in int, off *int64, count int) (int, error)
	splice   func(rfd int, roff *int64, wfd int, woff *int64, n int, flags int) (int64, error)
}

var realCopySyscalls = copySyscalls{sendfile: unix.Sendfile, splice: unix.Splice}

func (t *transferFile) sys() *copySyscalls {
	if s := t.drv.srv.cfg.copySyscalls; s != nil {
		return s
	}
	return &realCopySyscalls
}

// refresh moves a deadline of the data connection to the data timeout from now.
func (t *transferFile) refresh(set func(time.Time) error) {
	if t.timeout > 0 {
		_ = set(time.Now().Add(t.timeout))
	}
}
