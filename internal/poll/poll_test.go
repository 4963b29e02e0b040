package poll

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestUntil(t *testing.T) {
	seen := errors.New("not yet: 3 of 5")
	for _, tc := range []struct {
		name  string
		check func(n int) (bool, error)
		ctx   func() context.Context
		want  string // "" for success, else a part of the error
		calls int    // at most
	}{
		{name: "holds at once", check: func(int) (bool, error) { return true, nil }, calls: 1},
		{name: "holds on the third check", check: func(n int) (bool, error) { return n == 3, nil }, calls: 3},
		{name: "times out quoting the last error", check: func(int) (bool, error) { return false, seen }, want: "timed out after 30ms waiting for the thing (last: not yet: 3 of 5)", calls: 100},
		{name: "times out without an error", check: func(int) (bool, error) { return false, nil }, want: "timed out after 30ms waiting for the thing", calls: 100},
		{name: "Stop ends at once", check: func(int) (bool, error) { return false, Stop(seen) }, want: "waiting for the thing: not yet", calls: 1},
		{name: "the context ends it", check: func(int) (bool, error) { return false, nil },
			ctx: func() context.Context {
				ctx, cancel := context.WithCancel(context.Background())
				cancel()
				return ctx
			}, want: "context canceled", calls: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			if tc.ctx != nil {
				ctx = tc.ctx()
			}
			n := 0
			err := Until(ctx, 30*time.Millisecond, time.Millisecond, "the thing", func(context.Context) (bool, error) {
				n++
				return tc.check(n)
			})
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			case n > tc.calls:
				t.Fatalf("%d checks, want at most %d", n, tc.calls)
			}
			if strings.Contains(tc.want, "not yet") && !errors.Is(err, seen) {
				t.Fatalf("the check's error is not wrapped: %v", err)
			}
		})
	}
}
