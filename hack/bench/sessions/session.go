package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/netip"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// target is what every session talks to and expects.
type target struct {
	addr        netip.AddrPort // control address
	user, pass  string
	file        string // path of the file to RETR
	size        int64
	sha256      string // hex
	dialTimeout time.Duration
}

// session is one control connection from its own source address.
type session struct {
	idx  int
	src  netip.Addr
	epsv bool // EPSV for odd indexes, PASV for even ones

	conn net.Conn // nil: not logged in (never, or given up after an error)
	r    *bufio.Reader
}

// dialer binds to the session's source address. IP_BIND_ADDRESS_NO_PORT leaves the choice of
// the source port to connect(2), which picks one that is unique for the 4-tuple, instead of
// bind(2), which would need a port free on that address against every bound socket.
func dialer(src netip.Addr, timeout time.Duration) *net.Dialer {
	return &net.Dialer{
		LocalAddr: &net.TCPAddr{IP: src.AsSlice()},
		Timeout:   timeout,
		KeepAlive: -1,
		Control: func(_, _ string, rc syscall.RawConn) error {
			var serr error
			if err := rc.Control(func(fd uintptr) {
				serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
			}); err != nil {
				return err
			}
			return serr
		},
	}
}

// failure is a step that failed and why, e.g. "PASV 425", "data connect: connection refused".
type failure string

func stepFailed(step string, err error) failure { return failure(step + ": " + reason(err)) }

// badCode is an unexpected reply, with its text when it is an error (vsftpd's "500 OOPS: ..."
// says more than its code); addresses and long numbers are blotted out so that equal causes
// count together.
func badCode(cmd string, r reply) failure {
	if r.code < 400 {
		return failure(fmt.Sprintf("%s %d", cmd, r.code))
	}
	text := addrPattern.ReplaceAllString(r.text, "ADDR")
	text = numberPattern.ReplaceAllString(text, "N")
	if len(text) > maxReasonText {
		text = text[:maxReasonText] + "..."
	}
	return failure(fmt.Sprintf("%s %d %s", cmd, r.code, text))
}

const maxReasonText = 60

var (
	addrPattern   = regexp.MustCompile(`[0-9]+(\.[0-9]+){3}(:[0-9]+)?`)
	numberPattern = regexp.MustCompile(`[0-9]{3,}`)
)

// cmd sends one command and reads its reply.
func (s *session) cmd(line string) (reply, error) {
	if _, err := io.WriteString(s.conn, line+"\r\n"); err != nil {
		return reply{}, err
	}
	return readReply(s.r)
}

// drop closes the control connection after an error that leaves its state unknown; the
// session logs in again before its next round.
func (s *session) drop() {
	if s.conn != nil {
		_ = s.conn.Close()
		s.conn, s.r = nil, nil
	}
}

// dropIfClosing gives the session up after a reply that ends it on the server's side: 421
// (RFC 959: the service closes the control connection) and vsftpd's "500 OOPS: ...", after
// which its session process exits. Other error replies leave the session usable.
func (s *session) dropIfClosing(r reply) {
	if r.code == 421 || strings.HasPrefix(r.text, "OOPS") {
		s.drop()
	}
}

// login connects, logs in and sets binary mode, all before deadline.
func (s *session) login(ctx context.Context, t *target, deadline time.Time) failure {
	s.drop()
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	conn, err := dialer(s.src, t.dialTimeout).DialContext(ctx, "tcp", t.addr.String())
	if err != nil {
		return stepFailed("connect", err)
	}
	s.conn, s.r = conn, bufio.NewReaderSize(conn, 512)
	_ = conn.SetDeadline(deadline)
	r, err := readReply(s.r)
	if err != nil {
		s.drop()
		return stepFailed("greeting", err)
	}
	if r.code != 220 {
		s.drop()
		return badCode("greeting", r)
	}
	if r, err = s.cmd("USER " + t.user); err != nil {
		s.drop()
		return stepFailed("USER", err)
	}
	if r.code == 331 {
		if r, err = s.cmd("PASS " + t.pass); err != nil {
			s.drop()
			return stepFailed("PASS", err)
		}
	}
	if r.code != 230 {
		s.drop()
		return badCode("login", r)
	}
	if r, err = s.cmd("TYPE I"); err != nil || r.code != 200 {
		s.drop()
		if err != nil {
			return stepFailed("TYPE", err)
		}
		return badCode("TYPE", r)
	}
	return ""
}

