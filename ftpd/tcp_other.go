//go:build !linux

package ftpd

import (
	"net"
	"syscall"
	"time"
)

// setUserTimeout is Linux only (TCP_USER_TIMEOUT); elsewhere keepalive alone bounds dead peers.
func setUserTimeout(*net.TCPConn, time.Duration) error { return nil }

// unsentBytes is Linux only (SIOCOUTQ); elsewhere a download is done when it is written.
func unsentBytes(syscall.RawConn) (int, error) { return 0, nil }

// openFilesLimit is only read on Linux; elsewhere passive setups are not gated (fdgate.go).
func openFilesLimit() int { return 0 }
