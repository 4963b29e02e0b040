package ftpd

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

const (
	// controlReadBuffer is the read buffer of one control connection; commands are short.
	controlReadBuffer = 512
	// tlsHandshakeTimeout bounds an AUTH TLS handshake (and the 421 sent to a refused implicit
	// TLS client).
	tlsHandshakeTimeout = 10 * time.Second
	// lingerTimeout and lingerBytes bound how long and how much input is discarded after a
	// fatal reply, so that the reply reaches the client instead of being lost to a TCP reset
	// caused by unread input.
	lingerTimeout = time.Second
	lingerBytes   = 1 << 20
	// maxConcurrentRejects bounds the goroutines writing 421 to refused connections; beyond it
	// refused connections are closed without a word.
	maxConcurrentRejects = 64
)

// controlListener accepts control connections. Connections from banned IPs or over the session
// limits get a 421 reply and are closed before ftpserverlib sees them; the others are wrapped
// in a controlConn.
type controlListener struct {
	net.Listener
	s         *Server
	rejecting chan struct{}
}

func (l *controlListener) Accept() (net.Conn, error) {
	for {
		raw, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ip, err := addrIP(raw.RemoteAddr())
		if err != nil {
			_ = raw.Close()
			continue
		}
		group := l.s.dyn.Load().limits.clientGroup(ip)
		if rej := l.s.admit(group); rej != nil {
			l.s.metrics.sessionsRejected.WithLabelValues(rej.reason).Inc()
			l.s.logger.Warn("connection refused", slog.String("client_ip", ip.String()), slog.String("reason", rej.reason))
			l.reject(raw, rej.text)
			continue
		}
		if err := setKeepAlive(raw, l.s.dyn.Load().limits.TCPKeepAlive, true); err != nil {
			l.s.logger.Warn("control connection keepalive", slog.String("client_ip", ip.String()), slog.Any("error", err))
		}
		return l.s.newControlConn(raw, ip, group), nil
	}
}

// reject answers 421 and closes, off the accept loop (a TLS handshake may be needed first).
func (l *controlListener) reject(raw net.Conn, text string) {
	select {
	case l.rejecting <- struct{}{}:
	default:
		_ = raw.Close()
		return
	}
	go func() {
		defer func() { <-l.rejecting }()
		_ = raw.SetDeadline(time.Now().Add(tlsHandshakeTimeout))
		w := raw
		if l.s.cfg.TLS.Mode == TLSImplicit {
			w = tls.Server(raw, l.s.tlsConf)
		}
		_, _ = fmt.Fprintf(w, "421 %s\r\n", text)
		_ = w.Close()
	}()
}