// transfer does PASV or EPSV and a RETR of the file, checks its size and SHA-256 and returns
// the time from sending PASV/EPSV to reading the 226.
func (s *session) transfer(ctx context.Context, t *target, deadline time.Time) (time.Duration, failure) {
	_ = s.conn.SetDeadline(deadline)
	start := time.Now()
	pasv := "PASV"
	if s.epsv {
		pasv = "EPSV"
	}
	r, err := s.cmd(pasv)
	if err != nil {
		s.drop()
		return 0, stepFailed(pasv, err)
	}
	var data netip.AddrPort
	switch {
	case pasv == "PASV" && r.code == 227:
		data, err = parsePASV(r.text)
	case pasv == "EPSV" && r.code == 229:
		var port uint16
		if port, err = parseEPSV(r.text); err == nil {
			data = netip.AddrPortFrom(t.addr.Addr(), port)
		}
	default:
		s.dropIfClosing(r)
		return 0, badCode(pasv, r)
	}
	if err != nil {
		s.drop()
		return 0, failure(pasv + ": " + err.Error())
	}
	dctx, cancel := context.WithDeadline(ctx, deadline)
	dc, err := dialer(s.src, t.dialTimeout).DialContext(dctx, "tcp", data.String())
	cancel()
	if err != nil {
		// The server still waits for the connection; the next PASV/EPSV replaces it.
		return 0, stepFailed("data connect", err)
	}
	defer func() { _ = dc.Close() }()
	_ = dc.SetDeadline(deadline)
	if r, err = s.cmd("RETR " + t.file); err != nil {
		s.drop()
		return 0, stepFailed("RETR", err)
	}
	if r.code != 150 && r.code != 125 {
		s.dropIfClosing(r)
		return 0, badCode("RETR", r)
	}
	h := sha256.New()
	n, err := io.Copy(h, dc)
	if err != nil {
		s.drop()
		return 0, stepFailed("data", err)
	}
	if r, err = readReply(s.r); err != nil {
		s.drop()
		return 0, stepFailed("after RETR", err)
	}
	if r.code != 226 && r.code != 250 {
		s.dropIfClosing(r)
		return 0, badCode("after RETR", r)
	}
	elapsed := time.Since(start)
	switch {
	case n != t.size:
		return 0, failure(fmt.Sprintf("check: %d bytes, want %d", n, t.size))
	case hex.EncodeToString(h.Sum(nil)) != t.sha256:
		return 0, "check: sha256 mismatch"
	}
	return elapsed, ""
}

// quit sends QUIT, reads the 221 and then waits for the server to close, so that the server
// closes first (as it does after every QUIT it answers) and the TIME_WAIT lands on its side.
func (s *session) quit(deadline time.Time) failure {
	if s.conn == nil {
		return ""
	}
	defer s.drop()
	_ = s.conn.SetDeadline(deadline)
	r, err := s.cmd("QUIT")
	if err != nil {
		return stepFailed("QUIT", err)
	}
	if r.code != 221 {
		return badCode("QUIT", r)
	}
	if _, err := io.Copy(io.Discard, s.r); err != nil {
		return stepFailed("after QUIT", err)
	}
	return ""
}

// counts are failure reasons with their number.
type counts map[string]int

func (c counts) add(o counts) {
	for k, v := range o {
		c[k] += v
	}
}

// forAll runs f for every session, at most parallel at a time (0: all at once), and counts the
// failures.
func forAll(sessions []*session, parallel int, f func(*session) failure) (ok int, failed counts) {
	var (
		mu  sync.Mutex
		wg  sync.WaitGroup
		sem chan struct{}
	)
	if parallel > 0 {
		sem = make(chan struct{}, parallel)
	}
	failed = counts{}
	for _, s := range sessions {
		if sem != nil {
			sem <- struct{}{}
		}
		wg.Go(func() {
			fl := f(s)
			if sem != nil {
				<-sem
			}
			mu.Lock()
			defer mu.Unlock()
			if fl == "" {
				ok++
			} else {
				failed[string(fl)]++
			}
		})
	}
	wg.Wait()
	return ok, failed
}
