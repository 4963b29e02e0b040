package ftpd

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"syscall"
	"time"

	"github.com/kubeftp/ftp-operator/ftpd/fileconfig"
)

// The TCP side of a session (docs/ftpd.md, "The TCP life cycle of a session"):
//
//   - Listeners are opened with Go's defaults: SO_REUSEADDR (a restarted daemon binds its
//     ports at once, whatever sits in TIME_WAIT on them) and a backlog of the network
//     namespace's net.core.somaxconn, which Go reads once at the first listen.
//   - Keepalive is set by the daemon on every accepted connection, control and passive data
//     alike, from the limits in force when it is accepted (a reload applies to new
//     connections). The listeners are told to leave keepalive alone (KeepAlive: -1), so that
//     Go's own 15 s default never applies behind our back.
//   - Control connections also get TCP_USER_TIMEOUT = Idle + Interval x Count: keepalive
//     probes are only sent while nothing is waiting for an acknowledgement, so without it a
//     reply written to a client that has just vanished would be retransmitted for the
//     kernel's tcp_retries2 (about 15 minutes) instead. Data connections do not get it: a
//     client that stops reading a download for a while (zero window) is the data timeout's
//     business, and a dead control connection ends its transfer anyway.
//   - Data connections get one probe more than control connections. The control connection
//     is the session's heartbeat: when a client vanishes during an upload, its control
//     connection must be given up first, which ends the session and the transfer at once. Were
//     the (equally quiet) data connection given up first, the transfer's failure reply would
//     be written into the dead control connection, which would then wait out its user timeout
//     once more before the session ended.

// listenConfig is used for the control and passive listeners (the ops listener keeps Go's
// defaults).
var listenConfig = net.ListenConfig{KeepAlive: -1}

// setKeepAlive configures the keepalive of conn (a *net.TCPConn; others are left alone, e.g.
// the pipes of some tests): control connections as configured plus the user timeout, data
// connections with one probe more.
func setKeepAlive(conn net.Conn, ka TCPKeepAlive, control bool) error {
	tcp, ok := conn.(*net.TCPConn)
	if !ok {
		return nil
	}
	if ka.Off {
		if err := tcp.SetKeepAlive(false); err != nil {
			return fmt.Errorf("turn TCP keepalive off: %w", err)
		}
		return nil
	}
	count := ka.Count
	if !control {
		count = min(count+1, fileconfig.MaxTCPKeepAliveCount)
	}
	if err := tcp.SetKeepAliveConfig(net.KeepAliveConfig{Enable: true, Idle: ka.Idle, Interval: ka.Interval, Count: count}); err != nil {
		return fmt.Errorf("set TCP keepalive: %w", err)
	}
	if control {
		if err := setUserTimeout(tcp, ka.deadAfter()); err != nil {
			return fmt.Errorf("set TCP user timeout: %w", err)
		}
	}
	return nil
}

// maxAcceptDelay bounds the wait between two attempts of an accept loop that keeps failing.
const maxAcceptDelay = time.Second

// acceptRetry is Accept for the daemon's own accept loops (passive ports, the relay): after a
// temporary failure, above all EMFILE (the process is out of file descriptors, e.g. thousands
// of sessions at once near RLIMIT_NOFILE), it waits (5 ms, doubling up to maxAcceptDelay) and
// tries again, as ftpserverlib does for the control listener and net/http for its own. The
// connection stays in the kernel's accept queue meanwhile. Giving up instead would leave the
// port listening with nobody accepting: every data connection to it would time out, for as
// long as reservations keep the listener open. It returns an error when the listener is closed
// or fails for good.
func acceptRetry(ln net.Listener, logger *slog.Logger, what string) (net.Conn, error) {
	var delay time.Duration
	for {
		conn, err := ln.Accept()
		if err == nil {
			return conn, nil
		}
		var ne net.Error
		switch {
		case errors.Is(err, net.ErrClosed):
			return nil, err
		case errors.As(err, &ne) && ne.Timeout():
			continue
		case !temporaryAcceptError(err):
			return nil, err
		}
		delay = min(max(2*delay, 5*time.Millisecond), maxAcceptDelay)
		logger.Warn("accept failed, retrying", slog.String("listener", what), slog.String("addr", ln.Addr().String()),
			slog.Duration("retry_in", delay), slog.Any("error", err))
		time.Sleep(delay)
	}
}

// temporaryAcceptError: a failure of accept(2) that goes away by itself (descriptors or memory
// freed, a connection aborted).
func temporaryAcceptError(err error) bool {
	for _, e := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.ECONNABORTED, syscall.EINTR} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
