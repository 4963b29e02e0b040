package ftpd

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// BenchmarkIdleSessionMemory measures what an idle, logged-in session costs the daemon: it
// opens 200 sessions, logs each in, and reports the growth of the live heap and of goroutine
// stacks per session (after a GC). The figure includes the test client's own socket objects
// (a few hundred bytes per connection), so it slightly overstates the daemon's share; kernel
// socket buffers are not included. Run it alone, once, so that no earlier round has left freed
// goroutine stacks to reuse:
//
//	go test -run '^$' -bench BenchmarkIdleSessionMemory -benchtime 1x ./ftpd/
func BenchmarkIdleSessionMemory(b *testing.B) {
	const sessions = 200
	cfg := Config{
		ListenAddr: "127.0.0.1:0",
		Root:       filepath.Join(b.TempDir(), "root"),
		Users:      []User{{Name: "alice", Password: alicePass}},
		Limits:     Limits{MaxSessions: 2 * sessions, MaxSessionsPerIP: 2 * sessions},
	}
	srv, err := NewServer(cfg, nil)
	if err != nil {
		b.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			b.Errorf("serve: %v", err)
		}
	}()

	var heapPer, stackPer float64
	for i := 0; i < b.N; i++ {
		before := memNow()
		conns := make([]net.Conn, 0, sessions)
		for j := 0; j < sessions; j++ {
			c, err := loginIdle(srv.Addr())
			if err != nil {
				b.Fatal(err)
			}
			conns = append(conns, c)
		}
		after := memNow()
		// The largest growth is kept: a later round can reuse stack spans freed by an earlier
		// one and understate the stacks.
		heapPer = max(heapPer, float64(int64(after.HeapAlloc)-int64(before.HeapAlloc))/sessions)
		stackPer = max(stackPer, float64(int64(after.StackInuse)-int64(before.StackInuse))/sessions)
		for _, c := range conns {
			_ = c.Close()
		}
		deadline := time.Now().Add(10 * time.Second)
		for sessionCount(srv) > 0 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
	}
	b.ReportMetric(heapPer, "heap-B/session")
	b.ReportMetric(stackPer, "stack-B/session")
	b.ReportMetric(heapPer+stackPer, "B/session")
}

func memNow() runtime.MemStats {
	var m runtime.MemStats
	for i := 0; i < 2; i++ {
		runtime.GC()
	}
	runtime.ReadMemStats(&m)
	return m
}

func sessionCount(s *Server) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sessions)
}

// loginIdle logs in over a raw connection, reading replies into a small stack buffer so that
// the client side adds as little heap as possible to the measurement.
func loginIdle(addr string) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	var buf [256]byte
	expect := func(code string) error {
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := c.Read(buf[:])
		if err != nil || !strings.HasPrefix(string(buf[:n]), code) {
			return fmt.Errorf("want %s, got %q: %v", code, buf[:n], err)
		}
		return nil
	}
	steps := []struct{ send, want string }{{"", "220"}, {"USER alice\r\n", "331"}, {"PASS " + alicePass + "\r\n", "230"}}
	for _, s := range steps {
		if s.send != "" {
			if _, err := c.Write([]byte(s.send)); err != nil {
				_ = c.Close()
				return nil, err
			}
		}
		if err := expect(s.want); err != nil {
			_ = c.Close()
			return nil, err
		}
	}
	return c, nil
}
