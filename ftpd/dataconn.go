package ftpd

import (
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

const (
	// dataConnectTimeout is how long a passive port waits for its client to connect (and how
	// long ftpserverlib waits for an active connection: Settings.ConnectionTimeout).
	dataConnectTimeout = 30 * time.Second
	// maxPortAttempts bounds the ports tried for one PASV, so that a large range that is mostly
	// in use cannot make one command try thousands of binds.
	maxPortAttempts = 1000
)

var (
	errNoPassivePort  = errors.New("no free passive port")
	errPassiveUnbound = errors.New("passive port was not set up")
)

// The daemon owns its passive listeners instead of using ftpserverlib's. ftpserverlib accepts
// the first connection that reaches a passive port, stores it and only then checks its address:
// when the check fails the client gets 425, but a retried transfer uses the stored connection
// without another check, so whoever connects first (from any address) can read a download or
// write an upload. Here a connection from any address other than the control connection's
// client is closed at accept and never handed to ftpserverlib, in every mode and for every
// retry; the port keeps waiting for its client.
//
// ftpserverlib gives WrapPassiveListener no session, so the association goes through the reply:
// ftpserverlib is told to use no port range, binds a throwaway listener on a kernel-chosen port
// and, since it then has no exposed port of its own, advertises the Addr() of the listener we
// return, which is that throwaway port. That port is unique among open listeners, so when the
// 227/229 reply carrying it goes out on a control connection (controlConn.Write), it names the
// slot created for that session. The slot is then bound to a real port chosen here (range,
// multiplexing, port mapping) and the reply is rewritten to advertise it.

// passiveHub allocates passive ports and dispatches data connections to the slots waiting on
// them. One hub per server.
type passiveHub struct {
	s         *Server
	listened  PortRange // zero: a kernel-chosen port per transfer
	exposed   PortRange // zero: same as listened
	multiplex bool      // several client IPs may share a port
	anyIP     bool      // Config.AllowDataFromOtherIP

	mu        sync.Mutex
	pending   map[int]*passiveSlot             // slots not yet bound, by throwaway port
	listeners map[netip.AddrPort]*dataListener // bound listeners, by local address
	// fixed, with replicas, holds a listener on every port of the range, open from Listen to
	// the end: ports of this replica's slice serve its sessions, the others relay (relay.go).
	fixed  map[int]*dataListener
	closed bool
}

func newPassiveHub(s *Server) *passiveHub {
	c := &s.cfg
	return &passiveHub{
		s:         s,
		listened:  c.PassivePorts,
		exposed:   c.PassiveExposedPorts,
		multiplex: !c.PassivePorts.IsZero() && !c.DisablePassiveMultiplexing,
		anyIP:     c.AllowDataFromOtherIP,
		pending:   map[int]*passiveSlot{},
		listeners: map[netip.AddrPort]*dataListener{},
	}
}

// passiveSlot is the listener ftpserverlib sees for one PASV/EPSV: it accepts exactly the data
// connection of its session's client.
type passiveSlot struct {
	hub   *passiveHub
	lib   net.Listener // ftpserverlib's throwaway listener (also its deadline target)
	token int          // lib's port
	conns chan net.Conn
	done  chan struct{}
	// abandon closes a slot whose reply never went out (ftpserverlib failed the PASV after
	// creating its listener), so that its listener does not stay open for the whole session.
	abandon *time.Timer

	mu     sync.Mutex
	ctrl   *controlConn  // the session's control connection, once bound
	client netip.Addr    // the control connection's client
	ln     *dataListener // nil until bound, and again once the connection was handed out
	bound  bool
	closed bool
	// fdHold: the slot holds its setup's admission by the descriptor gate, given back when it
	// closes (fdgate.go).
	fdHold bool

	closeOnce sync.Once
	closeErr  error
}

// WrapPassiveListener implements ftpserverlib's MainDriverExtensionPassiveWrapper: it replaces
// ftpserverlib's listener with a slot that is bound when the PASV reply goes out.
func (d *mainDriver) WrapPassiveListener(l net.Listener) (net.Listener, error) {
	return d.srv.passive.newSlot(l)
}

func (h *passiveHub) newSlot(lib net.Listener) (*passiveSlot, error) {
	addr, ok := lib.Addr().(*net.TCPAddr)
	if !ok || addr.Port == 0 {
		return nil, fmt.Errorf("unexpected passive listener address %v", lib.Addr())
	}
	sl := &passiveSlot{hub: h, lib: lib, token: addr.Port, conns: make(chan net.Conn, 1), done: make(chan struct{})}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, net.ErrClosed
	}
	if old := h.pending[sl.token]; old != nil {
		// Cannot happen while ftpserverlib's listener holds the port; refuse rather than guess.
		return nil, fmt.Errorf("passive token port %d is already pending", sl.token)
	}
	h.pending[sl.token] = sl
	sl.abandon = time.AfterFunc(dataConnectTimeout, func() { _ = sl.Close() })
	return sl, nil
}

