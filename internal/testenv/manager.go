package testenv

import (
	"context"
	"sync"

	"sigs.k8s.io/controller-runtime/pkg/manager"
)

// RunManager starts mgr in the background, the way every test cluster and controller test runs
// the operator's manager (controllers.NewManager wires it). stop ends it, waits for it to return
// and gives Start's error (it may be called more than once). failed, when not nil, hears of that
// error as soon as Start returns one, so a manager that fails on its own is reported without
// waiting for stop.
func RunManager(mgr manager.Manager, failed func(error)) (stop func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		err := mgr.Start(ctx)
		if err != nil && failed != nil {
			failed(err)
		}
		done <- err
	}()
	return sync.OnceValue(func() error {
		cancel()
		return <-done
	})
}