// controlConn is one control connection as ftpserverlib sees it. It sits between the socket and
// ftpserverlib and reads the command stream in clear text, which lets it:
//   - bound the command line length with a 500 reply (ftpserverlib silently drops the client);
//   - enforce the login timeout with its own 421 reply;
//   - do the TLS of the control connection itself (implicit TLS, AUTH TLS), so that it keeps
//     seeing clear text after AUTH TLS and the checks below apply to FTPS sessions too;
//   - refuse what ftpserverlib cannot be told to refuse: PORT/EPRT to a privileged port,
//     clear-text USER/PASS and data connections when TLS is required, PROT P without TLS.
//
// ftpserverlib reads commands from one goroutine, so the read side needs no lock; writes come
// from the command goroutine and from transfer goroutines and are serialized by wmu.
type controlConn struct {
	raw   net.Conn
	s     *Server
	ip    netip.Addr
	group netip.Addr // ip's key for session limits, bans and the login gate (Limits.clientGroup)
	key   string

	tlsConn atomic.Pointer[tls.Conn]
	// tlsSession is set when TLS starts on the control connection: its data connections must
	// resume it (tls.go).
	tlsSession atomic.Pointer[sessionTLS]
	// activeTarget is the last checked PORT/EPRT target (guarded by s.mu; Server.activeTargets).
	activeTarget netip.AddrPort
	loggedIn     atomic.Bool
	// pasvPending is set when a PASV/EPSV went to ftpserverlib and its 227/229 reply, which
	// binds the passive slot (dataconn.go), has not been written yet.
	pasvPending atomic.Bool
	// fdHold: the PASV/EPSV in ftpserverlib was admitted by the descriptor gate (fdgate.go);
	// its reply hands the hold to the passive slot, or gives it back when it is an error.
	fdHold        atomic.Bool
	loginDeadline time.Time

	// handshakeFailed: the implicit TLS handshake failed and was counted (metrics.go).
	handshakeFailed atomic.Bool
	// fullVolumeReply: the current transfer failed on a full volume. ftpserverlib answers
	// every storage error with 552 (exceeded storage allocation); that reply is turned into 452
	// (insufficient storage space), which tells the client that the server, not its quota, is
	// short of space and that trying later may work.
	fullVolumeReply atomic.Bool
	// drainingReply: the current transfer was refused because the server drains. ftpserverlib
	// answers 550 (file unavailable), which tells the client the file is at fault; the reply is
	// turned into 421 (service closing) and the session closed, as RFC 959 has it, so that the
	// client reconnects, to a replica that serves.
	drainingReply atomic.Bool
	// lateHold: accepted after the shutdown request, no transfer started yet (guarded by s.mu;
	// Server.transferStart).
	lateHold bool

	wmu sync.Mutex

	dmu          sync.Mutex
	readDeadline time.Time // the last read deadline ftpserverlib asked for

	// Read side (session goroutine only).
	rbuf       []byte
	rpos, rend int
	line       []byte // the command line being read
	pending    []byte // the part of line not yet handed to ftpserverlib
	protP      bool

	closeOnce sync.Once
	closeErr  error
}

func (s *Server) newControlConn(raw net.Conn, ip, group netip.Addr) *controlConn {
	lim := s.dyn.Load().limits
	c := &controlConn{
		raw:           raw,
		s:             s,
		ip:            ip,
		group:         group,
		key:           connKey(raw.LocalAddr(), raw.RemoteAddr()),
		loginDeadline: time.Now().Add(lim.LoginTimeout),
	}
	// Until ftpserverlib sets its own deadlines, the login deadline bounds everything,
	// including the implicit TLS handshake made when the banner is written.
	_ = raw.SetDeadline(c.loginDeadline)
	if s.cfg.TLS.Mode == TLSImplicit {
		c.tlsConn.Store(c.startTLS(raw))
	}
	s.mu.Lock()
	s.conns[c.key] = c
	s.holdLateLocked(c)
	s.mu.Unlock()
	return c
}

// startTLS prepares the session's TLS configs and returns the server side of TLS over under;
// the caller stores it in tlsConn once it is to be used.
func (c *controlConn) startTLS(under net.Conn) *tls.Conn {
	st := c.s.sessionTLSFor(c)
	c.tlsSession.Store(st)
	return tls.Server(under, st.control)
}

func connKey(local, remote net.Addr) string { return local.String() + "|" + remote.String() }

// transport is what bytes are read from and written to: the socket or the TLS layer over it.
func (c *controlConn) transport() net.Conn {
	if t := c.tlsConn.Load(); t != nil {
		return t
	}
	return c.raw
}

func (c *controlConn) isTLS() bool { return c.tlsConn.Load() != nil }

func (c *controlConn) markLoggedIn() { c.loggedIn.Store(true) }

// Read hands ftpserverlib the command lines that pass the filter.
func (c *controlConn) Read(p []byte) (int, error) {
	for len(c.pending) == 0 {
		line, err := c.readLine()
		if err != nil {
			return 0, err
		}
		pass, err := c.filter(line)
		if err != nil {
			return 0, err
		}
		if pass {
			c.pending = c.line
		} else {
			c.line = c.line[:0]
		}
	}
	n := copy(p, c.pending)
	c.pending = c.pending[n:]
	if len(c.pending) == 0 {
		c.line = c.line[:0]
	}
	return n, nil
}

