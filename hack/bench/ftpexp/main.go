// Command ftpexp is a minimal FTP server on ftpserverlib used by hack/bench.sh to compare ways of
// copying file data (BENCH_EXPERIMENTS). It is a measuring tool, not a server to deploy: one
// user, no confinement beyond a base path, no TLS, no limits.
//
//	go run ./hack/bench/ftpexp --listen 127.0.0.1:2210 --root DIR --user bench:pass \
//	    --passive-ports 40100-40109 --upload buf1m --download sendfile
//
// Upload strategies (STOR, data connection -> file):
//
//	copy32k  io.Copy's default 32 KiB buffer (the file does not implement io.ReaderFrom)
//	bufN     a read/write loop with an N-byte buffer: buf256k, buf1m, buf4m, buf16m
//	splice   (*os.File).ReadFrom on the TCP connection, i.e. splice(2) through a pipe
//
// Download strategies (RETR, file -> data connection):
//
//	sendfile (*os.File).WriteTo, i.e. sendfile(2)
//	bufN     a read/write loop with an N-byte buffer
//	warmN    sendfile(2) of N bytes at a time, each chunk first read (pread) into an N-byte
//	         scratch buffer that is thrown away: not a strategy to ship, a probe. Over loopback
//	         the client copies the page-cache pages that sendfile queued; read just before,
//	         they are in the CPU cache instead of cold memory, which shows what that costs.
//
// --rcvbuf/--sndbuf set SO_RCVBUF/SO_SNDBUF on data connections (0: kernel autotuning).
package main

import (
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	ftpserver "github.com/fclairamb/ftpserverlib"
	"github.com/spf13/afero"
)

type options struct {
	listen, root, user, pass string
	ports                    ftpserver.PortRange
	upload, download         string
	uploadBuf, downloadBuf   int
	rcvbuf, sndbuf           int
}

func main() {
	var o options
	var user, ports string
	flag.StringVar(&o.listen, "listen", "127.0.0.1:2210", "control address")
	flag.StringVar(&o.root, "root", "", "directory served (required)")
	flag.StringVar(&user, "user", "bench:bench", "NAME:PASSWORD")
	flag.StringVar(&ports, "passive-ports", "40100-40109", "START-END")
	flag.StringVar(&o.upload, "upload", "buf1m", "upload strategy: copy32k, bufN (buf256k, buf1m, buf4m...), splice")
	flag.StringVar(&o.download, "download", "sendfile", "download strategy: sendfile, bufN")
	flag.IntVar(&o.rcvbuf, "rcvbuf", 0, "SO_RCVBUF of data connections in bytes (0: autotuning)")
	flag.IntVar(&o.sndbuf, "sndbuf", 0, "SO_SNDBUF of data connections in bytes (0: autotuning)")
	flag.Parse()
	if err := o.finish(user, ports); err != nil {
		fmt.Fprintln(os.Stderr, "ftpexp:", err)
		os.Exit(2)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	srv := ftpserver.NewFtpServer(&mainDriver{o: o})
	srv.Logger = logger
	go func() {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
		<-sig
		_ = srv.Stop()
	}()
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, net.ErrClosed) {
		fmt.Fprintln(os.Stderr, "ftpexp:", err)
		os.Exit(1)
	}
}

func (o *options) finish(user, ports string) error {
	if o.root == "" {
		return errors.New("--root is required")
	}
	var ok bool
	if o.user, o.pass, ok = strings.Cut(user, ":"); !ok {
		return errors.New("--user must be NAME:PASSWORD")
	}
	a, b, ok := strings.Cut(ports, "-")
	start, err1 := strconv.Atoi(a)
	end, err2 := strconv.Atoi(b)
	if !ok || err1 != nil || err2 != nil || start < 1 || end < start || end > 65535 {
		return fmt.Errorf("bad --passive-ports %q", ports)
	}
	o.ports = ftpserver.PortRange{Start: start, End: end}
	var err error
	switch {
	case o.upload == "copy32k" || o.upload == "splice":
	case strings.HasPrefix(o.upload, "buf"):
		if o.uploadBuf, err = parseSize(strings.TrimPrefix(o.upload, "buf")); err != nil {
			return fmt.Errorf("--upload: %w", err)
		}
	default:
		return fmt.Errorf("unknown --upload %q", o.upload)
	}
	switch {
	case o.download == "sendfile":
	case strings.HasPrefix(o.download, "buf"):
		if o.downloadBuf, err = parseSize(strings.TrimPrefix(o.download, "buf")); err != nil {
			return fmt.Errorf("--download: %w", err)
		}
	case strings.HasPrefix(o.download, "warm"):
		if o.downloadBuf, err = parseSize(strings.TrimPrefix(o.download, "warm")); err != nil {
			return fmt.Errorf("--download: %w", err)
		}
	default:
		return fmt.Errorf("unknown --download %q", o.download)
	}
	return nil
}

// parseSize reads "256k", "1m", "4m".
func parseSize(s string) (int, error) {
	mult := 1
	switch {
	case strings.HasSuffix(s, "k"):
		mult, s = 1<<10, strings.TrimSuffix(s, "k")
	case strings.HasSuffix(s, "m"):
		mult, s = 1<<20, strings.TrimSuffix(s, "m")
	}
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("bad size %q", s)
	}
	return n * mult, nil
}

type mainDriver struct{ o options }

func (d *mainDriver) GetSettings() (*ftpserver.Settings, error) {
	return &ftpserver.Settings{
		ListenAddr:                      d.o.listen,
		PassiveTransferPortRange:        d.o.ports,
		PassiveTransferPortMultiplexing: true,
		DisableActiveMode:               true,
		ConnectionTimeout:               30,
		IdleTimeout:                     300,
	}, nil
}