// bindReply binds the slot named by a 227/229 reply line to a real port for controlConn c and
// returns the line rewritten to advertise that port. A line that names no pending slot, or
// whose slot cannot be bound, becomes an error reply: ftpserverlib's own listener must never be
// advertised. fdHold: the setup was admitted by the descriptor gate; the slot keeps that until
// it closes.
func (h *passiveHub) bindReply(c *controlConn, line []byte, fdHold bool) []byte {
	text := strings.TrimRight(string(line), "\r\n")
	prefix, token, suffix, ok := splitPassiveReply(text)
	if !ok {
		if fdHold {
			h.s.fdGate.release()
		}
		return line
	}
	h.mu.Lock()
	sl := h.pending[token]
	delete(h.pending, token)
	h.mu.Unlock()
	if sl == nil {
		if fdHold {
			h.s.fdGate.release()
		}
		return []byte("425 Could not set up the passive port.\r\n")
	}
	sl.quiesceLib()
	port, err := sl.bind(c, fdHold)
	if err != nil {
		c.s.logger.Warn("passive port refused", slog.String("client_ip", c.ip.String()), slog.Any("error", err))
		_ = sl.Close()
		return []byte(fmt.Sprintf("425 Could not set up the passive port: %v.\r\n", err))
	}
	if strings.HasPrefix(text, "227") {
		return []byte(fmt.Sprintf("%s%d,%d%s\r\n", prefix, port>>8, port&0xff, suffix))
	}
	return []byte(fmt.Sprintf("%s%d%s\r\n", prefix, port, suffix))
}

// splitPassiveReply finds the port in "227 ... (h1,h2,h3,h4,p1,p2)" or "229 ... (|||port|)" and
// returns the text before and after it.
func splitPassiveReply(text string) (prefix string, port int, suffix string, ok bool) {
	switch {
	case strings.HasPrefix(text, "227 "):
		open, end := strings.LastIndexByte(text, '('), strings.LastIndexByte(text, ')')
		if open < 0 || end < open {
			return "", 0, "", false
		}
		parts := strings.Split(text[open+1:end], ",")
		if len(parts) != 6 {
			return "", 0, "", false
		}
		hi, err1 := strconv.Atoi(parts[4])
		lo, err2 := strconv.Atoi(parts[5])
		if err1 != nil || err2 != nil {
			return "", 0, "", false
		}
		cut := open + 1 + len(strings.Join(parts[:4], ",")) + 1
		return text[:cut], hi<<8 | lo, text[end:], true
	case strings.HasPrefix(text, "229 "):
		open := strings.LastIndex(text, "(|||")
		end := strings.LastIndex(text, "|)")
		if open < 0 || end < open+4 {
			return "", 0, "", false
		}
		p, err := strconv.Atoi(text[open+4 : end])
		if err != nil {
			return "", 0, "", false
		}
		return text[:open+4], p, text[end:], true
	}
	return "", 0, "", false
}

// quiesceLib stops ftpserverlib's throwaway listener from listening. It listens on every
// address of both families; it cannot simply be closed, because ftpserverlib sets its accept
// deadline on it before calling our Accept, and that fails on a closed socket. shutdown(2) on
// a listening socket stops it listening (pending connections are reset) while the descriptor
// stays open; its port is released. Done only once the reply matched the slot, because until
// then the port is what identifies the slot.
func (sl *passiveSlot) quiesceLib() {
	tl, ok := sl.lib.(*net.TCPListener)
	if !ok {
		return
	}
	rc, err := tl.SyscallConn()
	if err == nil {
		cerr := rc.Control(func(fd uintptr) { err = syscall.Shutdown(int(fd), syscall.SHUT_RD) })
		if err == nil {
			err = cerr
		}
	}
	if err != nil {
		// Nothing ever accepts on it; it only stays reachable until the transfer ends.
		sl.hub.s.logger.Warn("cannot stop ftpserverlib's passive listener", slog.Any("error", err))
	}
}

