//go:build !linux

package ftpd

import (
	"net"
	"time"
)

// setUserTimeout is Linux only (TCP_USER_TIMEOUT); elsewhere keepalive alone bounds dead peers.
func setUserTimeout(*net.TCPConn, time.Duration) error { return nil }

// openFilesLimit is only read on Linux; elsewhere passive setups are not gated (fdgate.go).
func openFilesLimit() int { return 0 }