// readLine returns the next complete line, CR LF included. A partial line survives a read
// timeout (ftpserverlib extends the deadline and reads again while a transfer runs).
func (c *controlConn) readLine() ([]byte, error) {
	limit := c.s.dyn.Load().limits.MaxCommandLength
	for {
		if c.rpos < c.rend {
			chunk := c.rbuf[c.rpos:c.rend]
			if i := bytes.IndexByte(chunk, '\n'); i >= 0 {
				c.line = append(c.line, chunk[:i+1]...)
				c.rpos += i + 1
				if len(c.line) > limit {
					return nil, c.tooLong(limit)
				}
				return c.line, nil
			}
			c.line = append(c.line, chunk...)
			c.rpos = c.rend
			if len(c.line) >= limit {
				return nil, c.tooLong(limit)
			}
		}
		if c.rbuf == nil {
			c.rbuf = make([]byte, controlReadBuffer)
		}
		n, err := c.transport().Read(c.rbuf)
		c.rpos, c.rend = 0, n
		if n == 0 && err != nil {
			return nil, c.readError(err)
		}
	}
}

// readError turns a read timeout before login into the login-timeout reply; other errors go to
// ftpserverlib unchanged (it answers idle timeouts itself).
func (c *controlConn) readError(err error) error {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() && !c.loggedIn.Load() && !time.Now().Before(c.loginDeadline) {
		c.s.logger.Info("login timeout", slog.String("client_ip", c.ip.String()))
		_ = c.raw.SetWriteDeadline(time.Now().Add(time.Second))
		c.reply(421, fmt.Sprintf("Login timeout (%s): closing control connection.", c.s.dyn.Load().limits.LoginTimeout))
		return io.EOF
	}
	return err
}

// tooLong answers a too-long command line and ends the session. The connection is closed
// after a short linger so the reply is not lost; the rest of the line is never buffered.
func (c *controlConn) tooLong(limit int) error {
	c.s.logger.Warn("command line too long", slog.String("client_ip", c.ip.String()), slog.Int("limit", limit))
	_ = c.raw.SetWriteDeadline(time.Now().Add(time.Second))
	c.reply(500, fmt.Sprintf("Command line too long (limit %d bytes): closing control connection.", limit))
	c.linger()
	return io.EOF
}

// linger stops writing and discards input for a moment before the connection is closed: closing
// a socket with unread input makes the kernel send a reset, which can destroy the last reply
// before the client reads it.
func (c *controlConn) linger() {
	if t := c.tlsConn.Load(); t != nil {
		_ = t.CloseWrite()
	}
	if tcp, ok := c.raw.(*net.TCPConn); ok {
		_ = tcp.CloseWrite()
	}
	_ = c.raw.SetReadDeadline(time.Now().Add(lingerTimeout))
	_, _ = io.CopyN(io.Discard, c.raw, lingerBytes)
	_ = c.Close()
}

// reply writes one reply line.
func (c *controlConn) reply(code int, text string) {
	_, _ = fmt.Fprintf(c, "%d %s\r\n", code, text)
}

// filter inspects one command line (c.line); it answers the commands it refuses itself and
// reports whether the line goes on to ftpserverlib. It may rewrite c.line.
func (c *controlConn) filter(line []byte) (bool, error) {
	cmd, param := splitCommand(line)
	mode := c.s.cfg.TLS.Mode
	switch cmd {
	case "AUTH":
		return c.handleAUTH(param)
	case "USER", "PASS":
		if mode == TLSRequired && !c.isTLS() {
			c.reply(530, "TLS is required: send AUTH TLS first.")
			return false, nil
		}
	case "PROT":
		level := strings.ToUpper(strings.TrimSpace(param))
		if level != "C" && level != "P" {
			c.reply(504, "PROT must be C or P.")
			return false, nil
		}
		if level == "P" && mode == TLSDisabled {
			// Refused here: with TLS off, ftpserverlib would accept PROT P and then fail the
			// next PASV without releasing its passive listener.
			c.reply(534, "TLS is not available on this server.")
			return false, nil
		}
		c.protP = level == "P"
		// ftpserverlib only understands an upper-case "P"; hand it the canonical form so that
		// it protects the data connections exactly when this filter believes it does.
		c.line = append(c.line[:0], "PROT "+level+"\r\n"...)
	case "PASV", "EPSV", "PORT", "EPRT":
		if mode == TLSRequired && !c.protP {
			c.reply(521, "Data connections must be protected: send PBSZ 0 and PROT P first.")
			return false, nil
		}
		if (cmd == "PORT" || cmd == "EPRT") && c.s.cfg.ActiveMode {
			if msg := c.checkActiveTarget(cmd, param); msg != "" {
				c.s.logger.Warn("active mode refused", slog.String("client_ip", c.ip.String()), slog.String("command", cmd), slog.String("target", param))
				c.reply(501, msg)
				return false, nil
			}
		}
		c.pasvPending.Store(cmd == "PASV" || cmd == "EPSV")
		if cmd == "PASV" || cmd == "EPSV" {
			c.admitPassive()
		}
	}
	return true, nil
}

