package ftpd

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/jlaffaye/ftp"
	dto "github.com/prometheus/client_model/go"
	"golang.org/x/sys/unix"
)

// copiedBytes is the copy path counter of ts: the bytes that direction moved by path.
func copiedBytes(t *testing.T, ts *testServer, direction string, path CopyPath) int64 {
	t.Helper()
	var m dto.Metric
	if err := ts.metrics.copyBytes.WithLabelValues(direction, string(path)).Write(&m); err != nil {
		t.Fatal(err)
	}
	return int64(m.GetCounter().GetValue())
}

// checkCopied fails unless direction moved exactly want bytes by path and none by the others.
func checkCopied(t *testing.T, ts *testServer, direction string, path CopyPath, want int64) {
	t.Helper()
	for _, p := range []CopyPath{CopySendfile, CopySplice, CopyBuffered} {
		n := int64(0)
		if p == path {
			n = want
		}
		if got := copiedBytes(t, ts, direction, p); got != n {
			t.Errorf("%s bytes moved by %s: %d, want %d", direction, p, got, n)
		}
	}
}

// TestCopyPaths: each transfer takes the copy path its configuration and connection call for
// (counted by the path's own loop, as it moves the bytes, in ftpd_transfer_copy_bytes_total),
// and moves the right bytes on it: whole files, from a REST offset, appended, over plain TCP in
// passive and active mode, and over TLS, which always buffers.
func TestCopyPaths(t *testing.T) {
	const size = 8<<20 + 12_345 // more than the socket buffers hold, not a multiple of a page
	payload := randomBytes(t, size)
	tests := []struct {
		name           string
		download, upld CopyPath // configuration
		tls            bool
		// what the transfers must use
		wantDown, wantUp CopyPath
	}{
		{"auto", CopyAuto, CopyAuto, false, CopySendfile, CopySplice},
		{"zero-copy named", CopySendfile, CopySplice, false, CopySendfile, CopySplice},
		{"buffered", CopyBuffered, CopyBuffered, false, CopyBuffered, CopyBuffered},
		{"sendfile, buffered uploads", CopySendfile, CopyBuffered, false, CopySendfile, CopyBuffered},
		{"TLS with auto", CopyAuto, CopyAuto, true, CopyBuffered, CopyBuffered},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			mutate := func(c *Config) { c.DownloadCopy, c.UploadCopy = tt.download, tt.upld }
			var c *ftp.ServerConn
			var ts *testServer
			if tt.tls {
				var cert testCert
				ts, cert = startTLSServer(t, TLSExplicit, mutate)
				c = ts.dial(t, "alice", alicePass, ftp.DialWithExplicitTLS(cert.clientConfig()))
			} else {
				ts = startServer(t, mutate)
				c = ts.dial(t, "alice", alicePass)
			}
			if err := c.Stor("f.bin", bytes.NewReader(payload)); err != nil {
				t.Fatal(err)
			}
			if got, _ := os.ReadFile(filepath.Join(ts.home("alice"), "f.bin")); sum(got) != sum(payload) {
				t.Fatalf("STOR stored %d bytes that differ from the %d sent", len(got), len(payload))
			}
			checkCopied(t, ts, "upload", tt.wantUp, size)
			got, err := readAll(t, c, "f.bin")
			if err != nil || sum(got) != sum(payload) {
				t.Fatalf("RETR: %d bytes (%v), want the %d stored", len(got), err, len(payload))
			}
			checkCopied(t, ts, "download", tt.wantDown, size)

			// From a REST offset, both ways: a resumed STOR rewrites the tail in place.
			const off = 1<<20 + 7
			r, err := c.RetrFrom("f.bin", off)
			if err != nil {
				t.Fatal(err)
			}
			tail, err := io.ReadAll(r)
			_ = r.Close()
			if err != nil || !bytes.Equal(tail, payload[off:]) {
				t.Fatalf("RETR from %d: %d bytes (%v) that differ from the file's tail", off, len(tail), err)
			}
			checkCopied(t, ts, "download", tt.wantDown, 2*size-off)
			newTail := randomBytes(t, 3<<20)
			if err := c.StorFrom("f.bin", bytes.NewReader(newTail), off); err != nil {
				t.Fatal(err)
			}
			want := bytes.Clone(payload)
			copy(want[off:], newTail) // in place: what lies beyond the new bytes stays
			if got, _ := os.ReadFile(filepath.Join(ts.home("alice"), "f.bin")); sum(got) != sum(want) {
				t.Fatalf("STOR from %d left %d bytes, want the new bytes from %d, the rest kept", off, len(got), off)
			}
			checkCopied(t, ts, "upload", tt.wantUp, size+int64(len(newTail)))

			// APPE: the file is opened O_APPEND, which splice cannot write to: always buffered.
			before := copiedBytes(t, ts, "upload", CopyBuffered)
			more := randomBytes(t, 2<<20+1)
			if err := c.Append("f.bin", bytes.NewReader(more)); err != nil {
				t.Fatal(err)
			}
			want = append(want, more...)
			if got, _ := os.ReadFile(filepath.Join(ts.home("alice"), "f.bin")); sum(got) != sum(want) {
				t.Fatalf("APPE left %d bytes, want %d", len(got), len(want))
			}
			if got := copiedBytes(t, ts, "upload", CopyBuffered) - before; got != int64(len(more)) {
				t.Errorf("APPE moved %d bytes through the buffer, want all %d", got, len(more))
			}
		})
	}
}