// bind reserves a real port for the slot's session and returns the port to advertise. The
// slot takes fdHold over (also when binding fails: closing the slot gives it back).
func (sl *passiveSlot) bind(c *controlConn, fdHold bool) (int, error) {
	sl.abandon.Stop()
	sl.mu.Lock()
	defer sl.mu.Unlock()
	if sl.closed {
		if fdHold {
			sl.hub.s.fdGate.release()
		}
		return 0, net.ErrClosed
	}
	sl.fdHold = fdHold
	sl.client, sl.ctrl = c.ip, c
	sl.hub.closeEarlierSlots(c, sl)
	ln, port, err := sl.hub.reserve(sl, c.ip, passiveBindIP(c))
	if err != nil {
		return 0, err
	}
	sl.ln, sl.bound = ln, true
	sl.hub.s.metrics.passivePorts.Inc()
	return port, nil
}

// closeEarlierSlots closes the slots the session of c still holds from an earlier PASV/EPSV
// that no data connection used. ftpserverlib closes the previous one only after the new reply
// went out, so without this a session's second PASV could not have the port of its first: on
// a one-port range (or a replica's one-port slice) it would get 425.
func (h *passiveHub) closeEarlierSlots(c *controlConn, current *passiveSlot) {
	var earlier []*passiveSlot
	h.mu.Lock()
	collect := func(ln *dataListener) {
		if sl := ln.reservations[c.ip]; sl != nil && sl != current && sl.ctrl == c {
			earlier = append(earlier, sl)
		}
	}
	for _, ln := range h.listeners {
		collect(ln)
	}
	for _, ln := range h.fixed {
		collect(ln)
	}
	h.mu.Unlock()
	for _, sl := range earlier {
		_ = sl.Close()
	}
}

// passiveBindIP is the address passive listeners are bound to for controlConn c: the local
// address of its control connection (like vsftpd), so that passive ports are never reachable on
// addresses or families the control listener does not serve.
func passiveBindIP(c *controlConn) netip.Addr {
	if tcp, ok := c.raw.LocalAddr().(*net.TCPAddr); ok {
		if ip, ok := netip.AddrFromSlice(tcp.IP); ok {
			return ip.Unmap().WithZone(tcp.Zone)
		}
	}
	return netip.Addr{} // not TCP (tests with pipes): any address
}

// reserve finds a port for client on bindIP: a new listener, or with multiplexing a listener
// already open for other clients. It returns the port to advertise (the exposed one).
func (h *passiveHub) reserve(sl *passiveSlot, client, bindIP netip.Addr) (*dataListener, int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, 0, net.ErrClosed
	}
	if h.fixed != nil {
		return h.reserveOwnLocked(sl, client)
	}
	if h.listened.IsZero() {
		ln, err := h.openLocked(netip.AddrPortFrom(bindIP, 0))
		if err != nil {
			return nil, 0, err
		}
		ln.reservations[client] = sl
		return ln, int(ln.addr.Port()), nil
	}
	count := h.listened.Count()
	start := rand.IntN(count)
	for i := 0; i < min(count, maxPortAttempts); i++ {
		port := h.listened.Start + (start+i)%count
		key := netip.AddrPortFrom(bindIP, uint16(port))
		ln := h.listeners[key]
		if ln != nil {
			if !h.multiplex || ln.reservations[client] != nil {
				continue
			}
		} else {
			var err error
			if ln, err = h.openLocked(key); err != nil {
				continue // in use by another program, or by a listener on another address
			}
		}
		ln.reservations[client] = sl
		return ln, h.exposedPort(port), nil
	}
	return nil, 0, errNoPassivePort
}

// reserveOwnLocked is reserve with replicas: a port of this replica's slice, whose listener is
// always open.
func (h *passiveHub) reserveOwnLocked(sl *passiveSlot, client netip.Addr) (*dataListener, int, error) {
	own := h.s.dyn.Load().replicas.own()
	count := own.Count()
	start := rand.IntN(count)
	for i := range count {
		port := own.Start + (start+i)%count
		ln := h.fixed[port]
		if ln == nil || ln.reservations[client] != nil || (!h.multiplex && len(ln.reservations) > 0) {
			continue
		}
		ln.reservations[client] = sl
		return ln, h.exposedPort(port), nil
	}
	return nil, 0, errNoPassivePort
}