// admitPassive waits until the descriptor gate admits this passive setup (fdgate.go). The
// session's earlier setups that no data connection used are given up first: they would be
// anyway when this one's reply goes out (closeEarlierSlots), and holding them while waiting
// could keep the gate shut.
func (c *controlConn) admitPassive() {
	c.s.passive.closeEarlierSlots(c, nil)
	if c.fdHold.Swap(false) {
		c.s.fdGate.release()
	}
	c.fdHold.Store(c.s.fdGate.acquire(passiveGateWait))
}

// splitCommand returns the upper-cased command and its parameter.
func splitCommand(line []byte) (string, string) {
	text := strings.TrimRight(string(line), "\r\n")
	cmd, param, _ := strings.Cut(text, " ")
	return strings.ToUpper(cmd), param
}

// checkActiveTarget refuses PORT/EPRT targets other than the client's own IP and privileged
// ports (FTP bounce: making the server connect to a service on the client's host or elsewhere).
// Only the canonical forms are accepted, and the line ftpserverlib receives is rewritten to the
// canonical form of the target checked here: whatever its parser does with odd input (another
// EPRT delimiter, bytes above 255, signs, leading zeros), it can only ever see what was checked.
func (c *controlConn) checkActiveTarget(cmd, param string) string {
	target, ok := parseActiveTarget(cmd, param)
	if !ok {
		return "Unparsable address; use PORT h1,h2,h3,h4,p1,p2 or EPRT |1|address|port|."
	}
	if target.Addr() != c.ip {
		return "Active mode is only allowed to your own address."
	}
	if target.Port() < 1024 {
		return "Active mode to a privileged port (below 1024) is refused."
	}
	c.line = append(c.line[:0], canonicalActive(cmd, target)+"\r\n"...)
	c.s.setActiveTarget(c, target)
	return ""
}

// setActiveTarget records the session's PORT/EPRT target, so that the TLS handshake of the data
// connection ftpserverlib opens to it finds its session (controlOfData). A target claimed by two
// sessions (only possible from the same client IP) belongs to neither: their handshakes cannot
// be told apart, and with session reuse required they are refused rather than guessed.
func (s *Server) setActiveTarget(c *controlConn, target netip.AddrPort) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dropActiveTargetLocked(c)
	c.activeTarget = target
	s.activeTargets[target] = append(s.activeTargets[target], c)
}

func (s *Server) dropActiveTargetLocked(c *controlConn) {
	if !c.activeTarget.IsValid() {
		return
	}
	claims := slices.DeleteFunc(s.activeTargets[c.activeTarget], func(o *controlConn) bool { return o == c })
	if len(claims) == 0 {
		delete(s.activeTargets, c.activeTarget)
	} else {
		s.activeTargets[c.activeTarget] = claims
	}
	c.activeTarget = netip.AddrPort{}
}

// canonicalActive writes target as a PORT or EPRT parameter line.
func canonicalActive(cmd string, target netip.AddrPort) string {
	if cmd == "PORT" {
		a := target.Addr().As4()
		return fmt.Sprintf("PORT %d,%d,%d,%d,%d,%d", a[0], a[1], a[2], a[3], target.Port()>>8, target.Port()&0xff)
	}
	proto := "2"
	if target.Addr().Is4() {
		proto = "1"
	}
	return fmt.Sprintf("EPRT |%s|%s|%d|", proto, target.Addr(), target.Port())
}

