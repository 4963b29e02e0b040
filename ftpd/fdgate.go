package ftpd

import (
	"log/slog"
	"sync"
	"time"
)

const (
	// passiveGateWait bounds how long a PASV/EPSV waits for descriptors; past it, it goes on
	// without them (and may fail as it would have without the gate).
	passiveGateWait = 10 * time.Second
	// descriptorReserve is what the gate leaves for everything but sessions and transfers:
	// the runtime, the logs, the control and health listeners, refused connections being
	// answered, active-mode transfers. The passive listeners come on top (one per port).
	descriptorReserve = 64
	// descriptorsPerSetup is what one passive setup holds at most besides its control
	// connection: ftpserverlib's throwaway listener until the data connection is handed over,
	// then the data connection and the file or directory.
	descriptorsPerSetup = 2
)

// descriptorGate admits passive setups (PASV/EPSV until the end of the transfer) while the
// process has file descriptors for them, and makes the others wait, in arrival order.
//
// Every session holds one descriptor (its control connection) and a passive setup at most two
// more (descriptorsPerSetup). When thousands of sessions send PASV at once near the process's
// RLIMIT_NOFILE, ftpserverlib's throwaway listeners alone can take every descriptor left; then
// no data connection can be accepted and no file opened, so the transfers that would free
// descriptors cannot run either: the PASVs beyond the limit fail (421, EMFILE), the RETRs fail
// (550, EMFILE) or time out waiting for their data connection, all of them at once (the
// sessions-at-scale benchmark, docs/benchmarks.md). Admitted only while sessions + held +
// reserve fit in the limit, every admitted setup has the descriptors to complete, and the
// waiting ones go as earlier transfers end.
type descriptorGate struct {
	limit    int        // RLIMIT_NOFILE (soft); 0: unknown, no gate
	reserve  int        // descriptors left for everything else
	sessions func() int // open control connections
	logger   *slog.Logger

	mu       sync.Mutex
	held     int // descriptorsPerSetup per admitted setup
	waiters  []chan struct{}
	lastWarn time.Time
}

func newDescriptorGate(limit, reserve int, sessions func() int, logger *slog.Logger) *descriptorGate {
	return &descriptorGate{limit: limit, reserve: reserve, sessions: sessions, logger: logger}
}

// fitsLocked reports whether one more setup fits.
func (g *descriptorGate) fitsLocked() bool {
	return g.sessions()+g.held+descriptorsPerSetup+g.reserve <= g.limit
}

// acquire waits, at most wait, until one more setup fits, and reports whether it was admitted
// (then release must follow once). Without a known limit it admits at once.
func (g *descriptorGate) acquire(wait time.Duration) bool {
	if g == nil || g.limit == 0 {
		return false
	}
	g.mu.Lock()
	if len(g.waiters) == 0 && g.fitsLocked() {
		g.held += descriptorsPerSetup
		g.mu.Unlock()
		return true
	}
	ch := make(chan struct{})
	g.waiters = append(g.waiters, ch)
	if now := time.Now(); now.Sub(g.lastWarn) > time.Minute {
		g.lastWarn = now
		g.logger.Warn("passive setups wait for file descriptors", slog.Int("open_files_limit", g.limit),
			slog.Int("sessions", g.sessions()), slog.Int("setups", g.held/descriptorsPerSetup), slog.Int("waiting", len(g.waiters)))
	}
	g.mu.Unlock()
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case <-ch:
		return true
	case <-timer.C:
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	for i, w := range g.waiters {
		if w == ch {
			g.waiters = append(g.waiters[:i], g.waiters[i+1:]...)
			return false
		}
	}
	return true // admitted just as the wait ended
}

// release gives an admitted setup's descriptors back and admits waiting ones.
func (g *descriptorGate) release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.held -= descriptorsPerSetup
	g.admitLocked()
}

// kick admits waiting setups after a session ended (its descriptor is free).
func (g *descriptorGate) kick() {
	if g == nil || g.limit == 0 {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.admitLocked()
}

func (g *descriptorGate) admitLocked() {
	for len(g.waiters) > 0 && g.fitsLocked() {
		g.held += descriptorsPerSetup
		close(g.waiters[0])
		g.waiters = g.waiters[1:]
	}
}