// openFixed opens the listeners of the whole range for replicas, on the control listener's
// host: the relayed connections of other replicas' ports arrive on any of them.
func (h *passiveHub) openFixed(host string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.fixed = map[int]*dataListener{}
	var ip netip.Addr
	if host != "" {
		var err error
		if ip, err = netip.ParseAddr(host); err != nil {
			return fmt.Errorf("passive listeners for replicas: listen host %q: %w", host, err)
		}
	}
	for port := h.listened.Start; port <= h.listened.End; port++ {
		ln, err := h.openLocked(netip.AddrPortFrom(ip, uint16(port)))
		if err != nil {
			for _, l := range h.fixed {
				_ = l.ln.Close()
			}
			return fmt.Errorf("passive listeners for replicas: %w", err)
		}
		delete(h.listeners, ln.addr) // reached by port, never released
		h.fixed[port] = ln
	}
	return nil
}

// fixedListener is the always-open listener of a port, with replicas; nil otherwise.
func (h *passiveHub) fixedListener(port int) *dataListener {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.fixed[port]
}

func (h *passiveHub) exposedPort(listened int) int {
	if h.exposed.IsZero() {
		return listened
	}
	return h.exposed.Start + (listened - h.listened.Start)
}

// openLocked binds a new listener and starts its accept loop.
func (h *passiveHub) openLocked(addr netip.AddrPort) (*dataListener, error) {
	bind := &net.TCPAddr{Port: int(addr.Port())}
	if addr.Addr().IsValid() {
		bind.IP, bind.Zone = addr.Addr().AsSlice(), addr.Addr().Zone()
	}
	l, err := listenConfig.Listen(h.s.ctx, "tcp", bind.String())
	if err != nil {
		return nil, fmt.Errorf("listen on %v: %w", bind, err)
	}
	tl := l.(*net.TCPListener)
	bound := tl.Addr().(*net.TCPAddr).AddrPort()
	ln := &dataListener{hub: h, ln: tl, addr: netip.AddrPortFrom(addr.Addr(), bound.Port()), reservations: map[netip.Addr]*passiveSlot{}}
	h.listeners[ln.addr] = ln
	go ln.serve()
	return ln, nil
}

// release removes the slot's reservation; a listener left without reservations is closed, so
// that passive ports listen only while a transfer is being set up.
func (h *passiveHub) release(ln *dataListener, client netip.Addr, sl *passiveSlot) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if ln.reservations[client] == sl {
		delete(ln.reservations, client)
	}
	if len(ln.reservations) == 0 && h.listeners[ln.addr] == ln { // never a fixed one
		delete(h.listeners, ln.addr)
		_ = ln.ln.Close()
	}
}

// close closes every passive listener (server shutdown).
func (h *passiveHub) close() {
	h.mu.Lock()
	h.closed = true
	slots := make([]*passiveSlot, 0, len(h.pending))
	for _, sl := range h.pending {
		slots = append(slots, sl)
	}
	for _, ln := range h.listeners {
		for _, sl := range ln.reservations {
			slots = append(slots, sl)
		}
	}
	for _, ln := range h.fixed {
		for _, sl := range ln.reservations {
			slots = append(slots, sl)
		}
		_ = ln.ln.Close()
	}
	h.mu.Unlock()
	for _, sl := range slots {
		_ = sl.Close()
	}
}

// dataListener is one bound passive port and the slots (one per client IP) waiting on it.
type dataListener struct {
	hub          *passiveHub
	ln           *net.TCPListener
	addr         netip.AddrPort
	reservations map[netip.Addr]*passiveSlot // guarded by hub.mu
}

func (l *dataListener) serve() {
	for {
		conn, err := acceptRetry(l.ln, l.hub.s.logger, "passive")
		if err != nil {
			return // closed
		}
		if err := setKeepAlive(conn, l.hub.s.dyn.Load().limits.TCPKeepAlive, false); err != nil {
			l.hub.s.logger.Warn("data connection keepalive", slog.String("remote_addr", conn.RemoteAddr().String()), slog.Any("error", err))
		}
		if reps := l.hub.s.dyn.Load().replicas; reps != nil {
			// Another replica's port: carried to its owner, which checks the client.
			if port := int(l.addr.Port()); !reps.owns(port) {
				if owner := reps.owner(port); owner >= 0 {
					go l.hub.relayOut(conn, port, reps, owner)
					continue
				}
			}
		}
		l.dispatch(conn)
	}
}