// parseActiveTarget parses exactly "h1,h2,h3,h4,p1,p2" (PORT, decimal bytes) or
// "|1|IPv4|port|" / "|2|IPv6|port|" (EPRT). RFC 2428 lets EPRT use another delimiter, but
// ftpserverlib only splits on "|": accepting others would check one target and connect to
// another. IPv4-mapped IPv6 addresses and zones are refused too.
func parseActiveTarget(cmd, param string) (netip.AddrPort, bool) {
	if cmd == "PORT" {
		parts := strings.Split(param, ",")
		if len(parts) != 6 {
			return netip.AddrPort{}, false
		}
		var b [6]byte
		for i, p := range parts {
			v, ok := decimal(p, 3, 255)
			if !ok {
				return netip.AddrPort{}, false
			}
			b[i] = byte(v)
		}
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[:4])), uint16(b[4])<<8|uint16(b[5])), true
	}
	fields := strings.Split(param, "|")
	if len(fields) != 5 || fields[0] != "" || fields[4] != "" {
		return netip.AddrPort{}, false
	}
	ip, err := netip.ParseAddr(fields[2])
	if err != nil || ip.Zone() != "" || ip.Is4In6() {
		return netip.AddrPort{}, false
	}
	if (fields[1] == "1") != ip.Is4() || (fields[1] != "1" && fields[1] != "2") {
		return netip.AddrPort{}, false
	}
	port, ok := decimal(fields[3], 5, 65535)
	if !ok || port == 0 {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(ip, uint16(port)), true
}

// decimal parses 1 to maxDigits ASCII digits (no sign, no spaces) not above maxValue.
func decimal(s string, maxDigits, maxValue int) (int, bool) {
	if s == "" || len(s) > maxDigits || strings.TrimLeft(s, "0123456789") != "" {
		return 0, false
	}
	v, err := strconv.Atoi(s)
	if err != nil || v > maxValue {
		return 0, false
	}
	return v, true
}