// TestCopyPathsActiveMode: active data connections (EPRT, dialled by ftpserverlib) are plain
// TCP connections too, and take the zero-copy paths.
func TestCopyPathsActiveMode(t *testing.T) {
	ts := startServer(t, func(c *Config) { c.ActiveMode = true })
	payload := randomBytes(t, 6<<20+3)
	rc := dialRaw(t, ts.Addr())
	rc.login("alice", alicePass)
	transfer := func(cmd string, data func(net.Conn)) {
		t.Helper()
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		rc.mustCmd(200, "EPRT |1|127.0.0.1|%d|", ln.Addr().(*net.TCPAddr).Port)
		if _, err := rc.conn.Write([]byte(cmd + "\r\n")); err != nil {
			t.Fatal(err)
		}
		_ = ln.(*net.TCPListener).SetDeadline(time.Now().Add(10 * time.Second))
		conn, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		rc.expect(150)
		data(conn)
		rc.expect(226)
	}
	transfer("STOR a.bin", func(conn net.Conn) {
		if _, err := conn.Write(payload); err != nil {
			t.Fatal(err)
		}
		_ = conn.Close()
	})
	if got, _ := os.ReadFile(filepath.Join(ts.home("alice"), "a.bin")); sum(got) != sum(payload) {
		t.Fatalf("active STOR stored %d bytes that differ from the %d sent", len(got), len(payload))
	}
	checkCopied(t, ts, "upload", CopySplice, int64(len(payload)))
	transfer("RETR a.bin", func(conn net.Conn) {
		got, err := io.ReadAll(conn)
		if err != nil || sum(got) != sum(payload) {
			t.Fatalf("active RETR: %d bytes (%v), want %d", len(got), err, len(payload))
		}
		_ = conn.Close()
	})
	checkCopied(t, ts, "download", CopySendfile, int64(len(payload)))
}

// TestDataTimeoutIsInactivity: the data timeout ends a transfer that moves nothing for that
// long (TestStalledDataConnection), not one that takes longer than that while it keeps moving:
// a client that reads a download, or writes an upload, in small steps with pauses far below
// the timeout finishes, on every copy path, although the whole transfer takes longer than
// the timeout. A path that set its deadline once, at the start, would cut these transfers off.
func TestDataTimeoutIsInactivity(t *testing.T) {
	const (
		timeout = time.Second
		step    = 256 << 10
		pause   = 25 * time.Millisecond
		// 96 steps of 25 ms: about 2.4 s of pauses once the socket buffers (a few MiB) are full.
		size = 96 * step
	)
	payload := randomBytes(t, size)
	for _, path := range []CopyPath{CopyAuto, CopyBuffered} {
		for _, upload := range []bool{false, true} {
			name := string(path) + ", download"
			if upload {
				name = string(path) + ", upload"
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				ts := startServer(t, func(c *Config) {
					c.Limits.DataTimeout = timeout
					c.DownloadCopy, c.UploadCopy = path, path
				})
				writeFile(t, filepath.Join(ts.home("alice"), "slow.bin"), payload)
				rc := dialRaw(t, ts.Addr())
				rc.login("alice", alicePass)
				data := rc.epsv()
				defer data.Close()
				// A small receive buffer, so that the server's side fills and waits on us.
				_ = data.SetReadBuffer(64 << 10)
				start := time.Now()
				if upload {
					rc.mustCmd(150, "STOR up.bin")
					for off := 0; off < size; off += step {
						if _, err := data.Write(payload[off : off+step]); err != nil {
							t.Fatalf("after %d bytes: %v", off, err)
						}
						time.Sleep(pause)
					}
					_ = data.Close()
				} else {
					rc.mustCmd(150, "RETR slow.bin")
					buf := make([]byte, step)
					var got []byte
					for {
						n, err := io.ReadFull(data, buf)
						got = append(got, buf[:n]...)
						if err != nil {
							break
						}
						time.Sleep(pause)
					}
					if sum(got) != sum(payload) {
						t.Fatalf("download: %d bytes, want %d", len(got), len(payload))
					}
				}
				if code, text := rc.read(); code != 226 {
					t.Fatalf("transfer of %s ended with %q", strconv.Itoa(size), text)
				}
				if d := time.Since(start); d < 2*timeout {
					t.Fatalf("the transfer took %v: too quick to show that the deadline moves with the data", d)
				}
				if upload {
					if got, _ := os.ReadFile(filepath.Join(ts.home("alice"), "up.bin")); sum(got) != sum(payload) {
						t.Fatalf("upload stored %d bytes, want %d", len(got), len(payload))
					}
				}
				want := map[CopyPath]CopyPath{CopyAuto: CopySendfile, CopyBuffered: CopyBuffered}[path]
				direction := "download"
				if upload {
					direction = "upload"
					if path == CopyAuto {
						want = CopySplice
					}
				}
				checkCopied(t, ts, direction, want, size)
			})
		}
	}
}

