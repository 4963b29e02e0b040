package harness

import (
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// loopbackLockPath serialises loopback-mode harnesses on this machine: each hands out the same
// pod addresses (127.0.10.x) and load-balancer addresses (127.0.20.x), so two at once (the e2e
// suite and the demo's test, run in parallel by go test) would take each other's ports.
var loopbackLockPath = filepath.Join(os.TempDir(), "ftp-operator-loopback-harness.lock")

// lockLoopback waits for the loopback addresses to be free and returns their release. The lock
// is an flock: it goes with the process, so a killed run never leaves it held.
func lockLoopback(logf func(string, ...any)) (func(), error) {
	f, err := os.OpenFile(loopbackLockPath, os.O_CREATE|os.O_RDONLY, 0o666)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", loopbackLockPath, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		logf("loopback network: waiting for another loopback harness on this machine to stop (%s)", loopbackLockPath)
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
			_ = f.Close()
			return nil, fmt.Errorf("lock %s: %w", loopbackLockPath, err)
		}
	}
	return func() { _ = f.Close() }, nil
}