func (d *mainDriver) ClientConnected(ftpserver.ClientContext) (string, error) {
	return "ftpexp ready", nil
}

func (d *mainDriver) ClientDisconnected(ftpserver.ClientContext) {}

func (d *mainDriver) AuthUser(_ ftpserver.ClientContext, user, pass string) (ftpserver.ClientDriver, error) {
	if user != d.o.user || pass != d.o.pass {
		return nil, errors.New("login incorrect")
	}
	return &clientDriver{Fs: afero.NewBasePathFs(afero.NewOsFs(), d.o.root), o: &d.o}, nil
}

func (d *mainDriver) GetTLSConfig() (*tls.Config, error) { return nil, errors.New("no TLS") }

type clientDriver struct {
	afero.Fs
	o *options
}

var _ ftpserver.ClientDriverExtentionFileTransfer = (*clientDriver)(nil)

func (c *clientDriver) GetHandle(name string, flags int, offset int64) (ftpserver.FileTransfer, error) {
	real := filepath.Join(c.o.root, filepath.Clean("/"+name))
	upload := flags&(os.O_WRONLY|os.O_RDWR) != 0
	if upload && offset == 0 && flags&os.O_APPEND == 0 {
		flags |= os.O_TRUNC
	}
	f, err := os.OpenFile(real, flags, 0o644)
	if err != nil {
		return nil, err
	}
	if offset > 0 {
		if _, err := f.Seek(offset, io.SeekStart); err != nil {
			_ = f.Close()
			return nil, err
		}
	}
	base := &plainFile{f: f}
	if upload {
		switch c.o.upload {
		case "copy32k":
			return base, nil
		case "splice":
			return &spliceUpload{plainFile: base, o: c.o}, nil
		default:
			return &bufUpload{plainFile: base, o: c.o}, nil
		}
	}
	if c.o.download == "sendfile" {
		return &sendfileDownload{plainFile: base, o: c.o}, nil
	}
	if strings.HasPrefix(c.o.download, "warm") {
		return &warmDownload{plainFile: base, o: c.o}, nil
	}
	return &bufDownload{plainFile: base, o: c.o}, nil
}

// plainFile has no io.ReaderFrom/io.WriterTo, so io.Copy uses its 32 KiB buffer (unless the
// connection side offers a fast path).
type plainFile struct{ f *os.File }

func (p *plainFile) Read(b []byte) (int, error)                { return p.f.Read(b) }
func (p *plainFile) Write(b []byte) (int, error)               { return p.f.Write(b) }
func (p *plainFile) Seek(off int64, whence int) (int64, error) { return p.f.Seek(off, whence) }
func (p *plainFile) Close() error                              { return p.f.Close() }

// tuneConn applies --rcvbuf/--sndbuf to a data connection.
func tuneConn(conn any, o *options) {
	tc, ok := conn.(*net.TCPConn)
	if !ok {
		return
	}
	if o.rcvbuf > 0 {
		_ = tc.SetReadBuffer(o.rcvbuf)
	}
	if o.sndbuf > 0 {
		_ = tc.SetWriteBuffer(o.sndbuf)
	}
}

type bufUpload struct {
	*plainFile
	o *options
}

func (u *bufUpload) ReadFrom(r io.Reader) (int64, error) {
	tuneConn(r, u.o)
	return copyLoop(u.f, r, u.o.uploadBuf)
}

type spliceUpload struct {
	*plainFile
	o *options
}

// ReadFrom hands the connection to (*os.File).ReadFrom, which splices a TCP socket into the
// file through a pipe.
func (u *spliceUpload) ReadFrom(r io.Reader) (int64, error) {
	tuneConn(r, u.o)
	return u.f.ReadFrom(r)
}

type sendfileDownload struct {
	*plainFile
	o *options
}

func (d *sendfileDownload) WriteTo(w io.Writer) (int64, error) {
	tuneConn(w, d.o)
	return d.f.WriteTo(w)
}

type bufDownload struct {
	*plainFile
	o *options
}

func (d *bufDownload) WriteTo(w io.Writer) (int64, error) {
	tuneConn(w, d.o)
	return copyLoop(w, d.f, d.o.downloadBuf)
}

type warmDownload struct {
	*plainFile
	o *options
}

// WriteTo reads each chunk into a scratch buffer (pulling it into the CPU cache), then sends the
// same bytes with sendfile ((*net.TCPConn).ReadFrom of a LimitedReader of the file).
func (d *warmDownload) WriteTo(w io.Writer) (int64, error) {
	tuneConn(w, d.o)
	tc, ok := w.(*net.TCPConn)
	if !ok {
		return copyLoop(w, d.f, d.o.downloadBuf)
	}
	pos, err := d.f.Seek(0, io.SeekCurrent)
	if err != nil {
		return 0, err
	}
	scratch := make([]byte, d.o.downloadBuf)
	var total int64
	for {
		n, rerr := d.f.ReadAt(scratch, pos)
		if n > 0 {
			sent, err := tc.ReadFrom(&io.LimitedReader{R: d.f, N: int64(n)})
			total += sent
			pos += sent
			if err != nil {
				return total, err
			}
		}
		if rerr == io.EOF || n == 0 {
			return total, nil
		}
		if rerr != nil {
			return total, rerr
		}
	}
}

func copyLoop(dst io.Writer, src io.Reader, size int) (int64, error) {
	buf := make([]byte, size)
	var total int64
	for {
		nr, rerr := src.Read(buf)
		if nr > 0 {
			nw, werr := dst.Write(buf[:nr])
			total += int64(nw)
			if werr != nil {
				return total, werr
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