// TestCopyPathsFallBack: on a file system that refuses sendfile and splice (EINVAL, as some
// FUSE and network file systems do), transfers still move every byte, through the buffer: the
// download from its first byte, the upload after the bytes already drawn into the pipe.
func TestCopyPathsFallBack(t *testing.T) {
	refusing := &copySyscalls{
		sendfile: func(int, int, *int64, int) (int, error) { return 0, unix.EINVAL },
		splice: func(rfd int, roff *int64, wfd int, woff *int64, n int, flags int) (int64, error) {
			if flags&unix.SPLICE_F_NONBLOCK == 0 { // pipe -> file
				return 0, unix.EINVAL
			}
			return unix.Splice(rfd, roff, wfd, woff, n, flags) // socket -> pipe
		},
	}
	ts := startServer(t, func(c *Config) { c.copySyscalls = refusing })
	payload := randomBytes(t, 5<<20+99)
	c := ts.dial(t, "alice", alicePass)
	if err := c.Stor("f.bin", bytes.NewReader(payload)); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(ts.home("alice"), "f.bin")); sum(got) != sum(payload) {
		t.Fatalf("STOR stored %d bytes that differ from the %d sent", len(got), len(payload))
	}
	checkCopied(t, ts, "upload", CopyBuffered, int64(len(payload)))
	got, err := readAll(t, c, "f.bin")
	if err != nil || sum(got) != sum(payload) {
		t.Fatalf("RETR: %d bytes (%v), want %d", len(got), err, len(payload))
	}
	checkCopied(t, ts, "download", CopyBuffered, int64(len(payload)))
}

// TestDownloadDoneWhenDelivered: a download counts as done (its 226, a drain's count of
// transfers in flight) only when the client has acknowledged every byte, not when the last byte
// fit in the socket's send buffer: a draining daemon that exited earlier would take the tail of
// the file with the pod's network namespace, and the client would wait for it forever.
func TestDownloadDoneWhenDelivered(t *testing.T) {
	ts := startServer(t, func(c *Config) { c.DrainTimeout = 10 * time.Second })
	payload := randomBytes(t, 2<<20) // fits in the server's send buffer at once
	writeFile(t, ts.home("alice")+"/f.bin", payload)
	rc := dialRaw(t, ts.Addr())
	rc.login("alice", alicePass)
	port := rc.epsvPort()
	// A slow client: a small receive buffer, so most of the file waits in the server's queue.
	d := net.Dialer{Timeout: 5 * time.Second, Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 16<<10) })
		return errors.Join(err, serr)
	}}
	data, err := d.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		t.Fatal(err)
	}
	defer data.Close()
	rc.mustCmd(150, "RETR f.bin")
	head := make([]byte, 64<<10)
	if _, err := io.ReadFull(data, head); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // the server has written all it can
	stopped := make(chan error, 1)
	go func() { stopped <- ts.stop() }()
	select {
	case err := <-stopped:
		t.Fatalf("the daemon stopped (%v) with most of the download still in its send queue", err)
	case <-time.After(700 * time.Millisecond):
	}
	rest, err := io.ReadAll(data)
	if err != nil {
		t.Fatal(err)
	}
	rc.expect(226)
	if got := slices.Concat(head, rest); sum(got) != sum(payload) {
		t.Fatalf("got %d of %d bytes", len(got), len(payload))
	}
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the daemon did not stop once the download was delivered")
	}
}
