// Package poll is the one way the tests, the test clusters and the benchmarks wait for
// something they cannot be told about: check now, then again every interval, until the check
// holds, the time is up or the context ends. A wait that times out says what it waited for, for
// how long, and what the last check saw.
package poll

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

// DefaultInterval is the pause between checks of Eventually and Consistently.
const DefaultInterval = 50 * time.Millisecond

// stopError ends a wait at once (see Stop).
type stopError struct{ err error }

func (e stopError) Error() string { return e.err.Error() }
func (e stopError) Unwrap() error { return e.err }

// Stop marks a check's error as final: the wait ends with it instead of trying again (the
// process being waited for has exited, say).
func Stop(err error) error { return stopError{err} }

// Until calls check until it reports true. An error from check is what the last attempt saw: it
// is quoted when the time is up, and ends the wait at once only when made with Stop. The wait
// also ends with ctx.
func Until(ctx context.Context, timeout, interval time.Duration, what string, check func(context.Context) (bool, error)) error {
	deadline := time.Now().Add(timeout)
	var last error
	for {
		ok, err := check(ctx)
		if ok {
			return nil
		}
		if stop := (stopError{}); errors.As(err, &stop) {
			return fmt.Errorf("waiting for %s: %w", what, stop.err)
		}
		if err != nil {
			last = err
		}
		if time.Now().After(deadline) {
			if last == nil {
				return fmt.Errorf("timed out after %s waiting for %s", timeout, what)
			}
			return fmt.Errorf("timed out after %s waiting for %s (last: %w)", timeout, what, last)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		case <-time.After(interval):
		}
	}
}

// Eventually is Until for a test, checking every DefaultInterval: it fails t when the time is up.
func Eventually(t testing.TB, timeout time.Duration, what string, check func() (bool, error)) {
	t.Helper()
	if err := Until(context.Background(), timeout, DefaultInterval, what, func(context.Context) (bool, error) { return check() }); err != nil {
		t.Fatal(err)
	}
}

// Consistently checks every DefaultInterval for d that something holds throughout: it fails t
// at the first error check returns.
func Consistently(t testing.TB, d time.Duration, what string, check func() error) {
	t.Helper()
	for deadline := time.Now().Add(d); ; time.Sleep(DefaultInterval) {
		if err := check(); err != nil {
			t.Fatalf("%s no longer held: %v", what, err)
		}
		if time.Now().After(deadline) {
			return
		}
	}
}