// handleAUTH starts TLS on the control connection (RFC 4217).
func (c *controlConn) handleAUTH(param string) (bool, error) {
	switch {
	case !c.s.cfg.TLS.enabled():
		return true, nil // ftpserverlib answers that TLS is not configured
	case c.isTLS():
		c.reply(503, "TLS is already active.")
		return false, nil
	case c.loggedIn.Load():
		c.reply(503, "AUTH must come before login.")
		return false, nil
	}
	switch strings.ToUpper(strings.TrimSpace(param)) {
	case "TLS", "TLS-C", "SSL", "TLS-P":
	default:
		c.reply(504, "Unsupported AUTH mechanism: use AUTH TLS.")
		return false, nil
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if _, err := io.WriteString(c.raw, "234 AUTH command ok. Expecting TLS negotiation.\r\n"); err != nil {
		return false, fmt.Errorf("AUTH TLS reply: %w", err)
	}
	// Bytes the client sent after AUTH (it should have waited for 234) belong to the handshake.
	under := c.raw
	if c.rpos < c.rend {
		under = &prefixConn{Conn: c.raw, prefix: append([]byte(nil), c.rbuf[c.rpos:c.rend]...)}
		c.rpos = c.rend
	}
	tc := c.startTLS(under)
	_ = c.raw.SetDeadline(time.Now().Add(tlsHandshakeTimeout))
	if err := tc.Handshake(); err != nil {
		c.s.logger.Warn("TLS handshake failed", slog.String("client_ip", c.ip.String()), slog.Any("error", err))
		c.s.metrics.tlsHandshakeFailed("explicit", err)
		_ = c.raw.Close()
		return false, io.EOF
	}
	c.tlsConn.Store(tc)
	c.dmu.Lock()
	rd := c.readDeadline
	c.dmu.Unlock()
	_ = c.raw.SetReadDeadline(c.clampRead(rd))
	_ = c.raw.SetWriteDeadline(time.Time{})
	return false, nil
}

// Write sends replies; one reply line is one Write, so lines never interleave. The reply to a
// PASV/EPSV is where the passive port is bound and advertised (see passiveHub).
func (c *controlConn) Write(p []byte) (int, error) {
	if c.pasvPending.Load() && (bytes.HasPrefix(p, []byte("227 ")) || bytes.HasPrefix(p, []byte("229 "))) {
		c.pasvPending.Store(false)
		out := c.s.passive.bindReply(c, p, c.fdHold.Swap(false))
		c.wmu.Lock()
		defer c.wmu.Unlock()
		if _, err := c.transport().Write(out); err != nil {
			return 0, err
		}
		return len(p), nil // ftpserverlib counts what it asked to write
	}
	if len(p) >= 4 && p[3] == ' ' && c.fdHold.Swap(false) {
		c.s.fdGate.release() // the PASV/EPSV failed: no slot holds its descriptors
	}
	if bytes.HasPrefix(p, []byte("552")) && c.fullVolumeReply.CompareAndSwap(true, false) {
		p = append([]byte("452"), p[3:]...)
	}
	if len(p) > 0 && p[0] == '5' && c.drainingReply.CompareAndSwap(true, false) {
		return c.closeWith(len(p), []byte("421 Server is shutting down, closing control connection: reconnect and try again.\r\n"))
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	n, err := c.transport().Write(p)
	c.noteWriteError(err)
	return n, err
}

// closeWith writes a last reply and closes the socket: the session ends on its next read.
// It reports n written, what ftpserverlib asked for.
func (c *controlConn) closeWith(n int, last []byte) (int, error) {
	c.wmu.Lock()
	_, err := c.transport().Write(last)
	c.wmu.Unlock()
	c.noteWriteError(err)
	c.closeSocket()
	if err != nil {
		return 0, err
	}
	return n, nil
}

// Close closes the connection (with a TLS close_notify when TLS is up) and frees its session
// slot. It is idempotent.
func (c *controlConn) Close() error {
	c.closeOnce.Do(func() {
		if t := c.tlsConn.Load(); t != nil {
			// The close_notify fails when the client hung up first; that is no error here.
			_ = t.Close()
		} else {
			c.closeErr = c.raw.Close()
		}
		c.s.mu.Lock()
		delete(c.s.conns, c.key)
		c.s.dropActiveTargetLocked(c)
		c.s.releaseLateLocked(c)
		c.s.mu.Unlock()
		c.s.limiter.release(c.group)
		if c.fdHold.Swap(false) {
			c.s.fdGate.release()
		}
		c.s.fdGate.kick()
	})
	return c.closeErr
}

// closeSocket closes the socket without any TLS goodbye (drain; must not block).
func (c *controlConn) closeSocket() {
	_ = c.raw.Close()
	_ = c.Close()
}

func (c *controlConn) LocalAddr() net.Addr  { return c.raw.LocalAddr() }
func (c *controlConn) RemoteAddr() net.Addr { return c.raw.RemoteAddr() }

// SetDeadline is called by ftpserverlib before each command read (its idle timeout).
func (c *controlConn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.raw.SetWriteDeadline(t)
}

// SetReadDeadline records ftpserverlib's deadline and applies it, shortened to the login
// deadline until the client has logged in.
func (c *controlConn) SetReadDeadline(t time.Time) error {
	c.dmu.Lock()
	c.readDeadline = t
	c.dmu.Unlock()
	return c.raw.SetReadDeadline(c.clampRead(t))
}

func (c *controlConn) SetWriteDeadline(t time.Time) error { return c.raw.SetWriteDeadline(t) }

func (c *controlConn) clampRead(t time.Time) time.Time {
	if !c.loggedIn.Load() && (t.IsZero() || t.After(c.loginDeadline)) {
		return c.loginDeadline
	}
	return t
}

// prefixConn replays bytes already read from the socket before reading from it again.
type prefixConn struct {
	net.Conn
	prefix []byte
}

func (p *prefixConn) Read(b []byte) (int, error) {
	if len(p.prefix) > 0 {
		n := copy(b, p.prefix)
		p.prefix = p.prefix[n:]
		return n, nil
	}
	return p.Conn.Read(b)
}
