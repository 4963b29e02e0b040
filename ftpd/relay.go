package ftpd

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"
)

// The relay carries a data connection that reached a replica which does not own its passive
// port to the replica that does. The relaying replica dials the owner's relay endpoint, sends a
// header naming the client's address and the port, then copies bytes both ways; the owner
// checks the header and hands the connection to its passive port as if the client had connected
// directly, so the same-client check, multiplexing and FTPS session reuse apply unchanged.
//
// The header is PROXY protocol v2 (PROXY command, TCP over IPv4 or IPv6: source = the client,
// destination = the passive port) with one TLV of type relayTLV holding the Unix time in
// seconds and an HMAC-SHA256, under the replicas' shared key, of the header up to that MAC. A
// peer without the key cannot pose as a client, and a header is only good for relayMaxSkew.

const (
	relayTLV         = 0xE0 // PROXY v2 leaves 0xE0-0xEF to applications
	relayMaxSkew     = 30 * time.Second
	relayDialTimeout = 5 * time.Second
	// relayHeaderTimeout bounds how long the owner waits for a relayed connection's header.
	relayHeaderTimeout = 5 * time.Second
	relayMaxHeader     = 512
	// relayLinger is how long a relay waits for the second side to close once the first did.
	relayLinger = 10 * time.Second
)

var proxyV2Signature = []byte("\r\n\r\n\x00\r\nQUIT\n")

var errRelayHeader = errors.New("bad relay header")

// encodeRelayHeader builds the signed header for a connection from client to passive port dst.
func encodeRelayHeader(key []byte, client, dst netip.AddrPort, now time.Time) []byte {
	client, dst = unmapAddrPort(client), unmapAddrPort(dst)
	fam, addrLen := byte(0x11), 12 // TCP over IPv4
	if client.Addr().Is6() || dst.Addr().Is6() {
		fam, addrLen = 0x21, 36 // TCP over IPv6
	}
	const tlvLen = 3 + 8 + sha256.Size
	var b bytes.Buffer
	b.Write(proxyV2Signature)
	b.WriteByte(0x21) // version 2, PROXY
	b.WriteByte(fam)
	_ = binary.Write(&b, binary.BigEndian, uint16(addrLen+tlvLen))
	if fam == 0x11 {
		src4, dst4 := client.Addr().As4(), dst.Addr().As4()
		b.Write(src4[:])
		b.Write(dst4[:])
	} else {
		src16, dst16 := client.Addr().As16(), dst.Addr().As16()
		b.Write(src16[:])
		b.Write(dst16[:])
	}
	_ = binary.Write(&b, binary.BigEndian, client.Port())
	_ = binary.Write(&b, binary.BigEndian, dst.Port())
	b.WriteByte(relayTLV)
	_ = binary.Write(&b, binary.BigEndian, uint16(8+sha256.Size))
	_ = binary.Write(&b, binary.BigEndian, uint64(now.Unix()))
	mac := hmac.New(sha256.New, key)
	mac.Write(b.Bytes())
	return mac.Sum(b.Bytes())
}

// readRelayHeader reads and checks the header of a relayed connection and returns the client's
// address and the passive port it was for.
func readRelayHeader(r io.Reader, key []byte, now time.Time) (client, dst netip.AddrPort, err error) {
	head := make([]byte, 16)
	if _, err := io.ReadFull(r, head); err != nil {
		return client, dst, fmt.Errorf("%w: %w", errRelayHeader, err)
	}
	if !bytes.Equal(head[:12], proxyV2Signature) || head[12] != 0x21 {
		return client, dst, fmt.Errorf("%w: not a PROXY v2 header", errRelayHeader)
	}
	fam, n := head[13], int(binary.BigEndian.Uint16(head[14:16]))
	var addrLen int
	switch fam {
	case 0x11:
		addrLen = 12
	case 0x21:
		addrLen = 36
	default:
		return client, dst, fmt.Errorf("%w: address family %#x", errRelayHeader, fam)
	}
	if n > relayMaxHeader || n < addrLen {
		return client, dst, fmt.Errorf("%w: length %d", errRelayHeader, n)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return client, dst, fmt.Errorf("%w: %w", errRelayHeader, err)
	}
	var src, dstIP netip.Addr
	if fam == 0x11 {
		src, dstIP = netip.AddrFrom4([4]byte(body[0:4])), netip.AddrFrom4([4]byte(body[4:8]))
	} else {
		src, dstIP = netip.AddrFrom16([16]byte(body[0:16])), netip.AddrFrom16([16]byte(body[16:32]))
	}
	ports := body[addrLen-4 : addrLen]
	client = netip.AddrPortFrom(src, binary.BigEndian.Uint16(ports[0:2]))
	dst = netip.AddrPortFrom(dstIP, binary.BigEndian.Uint16(ports[2:4]))

	// The signature TLV must be the last thing in the header, and the only one.
	tlv := body[addrLen:]
	const want = 3 + 8 + sha256.Size
	if len(tlv) != want || tlv[0] != relayTLV || binary.BigEndian.Uint16(tlv[1:3]) != 8+sha256.Size {
		return client, dst, fmt.Errorf("%w: no signature", errRelayHeader)
	}
	signed := append(append([]byte{}, head...), body[:len(body)-sha256.Size]...)
	mac := hmac.New(sha256.New, key)
	mac.Write(signed)
	if !hmac.Equal(mac.Sum(nil), body[len(body)-sha256.Size:]) {
		return client, dst, fmt.Errorf("%w: signature does not verify (another key?)", errRelayHeader)
	}
	sent := time.Unix(int64(binary.BigEndian.Uint64(tlv[3:11])), 0)
	if d := now.Sub(sent); d > relayMaxSkew || d < -relayMaxSkew {
		return client, dst, fmt.Errorf("%w: signed %v ago, more than %v", errRelayHeader, d.Round(time.Second), relayMaxSkew)
	}
	return client, dst, nil
}

