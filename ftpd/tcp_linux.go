package ftpd

import (
	"math"
	"net"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// setUserTimeout sets TCP_USER_TIMEOUT: how long sent data may stay unacknowledged before the
// kernel gives the connection up. With keepalive on, the kernel also uses it instead of the
// probe count to end a connection whose probes go unanswered.
func setUserTimeout(conn *net.TCPConn, d time.Duration) error {
	rc, err := conn.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, int(d.Milliseconds()))
	}); err != nil {
		return err
	}
	return serr
}

// unsentBytes is how many bytes of the socket's send queue the peer has not acknowledged yet
// (SIOCOUTQ).
func unsentBytes(rc syscall.RawConn) (int, error) {
	var n int
	var ierr error
	if err := rc.Control(func(fd uintptr) { n, ierr = unix.IoctlGetInt(int(fd), unix.SIOCOUTQ) }); err != nil {
		return 0, err
	}
	return n, ierr
}

// openFilesLimit is the process's RLIMIT_NOFILE soft limit (the Go runtime raised it to the
// hard limit at start), or 0 when unknown.
func openFilesLimit() int {
	var r unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &r); err != nil {
		return 0
	}
	return int(min(r.Cur, math.MaxInt32))
}
