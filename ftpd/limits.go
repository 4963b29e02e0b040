package ftpd

import (
	"fmt"
	"net/netip"
	"sync"
	"time"
)

// maxTrackedIPs bounds the failed-login table, so that guesses from very many addresses (an
// IPv6 range) cannot grow it without limit: beyond it, expired entries are pruned and, if still
// full, new addresses are not tracked (they can still only guess at the failed-login pace).
const maxTrackedIPs = 100_000

// rejection is why a connection is refused at connect, with the 421 text the client gets.
type rejection struct {
	reason string // metric label
	text   string
}

// sessionLimiter counts open control connections, globally and per client IP.
type sessionLimiter struct {
	mu    sync.Mutex
	total int
	perIP map[netip.Addr]int
}

func newSessionLimiter() *sessionLimiter {
	return &sessionLimiter{perIP: map[netip.Addr]int{}}
}

// acquire takes a session slot for ip, or says why not.
func (l *sessionLimiter) acquire(ip netip.Addr, lim Limits) *rejection {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.total >= lim.MaxSessions {
		return &rejection{"max_sessions", fmt.Sprintf("Too many connections (server limit %d), try again later.", lim.MaxSessions)}
	}
	if l.perIP[ip] >= lim.MaxSessionsPerIP {
		return &rejection{"max_sessions_per_ip", fmt.Sprintf("Too many connections from your address (limit %d), try again later.", lim.MaxSessionsPerIP)}
	}
	l.total++
	l.perIP[ip]++
	return nil
}

// count is the number of open sessions.
func (l *sessionLimiter) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total
}

func (l *sessionLimiter) release(ip netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total--
	if l.perIP[ip] <= 1 {
		delete(l.perIP, ip)
	} else {
		l.perIP[ip]--
	}
}

// loginGate serializes password checks per client IP. Without it, a client holding many
// sessions could send PASS on all of them at once: every attempt would pass the ban check
// before any failure was recorded, giving it maxSessionsPerIP guesses per ban window instead of
// banAfterFailures. Logins from different IPs still run in parallel.
type loginGate struct {
	mu    sync.Mutex
	gates map[netip.Addr]*ipGate
}

type ipGate struct {
	mu   sync.Mutex
	refs int
}

func newLoginGate() *loginGate { return &loginGate{gates: map[netip.Addr]*ipGate{}} }

// enter waits for ip's turn and returns the function that ends it.
func (g *loginGate) enter(ip netip.Addr) (leave func()) {
	g.mu.Lock()
	gate, ok := g.gates[ip]
	if !ok {
		gate = &ipGate{}
		g.gates[ip] = gate
	}
	gate.refs++
	g.mu.Unlock()
	gate.mu.Lock()
	return func() {
		gate.mu.Unlock()
		g.mu.Lock()
		if gate.refs--; gate.refs == 0 {
			delete(g.gates, ip)
		}
		g.mu.Unlock()
	}
}

// banList tracks failed logins per client IP and bans an IP for BanDuration once it reaches
// BanAfterFailures failures within BanDuration. A successful login does not clear the count:
// otherwise an attacker holding one valid account could interleave logins to keep guessing.
type banList struct {
	mu       sync.Mutex
	failures map[netip.Addr][]time.Time // recent failures, oldest first
	banned   map[netip.Addr]time.Time   // ban expiry
}

func newBanList() *banList {
	return &banList{failures: map[netip.Addr][]time.Time{}, banned: map[netip.Addr]time.Time{}}
}

func (b *banList) isBanned(ip netip.Addr, now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	until, ok := b.banned[ip]
	if ok && !now.Before(until) {
		delete(b.banned, ip)
		return false
	}
	return ok
}

// recordFailure counts a failed login and reports whether it got ip banned just now.
func (b *banList) recordFailure(ip netip.Addr, now time.Time, lim Limits) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.failures[ip]; !ok && len(b.failures) >= maxTrackedIPs {
		b.pruneLocked(now, lim.BanDuration)
		if len(b.failures) >= maxTrackedIPs {
			return false
		}
	}
	recent := b.failures[ip][:0]
	for _, t := range b.failures[ip] {
		if now.Sub(t) < lim.BanDuration {
			recent = append(recent, t)
		}
	}
	recent = append(recent, now)
	if len(recent) < lim.BanAfterFailures {
		b.failures[ip] = recent
		return false
	}
	delete(b.failures, ip)
	b.banned[ip] = now.Add(lim.BanDuration)
	return true
}

// prune drops expired bans and failures (called periodically by the watcher).
func (b *banList) prune(now time.Time, window time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.pruneLocked(now, window)
}

func (b *banList) pruneLocked(now time.Time, window time.Duration) {
	for ip, until := range b.banned {
		if !now.Before(until) {
			delete(b.banned, ip)
		}
	}
	for ip, ts := range b.failures {
		if len(ts) == 0 || now.Sub(ts[len(ts)-1]) >= window {
			delete(b.failures, ip)
		}
	}
}

func (b *banList) count() float64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return float64(len(b.banned))
}

// admit decides whether a new connection from a client group (Limits.clientGroup) may start a
// session, and takes its slot.
func (s *Server) admit(ip netip.Addr) *rejection {
	if s.bans.isBanned(ip, time.Now()) {
		return &rejection{"banned", "Too many failed logins from your address, try again later."}
	}
	return s.limiter.acquire(ip, s.dyn.Load().limits)
}