func unmapAddrPort(a netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
}

// relayedConn is a data connection that came through a peer: its remote address is the
// client's, as the header said, and its local address the passive port it was for.
type relayedConn struct {
	net.Conn
	client, local net.Addr
}

func (c *relayedConn) RemoteAddr() net.Addr { return c.client }
func (c *relayedConn) LocalAddr() net.Addr  { return c.local }

// SyscallConn exposes the socket to the peer, so that the owner's downloads and uploads take
// the zero-copy paths (copy.go) through the relay as they do directly.
func (c *relayedConn) SyscallConn() (syscall.RawConn, error) {
	sc, ok := c.Conn.(syscall.Conn)
	if !ok {
		return nil, errors.New("relayed connection has no socket")
	}
	return sc.SyscallConn()
}

// CloseWrite passes an upload's end on (the relaying peer turns it into the client's FIN).
func (c *relayedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Close()
}

// relayServer is a daemon's relay endpoint: peers bring it the data connections of its
// sessions.
type relayServer struct {
	s  *Server
	ln net.Listener
	wg sync.WaitGroup
}

func (s *Server) listenRelay() error {
	r := s.cfg.Replicas
	if r == nil {
		return nil
	}
	ln, err := listenConfig.Listen(s.ctx, "tcp", r.RelayListen)
	if err != nil {
		return fmt.Errorf("listen on %s (relay): %w", r.RelayListen, err)
	}
	s.relay = &relayServer{s: s, ln: ln}
	return nil
}

// RelayAddr is the relay endpoint's address, or "" without replicas.
func (s *Server) RelayAddr() string {
	if s.relay == nil {
		return ""
	}
	return s.relay.ln.Addr().String()
}

func (rs *relayServer) serve() {
	for {
		conn, err := acceptRetry(rs.ln, rs.s.logger, "relay")
		if err != nil {
			return // closed
		}
		rs.wg.Add(1)
		go func() {
			defer rs.wg.Done()
			rs.receive(conn)
		}()
	}
}

// receive checks a relayed connection's header and dispatches it to its passive port.
func (rs *relayServer) receive(conn net.Conn) {
	s := rs.s
	reps := s.dyn.Load().replicas
	_ = conn.SetReadDeadline(time.Now().Add(relayHeaderTimeout))
	client, dst, err := readRelayHeader(conn, reps.Key, time.Now())
	_ = conn.SetReadDeadline(time.Time{})
	refuse := func(reason string, err error) {
		s.metrics.relayed.WithLabelValues("received", "refused").Inc()
		s.logger.Warn("relayed data connection refused", slog.String("peer_addr", conn.RemoteAddr().String()),
			slog.String("client_ip", client.Addr().String()), slog.Int("port", int(dst.Port())),
			slog.String("reason", reason), slog.Any("error", err))
		_ = conn.Close()
	}
	if err != nil {
		refuse("header", err)
		return
	}
	port := int(dst.Port())
	if !reps.owns(port) {
		// Never relayed on: a peer with another view of the slices would make it loop.
		refuse("not this replica's port", nil)
		return
	}
	ln := s.passive.fixedListener(port)
	if ln == nil {
		refuse("not a passive port", nil)
		return
	}
	if err := setKeepAlive(conn, s.dyn.Load().limits.TCPKeepAlive, false); err != nil {
		s.logger.Warn("relayed connection keepalive", slog.Any("error", err))
	}
	s.metrics.relayed.WithLabelValues("received", "accepted").Inc()
	// One line per relayed transfer, beside the transfer's own: which replica carried it.
	s.logger.Info("relayed data connection accepted", slog.String("client_addr", client.String()), slog.Int("port", port),
		slog.String("peer_addr", conn.RemoteAddr().String()))
	rc := &relayedConn{Conn: conn, client: net.TCPAddrFromAddrPort(client), local: net.TCPAddrFromAddrPort(dst)}
	ln.dispatch(rc)
}