// dispatch hands a connection to the slot reserved for its source address, or closes it.
func (l *dataListener) dispatch(conn net.Conn) {
	ip, err := addrIP(conn.RemoteAddr())
	h := l.hub
	var sl *passiveSlot
	h.mu.Lock()
	if err == nil {
		sl = l.reservations[ip]
		if sl == nil && h.anyIP {
			for _, r := range l.reservations {
				sl = r // without multiplexing a listener has exactly one reservation
			}
		}
	}
	h.mu.Unlock()
	if sl == nil || !sl.deliver(conn) {
		h.s.logger.Warn("data connection refused", slog.String("client_ip", ip.String()), slog.String("local_addr", conn.LocalAddr().String()),
			slog.String("reason", "not the client of this passive port"))
		_ = conn.Close()
	}
}

// deliver queues the slot's data connection and gives its port up: with multiplexing, the same
// client may reserve it again for its next transfer.
func (sl *passiveSlot) deliver(conn net.Conn) bool {
	sl.mu.Lock()
	defer sl.mu.Unlock()
	if sl.closed || sl.ln == nil {
		return false
	}
	select {
	case sl.conns <- conn:
	default:
		return false // one data connection per transfer
	}
	ln := sl.ln
	sl.ln = nil
	sl.hub.release(ln, sl.client, sl)
	return true
}

// Accept returns the data connection of the slot's client.
func (sl *passiveSlot) Accept() (net.Conn, error) {
	sl.mu.Lock()
	bound := sl.bound
	sl.mu.Unlock()
	if !bound {
		return nil, errPassiveUnbound
	}
	timer := time.NewTimer(dataConnectTimeout)
	defer timer.Stop()
	select {
	case conn := <-sl.conns:
		// ftpserverlib's throwaway listener has served its purpose: its port named the slot,
		// and ftpserverlib set its accept deadline on it before calling this Accept (the one
		// use it makes of it; at the end it closes the slot). Closed now, it holds no file
		// descriptor for the rest of the transfer, which then costs the session its control
		// and data connections (and the file) only.
		_ = sl.lib.Close()
		sl.mu.Lock()
		ctrl := sl.ctrl
		// The setup's descriptors are now the data connection's (and the file's, closed
		// before it): given back when it closes, not when ftpserverlib closes the slot just
		// before it, which would let another setup in while they are still open.
		dc := &dataConn{Conn: conn, ctrl: ctrl}
		if sl.fdHold {
			sl.fdHold = false
			dc.gate = sl.hub.s.fdGate
			dc.fdHold.Store(true)
		}
		sl.mu.Unlock()
		return dc, nil
	case <-sl.done:
		return nil, net.ErrClosed
	case <-timer.C:
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: errors.New("timeout waiting for the data connection")}
	}
}

// Close releases the port (or the reservation on a shared one) and closes ftpserverlib's
// listener and any data connection that was never picked up.
func (sl *passiveSlot) Close() error {
	sl.closeOnce.Do(sl.close)
	return sl.closeErr
}

func (sl *passiveSlot) close() {
	sl.mu.Lock()
	sl.closed = true
	ln := sl.ln
	sl.ln = nil
	bound := sl.bound
	fdHold := sl.fdHold
	sl.fdHold = false
	close(sl.done)
	sl.mu.Unlock()

	sl.abandon.Stop()
	h := sl.hub
	if fdHold {
		h.s.fdGate.release()
	}
	h.mu.Lock()
	if h.pending[sl.token] == sl {
		delete(h.pending, sl.token)
	}
	h.mu.Unlock()
	if ln != nil {
		h.release(ln, sl.client, sl)
	}
	if bound {
		h.s.metrics.passivePorts.Dec()
	}
	select {
	case conn := <-sl.conns:
		_ = conn.Close()
	default:
	}
	if err := sl.lib.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		sl.closeErr = fmt.Errorf("close passive listener: %w", err)
	}
}

// dataConn is a passive data connection as handed to ftpserverlib: it carries its session, so
// that the TLS handshake ftpserverlib does over it resumes that session only (tls.go).
type dataConn struct {
	net.Conn
	ctrl   *controlConn
	gate   *descriptorGate
	fdHold atomic.Bool // the transfer's admission by the descriptor gate, given back on Close
}

// Close closes the connection and then gives the transfer's descriptors back to the gate.
func (d *dataConn) Close() error {
	err := d.Conn.Close()
	if d.fdHold.Swap(false) {
		d.gate.release()
	}
	return err
}

// Addr is ftpserverlib's throwaway port: it writes it in the reply, which is how the reply is
// matched with this slot (see passiveHub).
func (sl *passiveSlot) Addr() net.Addr { return sl.lib.Addr() }