func (rs *relayServer) close() {
	_ = rs.ln.Close()
	rs.wg.Wait()
}

// relayOut carries conn, which reached listened port port owned by peer owner, to that peer.
// It runs in its own goroutine and counts as an in-flight transfer, so a drain waits for it.
func (h *passiveHub) relayOut(conn net.Conn, port int, reps *replicaSet, owner int) {
	s := h.s
	s.relayStart()
	defer s.transferDone()
	peer := reps.Peers[owner]
	log := s.logger.With(slog.String("client_addr", conn.RemoteAddr().String()), slog.Int("port", port), slog.String("owner", peer.Name))
	client, err1 := netip.ParseAddrPort(conn.RemoteAddr().String())
	local, err2 := netip.ParseAddrPort(conn.LocalAddr().String())
	if err1 != nil || err2 != nil {
		s.metrics.relayed.WithLabelValues("sent", "failed").Inc()
		log.Warn("data connection not relayed: addresses unreadable", slog.Any("error", errors.Join(err1, err2)))
		_ = conn.Close()
		return
	}
	ctx, cancel := context.WithTimeout(s.ctx, relayDialTimeout)
	up, err := (&net.Dialer{KeepAlive: -1}).DialContext(ctx, "tcp", peer.RelayAddress)
	cancel()
	if err == nil {
		if kerr := setKeepAlive(up, s.dyn.Load().limits.TCPKeepAlive, false); kerr != nil {
			log.Warn("relay connection keepalive", slog.Any("error", kerr))
		}
		_ = up.SetWriteDeadline(time.Now().Add(relayDialTimeout))
		_, err = up.Write(encodeRelayHeader(reps.Key, client, netip.AddrPortFrom(local.Addr(), uint16(port)), time.Now()))
		_ = up.SetWriteDeadline(time.Time{})
		if err != nil {
			_ = up.Close()
		}
	}
	if err != nil {
		s.metrics.relayed.WithLabelValues("sent", "failed").Inc()
		log.Warn("data connection not relayed: owner unreachable", slog.String("relay_address", peer.RelayAddress), slog.Any("error", err))
		_ = conn.Close()
		return
	}
	s.metrics.relayed.WithLabelValues("sent", "relayed").Inc()
	log.Debug("data connection relayed", slog.String("relay_address", peer.RelayAddress))
	n := pipe(conn, up)
	log.Debug("relayed data connection ended", slog.Int64("bytes", n))
}

// pipe copies a and b into each other until both directions ended, then closes both. It
// returns the bytes copied. A clean end of one direction is passed on as a half-close (an
// upload ends with the client's FIN, which the owner must read as the end of the file); a
// failed one closes both, since the transfer is lost and the other direction could otherwise
// wait forever.
func pipe(a, b net.Conn) int64 {
	var wg sync.WaitGroup
	var total [2]int64
	var once sync.Once
	half := func(i int, dst, src net.Conn) {
		defer wg.Done()
		var err error
		total[i], err = io.Copy(dst, src)
		cw, ok := dst.(interface{ CloseWrite() error })
		if err != nil || !ok {
			_ = a.Close()
			_ = b.Close()
			return
		}
		_ = cw.CloseWrite()
		// The other side closes in turn (a client closes after a download's EOF; the owner
		// after an upload's). One that does not must not hold the relay, or a drain, forever.
		once.Do(func() {
			deadline := time.Now().Add(relayLinger)
			_ = a.SetReadDeadline(deadline)
			_ = b.SetReadDeadline(deadline)
		})
	}
	wg.Add(2)
	go half(0, a, b)
	go half(1, b, a)
	wg.Wait()
	_ = a.Close()
	_ = b.Close()
	return total[0] + total[1]
}
